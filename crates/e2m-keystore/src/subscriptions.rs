//! Subscriptions of EMSE sessions to EMKS events (seed 6.x.2.2.2 "Subscription to
//! Notification by EMKS"; its editor's note leaves the events ffs, so the set is open).

use core::future::Future;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use e2m_keyid::{EmseId, Imsi};
use e2m_types::{EventSet, SubscriptionId, UeRef};
use foldhash::fast::RandomState;

use crate::packed::PackedImsi;
use crate::{Limit, SessionRef, StoreError};

/// A subscription's UE filter: the IMSI it resolved to, and the name the EMSE used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UeFilter {
    /// The UE, resolved when the subscription was made.
    pub imsi: Imsi,
    /// How the EMSE named it (and how notifications name it, so an EMSE never learns an
    /// IMSI it did not already use).
    pub name: UeRef,
}

/// One stored subscription: what an EMSE's subscription message (`e2m_msg::Subscription`)
/// asked for, bound to the session that made it and resolved to an IMSI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionRecord {
    /// The session that made it; it ends with that session.
    pub session: SessionRef,
    /// That session's EMSE.
    pub emse: EmseId,
    /// The events wanted.
    pub events: EventSet,
    /// Only this UE, or every UE the EMSE may know (`None`).
    pub ue: Option<UeFilter>,
    /// Where to deliver notifications (a URI, validated by the caller).
    pub callback: String,
}

/// Subscription limits.
///
/// `max_per_ue` bounds the fan-out of one push (issue 16 item 4): a push for a UE records
/// one notification per matching subscription, so one EMSE receives at most `max_per_ue`
/// of them from its subscriptions filtered on that UE plus `max_per_ue` from its
/// subscriptions without a filter, per event, however many subscriptions it holds in all.
/// `max_per_session` and the session store's `max_per_emse` together bound what one EMSE
/// holds in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionPolicy {
    /// The most subscriptions one session may hold.
    pub max_per_session: usize,
    /// The most subscriptions one EMSE (all its sessions together) may hold for one UE,
    /// and the most it may hold without a UE filter.
    pub max_per_ue: usize,
    /// The most subscriptions in all.
    pub max_total: usize,
    /// The longest callback accepted, in octets.
    pub max_callback_len: usize,
}

impl SubscriptionPolicy {
    /// 1,024 per session, 4 per EMSE and UE (and 4 without a filter per EMSE), 1,000,000
    /// in all, callbacks up to 2,048 octets.
    ///
    /// Four per UE: an EMSE needs one subscription per UE (both events fit in one), one
    /// more while it moves to a new callback (it subscribes anew, then removes the old
    /// one), and room for an EMSE run as a few nodes with their own endpoints; so one push
    /// sends one EMSE at most 8 notifications per event (4 filtered, 4 unfiltered), where
    /// 1,024 per session and 64 sessions per EMSE let it be 65,536.
    pub const DEFAULT: SubscriptionPolicy = SubscriptionPolicy {
        max_per_session: 1024,
        max_per_ue: 4,
        max_total: 1_000_000,
        max_callback_len: 2048,
    };
}

impl Default for SubscriptionPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The EMKS's subscriptions.
///
/// Promises, checked by [`conformance::subscriptions`](crate::conformance::subscriptions):
/// only the owning session can see or remove a subscription; a subscription matches an
/// event for a UE iff it wants that event and its filter is absent or names that UE; the
/// limits hold (per session, per EMSE and UE, in all); ending a session removes its subscriptions; **a subscription id is never
/// handed out twice**, not even after its subscription was removed or its session ended
/// (a durable backend keeps this across restarts, a shared one across instances).
///
/// The last promise is what keeps a notification with its subscriber: outbox entries,
/// notifications on the wire and `DELETE /e2m/v1/subscriptions/{id}` all name a
/// subscription by its id, so an id reused after removal could route a stale notification,
/// or another EMSE's unsubscribe, to the new holder of that id.
pub trait SubscriptionStore: Send + Sync {
    /// Adds `sub`, under an id this store has never handed out before.
    ///
    /// The limits are checked in the same transaction as the insertion, so that concurrent
    /// adds (from several EMKS instances, too) cannot pass them together.
    ///
    /// # Errors
    /// [`StoreError::LimitReached`] ([`Limit::SubscriptionsPerSession`],
    /// [`Limit::SubscriptionsPerUe`]: `sub.emse` already holds
    /// [`SubscriptionPolicy::max_per_ue`] subscriptions with `sub`'s UE filter, or without
    /// one if `sub` has none; [`Limit::SubscriptionsTotal`]), [`StoreError::InvalidInput`]
    /// for an empty or over-long callback, or a backend error.
    fn add(
        &self,
        sub: SubscriptionRecord,
    ) -> impl Future<Output = Result<SubscriptionId, StoreError>> + Send;

