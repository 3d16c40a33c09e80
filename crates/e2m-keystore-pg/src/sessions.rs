//! EMSE sessions in PostgreSQL, stored by [`SessionDigest`] (never the id).

use std::sync::Arc;

use e2m_keystore::{
    EmseId, Limit, SessionDigest, SessionId, SessionInfo, SessionPolicy, SessionRef, SessionStore,
    StoreError, Timestamp, generate_session_id,
};
use tokio_postgres::{IsolationLevel, Row};

use crate::backend::{Shared, db_time, from_db_time};
use crate::{BackendError, schema};

/// The [`SessionStore`] over PostgreSQL. Made by
/// [`PgBackend::sessions`](crate::PgBackend::sessions).
///
/// The table holds each session's [`SessionDigest`], never its id, so a dump holds no
/// usable session id. [`SessionRef`]s come from a database sequence, so no two instances
/// ever hand out the same one and none is reused.
pub struct PgSessionStore {
    shared: Arc<Shared>,
    policy: SessionPolicy,
}

impl core::fmt::Debug for PgSessionStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PgSessionStore")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn count(n: i64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A session row (`session_ref, emse, created, expires`).
fn session_info(row: &Row) -> Result<SessionInfo, BackendError> {
    let session_ref: i64 = row.try_get(0)?;
    let emse: &str = row.try_get(1)?;
    Ok(SessionInfo {
        session: SessionRef::from_u64(
            u64::try_from(session_ref)
                .map_err(|_| BackendError::CorruptRow("negative session ref"))?,
        ),
        emse: EmseId::new(emse).map_err(|_| BackendError::CorruptRow("invalid EMSE_Id"))?,
        created: from_db_time(row.try_get(2)?)?,
        expires: from_db_time(row.try_get(3)?)?,
    })
}

impl PgSessionStore {
    pub(crate) fn new(shared: Arc<Shared>, policy: SessionPolicy) -> Self {
        PgSessionStore { shared, policy }
    }

