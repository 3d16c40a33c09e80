//! The EMKS's notification deliverer (issue 8, "Notifications that are not lost"; issue 9
//! item 4, "Notifications per EMSE"): it takes the notifications that the store recorded
//! in its outbox (in the same transaction as the push or sweep that caused them), POSTs
//! each to its subscriber, and settles it.
//!
//! - **Claim under a lease.** Every round claims the due entries for this instance
//!   ([`NotificationOutbox::claim_due`]) for [`DeliveryOptions::lease`]. Several EMKS
//!   instances on one database deliver each entry once in the normal case: a claimed
//!   entry is no other instance's until the lease runs out, and an instance that dies
//!   with entries claimed leaves them to the others after the lease.
//! - **Settle.** A 204 removes the entry ([`NotificationOutbox::delivered`]); anything else
//!   (connection refused, TLS, timeout, a 5xx) releases it for a later attempt
//!   ([`NotificationOutbox::retry_at`]) after an exponential backoff
//!   ([`DeliveryOptions::first_retry`] doubling up to [`DeliveryOptions::max_retry`]),
//!   for as long as its subscription lives. An entry the core will not send any more
//!   ([`Emks::outbound`] answers `None`) is settled as done and reported `Dropped`.
//! - **Per EMSE.** Each subscriber has its own lane: at most [`DeliveryOptions::per_emse`]
//!   deliveries in flight, the rest of its claimed entries queued behind them, and a
//!   subscriber whose lane is full is left out of the next claims. A callback that stalls
//!   therefore holds back its own notifications only; every other EMSE's are claimed and
//!   delivered as usual.
//! - **Paced per EMSE** (issue 16 item 9). A lane starts at most
//!   [`DeliveryOptions::per_emse_rate`] deliveries per second (1,000 by default; the
//!   EMSE's endpoint admits twice that from an EMKS by default,
//!   [`crate::notify::EMKS_BUDGET`], so two instances at their most are not refused).
//!   An EMSE that answers `429 Too Many Requests` gets that notification again after its
//!   `Retry-After` (the entry is released to the outbox until then), and its lane's pace
//!   follows what it accepts: a little under its accepted rate after the first 429, a
//!   fifth less at each further one, growing while deliveries are accepted (the client's
//!   pace, see [`crate::client`]). Other EMSEs' lanes are not slowed.
//! - **Wake-ups.** The deliverer sleeps until the outbox's next due time (at most
//!   [`DeliveryOptions::poll`]), and wakes at once when its service recorded a
//!   notification, or when the wake handle given in
//!   [`EmksServerOptions::outbox_wake`](crate::emks::EmksServerOptions::outbox_wake) is
//!   notified (the PostgreSQL backend's `LISTEN` does, for pushes taken by other
//!   instances).
//!
//! Delivery is at least once: a 204 lost on the way back, or a lease that ran out during
//! a slow delivery, sends the same notification again, with the same `notificationId`,
//! which is how the EMSE drops the repeat.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use e2m_emks::{Emks, Timestamp};
use e2m_keyid::EmseId;
use e2m_keystore::{
    Claim, IdentityMap, InstanceId, IntKeyStore, NotificationOutbox, PendingNotification,
    SessionStore, SubscriptionStore,
};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::client::{ClientError, Notifier};
use super::metrics::{EmksObserver, NotificationEvent};
use super::pace::Pacer;

/// How the deliverer claims, paces and retries.
#[derive(Clone, Debug)]
pub struct DeliveryOptions {
    /// How long a claimed notification is this instance's alone; after it, another
    /// instance (or this one) claims it again. Longer than a delivery can take (the
    /// notifier's request timeout), or a slow delivery is duplicated.
    pub lease: Duration,
    /// Deliveries in flight per subscriber (EMSE).
    pub per_emse: usize,
    /// The most notifications claimed in one round.
    pub max_claim: usize,
    /// The longest sleep between rounds (retries and other instances' expired leases
    /// come due without a wake-up).
    pub poll: Duration,
    /// The wait before the first retry; each further failure doubles it.
    pub first_retry: Duration,
    /// The longest wait between retries.
    pub max_retry: Duration,
    /// The most deliveries started per second to one subscriber (EMSE), 429 or not.
    pub per_emse_rate: f64,
}

