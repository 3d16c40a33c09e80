//! Intermediate keys in PostgreSQL, sealed at rest, with retention enforced in the push's
//! own transaction.

use std::sync::Arc;

use crate::BackendError;
use crate::backend::{Shared, db_time, from_db_time};
use e2m_keystore::{
    DatabaseId, E2mIntKey, HeldKey, Imsi, IntKeyStore, KeyId, KeyInfo, PushOutcome,
    RetentionPolicy, StoreError, Timestamp,
};
use e2m_seal::{IntKeyRecord, SealNonce, SealedKey};

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

/// One stored key row of a UE.
pub(crate) struct KeyRow {
    pub(crate) key_id: KeyId,
    pub(crate) created: Timestamp,
    pub(crate) expires: Timestamp,
    pub(crate) sealed: Vec<u8>,
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

pub(crate) fn key_id_param(key_id: KeyId) -> i64 {
    i64::from(key_id.as_u32())
}

fn key_id_from_db(n: i64) -> Result<KeyId, BackendError> {
    u32::try_from(n)
        .map(KeyId::from_u32)
        .map_err(|_| BackendError::CorruptRow("key id out of range"))
}

/// Opens a stored row's sealed key: the record it is bound to is rebuilt from the row's
/// place (IMSI, key id, creation, expiry), so a row moved or edited fails to open.
fn open_row(shared: &Shared, imsi: &Imsi, row: &KeyRow) -> Result<E2mIntKey, BackendError> {
    let record = IntKeyRecord::new(imsi, row.key_id, row.created, row.expires);
    let sealed = SealedKey::from_bytes(&row.sealed).map_err(BackendError::Open)?;
    shared
        .keyring
        .open(&record, &sealed)
        .map_err(BackendError::Open)
}

/// A stored row of `imsi` as the key it holds (opened under the backend's keyring).
pub(crate) fn held_key(
    shared: &Shared,
    imsi: &Imsi,
    row: &KeyRow,
) -> Result<HeldKey, BackendError> {
    Ok(HeldKey {
        key: open_row(shared, imsi, row)?,
        info: KeyInfo {
            key_id: row.key_id,
            created: row.created,
            expires: row.expires,
        },
    })
}

impl PgIntKeyStore {
    pub(crate) fn new(shared: Arc<Shared>, policy: RetentionPolicy) -> Self {
        PgIntKeyStore { shared, policy }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    fn open(&self, imsi: &Imsi, row: &KeyRow) -> Result<E2mIntKey, BackendError> {
        open_row(&self.shared, imsi, row)
    }

    async fn push_now(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        key: &E2mIntKey,
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
            .seal(&record, key, nonce)
            .map_err(BackendError::Seal)?;
        let lock = ue_lock_key(imsi);
        let id = key_id_param(key_id);
        let (created_ms, expires_ms) = (db_time(created), db_time(expires));
        let kek_version = i64::from(sealed.kek_version().get());
        let keep = i32::try_from(self.policy.keys_per_ue()).unwrap_or(i32::MAX);
        let now_ms = db_time(now);
        let conn = self.shared.conn().await?;
        let push = conn.prepare_cached(&self.shared.sql.key_push).await?;
        let mut same_id_differs = false;
        // At most two calls: the second only when a row with this id and creation time holds
        // a different key (see `schema::push_function`).
        for _ in 0..2 {
            // One statement, one round trip, in its own READ COMMITTED transaction; with
            // synchronous_commit=on the answer comes once the commit is durable (and, with
            // a synchronous standby named, flushed there too): only then is the push
            // acknowledged.
            let row = conn
                .query_one(
                    &push,
                    &[
                        &imsi.as_str(),
                        &lock,
                        &id,
                        &created_ms,
                        &expires_ms,
                        &kek_version,
                        &sealed.as_bytes().as_slice(),
                        &now_ms,
                        &keep,
                        &same_id_differs,
                    ],
                )
                .await?;
            let outcome: &str = row.try_get(0)?;
            // Outbox rows this push wrote (committed with it): announce them to the other
            // instances, off the push's path (see `Shared::announce`).
            let noted: i32 = row.try_get(4)?;
            if noted > 0 {
                self.shared.announce();
            }
            match outcome {
                "stored" => {
                    let evicted: Option<i64> = row.try_get(1)?;
                    let evicted = evicted.map(key_id_from_db).transpose()?;
                    return Ok(PushOutcome::Stored { evicted });
                }
                "replaced" => return Ok(PushOutcome::Replaced),
                "stale" => return Ok(PushOutcome::Stale),
                "compare" => {
                    let held = KeyRow {
                        key_id,
                        created,
                        expires: from_db_time(row.try_get(2)?)?,
                        sealed: row.try_get(3)?,
                    };
                    // Constant-time comparison of the two keys.
                    if self.open(imsi, &held)? == *key {
                        return Ok(PushOutcome::Unchanged);
                    }
                    same_id_differs = true;
                }
                _ => return Err(BackendError::CorruptRow("unknown push outcome")),
            }
        }
        Err(BackendError::CorruptRow("push_key asked to compare twice"))
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
                &[&imsi.as_str(), &key_id_param(key_id), &db_time(now)],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let row = KeyRow {
            key_id,
            created: from_db_time(row.try_get(0)?)?,
            expires: from_db_time(row.try_get(1)?)?,
            sealed: row.try_get(2)?,
        };
        self.held_key(imsi, &row).map(Some)
    }

    fn held_key(&self, imsi: &Imsi, row: &KeyRow) -> Result<HeldKey, BackendError> {
        held_key(&self.shared, imsi, row)
    }

    async fn latest_now(
        &self,
        imsi: &Imsi,
        now: Timestamp,
    ) -> Result<Option<HeldKey>, BackendError> {
        let rows = self
            .shared
            .query(
                &self.shared.sql.key_latest,
                &[&imsi.as_str(), &db_time(now)],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let row = KeyRow {
            key_id: key_id_from_db(row.try_get(0)?)?,
            created: from_db_time(row.try_get(1)?)?,
            expires: from_db_time(row.try_get(2)?)?,
            sealed: row.try_get(3)?,
        };
        self.held_key(imsi, &row).map(Some)
    }

    async fn held_now(&self, imsi: &Imsi, now: Timestamp) -> Result<Vec<KeyInfo>, BackendError> {
        let rows = self
            .shared
            .query(&self.shared.sql.key_held, &[&imsi.as_str(), &db_time(now)])
            .await?;
        rows.iter()
            .map(|row| {
                Ok(KeyInfo {
                    key_id: key_id_from_db(row.try_get(0)?)?,
                    created: from_db_time(row.try_get(1)?)?,
                    expires: from_db_time(row.try_get(2)?)?,
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
            .query(&self.shared.sql.key_sweep, &[&db_time(now)])
            .await?;
        // Every row carries the count of outbox rows the sweep wrote.
        if let Some(row) = rows.first()
            && row.try_get::<_, i64>(4)? > 0
        {
            self.shared.announce();
        }
        rows.iter()
            .map(|row| {
                let imsi: &str = row.try_get(0)?;
                let imsi = Imsi::new(imsi).map_err(|_| BackendError::CorruptRow("invalid IMSI"))?;
                let info = KeyInfo {
                    key_id: key_id_from_db(row.try_get(1)?)?,
                    created: from_db_time(row.try_get(2)?)?,
                    expires: from_db_time(row.try_get(3)?)?,
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

    async fn push(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        key: &E2mIntKey,
        created: Timestamp,
        now: Timestamp,
    ) -> Result<PushOutcome, StoreError> {
        Ok(self.push_now(imsi, key_id, key, created, now).await?)
    }

    async fn get(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        now: Timestamp,
    ) -> Result<Option<HeldKey>, StoreError> {
        Ok(self.get_now(imsi, key_id, now).await?)
    }

    async fn latest(&self, imsi: &Imsi, now: Timestamp) -> Result<Option<HeldKey>, StoreError> {
        Ok(self.latest_now(imsi, now).await?)
    }

    async fn held(&self, imsi: &Imsi, now: Timestamp) -> Result<Vec<KeyInfo>, StoreError> {
        Ok(self.held_now(imsi, now).await?)
    }

    async fn remove_ue(&self, imsi: &Imsi) -> Result<usize, StoreError> {
        Ok(self.remove_ue_now(imsi).await?)
    }

    async fn sweep(&self, now: Timestamp) -> Result<Vec<(Imsi, KeyInfo)>, StoreError> {
        Ok(self.sweep_now(now).await?)
    }

    /// This backend's token: the identity map of the same [`PgBackend`](crate::PgBackend)
    /// reads these keys in the statement that resolves the identity.
    fn database(&self) -> Option<DatabaseId> {
        Some(self.shared.database)
    }
}
