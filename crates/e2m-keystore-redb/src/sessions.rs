//! [`SessionStore`] on redb: sessions keyed by [`SessionDigest`] (never the id), with
//! indexes by EMSE (limits, `of_emse`) and by expiry (`sweep`).

use core::future::{Future, ready};

use e2m_keystore::{
    EmseId, Limit, SessionDigest, SessionId, SessionInfo, SessionPolicy, SessionRef, SessionStore,
    StoreError, Timestamp, generate_session_id,
};
use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use crate::codec::{decode_session, encode_session};
use crate::error::{DbResult, redb_err};
use crate::tables::{META, META_NEXT_SESSION_REF, SESSIONS, SESSIONS_BY_EMSE, SESSIONS_BY_EXPIRY};
use crate::{RedbSessionStore, RedbStore, RedbStoreError};

/// The number at `name` in the meta table, incremented: a counter that never goes back,
/// even across restarts (it is committed with what it numbers).
pub(crate) fn next_number(txn: &WriteTransaction, name: &str) -> DbResult<u64> {
    let mut meta = txn.open_table(META).map_err(redb_err)?;
    let n = meta
        .get(name)
        .map_err(redb_err)?
        .map(|v| v.value())
        .ok_or(RedbStoreError::Corrupt("counter"))?;
    meta.insert(name, n.saturating_add(1)).map_err(redb_err)?;
    Ok(n)
}

fn limit_hit(
    txn: &WriteTransaction,
    policy: &SessionPolicy,
    emse: &str,
) -> DbResult<Option<Limit>> {
    let sessions = txn.open_table(SESSIONS).map_err(redb_err)?;
    if sessions.len().map_err(redb_err)? >= policy.max_total() as u64 {
        return Ok(Some(Limit::SessionsTotal));
    }
    let by_emse = txn.open_table(SESSIONS_BY_EMSE).map_err(redb_err)?;
    let mut n = 0usize;
    for entry in by_emse
        .range((emse, 0)..=(emse, u64::MAX))
        .map_err(redb_err)?
    {
        entry.map_err(redb_err)?;
        n += 1;
    }
    Ok((n >= policy.max_per_emse()).then_some(Limit::SessionsPerEmse))
}

fn create_in(
    txn: &WriteTransaction,
    policy: &SessionPolicy,
    emse: &EmseId,
    digest: &SessionDigest,
    now: Timestamp,
) -> DbResult<Result<SessionInfo, StoreError>> {
    if limit_hit(txn, policy, emse.as_str())?.is_some() {
        // Expired sessions must not hold a place: sweep, then look again.
        sweep_in(txn, now)?;
        if let Some(limit) = limit_hit(txn, policy, emse.as_str())? {
            return Ok(Err(StoreError::LimitReached(limit)));
        }
    }
    let mut sessions = txn.open_table(SESSIONS).map_err(redb_err)?;
    if sessions.get(digest.as_bytes()).map_err(redb_err)?.is_some() {
        // Two 128-bit random ids colliding: never expected; never overwrite another
        // EMSE's session.
        return Ok(Err(StoreError::RandomUnavailable));
    }
    let info = SessionInfo {
        session: SessionRef::from_u64(next_number(txn, META_NEXT_SESSION_REF)?),
        emse: emse.clone(),
        created: now,
        expires: now.saturating_add(policy.ttl()),
    };
    sessions
        .insert(digest.as_bytes(), encode_session(&info).as_slice())
        .map_err(redb_err)?;
    let r = info.session.as_u64();
    txn.open_table(SESSIONS_BY_EMSE)
        .map_err(redb_err)?
        .insert((emse.as_str(), r), digest.as_bytes())
        .map_err(redb_err)?;
    txn.open_table(SESSIONS_BY_EXPIRY)
        .map_err(redb_err)?
        .insert((info.expires.as_unix_millis(), r), digest.as_bytes())
        .map_err(redb_err)?;
    Ok(Ok(info))
}

fn remove_in(txn: &WriteTransaction, digest: &[u8; 32]) -> DbResult<Option<SessionInfo>> {
    let removed = {
        let mut sessions = txn.open_table(SESSIONS).map_err(redb_err)?;
        let removed = sessions.remove(digest).map_err(redb_err)?;
        removed.map(|v| decode_session(v.value())).transpose()?
    };
    if let Some(info) = &removed {
        let r = info.session.as_u64();
        txn.open_table(SESSIONS_BY_EMSE)
            .map_err(redb_err)?
            .remove((info.emse.as_str(), r))
            .map_err(redb_err)?;
        txn.open_table(SESSIONS_BY_EXPIRY)
            .map_err(redb_err)?
            .remove((info.expires.as_unix_millis(), r))
            .map_err(redb_err)?;
    }
    Ok(removed)
}