impl Default for DeliveryOptions {
    /// A 30 s lease (twice the notifier's 15 s request timeout), 8 deliveries in flight per
    /// EMSE, 256 per claim, a poll every second, retries after 1, 2, 4 … up to 60 s, at
    /// most 1,000 deliveries per second to one EMSE (above the 750 pushes per second one
    /// EMKS took in issue 16's measurement, each notifying one subscriber; an EMSE with a
    /// backlog, e.g. back from an outage, is not flooded faster).
    fn default() -> Self {
        DeliveryOptions {
            lease: Duration::from_secs(30),
            per_emse: 8,
            max_claim: 256,
            poll: Duration::from_secs(1),
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(60),
            per_emse_rate: 1000.0,
        }
    }
}

impl DeliveryOptions {
    /// The wait before the next attempt after `attempts` failed ones (this one included):
    /// `first_retry · 2^(attempts-1)`, at most `max_retry`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doubling = attempts.saturating_sub(1).min(31);
        self.first_retry
            .saturating_mul(1u32 << doubling)
            .min(self.max_retry)
    }
}

/// One subscriber's lane: its in-flight budget, how many of its entries this instance
/// holds (in flight or queued for the budget), and its pace.
#[derive(Debug)]
struct Lane {
    budget: Arc<Semaphore>,
    held: AtomicUsize,
    pace: Pacer,
}

/// The deliverer of one EMKS instance.
pub(crate) struct Deliverer<K, M, S, B> {
    pub(crate) core: Arc<Emks<K, M, S, B>>,
    pub(crate) notifier: Arc<Notifier>,
    pub(crate) instance: InstanceId,
    pub(crate) options: DeliveryOptions,
    pub(crate) wake: Arc<Notify>,
    pub(crate) observer: Option<Arc<dyn EmksObserver>>,
    lanes: Mutex<HashMap<EmseId, Arc<Lane>>>,
}

