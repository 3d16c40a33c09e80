//! The AAnF's deliverer of service-disablement notifications (TS 29.535 §5.1.5.2): it takes
//! what a context removal recorded in the store's outbox (in the removal's own
//! transaction, `e2m_keystore::AkmaOutbox`), POSTs each to its AF's `notifUri`, and settles
//! it, as `e2m-https`'s deliverer does for the EMKS, with the same [`DeliveryOptions`]:
//!
//! - **claimed under a lease** ([`DeliveryOptions::lease`]): several AAnF instances on one
//!   PostgreSQL database deliver each entry once in the normal case, and the entries a
//!   dead instance (`kill -9`) had claimed come back to the others when the lease ends;
//! - **settled**: a 2xx removes the entry; a 429 or 503 releases it until its
//!   `Retry-After`; anything else (no connection, TLS, timeout, another status) releases it
//!   after an exponential backoff ([`DeliveryOptions::backoff`]: 1, 2, 4 … 60 s), for as
//!   long as it takes (an AKMA entry has no subscription to end with); an entry the core
//!   will not send (its AF no longer configured, `e2m_aanf::Aanf::outbound` answers
//!   `None`) is settled as done;
//! - **per AF**: each AF has its own lane of [`DeliveryOptions::per_emse`] deliveries in
//!   flight; an AF whose lane is full is left out of the next claims, so an AF that is
//!   down or slow holds back only its own notifications;
//! - **woken** by the server when a removal recorded notifications, by the store's
//!   cross-instance wake-up where it has one (PostgreSQL `LISTEN`), and at the outbox's
//!   next due time (at most [`DeliveryOptions::poll`]).
//!
//! At least once: a 204 lost on its way back, or a lease that ran out during a slow
//! delivery, sends the notification again; the body (`aKId`) is the same each time, and
//! an AF simply drops a repeat.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use e2m_aanf::Aanf;
use e2m_akma::e2m_keyid::akma::Fqdn;
use e2m_https::delivery::DeliveryOptions;
use e2m_keystore::{AkmaContexts, AkmaOutbox, AkmaPendingNotification, Claim, InstanceId};
use e2m_types::Timestamp;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::client::{ClientError, Notifier};

/// One AF's lane: its in-flight budget and how many of its entries this instance holds.
struct Lane {
    budget: Arc<Semaphore>,
    held: AtomicUsize,
}

/// What a delivery came to (for the observer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryEvent {
    /// The AF answered 2xx; the entry is settled.
    Delivered,
    /// Not delivered this time; the entry comes back later.
    Failed,
    /// Not to be sent (the AF is no longer configured); settled.
    Dropped,
}

/// Sees each delivery's outcome (metrics, tests).
pub trait DeliveryObserver: Send + Sync {
    /// One delivery attempt ended with `event`.
    fn delivery(&self, event: DeliveryEvent);
}

/// The deliverer of one AAnF instance.
pub(crate) struct Deliverer<C> {
    pub(crate) core: Arc<Aanf<C>>,
    pub(crate) notifier: Arc<Notifier>,
    pub(crate) instance: InstanceId,
    pub(crate) options: DeliveryOptions,
    pub(crate) wake: Arc<Notify>,
    pub(crate) observer: Option<Arc<dyn DeliveryObserver>>,
    lanes: Mutex<HashMap<Fqdn, Arc<Lane>>>,
}

