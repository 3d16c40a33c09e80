//! The notification outbox (issue 8, "Notifications that are not lost"): every notification
//! a push or an expiry causes is recorded by the store, in the same transaction as its
//! cause, and stays until it is delivered or its subscription ends.
//!
//! The journey, ordering, duplicates and at-least-once delivery are documented on
//! [`NotificationOutbox`].

use core::future::Future;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use e2m_keyid::{EmseId, Imsi, KeyId};
use e2m_types::{EventSet, EventType, SubscriptionId, Timestamp};

use crate::{MemorySubscriptionStore, PushOutcome, StoreError, SubscriptionRecord};

/// Names one delivering EMKS instance, so that only the instance that claimed an entry
/// releases it early ([`NotificationOutbox::retry_at`]). Random per process: two instances
/// never share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(u64);

impl InstanceId {
    /// The instance with this number (for backends that store it).
    pub const fn from_u64(n: u64) -> InstanceId {
        InstanceId(n)
    }

    /// Its number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// A fresh random instance id, from the operating system's generator.
    ///
    /// # Errors
    /// [`StoreError::RandomUnavailable`].
    pub fn random() -> Result<InstanceId, StoreError> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|_| StoreError::RandomUnavailable)?;
        // Bit 63 cleared so that it fits a signed 64-bit database column as is.
        Ok(InstanceId(u64::from_be_bytes(bytes) >> 1))
    }
}

impl core::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "instance#{:016x}", self.0)
    }
}

/// One recorded notification, as handed to a deliverer by
/// [`NotificationOutbox::claim_due`]: the event, and the subscription it is for (who, where,
/// and how that subscriber names the UE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingNotification {
    /// Its stable id: unique in the store, never reused, the same on every attempt (the
    /// wire's `notificationId`).
    pub id: u64,
    /// The subscription it is for.
    pub subscription: SubscriptionId,
    /// That subscription (EMSE, callback, UE filter), as it is now.
    pub record: SubscriptionRecord,
    /// What happened.
    pub event: EventType,
    /// To which UE.
    pub imsi: Imsi,
    /// Which key.
    pub key_id: KeyId,
    /// When it happened (the `now` of the push or sweep).
    pub time: Timestamp,
    /// Delivery attempts that failed so far (for the backoff).
    pub attempts: u32,
}

/// What one [`NotificationOutbox::claim_due`] (or
/// [`AkmaOutbox::claim_due`](crate::AkmaOutbox::claim_due), whose subscribers are AFs named
/// by FQDN: `S` = [`Fqdn`](e2m_keyid::akma::Fqdn)) asks for.
#[derive(Clone, Debug)]
pub struct Claim<'a, S = EmseId> {
    /// Who claims.
    pub instance: InstanceId,
    /// The claimer's clock: entries due at or before it are claimed.
    pub now: Timestamp,
    /// How long the claimed entries are the claimer's alone (rounded up to whole seconds,
    /// at least one).
    pub lease: Duration,
    /// The most entries in all.
    pub max: usize,
    /// The most entries for one subscriber (EMSE, or AF) in this claim.
    pub per_emse: usize,
    /// Subscribers to leave out (their deliveries are at their budget already).
    pub skip: &'a [S],
}

impl<S> Claim<'_, S> {
    /// When a claim made now runs out.
    pub fn lease_until(&self) -> Timestamp {
        let secs = self.lease.as_secs() + u64::from(self.lease.subsec_nanos() > 0);
        self.now.saturating_add(Duration::from_secs(secs.max(1)))
    }
}

/// The events a push causes, in the order they are recorded: `key-retired` for the key it
/// evicted or replaced, then `key-available` for the key it stored.
pub fn events_of_push(outcome: &PushOutcome, key_id: KeyId) -> [Option<(EventType, KeyId)>; 2] {
    match *outcome {
        PushOutcome::Stored { evicted } => [
            evicted.map(|old| (EventType::KeyRetired, old)),
            Some((EventType::KeyAvailable, key_id)),
        ],
        PushOutcome::Replaced => [
            Some((EventType::KeyRetired, key_id)),
            Some((EventType::KeyAvailable, key_id)),
        ],
        _ => [None, None],
    }
}

