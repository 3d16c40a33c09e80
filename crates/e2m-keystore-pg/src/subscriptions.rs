//! Subscriptions in PostgreSQL.

use std::sync::Arc;

use e2m_keystore::{
    AppIdentity, EmseId, EventSet, Imsi, Limit, SessionRef, StoreError, SubscriptionId,
    SubscriptionPolicy, SubscriptionRecord, SubscriptionStore, UeFilter, UeRef,
};
use tokio_postgres::{IsolationLevel, Row};

use crate::backend::Shared;
use crate::identities::imsi_from_db;
use crate::{BackendError, schema};

/// The [`SubscriptionStore`] over PostgreSQL. Made by
/// [`PgBackend::subscriptions`](crate::PgBackend::subscriptions). Subscription ids come
/// from a database sequence, so they are unique across instances.
pub struct PgSubscriptionStore {
    shared: Arc<Shared>,
    policy: SubscriptionPolicy,
}

impl core::fmt::Debug for PgSubscriptionStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PgSubscriptionStore")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// `ue_kind`: how the EMSE named the UE.
const UE_BY_APP_IDENTITY: i16 = 0;
const UE_BY_IMSI: i16 = 1;

fn session_param(s: SessionRef) -> Result<i64, BackendError> {
    i64::try_from(s.as_u64()).map_err(|_| BackendError::CorruptRow("session ref beyond 2^63"))
}

fn subscription_param(id: SubscriptionId) -> Option<i64> {
    i64::try_from(id.as_u64()).ok()
}

/// A row of `SUB_COLUMNS`: `id, session_ref, emse, events, imsi, ue_kind, ue_name, callback`.
fn subscription(row: &Row) -> Result<(SubscriptionId, SubscriptionRecord), BackendError> {
    subscription_at(row, 0)
}

/// The `SUB_COLUMNS` of a row, from column `at` on (the outbox's claim returns them after
/// its own columns).
pub(crate) fn subscription_at(
    row: &Row,
    at: usize,
) -> Result<(SubscriptionId, SubscriptionRecord), BackendError> {
    let id: i64 = row.try_get(at)?;
    let session: i64 = row.try_get(at + 1)?;
    let emse: &str = row.try_get(at + 2)?;
    let events: i16 = row.try_get(at + 3)?;
    let imsi: Option<&str> = row.try_get(at + 4)?;
    let ue_kind: Option<i16> = row.try_get(at + 5)?;
    let ue_name: Option<&str> = row.try_get(at + 6)?;
    let callback: String = row.try_get(at + 7)?;
    let corrupt = BackendError::CorruptRow;
    let ue = match (imsi, ue_kind, ue_name) {
        (None, None, None) => None,
        (Some(imsi), Some(kind), Some(name)) => {
            let name = match kind {
                UE_BY_APP_IDENTITY => UeRef::AppIdentity(
                    AppIdentity::new(name).map_err(|_| corrupt("invalid application identity"))?,
                ),
                UE_BY_IMSI => UeRef::Imsi(imsi_from_db(name)?),
                _ => return Err(corrupt("unknown ue_kind")),
            };
            Some(UeFilter {
                imsi: imsi_from_db(imsi)?,
                name,
            })
        }
        _ => return Err(corrupt("partial UE filter")),
    };
    let record = SubscriptionRecord {
        session: SessionRef::from_u64(
            u64::try_from(session).map_err(|_| corrupt("negative session ref"))?,
        ),
        emse: EmseId::new(emse).map_err(|_| corrupt("invalid EMSE_Id"))?,
        events: u8::try_from(events)
            .ok()
            .and_then(EventSet::from_bits)
            .ok_or(corrupt("invalid event set"))?,
        ue,
        callback,
    };
    let id = u64::try_from(id).map_err(|_| corrupt("negative subscription id"))?;
    Ok((SubscriptionId::from_u64(id), record))
}