    /// The subscription `id` if `owner` made it.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn get(
        &self,
        owner: SessionRef,
        id: SubscriptionId,
    ) -> impl Future<Output = Result<Option<SubscriptionRecord>, StoreError>> + Send;

    /// Removes subscription `id` if `owner` made it; returns it.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn remove(
        &self,
        owner: SessionRef,
        id: SubscriptionId,
    ) -> impl Future<Output = Result<Option<SubscriptionRecord>, StoreError>> + Send;

    /// Removes every subscription of `owner` (its session ended); returns how many.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn remove_session(
        &self,
        owner: SessionRef,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// The subscriptions of `emse` (all its sessions) with the UE filter `imsi`, or without
    /// a filter if `imsi` is `None`, in id order: what
    /// [`SubscriptionPolicy::max_per_ue`] counts (the EMKS replaces the oldest of them
    /// when an EMSE at that limit subscribes again).
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn of_emse_for_ue(
        &self,
        emse: &EmseId,
        imsi: Option<&Imsi>,
    ) -> impl Future<Output = Result<Vec<(SubscriptionId, SubscriptionRecord)>, StoreError>> + Send;

    /// The subscriptions that want an event of `event` about `imsi`, in id order.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn matching(
        &self,
        imsi: &Imsi,
        event: EventSet,
    ) -> impl Future<Output = Result<Vec<(SubscriptionId, SubscriptionRecord)>, StoreError>> + Send;
}

#[derive(Default)]
struct Inner {
    subs: HashMap<u64, SubscriptionRecord, RandomState>,
    by_imsi: HashMap<PackedImsi, Vec<u64>, RandomState>,
    unfiltered: Vec<u64>,
    by_session: HashMap<SessionRef, Vec<u64>, RandomState>,
    next: u64,
}

impl Inner {
    /// The ids of `emse`'s subscriptions with the UE filter `imsi` (none: unfiltered).
    fn same_ue<'a>(
        &'a self,
        emse: &'a EmseId,
        imsi: Option<&Imsi>,
    ) -> impl Iterator<Item = u64> + 'a {
        let ids = match imsi {
            Some(imsi) => self
                .by_imsi
                .get(&PackedImsi::new(imsi))
                .map_or(&[][..], Vec::as_slice),
            None => self.unfiltered.as_slice(),
        };
        ids.iter()
            .copied()
            .filter(move |id| self.subs.get(id).is_some_and(|s| s.emse == *emse))
    }

    fn unlink(&mut self, id: u64, sub: &SubscriptionRecord) {
        let drop_id = |v: &mut Vec<u64>| v.retain(|x| *x != id);
        match &sub.ue {
            Some(f) => {
                let key = PackedImsi::new(&f.imsi);
                if let Some(v) = self.by_imsi.get_mut(&key) {
                    drop_id(v);
                    if v.is_empty() {
                        self.by_imsi.remove(&key);
                    }
                }
            }
            None => drop_id(&mut self.unfiltered),
        }
        if let Some(v) = self.by_session.get_mut(&sub.session) {
            drop_id(v);
            if v.is_empty() {
                self.by_session.remove(&sub.session);
            }
        }
    }
}

/// The in-memory [`SubscriptionStore`]: one read-mostly lock, indexed by UE and by session
/// so that matching a push costs two lookups, not a scan.
///
/// [`handle`](Self::handle) gives another handle on the same subscriptions: what a
/// [`MemoryIntKeyStore`](crate::MemoryIntKeyStore) linked to it reads to record its
/// notifications ([`MemoryIntKeyStore::with_subscriptions`](crate::MemoryIntKeyStore::with_subscriptions)).
pub struct MemorySubscriptionStore {
    inner: Arc<RwLock<Inner>>,
    policy: SubscriptionPolicy,
}

impl MemorySubscriptionStore {
    /// An empty store applying `policy`.
    pub fn new(policy: SubscriptionPolicy) -> Self {
        MemorySubscriptionStore {
            inner: Arc::new(RwLock::new(Inner {
                next: 1,
                ..Inner::default()
            })),
            policy,
        }
    }

    /// Another handle on the same subscriptions (changes through either are seen by both).
    pub fn handle(&self) -> MemorySubscriptionStore {
        MemorySubscriptionStore {
            inner: Arc::clone(&self.inner),
            policy: self.policy,
        }
    }

    /// The subscription `id`, whoever made it (for the outbox, which hands it out with the
    /// notification).
    pub(crate) fn record_of(&self, id: SubscriptionId) -> Option<SubscriptionRecord> {
        self.read().subs.get(&id.as_u64()).cloned()
    }