/// The oldest session of `emse` (the first in the by-EMSE index, which is in session-ref
/// order), removed.
fn evict_oldest_in(txn: &WriteTransaction, emse: &str) -> DbResult<Option<SessionInfo>> {
    let oldest = {
        let by_emse = txn.open_table(SESSIONS_BY_EMSE).map_err(redb_err)?;
        let mut range = by_emse
            .range((emse, 0)..=(emse, u64::MAX))
            .map_err(redb_err)?;
        match range.next() {
            Some(entry) => Some(*entry.map_err(redb_err)?.1.value()),
            None => None,
        }
    };
    match oldest {
        Some(digest) => remove_in(txn, &digest),
        None => Ok(None),
    }
}

fn sweep_in(txn: &WriteTransaction, now: Timestamp) -> DbResult<Vec<SessionInfo>> {
    let due: Vec<[u8; 32]> = {
        let by_expiry = txn.open_table(SESSIONS_BY_EXPIRY).map_err(redb_err)?;
        let end = (now.as_unix_millis(), u64::MAX);
        let mut due = Vec::new();
        for entry in by_expiry.range(..=end).map_err(redb_err)? {
            let (_, digest) = entry.map_err(redb_err)?;
            due.push(*digest.value());
        }
        due
    };
    let mut removed = Vec::with_capacity(due.len());
    for digest in &due {
        removed.extend(remove_in(txn, digest)?);
    }
    removed.sort_by_key(|s| s.session);
    Ok(removed)
}

impl RedbStore {
    /// Sessions held (expired ones count until swept); one lookup.
    ///
    /// # Errors
    /// [`RedbStoreError`] if redb fails.
    pub fn session_count(&self) -> Result<u64, RedbStoreError> {
        let txn = self.read()?;
        let sessions = txn.open_table(SESSIONS).map_err(redb_err)?;
        sessions.len().map_err(redb_err)
    }

    fn session_now(&self, id: &SessionId, now: Timestamp) -> DbResult<Option<SessionInfo>> {
        let digest = SessionDigest::of(id);
        let txn = self.read()?;
        let sessions = txn.open_table(SESSIONS).map_err(redb_err)?;
        let found = sessions.get(digest.as_bytes()).map_err(redb_err)?;
        let info = found.map(|v| decode_session(v.value())).transpose()?;
        Ok(info.filter(|s| now < s.expires))
    }

    fn of_emse_now(&self, emse: &EmseId, now: Timestamp) -> DbResult<Vec<SessionInfo>> {
        let txn = self.read()?;
        let by_emse = txn.open_table(SESSIONS_BY_EMSE).map_err(redb_err)?;
        let sessions = txn.open_table(SESSIONS).map_err(redb_err)?;
        let mut found = Vec::new();
        let range = (emse.as_str(), 0)..=(emse.as_str(), u64::MAX);
        // In session-ref order, which is creation order.
        for entry in by_emse.range(range).map_err(redb_err)? {
            let (_, digest) = entry.map_err(redb_err)?;
            let row = sessions
                .get(digest.value())
                .map_err(redb_err)?
                .ok_or(RedbStoreError::Corrupt("session index"))?;
            let info = decode_session(row.value())?;
            if now < info.expires {
                found.push(info);
            }
        }
        Ok(found)
    }
}

impl SessionStore for RedbSessionStore {
    fn session_policy(&self) -> SessionPolicy {
        self.0.inner.config.sessions
    }

    /// The id is drawn here, from the operating system's generator; only its digest goes
    /// to the writer and to disk.
    fn create(
        &self,
        emse: &EmseId,
        now: Timestamp,
    ) -> impl Future<Output = Result<(SessionId, SessionInfo), StoreError>> + Send {
        let policy = self.0.inner.config.sessions;
        let emse = emse.clone();
        async move {
            let id = generate_session_id()?;
            let digest = SessionDigest::of(&id);
            let info = self
                .0
                .inner
                .writer
                .write(move |txn| create_in(txn, &policy, &emse, &digest, now))
                .await?;
            Ok((id, info))
        }
    }

    fn get(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<SessionInfo>, StoreError>> + Send {
        ready(self.0.session_now(id, now).map_err(StoreError::from))
    }

    fn remove(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<SessionInfo>, StoreError>> + Send {
        let digest = *SessionDigest::of(id).as_bytes();
        self.0
            .inner
            .writer
            .write(move |txn| remove_in(txn, &digest).map(Ok))
    }

    fn of_emse(
        &self,
        emse: &EmseId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<SessionInfo>, StoreError>> + Send {
        ready(self.0.of_emse_now(emse, now).map_err(StoreError::from))
    }

    fn evict_oldest(
        &self,
        emse: &EmseId,
    ) -> impl Future<Output = Result<Option<SessionInfo>, StoreError>> + Send {
        let emse = emse.clone();
        self.0
            .inner
            .writer
            .write(move |txn| evict_oldest_in(txn, emse.as_str()).map(Ok))
    }

    fn sweep(
        &self,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<SessionInfo>, StoreError>> + Send {
        self.0
            .inner
            .writer
            .write(move |txn| sweep_in(txn, now).map(Ok))
    }
}
