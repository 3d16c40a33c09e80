//! Intermediate keys in PostgreSQL, sealed at rest, with retention enforced in the push's
//! own transaction.

use core::future::Future;
use std::sync::Arc;

use e2m_keystore::{
    E2mIntKey, HeldKey, Imsi, IntKeyStore, KeyId, KeyInfo, PushOutcome, RetentionPolicy,
    StoreError, Timestamp,
};
use e2m_seal::{IntKeyRecord, SealNonce, SealedKey};
use futures_util::future::{try_join, try_join3};
use tokio_postgres::types::ToSql;

use crate::backend::{Conn, Shared, db_secs, from_db_secs};
use crate::{BackendError, schema};

/// The [`IntKeyStore`] over PostgreSQL. Made by
/// [`PgBackend::int_keys`](crate::PgBackend::int_keys).
///
/// Every key is stored sealed (AES-256-GCM-SIV under the newest KEK, bound to its IMSI, key
/// id, creation and expiry); a push returns only after its transaction committed with
/// `synchronous_commit=on`. How retention is enforced is in the crate documentation.
pub struct PgIntKeyStore {
    shared: Arc<Shared>,
    policy: RetentionPolicy,
}

impl core::fmt::Debug for PgIntKeyStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PgIntKeyStore")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// One stored key row of a UE, as read inside a push.
struct KeyRow {
    key_id: KeyId,
    created: Timestamp,
    expires: Timestamp,
    sealed: Vec<u8>,
}

/// A pooled connection inside a transaction begun by hand, so that BEGIN can be pipelined
/// with the statements after it. Unless [`finish`](Self::finish)ed (after COMMIT or
/// ROLLBACK), dropping it takes the connection out of the pool and closes it: an error or
/// a dropped push future never returns a connection with an open transaction to the pool
/// (the server rolls the transaction back when the connection closes).
struct PipelinedTx {
    conn: Option<Conn>,
}

impl PipelinedTx {
    fn new(conn: Conn) -> Self {
        PipelinedTx { conn: Some(conn) }
    }

    fn client(&self) -> &deadpool_postgres::ClientWrapper {
        match &self.conn {
            Some(conn) => conn,
            // `conn` is only taken by `finish` and `drop`, which consume the guard.
            None => unreachable_taken(),
        }
    }

    /// The transaction ended: the connection goes back to the pool.
    fn finish(mut self) {
        drop(self.conn.take());
    }
}

#[allow(clippy::panic, reason = "unreachable: the connection is taken only when the guard is consumed")]
fn unreachable_taken() -> ! {
    panic!("pipelined transaction used after its end")
}

impl Drop for PipelinedTx {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(Conn::take(conn));
        }
    }
}

/// What a push will do, decided from the UE's rows under its lock.
enum Plan {
    /// Answer without writing.
    Answer(PushOutcome),
    /// Delete these key ids (expired, replaced or evicted), then insert the new key.
    Write {
        delete: Vec<i64>,
        outcome: PushOutcome,
    },
}

/// The advisory lock key of a UE: its IMSI read as a decimal number. IMSIs are 6 to 15
/// digits, so this is below 10^15 and never meets the negative constant locks; two IMSIs
/// that differ only in leading zeros share a lock, which costs only contention.
fn ue_lock_key(imsi: &Imsi) -> i64 {
    imsi.as_str().bytes().fold(0i64, |n, d| {
        n.wrapping_mul(10)
            .wrapping_add(i64::from(d.wrapping_sub(b'0')))
    })
}

fn key_id_param(key_id: KeyId) -> i64 {
    i64::from(key_id.as_u32())
}

fn key_id_from_db(n: i64) -> Result<KeyId, BackendError> {
    u32::try_from(n)
        .map(KeyId::from_u32)
        .map_err(|_| BackendError::CorruptRow("key id out of range"))
}

impl PgIntKeyStore {
    pub(crate) fn new(shared: Arc<Shared>, policy: RetentionPolicy) -> Self {
        PgIntKeyStore { shared, policy }
    }

    fn open(&self, imsi: &Imsi, row: &KeyRow) -> Result<E2mIntKey, BackendError> {
        let record = IntKeyRecord::new(imsi, row.key_id, row.created, row.expires);
        let sealed = SealedKey::from_bytes(&row.sealed).map_err(BackendError::Open)?;
        self.shared
            .keyring
            .open(&record, &sealed)
            .map_err(BackendError::Open)
    }