impl<C: AkmaContexts + AkmaOutbox + 'static> Deliverer<C> {
    pub(crate) fn new(
        core: Arc<Aanf<C>>,
        notifier: Arc<Notifier>,
        instance: InstanceId,
        options: DeliveryOptions,
        wake: Arc<Notify>,
        observer: Option<Arc<dyn DeliveryObserver>>,
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

    fn observe(&self, event: DeliveryEvent) {
        if let Some(observer) = &self.observer {
            observer.delivery(event);
        }
    }

    fn lane(&self, af: &Fqdn) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(lanes.entry(*af).or_insert_with(|| {
            Arc::new(Lane {
                budget: Arc::new(Semaphore::new(self.options.per_emse.max(1))),
                held: AtomicUsize::new(0),
            })
        }))
    }

    /// AFs whose lanes are full (left out of the next claim); idle lanes are dropped.
    fn full_lanes(&self) -> Vec<Fqdn> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        lanes.retain(|_, lane| lane.held.load(Ordering::Acquire) > 0);
        lanes
            .iter()
            .filter(|(_, lane)| lane.held.load(Ordering::Acquire) >= self.options.per_emse)
            .map(|(af, _)| *af)
            .collect()
    }

    /// Claims, hands each entry to its lane, sleeps; until the task is aborted.
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
            let claimed = match self.core.contexts().claim_due(&claim).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, "AKMA notification outbox unavailable; retrying");
                    Vec::new()
                }
            };
            let full_round = claimed.len() >= self.options.max_claim;
            for pending in claimed {
                let lane = self.lane(&pending.af);
                lane.held.fetch_add(1, Ordering::AcqRel);
                deliveries.spawn(Arc::clone(&self).deliver(pending, lane));
            }
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

    async fn sleep_for(&self, now: Timestamp) -> Duration {
        let poll = self.options.poll;
        match self.core.contexts().next_due().await.ok().flatten() {
            Some(due) if due <= now => poll,
            Some(due) => {
                Duration::from_millis(due.as_unix_millis().saturating_sub(now.as_unix_millis()))
                    .min(poll)
            }
            None => poll,
        }
    }

    async fn deliver(self: Arc<Self>, pending: AkmaPendingNotification, lane: Arc<Lane>) {
        let permit = Arc::clone(&lane.budget).acquire_owned().await;
        self.settle(&pending).await;
        drop(permit);
        if lane.held.fetch_sub(1, Ordering::AcqRel) >= self.options.per_emse {
            self.wake.notify_one();
        }
    }

    async fn settle(&self, pending: &AkmaPendingNotification) {
        let store = self.core.contexts();
        let id = pending.id;
        let Some(outbound) = self.core.outbound(pending) else {
            tracing::info!(af = %pending.af.as_str(), id, "AKMA notification no longer deliverable (AF not configured); dropped");
            self.observe(DeliveryEvent::Dropped);
            if let Err(error) = store.delivered(id).await {
                tracing::warn!(%error, id, "outbox entry not settled; it will come back");
            }
            return;
        };
        let af = outbound.af.as_str();
        let wait = match self.notifier.notify(&outbound.uri, &outbound.body).await {
            Ok(()) => {
                tracing::debug!(af, id, "AKMA service-disablement notification delivered");
                self.observe(DeliveryEvent::Delivered);
                if let Err(error) = store.delivered(id).await {
                    tracing::warn!(%error, id, "delivered notification not settled; it will be sent again");
                }
                return;
            }
            Err(ClientError::Problem {
                status: 429 | 503,
                retry_after,
                ..
            }) => {
                let wait = retry_after
                    .unwrap_or(self.options.first_retry)
                    .min(self.options.max_retry);
                tracing::debug!(af, id, retry_in = ?wait, "AKMA notification refused for now");
                wait
            }
            Err(ClientError::Scheme(reason)) => {
                // A URI this AAnF will never call (http without h2c allowed): retrying
                // cannot help.
                tracing::warn!(af, id, reason, "AKMA notification URI not served; dropped");
                self.observe(DeliveryEvent::Dropped);
                if let Err(error) = store.delivered(id).await {
                    tracing::warn!(%error, id, "outbox entry not settled; it will come back");
                }
                return;
            }
            Err(error) => {
                let attempts = pending.attempts.saturating_add(1);
                let wait = self.options.backoff(attempts);
                tracing::warn!(af, id, attempts, %error, retry_in = ?wait, "AKMA notification not delivered");
                wait
            }
        };
        self.observe(DeliveryEvent::Failed);
        let when = Timestamp::now_from_system_clock().saturating_add(wait);
        if let Err(error) = store.retry_at(id, self.instance, when).await {
            tracing::warn!(%error, id, "retry not recorded; the lease will bring it back");
        }
    }
}