fn count(n: i64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl PgSubscriptionStore {
    pub(crate) fn new(shared: Arc<Shared>, policy: SubscriptionPolicy) -> Self {
        PgSubscriptionStore { shared, policy }
    }

    async fn add_now(&self, sub: SubscriptionRecord) -> Result<SubscriptionId, StoreError> {
        if sub.callback.is_empty() || sub.callback.len() > self.policy.max_callback_len {
            return Err(StoreError::InvalidInput("callback empty or too long"));
        }
        let session = session_param(sub.session)?;
        let (imsi, ue_kind, ue_name) = match &sub.ue {
            None => (None, None, None),
            Some(f) => {
                let (kind, name) = match &f.name {
                    UeRef::AppIdentity(a) => (UE_BY_APP_IDENTITY, a.as_str()),
                    UeRef::Imsi(i) => (UE_BY_IMSI, i.as_str()),
                };
                (Some(f.imsi.as_str()), Some(kind), Some(name))
            }
        };
        let sql = &self.shared.sql;
        let mut conn = self.shared.conn().await?;
        // As for sessions: READ COMMITTED under one advisory lock, so the limits counted
        // hold across instances.
        let tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(BackendError::from)?;
        tx.execute(schema::ADVISORY_XACT_LOCK, &[&schema::lock::SUBSCRIPTIONS])
            .await
            .map_err(BackendError::from)?;
        let counts = tx
            .prepare_cached(&sql.sub_counts)
            .await
            .map_err(BackendError::from)?;
        let row = tx
            .query_one(&counts, &[&session, &sub.emse.as_str(), &imsi])
            .await
            .map_err(BackendError::from)?;
        let total: i64 = row.try_get(0).map_err(BackendError::from)?;
        let of_session: i64 = row.try_get(1).map_err(BackendError::from)?;
        let same_ue: i64 = row.try_get(2).map_err(BackendError::from)?;
        if count(total) >= self.policy.max_total {
            return Err(StoreError::LimitReached(Limit::SubscriptionsTotal));
        }
        if count(of_session) >= self.policy.max_per_session {
            return Err(StoreError::LimitReached(Limit::SubscriptionsPerSession));
        }
        if count(same_ue) >= self.policy.max_per_ue {
            return Err(StoreError::LimitReached(Limit::SubscriptionsPerUe));
        }
        let insert = tx
            .prepare_cached(&sql.sub_insert)
            .await
            .map_err(BackendError::from)?;
        let row = tx
            .query_one(
                &insert,
                &[
                    &session,
                    &sub.emse.as_str(),
                    &i16::from(sub.events.bits()),
                    &imsi,
                    &ue_kind,
                    &ue_name,
                    &sub.callback,
                ],
            )
            .await
            .map_err(BackendError::from)?;
        let id: i64 = row.try_get(0).map_err(BackendError::from)?;
        tx.commit().await.map_err(BackendError::from)?;
        let id = u64::try_from(id).map_err(|_| BackendError::CorruptRow("negative id"))?;
        Ok(SubscriptionId::from_u64(id))
    }

    async fn get_now(
        &self,
        owner: SessionRef,
        id: SubscriptionId,
    ) -> Result<Option<SubscriptionRecord>, BackendError> {
        let Some(id) = subscription_param(id) else {
            return Ok(None);
        };
        let rows = self
            .shared
            .query(&self.shared.sql.sub_get, &[&id, &session_param(owner)?])
            .await?;
        Ok(rows.first().map(subscription).transpose()?.map(|(_, s)| s))
    }

    async fn remove_now(
        &self,
        owner: SessionRef,
        id: SubscriptionId,
    ) -> Result<Option<SubscriptionRecord>, BackendError> {
        let Some(id) = subscription_param(id) else {
            return Ok(None);
        };
        let rows = self
            .shared
            .query(&self.shared.sql.sub_remove, &[&id, &session_param(owner)?])
            .await?;
        Ok(rows.first().map(subscription).transpose()?.map(|(_, s)| s))
    }

    async fn remove_session_now(&self, owner: SessionRef) -> Result<usize, BackendError> {
        let n = self
            .shared
            .execute(
                &self.shared.sql.sub_remove_session,
                &[&session_param(owner)?],
            )
            .await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn of_emse_for_ue_now(
        &self,
        emse: &EmseId,
        imsi: Option<&Imsi>,
    ) -> Result<Vec<(SubscriptionId, SubscriptionRecord)>, BackendError> {
        let rows = self
            .shared
            .query(
                &self.shared.sql.sub_of_emse_for_ue,
                &[&emse.as_str(), &imsi.map(Imsi::as_str)],
            )
            .await?;
        rows.iter().map(subscription).collect()
    }

    async fn matching_now(
        &self,
        imsi: &Imsi,
        event: EventSet,
    ) -> Result<Vec<(SubscriptionId, SubscriptionRecord)>, BackendError> {
        let rows = self
            .shared
            .query(
                &self.shared.sql.sub_matching,
                &[&imsi.as_str(), &i16::from(event.bits())],
            )
            .await?;
        rows.iter().map(subscription).collect()
    }
}

impl SubscriptionStore for PgSubscriptionStore {
    async fn add(&self, sub: SubscriptionRecord) -> Result<SubscriptionId, StoreError> {
        self.add_now(sub).await
    }

    async fn get(
        &self,
        owner: SessionRef,
        id: SubscriptionId,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        Ok(self.get_now(owner, id).await?)
    }

    async fn remove(
        &self,
        owner: SessionRef,
        id: SubscriptionId,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        Ok(self.remove_now(owner, id).await?)
    }

    async fn remove_session(&self, owner: SessionRef) -> Result<usize, StoreError> {
        Ok(self.remove_session_now(owner).await?)
    }

    async fn of_emse_for_ue(
        &self,
        emse: &EmseId,
        imsi: Option<&Imsi>,
    ) -> Result<Vec<(SubscriptionId, SubscriptionRecord)>, StoreError> {
        Ok(self.of_emse_for_ue_now(emse, imsi).await?)
    }

    async fn matching(
        &self,
        imsi: &Imsi,
        event: EventSet,
    ) -> Result<Vec<(SubscriptionId, SubscriptionRecord)>, StoreError> {
        Ok(self.matching_now(imsi, event).await?)
    }
}