    /// Decides the push from the UE's rows (oldest first), like the in-memory store: drop
    /// expired rows, replace a live key of the same id (or answer `Unchanged` for the very
    /// same key), then evict the oldest live keys down to N, or answer `Stale` if the new
    /// key would be the one evicted.
    fn plan(
        &self,
        imsi: &Imsi,
        rows: &[KeyRow],
        key_id: KeyId,
        key: &E2mIntKey,
        created: Timestamp,
        now: Timestamp,
    ) -> Result<Plan, BackendError> {
        let mut delete = Vec::new();
        let mut others: Vec<&KeyRow> = Vec::with_capacity(rows.len());
        let mut replaced = false;
        for row in rows {
            if now >= row.expires {
                delete.push(key_id_param(row.key_id));
            } else if row.key_id == key_id {
                if row.created == created && self.open(imsi, row)? == *key {
                    return Ok(Plan::Answer(PushOutcome::Unchanged));
                }
                replaced = true;
                delete.push(key_id_param(row.key_id));
            } else {
                others.push(row);
            }
        }
        // Where the new key goes in creation order: after every key created at the same
        // time (ties are broken by arrival, and this push arrives last).
        let pos = others.partition_point(|r| r.created <= created);
        let excess = (others.len() + 1).saturating_sub(self.policy.keys_per_ue());
        if excess > pos {
            // The new key is among the oldest N + excess: storing it would evict it at once.
            return Ok(Plan::Answer(PushOutcome::Stale));
        }
        let evicted = others.first().filter(|_| excess > 0).map(|r| r.key_id);
        delete.extend(others[..excess].iter().map(|r| key_id_param(r.key_id)));
        let outcome = if replaced {
            PushOutcome::Replaced
        } else {
            PushOutcome::Stored { evicted }
        };
        Ok(Plan::Write { delete, outcome })
    }

    async fn push_now(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        key: E2mIntKey,
        created: Timestamp,
        now: Timestamp,
    ) -> Result<PushOutcome, BackendError> {
        let expires = self.policy.expires_at(created);
        if now >= expires {
            return Ok(PushOutcome::Expired);
        }
        // Sealed before the UE's lock is taken, so the lock is held for the database work only.
        let record = IntKeyRecord::new(imsi, key_id, created, expires);
        let nonce = SealNonce::random().map_err(BackendError::Seal)?;
        let sealed = self
            .shared
            .keyring
            .seal(&record, &key, nonce)
            .map_err(BackendError::Seal)?;
        let sql = &self.shared.sql;
        let tx = PipelinedTx::new(self.shared.conn().await?);
        let c = tx.client();
        // Every statement is prepared once per connection; the first push on a connection
        // prepares its statements in one pipelined round trip.
        let (begin, lock, select) = try_join3(
            c.prepare_cached(schema::BEGIN_READ_COMMITTED),
            c.prepare_cached(schema::ADVISORY_XACT_LOCK),
            c.prepare_cached(&sql.key_rows_of_ue),
        )
        .await?;
        // One round trip: BEGIN, the UE's lock, and its rows, pipelined. READ COMMITTED on
        // purpose: every statement takes a fresh snapshot, so the SELECT, which the server
        // runs only after the lock was granted, sees whatever the previous holder of the
        // lock committed. (Under REPEATABLE READ the snapshot would date from the lock
        // statement, taken before the lock was granted, and two pushers could both miss
        // each other's rows.)
        let (_, _, found) = try_join3(
            c.execute(&begin, &[]),
            c.execute(&lock, &[&ue_lock_key(imsi)]),
            c.query(&select, &[&imsi.as_str()]),
        )
        .await?;
        let mut rows = Vec::with_capacity(found.len());
        for row in &found {
            rows.push(KeyRow {
                key_id: key_id_from_db(row.try_get(0)?)?,
                created: from_db_secs(row.try_get(1)?)?,
                expires: from_db_secs(row.try_get(2)?)?,
                sealed: row.try_get(3)?,
            });
        }
        let (delete, outcome) = match self.plan(imsi, &rows, key_id, &key, created, now)? {
            Plan::Answer(outcome) => {
                let rollback = c.prepare_cached(schema::ROLLBACK).await?;
                c.execute(&rollback, &[]).await?;
                tx.finish();
                return Ok(outcome);
            }
            Plan::Write { delete, outcome } => (delete, outcome),
        };
        drop(key);
        let (remove, insert, commit) = try_join3(
            c.prepare_cached(&sql.key_delete_ids),
            c.prepare_cached(&sql.key_insert),
            c.prepare_cached(schema::COMMIT),
        )
        .await?;
        let kek_version = i64::from(sealed.kek_version().get());
        let insert_params: [&(dyn ToSql + Sync); 6] = [
            &imsi.as_str(),
            &key_id_param(key_id),
            &db_secs(created),
            &db_secs(expires),
            &kek_version,
            &sealed.as_bytes().as_slice(),
        ];
        // One round trip: the deletions, the insertion and the COMMIT, pipelined. With
        // synchronous_commit=on the COMMIT answers once the commit is durable (and, with a
        // synchronous standby named, flushed there too): only then is the push
        // acknowledged. If the DELETE or INSERT failed, the join returns that error (the
        // server turns the COMMIT of a failed transaction into a rollback).
        if delete.is_empty() {
            try_join(
                c.execute(&insert, &insert_params),
                c.execute(&commit, &[]),
            )
            .await?;
        } else {
            try_join3(
                c.execute(&remove, &[&imsi.as_str(), &delete]),
                c.execute(&insert, &insert_params),
                c.execute(&commit, &[]),
            )
            .await?;
        }
        tx.finish();
        Ok(outcome)
    }