    async fn create_now(
        &self,
        emse: &EmseId,
        now: Timestamp,
    ) -> Result<(SessionId, SessionInfo), StoreError> {
        let sql = &self.shared.sql;
        let expires = now.saturating_add(self.policy.ttl());
        let mut conn = self.shared.conn().await.map_err(StoreError::from)?;
        // READ COMMITTED under a database-wide advisory lock: the limits are counted and the
        // session inserted while no other instance creates one, and the count (a fresh
        // snapshot after the lock) sees every session committed before. Registrations are
        // rare, so serialising them costs nothing that matters.
        let tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(BackendError::from)?;
        let result: Result<_, StoreError> = async {
            tx.execute(schema::ADVISORY_XACT_LOCK, &[&schema::lock::SESSIONS])
                .await
                .map_err(BackendError::from)?;
            let counts = tx
                .prepare_cached(&sql.session_counts)
                .await
                .map_err(BackendError::from)?;
            let row = tx
                .query_one(&counts, &[&emse.as_str(), &db_time(now)])
                .await
                .map_err(BackendError::from)?;
            let total: i64 = row.try_get(0).map_err(BackendError::from)?;
            let of_emse: i64 = row.try_get(1).map_err(BackendError::from)?;
            if count(total) >= self.policy.max_total() {
                return Err(StoreError::LimitReached(Limit::SessionsTotal));
            }
            if count(of_emse) >= self.policy.max_per_emse() {
                return Err(StoreError::LimitReached(Limit::SessionsPerEmse));
            }
            let insert = tx
                .prepare_cached(&sql.session_insert)
                .await
                .map_err(BackendError::from)?;
            // A digest collision of two 128-bit random ids is not expected; it is still
            // checked (the insert does nothing on a taken digest), because overwriting
            // another EMSE's session would hand it over.
            for _ in 0..4 {
                let id = generate_session_id()?;
                let digest = SessionDigest::of(&id);
                let rows = tx
                    .query(
                        &insert,
                        &[
                            &digest.as_bytes().as_slice(),
                            &emse.as_str(),
                            &db_time(now),
                            &db_time(expires),
                        ],
                    )
                    .await
                    .map_err(BackendError::from)?;
                if let Some(row) = rows.first() {
                    let session_ref: i64 = row.try_get(0).map_err(BackendError::from)?;
                    let session = u64::try_from(session_ref)
                        .map_err(|_| BackendError::CorruptRow("negative session ref"))?;
                    let info = SessionInfo {
                        session: SessionRef::from_u64(session),
                        emse: emse.clone(),
                        created: now,
                        expires,
                    };
                    return Ok((id, info));
                }
            }
            Err(StoreError::RandomUnavailable)
        }
        .await;
        match result {
            Ok(created) => {
                tx.commit().await.map_err(BackendError::from)?;
                Ok(created)
            }
            Err(e) => {
                // Best effort: a failed rollback leaves the connection to be recycled.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    async fn get_now(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<SessionInfo>, BackendError> {
        let digest = SessionDigest::of(id);
        let rows = self
            .shared
            .query(
                &self.shared.sql.session_get,
                &[&digest.as_bytes().as_slice(), &db_time(now)],
            )
            .await?;
        rows.first().map(session_info).transpose()
    }

    async fn remove_now(&self, id: &SessionId) -> Result<Option<SessionInfo>, BackendError> {
        let digest = SessionDigest::of(id);
        let rows = self
            .shared
            .query(
                &self.shared.sql.session_remove,
                &[&digest.as_bytes().as_slice()],
            )
            .await?;
        rows.first().map(session_info).transpose()
    }

    async fn of_emse_now(
        &self,
        emse: &EmseId,
        now: Timestamp,
    ) -> Result<Vec<SessionInfo>, BackendError> {
        let rows = self
            .shared
            .query(
                &self.shared.sql.session_of_emse,
                &[&emse.as_str(), &db_time(now)],
            )
            .await?;
        rows.iter().map(session_info).collect()
    }

    async fn evict_oldest_now(&self, emse: &EmseId) -> Result<Option<SessionInfo>, BackendError> {
        // One statement: the subquery and the delete see one snapshot, and a session
        // another instance removed meanwhile is simply not returned.
        let rows = self
            .shared
            .query(&self.shared.sql.session_evict_oldest, &[&emse.as_str()])
            .await?;
        rows.first().map(session_info).transpose()
    }

    async fn sweep_now(&self, now: Timestamp) -> Result<Vec<SessionInfo>, BackendError> {
        let rows = self
            .shared
            .query(&self.shared.sql.session_sweep, &[&db_time(now)])
            .await?;
        let mut swept = rows
            .iter()
            .map(session_info)
            .collect::<Result<Vec<_>, _>>()?;
        swept.sort_by_key(|s| s.session);
        Ok(swept)
    }
}

impl SessionStore for PgSessionStore {
    fn session_policy(&self) -> SessionPolicy {
        self.policy
    }

    async fn create(
        &self,
        emse: &EmseId,
        now: Timestamp,
    ) -> Result<(SessionId, SessionInfo), StoreError> {
        self.create_now(emse, now).await
    }

    async fn get(&self, id: &SessionId, now: Timestamp) -> Result<Option<SessionInfo>, StoreError> {
        Ok(self.get_now(id, now).await?)
    }

    async fn remove(&self, id: &SessionId) -> Result<Option<SessionInfo>, StoreError> {
        Ok(self.remove_now(id).await?)
    }

    async fn of_emse(&self, emse: &EmseId, now: Timestamp) -> Result<Vec<SessionInfo>, StoreError> {
        Ok(self.of_emse_now(emse, now).await?)
    }

    async fn evict_oldest(&self, emse: &EmseId) -> Result<Option<SessionInfo>, StoreError> {
        Ok(self.evict_oldest_now(emse).await?)
    }

    async fn sweep(&self, now: Timestamp) -> Result<Vec<SessionInfo>, StoreError> {
        Ok(self.sweep_now(now).await?)
    }
}
