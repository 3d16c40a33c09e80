//! [`NotificationOutbox`] on PostgreSQL: entries are inserted by the push's own statement
//! (`push_key`) and by the sweep's, so they commit with their cause; a claim is one
//! `UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)` statement that moves the claimed
//! entries to the end of their lease; `LISTEN` on the outbox's channel wakes the
//! deliverers of every instance when any instance recorded entries.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use e2m_keystore::{
    Claim, EventSet, EventType, Imsi, InstanceId, KeyId, NotificationOutbox, PendingNotification,
    StoreError, Timestamp,
};
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

use crate::backend::{Shared, db_time, from_db_time};
use crate::subscriptions::subscription_at;
use crate::{BackendError, PgIntKeyStore};

/// The most due entries one claim locks and looks at.
const CLAIM_SCAN: i64 = 4096;

fn event_from_db(bit: i16) -> Result<EventType, BackendError> {
    EventType::ALL
        .into_iter()
        .find(|e| i16::from(EventSet::single(*e).bits()) == bit)
        .ok_or(BackendError::CorruptRow("unknown outbox event"))
}

fn instance_param(instance: InstanceId) -> i64 {
    // `InstanceId::random` keeps bit 63 clear; a hand-made larger one is folded, never
    // mistaken for another: it is compared only with itself.
    i64::from_ne_bytes(instance.as_u64().to_ne_bytes())
}

fn id_param(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(-1)
}

fn capped(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PgIntKeyStore {
    async fn claim_now(&self, claim: &Claim<'_>) -> Result<Vec<PendingNotification>, BackendError> {
        let sql = &self.shared().sql;
        let skip: Vec<&str> = claim.skip.iter().map(|e| e.as_str()).collect();
        let scan = capped(claim.max.saturating_mul(4)).clamp(1, CLAIM_SCAN);
        let rows = self
            .shared()
            .query(
                &sql.outbox_claim,
                &[
                    &db_time(claim.now),
                    &skip,
                    &scan,
                    &capped(claim.per_emse),
                    &capped(claim.max),
                    &db_time(claim.lease_until()),
                    &instance_param(claim.instance),
                ],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get(0)?;
            let imsi: &str = row.try_get(2)?;
            let key_id: i64 = row.try_get(3)?;
            let attempts: i32 = row.try_get(5)?;
            let (subscription, record) = subscription_at(&row, 6)?;
            out.push(PendingNotification {
                id: u64::try_from(id).map_err(|_| BackendError::CorruptRow("outbox id"))?,
                subscription,
                record,
                event: event_from_db(row.try_get(1)?)?,
                imsi: Imsi::new(imsi).map_err(|_| BackendError::CorruptRow("invalid IMSI"))?,
                key_id: KeyId::from_u32(
                    u32::try_from(key_id).map_err(|_| BackendError::CorruptRow("key id"))?,
                ),
                time: from_db_time(row.try_get(4)?)?,
                attempts: u32::try_from(attempts).unwrap_or(0),
            });
        }
        out.sort_by_key(|p| p.id);
        Ok(out)
    }
}

/// Each method is one autocommit statement.
impl NotificationOutbox for PgIntKeyStore {
    async fn claim_due(&self, claim: &Claim<'_>) -> Result<Vec<PendingNotification>, StoreError> {
        Ok(self.claim_now(claim).await?)
    }

    async fn delivered(&self, id: u64) -> Result<bool, StoreError> {
        let shared = self.shared();
        let n = shared
            .execute(&shared.sql.outbox_delivered, &[&id_param(id)])
            .await?;
        Ok(n > 0)
    }

    async fn retry_at(
        &self,
        id: u64,
        instance: InstanceId,
        when: Timestamp,
    ) -> Result<bool, StoreError> {
        let shared = self.shared();
        let n = shared
            .execute(
                &shared.sql.outbox_retry,
                &[&id_param(id), &db_time(when), &instance_param(instance)],
            )
            .await?;
        Ok(n > 0)
    }

    async fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let shared = self.shared();
        let rows = shared.query(&shared.sql.outbox_next_due, &[]).await?;
        let due: Option<i64> = match rows.first() {
            Some(row) => row.try_get(0).map_err(BackendError::from)?,
            None => None,
        };
        Ok(due.map(from_db_time).transpose()?)
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        let shared = self.shared();
        let rows = shared.query(&shared.sql.outbox_pending, &[]).await?;
        let n: i64 = match rows.first() {
            Some(row) => row.try_get(0).map_err(BackendError::from)?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// Holds one connection that `LISTEN`s on the outbox channel and notifies `wake` for every
/// announcement. After a failure (the database restarted, the connection broke) it
/// connects again a second later and wakes the deliverer once, so that what was recorded
/// meanwhile is claimed; the deliverer's periodic poll covers the gap. It ends when it
/// holds the last handle on `wake` (nobody delivers any more).
pub(crate) async fn listen(shared: Arc<Shared>, wake: Arc<Notify>) {
    while Arc::strong_count(&wake) > 1 {
        // An error only means: connect again (this crate has no logger to report it to).
        let _ = listen_once(&shared, &wake).await;
        if Arc::strong_count(&wake) == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        wake.notify_one();
    }
}

async fn listen_once(shared: &Shared, wake: &Arc<Notify>) -> Result<(), BackendError> {
    let (client, mut connection) = shared.listen_config.connect(tokio_postgres::NoTls).await?;
    let mut listening = Box::pin(client.batch_execute(&shared.sql.outbox_listen));
    let mut subscribed = false;
    loop {
        let message = std::future::poll_fn(|cx| {
            if !subscribed && let Poll::Ready(result) = listening.as_mut().poll(cx) {
                subscribed = true;
                if let Err(e) = result {
                    return Poll::Ready(Some(Err(e)));
                }
                // Anything recorded before the LISTEN took effect.
                wake.notify_one();
            }
            connection.poll_message(cx)
        })
        .await;
        match message {
            Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Ok(()),
        }
        if Arc::strong_count(wake) == 1 {
            return Ok(());
        }
    }
}