    async fn get_now(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        now: Timestamp,
    ) -> Result<Option<HeldKey>, BackendError> {
        let rows = self
            .shared
            .query(
                &self.shared.sql.key_get,
                &[&imsi.as_str(), &key_id_param(key_id), &db_secs(now)],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let row = KeyRow {
            key_id,
            created: from_db_secs(row.try_get(0)?)?,
            expires: from_db_secs(row.try_get(1)?)?,
            sealed: row.try_get(2)?,
        };
        self.held_key(imsi, &row).map(Some)
    }

    fn held_key(&self, imsi: &Imsi, row: &KeyRow) -> Result<HeldKey, BackendError> {
        Ok(HeldKey {
            key: self.open(imsi, row)?,
            info: KeyInfo {
                key_id: row.key_id,
                created: row.created,
                expires: row.expires,
            },
        })
    }

    async fn latest_now(&self, imsi: &Imsi, now: Timestamp) -> Result<Option<HeldKey>, BackendError> {
        let rows = self
            .shared
            .query(&self.shared.sql.key_latest, &[&imsi.as_str(), &db_secs(now)])
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let row = KeyRow {
            key_id: key_id_from_db(row.try_get(0)?)?,
            created: from_db_secs(row.try_get(1)?)?,
            expires: from_db_secs(row.try_get(2)?)?,
            sealed: row.try_get(3)?,
        };
        self.held_key(imsi, &row).map(Some)
    }

    async fn held_now(&self, imsi: &Imsi, now: Timestamp) -> Result<Vec<KeyInfo>, BackendError> {
        let rows = self
            .shared
            .query(&self.shared.sql.key_held, &[&imsi.as_str(), &db_secs(now)])
            .await?;
        rows.iter()
            .map(|row| {
                Ok(KeyInfo {
                    key_id: key_id_from_db(row.try_get(0)?)?,
                    created: from_db_secs(row.try_get(1)?)?,
                    expires: from_db_secs(row.try_get(2)?)?,
                })
            })
            .collect()
    }

    async fn remove_ue_now(&self, imsi: &Imsi) -> Result<usize, BackendError> {
        let n = self
            .shared
            .execute(&self.shared.sql.key_remove_ue, &[&imsi.as_str()])
            .await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn sweep_now(&self, now: Timestamp) -> Result<Vec<(Imsi, KeyInfo)>, BackendError> {
        let rows = self
            .shared
            .query(&self.shared.sql.key_sweep, &[&db_secs(now)])
            .await?;
        rows.iter()
            .map(|row| {
                let imsi: &str = row.try_get(0)?;
                let imsi =
                    Imsi::new(imsi).map_err(|_| BackendError::CorruptRow("invalid IMSI"))?;
                let info = KeyInfo {
                    key_id: key_id_from_db(row.try_get(1)?)?,
                    created: from_db_secs(row.try_get(2)?)?,
                    expires: from_db_secs(row.try_get(3)?)?,
                };
                Ok((imsi, info))
            })
            .collect()
    }
}

impl IntKeyStore for PgIntKeyStore {
    fn retention(&self) -> RetentionPolicy {
        self.policy
    }

    fn push(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        key: E2mIntKey,
        created: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<PushOutcome, StoreError>> + Send {
        async move { Ok(self.push_now(imsi, key_id, key, created, now).await?) }
    }

    fn get(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<HeldKey>, StoreError>> + Send {
        async move { Ok(self.get_now(imsi, key_id, now).await?) }
    }

    fn latest(
        &self,
        imsi: &Imsi,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<HeldKey>, StoreError>> + Send {
        async move { Ok(self.latest_now(imsi, now).await?) }
    }

    fn held(
        &self,
        imsi: &Imsi,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<KeyInfo>, StoreError>> + Send {
        async move { Ok(self.held_now(imsi, now).await?) }
    }

    fn remove_ue(&self, imsi: &Imsi) -> impl Future<Output = Result<usize, StoreError>> + Send {
        async move { Ok(self.remove_ue_now(imsi).await?) }
    }

    fn sweep(
        &self,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<(Imsi, KeyInfo)>, StoreError>> + Send {
        async move { Ok(self.sweep_now(now).await?) }
    }
}