/// The store's pending notifications.
///
/// # How a notification travels
///
/// 1. **Recorded with its cause.** [`IntKeyStore::push`](crate::IntKeyStore::push) and
///    [`IntKeyStore::sweep`](crate::IntKeyStore::sweep) of a store that implements
///    [`NotificationOutbox`] record, in the transaction that changes the keys, one entry per
///    matching subscription ([`SubscriptionStore::matching`](crate::SubscriptionStore::matching)):
///    `key-retired` for a key evicted, replaced or swept, then `key-available` for a key
///    stored or replaced (the events of [`events_of_push`]). A push that changes nothing
///    (`Unchanged`, `Stale`, `Expired`) records nothing. So a committed push always has its
///    notifications recorded, and a push that did not commit has none.
/// 2. **Claimed under a lease.** A delivering instance calls
///    [`claim_due`](NotificationOutbox::claim_due): the entries due at `now`, oldest first,
///    at most [`Claim::max`] in all and [`Claim::per_emse`] per subscriber, none for the
///    subscribers in [`Claim::skip`]. Claiming sets the entry's due time to `now + lease`
///    and its owner to the claimer, in one atomic step: no other instance claims it until
///    the lease runs out. If the claimer dies, the entry simply comes due again at the end
///    of the lease, and another instance claims it then.
/// 3. **Settled.** On a 2xx answer the deliverer calls
///    [`delivered`](NotificationOutbox::delivered) (the entry is removed); on a failure,
///    [`retry_at`](NotificationOutbox::retry_at) with its backoff (the entry is released,
///    due at that time, its attempt count one higher).
/// 4. **Dropped with its subscription.** Removing a subscription, or ending the session
///    that holds it, removes its entries (durable backends: in the same transaction; the
///    in-memory store: when they come due, as an entry whose subscription is gone is never
///    handed out).
///
/// # Ordering, duplicates, at least once
///
/// - **At least once:** an entry leaves the outbox only through `delivered` or the end of
///   its subscription, so every notification recorded for a subscription that lives long
///   enough is delivered, however long its EMSE is unreachable.
/// - **Duplicates are possible** (a 2xx lost on the way back, a lease that ran out while a
///   slow delivery was still in flight): every attempt of one entry carries the same
///   [`PendingNotification::id`], which the EMSE uses to drop the repeat (the wire's
///   `notificationId`).
/// - **Order:** entries are claimed oldest first (by due time, then id), but deliveries run
///   concurrently and retries go to the back, so an EMSE may receive them out of order. Each
///   carries the time of its event and its key id, and a fetch always tells the truth:
///   notifications are advice, not state.
///
/// # Promises
///
/// A store implementing it promises, checked by
/// [`conformance::outbox`](crate::conformance::outbox):
/// - its [`IntKeyStore::push`](crate::IntKeyStore::push) and
///   [`sweep`](crate::IntKeyStore::sweep) record one entry per matching subscription and
///   event ([`events_of_push`]; `key-retired` for each swept key), atomically with the
///   change of keys;
/// - ids are unique and increasing in recording order;
/// - a claimed entry is not claimed again before its lease runs out, and is claimed again
///   after it (by any instance) unless it was delivered;
/// - the claim limits hold (in all, per EMSE, skipped EMSEs);
/// - entries of a removed subscription, or of an ended session's subscriptions, are never
///   handed out again.
pub trait NotificationOutbox: Send + Sync {
    /// Claims the entries due at `claim.now` for `claim.instance` until
    /// [`Claim::lease_until`], oldest first, within the claim's limits.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails (nothing is claimed then).
    fn claim_due(
        &self,
        claim: &Claim<'_>,
    ) -> impl Future<Output = Result<Vec<PendingNotification>, StoreError>> + Send;