    /// Subscriptions held.
    pub fn len(&self) -> usize {
        self.read().subs.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // See `Sharded::read` for why poisoning is ignored.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemorySubscriptionStore {
    fn default() -> Self {
        Self::new(SubscriptionPolicy::DEFAULT)
    }
}

impl core::fmt::Debug for MemorySubscriptionStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemorySubscriptionStore")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The synchronous work behind the trait methods: the in-memory store never waits, so
/// each trait method is an `async fn` that does this work at its first poll (computing
/// in `poll` rather than at the call keeps the result from being copied through a `Ready`).
impl MemorySubscriptionStore {
    fn add_now(&self, sub: SubscriptionRecord) -> Result<SubscriptionId, StoreError> {
        if sub.callback.is_empty() || sub.callback.len() > self.policy.max_callback_len {
            return Err(StoreError::InvalidInput("callback empty or too long"));
        }
        let mut inner = self.write();
        if inner.subs.len() >= self.policy.max_total {
            return Err(StoreError::LimitReached(Limit::SubscriptionsTotal));
        }
        let held = inner.by_session.get(&sub.session).map_or(0, Vec::len);
        if held >= self.policy.max_per_session {
            return Err(StoreError::LimitReached(Limit::SubscriptionsPerSession));
        }
        let same_ue = inner.same_ue(&sub.emse, sub.ue.as_ref().map(|f| &f.imsi));
        if same_ue.count() >= self.policy.max_per_ue {
            return Err(StoreError::LimitReached(Limit::SubscriptionsPerUe));
        }
        let id = inner.next;
        inner.next += 1;
        match &sub.ue {
            Some(f) => inner
                .by_imsi
                .entry(PackedImsi::new(&f.imsi))
                .or_default()
                .push(id),
            None => inner.unfiltered.push(id),
        }
        inner.by_session.entry(sub.session).or_default().push(id);
        inner.subs.insert(id, sub);
        Ok(SubscriptionId::from_u64(id))
    }

    fn get_now(
        &self,
        owner: SessionRef,
        id: SubscriptionId,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        Ok(self
            .read()
            .subs
            .get(&id.as_u64())
            .filter(|s| s.session == owner)
            .cloned())
    }

    fn remove_now(
        &self,
        owner: SessionRef,
        id: SubscriptionId,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        let mut inner = self.write();
        if inner
            .subs
            .get(&id.as_u64())
            .is_none_or(|s| s.session != owner)
        {
            return Ok(None);
        }
        let Some(sub) = inner.subs.remove(&id.as_u64()) else {
            return Ok(None);
        };
        inner.unlink(id.as_u64(), &sub);
        Ok(Some(sub))
    }

    fn remove_session_now(&self, owner: SessionRef) -> Result<usize, StoreError> {
        let mut inner = self.write();
        let ids = inner.by_session.get(&owner).cloned().unwrap_or_default();
        for id in &ids {
            if let Some(sub) = inner.subs.remove(id) {
                inner.unlink(*id, &sub);
            }
        }
        Ok(ids.len())
    }

    fn of_emse_for_ue_now(
        &self,
        emse: &EmseId,
        imsi: Option<&Imsi>,
    ) -> Result<Vec<(SubscriptionId, SubscriptionRecord)>, StoreError> {
        let inner = self.read();
        let mut out: Vec<(SubscriptionId, SubscriptionRecord)> = inner
            .same_ue(emse, imsi)
            .filter_map(|id| {
                let sub = inner.subs.get(&id)?;
                Some((SubscriptionId::from_u64(id), sub.clone()))
            })
            .collect();
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    pub(crate) fn matching_now(
        &self,
        imsi: &Imsi,
        event: EventSet,
    ) -> Result<Vec<(SubscriptionId, SubscriptionRecord)>, StoreError> {
        let inner = self.read();
        let filtered = inner
            .by_imsi
            .get(&PackedImsi::new(imsi))
            .map_or(&[][..], Vec::as_slice);
        let mut out: Vec<(SubscriptionId, SubscriptionRecord)> = filtered
            .iter()
            .chain(&inner.unfiltered)
            .filter_map(|id| {
                inner
                    .subs
                    .get(id)
                    .map(|s| (SubscriptionId::from_u64(*id), s))
            })
            .filter(|(_, s)| s.events.intersects(event))
            .map(|(id, s)| (id, s.clone()))
            .collect();
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }
}

impl SubscriptionStore for MemorySubscriptionStore {
    async fn add(&self, sub: SubscriptionRecord) -> Result<SubscriptionId, StoreError> {
        self.add_now(sub)
    }

    async fn get(
        &self,
        owner: SessionRef,
        id: SubscriptionId,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        self.get_now(owner, id)
    }

    async fn remove(
        &self,
        owner: SessionRef,
        id: SubscriptionId,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        self.remove_now(owner, id)
    }

    async fn remove_session(&self, owner: SessionRef) -> Result<usize, StoreError> {
        self.remove_session_now(owner)
    }

    async fn of_emse_for_ue(
        &self,
        emse: &EmseId,
        imsi: Option<&Imsi>,
    ) -> Result<Vec<(SubscriptionId, SubscriptionRecord)>, StoreError> {
        self.of_emse_for_ue_now(emse, imsi)
    }

    async fn matching(
        &self,
        imsi: &Imsi,
        event: EventSet,
    ) -> Result<Vec<(SubscriptionId, SubscriptionRecord)>, StoreError> {
        self.matching_now(imsi, event)
    }
}