impl<K, M, S, B> Deliverer<K, M, S, B>
where
    K: IntKeyStore + NotificationOutbox + 'static,
    M: IdentityMap + 'static,
    S: SessionStore + 'static,
    B: SubscriptionStore + 'static,
{
    pub(crate) fn new(
        core: Arc<Emks<K, M, S, B>>,
        notifier: Arc<Notifier>,
        instance: InstanceId,
        options: DeliveryOptions,
        wake: Arc<Notify>,
        observer: Option<Arc<dyn EmksObserver>>,
    ) -> Self {
        Deliverer {
            core,
            notifier,
            instance,
            options,
            wake,
            observer,
            lanes: Mutex::new(HashMap::new()),
        }
    }

    fn observe(&self, event: NotificationEvent) {
        if let Some(observer) = &self.observer {
            observer.notification(event);
        }
    }

    fn lane(&self, emse: &EmseId) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(lanes.entry(emse.clone()).or_insert_with(|| {
            Arc::new(Lane {
                budget: Arc::new(Semaphore::new(self.options.per_emse.max(1))),
                held: AtomicUsize::new(0),
                pace: Pacer::with_ceiling(self.options.per_emse_rate),
            })
        }))
    }

    /// Subscribers whose lanes are full: left out of the next claim.
    fn full_lanes(&self) -> Vec<EmseId> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        // Idle lanes are dropped so that the map holds only subscribers with work (or a
        // pace they learnt from a 429 lately, which a new lane would have to learn again).
        lanes.retain(|_, lane| lane.held.load(Ordering::Acquire) > 0 || lane.pace.refused_lately());
        lanes
            .iter()
            .filter(|(_, lane)| lane.held.load(Ordering::Acquire) >= self.options.per_emse)
            .map(|(emse, _)| emse.clone())
            .collect()
    }

    /// Runs until the task is aborted: claim, hand each entry to its lane, sleep.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut deliveries = JoinSet::new();
        loop {
            let now = Timestamp::now_from_system_clock();
            let skip = self.full_lanes();
            let claim = Claim {
                instance: self.instance,
                now,
                lease: self.options.lease,
                max: self.options.max_claim,
                per_emse: self.options.per_emse,
                skip: &skip,
            };
            let claimed = match self.core.keys().claim_due(&claim).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, "notification outbox unavailable; retrying");
                    Vec::new()
                }
            };
            let full_round = claimed.len() >= self.options.max_claim;
            for pending in claimed {
                let lane = self.lane(&pending.record.emse);
                lane.held.fetch_add(1, Ordering::AcqRel);
                deliveries.spawn(Arc::clone(&self).deliver(pending, lane));
            }
            // Reap finished deliveries (their results are settled in the store already).
            while deliveries.try_join_next().is_some() {}
            if full_round {
                continue;
            }
            let sleep = self.sleep_for(now).await;
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Until the outbox's next due entry, at most `poll`.
    async fn sleep_for(&self, now: Timestamp) -> Duration {
        let next = self.core.keys().next_due().await.ok().flatten();
        let poll = self.options.poll;
        match next {
            // Due but not claimed: its lane is full, and a finished delivery wakes us.
            Some(due) if due <= now => poll,
            Some(due) => {
                Duration::from_millis(due.as_unix_millis().saturating_sub(now.as_unix_millis()))
                    .min(poll)
            }
            None => poll,
        }
    }

    /// One entry: wait for the lane's budget and pace, POST, settle.
    async fn deliver(self: Arc<Self>, pending: PendingNotification, lane: Arc<Lane>) {
        let permit = Arc::clone(&lane.budget).acquire_owned().await;
        lane.pace.slot().await;
        self.settle(&pending, &lane.pace).await;
        drop(permit);
        // A lane that was full may take more now: look again without waiting for the poll.
        if lane.held.fetch_sub(1, Ordering::AcqRel) >= self.options.per_emse {
            self.wake.notify_one();
        }
    }

    async fn settle(&self, pending: &PendingNotification, pace: &Pacer) {
        let keys = self.core.keys();
        let Some(outbound) = self.core.outbound(pending) else {
            tracing::info!(
                emse = %pending.record.emse,
                subscription = %pending.subscription,
                "notification no longer deliverable (IMSI permission or callback); dropped"
            );
            self.observe(NotificationEvent::Dropped);
            if let Err(error) = keys.delivered(pending.id).await {
                tracing::warn!(%error, "outbox entry not settled; it will come back");
            }
            return;
        };
        self.observe(NotificationEvent::Started);
        let emse = &outbound.emse;
        let event = outbound.notification.event;
        let id = pending.id;
        match self
            .notifier
            .notify(emse, &outbound.callback, &outbound.notification)
            .await
        {
            Ok(()) => {
                pace.accepted();
                tracing::debug!(%emse, %event, id, "notification delivered");
                self.observe(NotificationEvent::Delivered);
                if let Err(error) = keys.delivered(id).await {
                    // Delivered but not settled: it comes back after the lease and is sent
                    // again with the same id (the EMSE drops the repeat).
                    tracing::warn!(%error, id, "delivered notification not settled");
                }
            }
            Err(ClientError::RetryLater { retry_after, .. }) => {
                // The EMSE's budget is spent: this one again after its Retry-After (not a
                // backoff: nothing failed), the lane slower meanwhile.
                let answered = Instant::now();
                pace.refused(answered);
                let wait = retry_after
                    .unwrap_or(self.options.first_retry)
                    .min(self.options.max_retry);
                tracing::debug!(%emse, %event, id, retry_in = ?wait, "notification refused for now (429); lane paced");
                self.observe(NotificationEvent::Failed);
                let when = Timestamp::now_from_system_clock().saturating_add(wait);
                if let Err(error) = keys.retry_at(id, self.instance, when).await {
                    tracing::warn!(%error, id, "retry not recorded; the lease will bring it back");
                }
            }
            Err(error) => {
                let attempts = pending.attempts.saturating_add(1);
                let wait = self.options.backoff(attempts);
                tracing::warn!(%emse, %event, id, attempts, %error, retry_in = ?wait, "notification not delivered");
                self.observe(NotificationEvent::Failed);
                let when = Timestamp::now_from_system_clock().saturating_add(wait);
                if let Err(error) = keys.retry_at(id, self.instance, when).await {
                    // Left claimed: it comes back when the lease runs out.
                    tracing::warn!(%error, id, "retry not recorded; the lease will bring it back");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let options = DeliveryOptions::default();
        let waits: Vec<u64> = (1..=9).map(|n| options.backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(options.backoff(u32::MAX), Duration::from_secs(60));
        assert_eq!(options.backoff(0), Duration::from_secs(1));
    }
}