    /// The entry `id` was delivered (its callback answered 2xx): removes it. Returns
    /// whether it was still there (a duplicate delivery by another instance may have
    /// removed it already).
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn delivered(&self, id: u64) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Delivery of entry `id` failed: if `instance` still holds it, releases it, due at
    /// `when`, with one more attempt counted. Returns whether it did (false: delivered or
    /// dropped meanwhile, or claimed by another instance after the lease ran out).
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn retry_at(
        &self,
        id: u64,
        instance: InstanceId,
        when: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The earliest due time of any entry (claimed ones: the end of their lease), if any:
    /// when a deliverer with nothing to do should look again.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn next_due(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send;

    /// Entries held (claimed or not): for metrics and tests.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn pending(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// One entry of the in-memory outbox.
#[derive(Debug)]
struct Entry {
    subscription: SubscriptionId,
    event: EventType,
    imsi: Imsi,
    key_id: KeyId,
    time: Timestamp,
    due: Timestamp,
    attempts: u32,
    owner: Option<InstanceId>,
}

#[derive(Debug, Default)]
struct State {
    entries: BTreeMap<u64, Entry>,
    /// (due, id) of every entry: what `claim_due` walks.
    due: BTreeSet<(Timestamp, u64)>,
    next: u64,
}

/// The in-memory outbox that a [`MemoryIntKeyStore`](crate::MemoryIntKeyStore) keeps
/// beside its keys: one lock around an ordered map, recording from the subscriptions of
/// the [`MemorySubscriptionStore`] it was linked to (with
/// [`MemoryIntKeyStore::with_subscriptions`](crate::MemoryIntKeyStore::with_subscriptions)).
/// Without a link it records nothing: no subscription can match.
///
/// Nothing in memory survives a restart, so "the same transaction" means here only that
/// the entries are recorded before the push returns; a removed subscription's entries are
/// dropped when they come due.
#[derive(Debug, Default)]
pub(crate) struct MemoryOutbox {
    state: Mutex<State>,
    subscriptions: Option<MemorySubscriptionStore>,
}

impl MemoryOutbox {
    pub(crate) fn linked(subscriptions: &MemorySubscriptionStore) -> MemoryOutbox {
        MemoryOutbox {
            state: Mutex::new(State {
                next: 1,
                ..State::default()
            }),
            subscriptions: Some(subscriptions.handle()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // See `Sharded::read` for why poisoning is ignored.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `event` about `imsi` for every matching subscription.
    pub(crate) fn record(&self, imsi: &Imsi, event: EventType, key_id: KeyId, now: Timestamp) {
        let Some(subscriptions) = &self.subscriptions else {
            return;
        };
        let matching = subscriptions.matching_now(imsi, EventSet::single(event));
        let Ok(matching) = matching else { return };
        if matching.is_empty() {
            return;
        }
        let mut state = self.lock();
        for (subscription, _) in matching {
            let id = state.next.max(1);
            state.next = id + 1;
            state.due.insert((now, id));
            state.entries.insert(
                id,
                Entry {
                    subscription,
                    event,
                    imsi: imsi.clone(),
                    key_id,
                    time: now,
                    due: now,
                    attempts: 0,
                    owner: None,
                },
            );
        }
    }

    /// Records the events of a push.
    pub(crate) fn record_push(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        outcome: &PushOutcome,
        now: Timestamp,
    ) {
        if self.subscriptions.is_none() {
            return;
        }
        for (event, id) in events_of_push(outcome, key_id).into_iter().flatten() {
            self.record(imsi, event, id, now);
        }
    }

    fn claim_now(&self, claim: &Claim<'_>) -> Vec<PendingNotification> {
        let Some(subscriptions) = &self.subscriptions else {
            return Vec::new();
        };
        let until = claim.lease_until();
        let mut state = self.lock();
        let due: Vec<(Timestamp, u64)> =
            state.due.range(..=(claim.now, u64::MAX)).copied().collect();
        let mut per_emse: HashMap<EmseId, usize> = HashMap::new();
        let mut out = Vec::new();
        for (at, id) in due {
            if out.len() >= claim.max {
                break;
            }
            let Some(entry) = state.entries.get(&id) else {
                state.due.remove(&(at, id));
                continue;
            };
            let Some(record) = subscriptions.record_of(entry.subscription) else {
                // The subscription ended: its entries are never handed out.
                state.due.remove(&(at, id));
                state.entries.remove(&id);
                continue;
            };
            if claim.skip.contains(&record.emse) {
                continue;
            }
            let taken = per_emse.entry(record.emse.clone()).or_insert(0);
            if *taken >= claim.per_emse {
                continue;
            }
            *taken += 1;
            state.due.remove(&(at, id));
            state.due.insert((until, id));
            let Some(entry) = state.entries.get_mut(&id) else {
                continue;
            };
            entry.due = until;
            entry.owner = Some(claim.instance);
            out.push(PendingNotification {
                id,
                subscription: entry.subscription,
                record,
                event: entry.event,
                imsi: entry.imsi.clone(),
                key_id: entry.key_id,
                time: entry.time,
                attempts: entry.attempts,
            });
        }
        out
    }

    fn delivered_now(&self, id: u64) -> bool {
        let mut state = self.lock();
        match state.entries.remove(&id) {
            Some(entry) => {
                state.due.remove(&(entry.due, id));
                true
            }
            None => false,
        }
    }

    fn retry_now(&self, id: u64, instance: InstanceId, when: Timestamp) -> bool {
        let mut state = self.lock();
        let Some(entry) = state.entries.get_mut(&id) else {
            return false;
        };
        if entry.owner != Some(instance) {
            return false;
        }
        let old = entry.due;
        entry.due = when;
        entry.owner = None;
        entry.attempts = entry.attempts.saturating_add(1);
        state.due.remove(&(old, id));
        state.due.insert((when, id));
        true
    }

    fn next_due_now(&self) -> Option<Timestamp> {
        self.lock().due.first().map(|(at, _)| *at)
    }

    fn pending_now(&self) -> u64 {
        self.lock().entries.len() as u64
    }
}

impl NotificationOutbox for crate::MemoryIntKeyStore {
    async fn claim_due(&self, claim: &Claim<'_>) -> Result<Vec<PendingNotification>, StoreError> {
        Ok(self.outbox().claim_now(claim))
    }

    async fn delivered(&self, id: u64) -> Result<bool, StoreError> {
        Ok(self.outbox().delivered_now(id))
    }

    async fn retry_at(
        &self,
        id: u64,
        instance: InstanceId,
        when: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.outbox().retry_now(id, instance, when))
    }

    async fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.outbox().next_due_now())
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        Ok(self.outbox().pending_now())
    }
}
