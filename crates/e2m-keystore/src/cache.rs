//! Read-through caches in front of a shared store (issue 8: "If you keep a local read cache
//! in front of PostgreSQL, state its staleness bound and test it").
//!
//! [`CachedSessions`], [`CachedIdentities`] and [`CachedIntKeys`] wrap any
//! [`SessionStore`], [`IdentityMap`] and [`IntKeyStore`] and implement the same trait, so
//! that the EMKS core takes them like any store. They remember what a read found, for at
//! most a time-to-live ([`CacheConfig::ttl`]), and nothing else:
//!
//! - **A miss always goes to the backend**, and only what the backend found is kept (no
//!   negative entries): a session registered, a mapping provisioned or a key pushed through
//!   another instance is found here at once.
//! - **A write through this wrapper invalidates at once**: `remove` of a session, any change
//!   of a mapping, and a push, `remove_ue` or `sweep` of a UE's keys drop this instance's
//!   entries for it, so one instance always sees its own writes. A read that was already
//!   on its way to the backend when the write invalidated does not store what it read.
//! - **The staleness bound**: a change made through *another* instance (a session ended,
//!   a mapping changed or removed, a key evicted by newer pushes or replaced) may still be
//!   served here until `ttl` has passed since the read that cached the old value began,
//!   and never after. A key's own expiry (`created + max_age`) and a session's expiry
//!   are checked on every hit against the `now` of the call, exactly as the backend does.
//!
//! Time comes from the caller: a [`MonotonicClock`] handed to the wrapper (the `emks`
//! example reads `std::time::Instant`; tests use [`ManualClock`]). This module does no I/O
//! and reads no clock of its own. A TTL of zero disables caching: every call goes straight
//! to the backend. Every cache holds at most [`CacheConfig::capacity`] entries (UEs, for
//! the key cache), in lock-striped shards like the in-memory stores; a full shard evicts
//! the entry it cached first, which, all entries sharing one TTL, is also the first to
//! go stale.
//!
//! Cached intermediate keys live each in its own heap box (never moved by a rehash), are
//! zeroized when evicted, invalidated, replaced or dropped, and appear in no `Debug`
//! output.

use core::future::Future;
use core::time::Duration;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use e2m_kdf::E2mIntKey;
use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId};
use foldhash::fast::RandomState;
use zeroize::Zeroize;

use crate::identity_keys::get_for;
use crate::import::{IdentityRow, ImportSummary};
use crate::packed::PackedImsi;
use crate::{
    Claim, DatabaseId, HeldKey, IdentityKey, IdentityKeyError, IdentityMap, InstanceId,
    IntKeyStore, KeyInfo, NotificationOutbox, PendingNotification, PolicyError, Provisioned,
    PushOutcome, RetentionPolicy, SessionDigest, SessionId, SessionInfo, SessionPolicy,
    SessionStore, StoreError, Timestamp,
};

/// A monotonic clock the caller provides: the time elapsed since an origin of its choice.
/// It must never go backwards (`std::time::Instant` qualifies; the wall clock does not).
pub trait MonotonicClock: Send + Sync {
    /// The time elapsed since this clock's origin.
    fn now(&self) -> Duration;
}

impl<C: MonotonicClock + ?Sized> MonotonicClock for Arc<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }
}

/// A clock that moves only when told to ([`advance`](Self::advance)): for tests of
/// staleness bounds, and for any caller that keeps time itself.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock at its origin.
    pub const fn new() -> ManualClock {
        ManualClock(AtomicU64::new(0))
    }

    /// Moves the clock forward by `by` (at nanosecond resolution, saturating).
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(nanos))
            });
    }
}

impl MonotonicClock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Acquire))
    }
}

/// How long a cache serves what it read, and how much it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    ttl: Duration,
    capacity: usize,
}

impl CacheConfig {
    /// No caching: every call goes to the backend.
    pub const DISABLED: CacheConfig = CacheConfig {
        ttl: Duration::ZERO,
        capacity: 1,
    };

    /// Serve a read for at most `ttl` (zero disables caching), holding at most `capacity`
    /// entries.
    ///
    /// # Errors
    /// [`PolicyError::Zero`] for a `capacity` of zero.
    pub fn new(ttl: Duration, capacity: usize) -> Result<CacheConfig, PolicyError> {
        if capacity == 0 {
            return Err(PolicyError::Zero("capacity"));
        }
        Ok(CacheConfig { ttl, capacity })
    }

    /// The staleness bound: how long after a read began its result may be served.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The most entries held (sessions, mappings, or UEs of the key cache).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether anything is cached (`ttl` is not zero).
    pub fn is_enabled(&self) -> bool {
        !self.ttl.is_zero()
    }
}

/// The most shards of one cache (a power of two; see `crate::shard` for why padding each).
const MAX_SHARDS: usize = 64;

struct Entry<V> {
    value: V,
    /// Its place in the shard's insertion order.
    seq: u64,
}

struct ShardState<K, V> {
    map: HashMap<K, Entry<V>, RandomState>,
    /// Keys in the order they were cached, with the `seq` they were cached under (a key
    /// invalidated or cached again leaves a record that no longer matches, skipped when met
    /// and dropped by compaction).
    order: VecDeque<(K, u64)>,
    next_seq: u64,
    /// Bumped by every invalidation: a fill begun before it must not store what it read.
    epoch: u64,
}

#[repr(align(128))]
struct Shard<K, V>(RwLock<ShardState<K, V>>);

/// What a missed read remembers until it fills: the shard and its epoch at the miss.
#[derive(Clone, Copy)]
struct Ticket {
    shard: usize,
    epoch: u64,
}

/// A bounded, lock-striped map with invalidation epochs; freshness is the caller's.
struct BoundedMap<K, V> {
    shards: Box<[Shard<K, V>]>,
    hasher: RandomState,
    mask: usize,
    per_shard: usize,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    fn new(capacity: usize) -> Self {
        // Enough shards that tasks rarely meet on one lock, each with room for at least 8
        // entries (when the capacity allows); the shards' room adds up to at most `capacity`.
        let wanted = (capacity / 8).clamp(1, MAX_SHARDS);
        // The largest power of two not above `wanted`.
        let n = 1usize << (usize::BITS - 1 - wanted.leading_zeros());
        let hasher = RandomState::default();
        let shards = (0..n)
            .map(|_| {
                Shard(RwLock::new(ShardState {
                    map: HashMap::with_hasher(hasher.clone()),
                    order: VecDeque::new(),
                    next_seq: 0,
                    epoch: 0,
                }))
            })
            .collect();
        BoundedMap {
            shards,
            hasher,
            mask: n - 1,
            per_shard: (capacity / n).max(1),
        }
    }

    fn index(&self, key: &K) -> usize {
        ((self.hasher.hash_one(key) >> 48) as usize) & self.mask
    }

    // Poisoning is ignored for the reason given in `crate::shard`: every critical section
    // leaves the shard consistent at each step.
    fn read_shard(&self, i: usize) -> std::sync::RwLockReadGuard<'_, ShardState<K, V>> {
        self.shards[i]
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_shard(&self, i: usize) -> std::sync::RwLockWriteGuard<'_, ShardState<K, V>> {
        self.shards[i]
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `f` of the entry of `key` (if any), under the shard's read lock, and the ticket a
    /// later [`fill`](Self::fill) needs.
    fn read<R>(&self, key: &K, f: impl FnOnce(Option<&V>) -> R) -> (R, Ticket) {
        let shard = self.index(key);
        let state = self.read_shard(shard);
        let found = f(state.map.get(key).map(|e| &e.value));
        (
            found,
            Ticket {
                shard,
                epoch: state.epoch,
            },
        )
    }

    /// Stores `update(previous entry)` for `key`, unless the shard was invalidated since
    /// `ticket` was taken (then what the caller read may predate a write: it is dropped).
    fn fill(&self, key: K, ticket: Ticket, update: impl FnOnce(Option<V>) -> V) {
        let mut guard = self.write_shard(ticket.shard);
        if guard.epoch != ticket.epoch {
            return;
        }
        let state = &mut *guard;
        let previous = state.map.remove(&key).map(|e| e.value);
        let seq = state.next_seq;
        state.next_seq += 1;
        state.order.push_back((key.clone(), seq));
        state.map.insert(
            key,
            Entry {
                value: update(previous),
                seq,
            },
        );
        while state.map.len() > self.per_shard {
            let Some((oldest, seq)) = state.order.pop_front() else {
                break;
            };
            if state.map.get(&oldest).is_some_and(|e| e.seq == seq) {
                state.map.remove(&oldest);
            }
        }
        // Records of invalidated or re-cached keys: dropped once they outnumber the live.
        if state.order.len() > 2 * self.per_shard + 16 {
            let map = &state.map;
            state
                .order
                .retain(|(k, seq)| map.get(k).is_some_and(|e| e.seq == *seq));
        }
    }

    /// Drops the entry of `key`, and makes every fill begun before this call a no-op.
    fn invalidate(&self, key: &K) {
        let mut state = self.write_shard(self.index(key));
        state.epoch += 1;
        state.map.remove(key);
    }

    /// Drops every entry that `doomed` says (by key and value), in every shard.
    fn invalidate_where(&self, mut doomed: impl FnMut(&K, &V) -> bool) {
        for i in 0..self.shards.len() {
            let mut state = self.write_shard(i);
            state.epoch += 1;
            state.map.retain(|k, entry| !doomed(k, &entry.value));
        }
    }

    fn len(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.read_shard(i).map.len())
            .sum()
    }
}

/// A cached value and when the read that found it began.
struct Fresh<T> {
    value: T,
    read_at: Duration,
}

/// Whether a read begun at `read_at` may still be served at `now`.
fn is_fresh(read_at: Duration, now: Duration, ttl: Duration) -> bool {
    now.saturating_sub(read_at) < ttl
}

// ---------------------------------------------------------------------------------------
// Sessions

/// A [`SessionStore`] that serves a session it found for at most the TTL (see the
/// [module documentation](self) for the bound).
///
/// `get` hits the cache; a miss, `create`, `of_emse` and `sweep` go to the backend;
/// `remove` goes to the backend and then drops this instance's entry.
pub struct CachedSessions<S, C> {
    inner: S,
    clock: C,
    config: CacheConfig,
    cache: BoundedMap<SessionDigest, Fresh<SessionInfo>>,
}

impl<S, C> CachedSessions<S, C> {
    /// `inner` behind a cache configured by `config`, reading time from `clock`.
    pub fn new(inner: S, config: CacheConfig, clock: C) -> Self {
        CachedSessions {
            inner,
            clock,
            config,
            cache: BoundedMap::new(config.capacity),
        }
    }

    /// The backend (reads and writes through it bypass the cache).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// This cache's configuration.
    pub fn config(&self) -> CacheConfig {
        self.config
    }

    /// Entries held (stale ones count until replaced or evicted).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

impl<S, C> core::fmt::Debug for CachedSessions<S, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CachedSessions")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: SessionStore, C: MonotonicClock> SessionStore for CachedSessions<S, C> {
    fn session_policy(&self) -> SessionPolicy {
        self.inner.session_policy()
    }

    fn create(
        &self,
        emse: &EmseId,
        now: Timestamp,
    ) -> impl Future<Output = Result<(SessionId, SessionInfo), StoreError>> + Send {
        self.inner.create(emse, now)
    }

    async fn get(&self, id: &SessionId, now: Timestamp) -> Result<Option<SessionInfo>, StoreError> {
        if !self.config.is_enabled() {
            return self.inner.get(id, now).await;
        }
        let digest = SessionDigest::of(id);
        let read_at = self.clock.now();
        let ttl = self.config.ttl;
        let (hit, ticket) = self.cache.read(&digest, |e| {
            e.filter(|e| is_fresh(e.read_at, read_at, ttl))
                .map(|e| e.value.clone())
        });
        if let Some(info) = hit {
            return Ok((now < info.expires).then_some(info));
        }
        let found = self.inner.get(id, now).await?;
        if let Some(info) = &found {
            let value = info.clone();
            self.cache
                .fill(digest, ticket, |_| Fresh { value, read_at });
        }
        Ok(found)
    }

    async fn remove(&self, id: &SessionId) -> Result<Option<SessionInfo>, StoreError> {
        let removed = self.inner.remove(id).await;
        // Also after a failure: the backend may have removed it before failing.
        if self.config.is_enabled() {
            self.cache.invalidate(&SessionDigest::of(id));
        }
        removed
    }

    fn of_emse(
        &self,
        emse: &EmseId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<SessionInfo>, StoreError>> + Send {
        self.inner.of_emse(emse, now)
    }

    async fn evict_oldest(&self, emse: &EmseId) -> Result<Option<SessionInfo>, StoreError> {
        let evicted = self.inner.evict_oldest(emse).await;
        // The cache is keyed by digest and the evicted session is known by its reference
        // only, so every cached session of this EMSE goes (also after a failure: the
        // backend may have evicted before failing); other EMSEs' entries stay.
        if self.config.is_enabled() {
            self.cache
                .invalidate_where(|_, cached| cached.value.emse == *emse);
        }
        evicted
    }

    fn sweep(
        &self,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<SessionInfo>, StoreError>> + Send {
        // Swept sessions are expired, and a hit checks expiry against `now`: no entry of
        // one can be served, so none needs dropping.
        self.inner.sweep(now)
    }
}

// ---------------------------------------------------------------------------------------
// Identity map

/// The cache key of a mapping: the EMSE_Id's length (4 octets, big-endian), its octets,
/// then the identity's octets. Octet for octet, as the map compares names.
fn mapping_key(emse: &EmseId, app: &AppIdentity) -> Box<[u8]> {
    // Sized exactly, so that `into_boxed_slice` does not reallocate.
    let mut key = emse_prefix(emse, app.as_bytes().len());
    key.extend_from_slice(app.as_bytes());
    key.into_boxed_slice()
}

/// The first octets of every cache key of `emse`, in a buffer with room for `more`.
fn emse_prefix(emse: &EmseId, more: usize) -> Vec<u8> {
    let name = emse.as_bytes();
    let len = u32::try_from(name.len()).unwrap_or(u32::MAX);
    let mut key = Vec::with_capacity(4 + name.len() + more);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(name);
    key
}

/// An [`IdentityMap`] that serves a mapping it found for at most the TTL (see the
/// [module documentation](self) for the bound).
///
/// `resolve` hits the cache; a miss goes to the backend; `provision`, `remove`,
/// `remove_emse` and `provision_all` go to the backend and then drop this instance's
/// entries they may have changed.
///
/// [`resolve_key`](IdentityMap::resolve_key) (a key fetch by application identity) hits
/// the same cache: a hit goes on to the key store with the cached IMSI (`get`, through the
/// key store's own cache if it has one), a miss goes to the backend's `resolve_key` (one
/// statement where the backend joins the map and the keys: then the key is read from the
/// database directly, fresher than any cached copy, and not added to a key cache) and
/// caches the mapping it found under the same rules as `resolve`: no negative entries, and
/// nothing from a read overtaken by a write through this instance.
pub struct CachedIdentities<M, C> {
    inner: M,
    clock: C,
    config: CacheConfig,
    cache: BoundedMap<Box<[u8]>, Fresh<PackedImsi>>,
}

impl<M, C> CachedIdentities<M, C> {
    /// `inner` behind a cache configured by `config`, reading time from `clock`.
    pub fn new(inner: M, config: CacheConfig, clock: C) -> Self {
        CachedIdentities {
            inner,
            clock,
            config,
            cache: BoundedMap::new(config.capacity),
        }
    }

    /// The backend (reads and writes through it bypass the cache).
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// This cache's configuration.
    pub fn config(&self) -> CacheConfig {
        self.config
    }

    /// Entries held (stale ones count until replaced or evicted).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

impl<M, C> core::fmt::Debug for CachedIdentities<M, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CachedIdentities")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<M: IdentityMap, C: MonotonicClock> IdentityMap for CachedIdentities<M, C> {
    async fn provision(
        &self,
        emse: &EmseId,
        app: &AppIdentity,
        imsi: &Imsi,
    ) -> Result<Provisioned, StoreError> {
        let result = self.inner.provision(emse, app, imsi).await;
        if self.config.is_enabled() {
            self.cache.invalidate(&mapping_key(emse, app));
        }
        result
    }

    async fn resolve(&self, emse: &EmseId, app: &AppIdentity) -> Result<Option<Imsi>, StoreError> {
        if !self.config.is_enabled() {
            return self.inner.resolve(emse, app).await;
        }
        let key = mapping_key(emse, app);
        let read_at = self.clock.now();
        let ttl = self.config.ttl;
        let (hit, ticket) = self.cache.read(&key, |e| {
            e.filter(|e| is_fresh(e.read_at, read_at, ttl))
                .map(|e| e.value)
        });
        if let Some(imsi) = hit.and_then(PackedImsi::unpack) {
            return Ok(Some(imsi));
        }
        let found = self.inner.resolve(emse, app).await?;
        if let Some(imsi) = &found {
            let value = PackedImsi::new(imsi);
            self.cache.fill(key, ticket, |_| Fresh { value, read_at });
        }
        Ok(found)
    }

    async fn remove(&self, emse: &EmseId, app: &AppIdentity) -> Result<Option<Imsi>, StoreError> {
        let result = self.inner.remove(emse, app).await;
        if self.config.is_enabled() {
            self.cache.invalidate(&mapping_key(emse, app));
        }
        result
    }

    async fn remove_emse(&self, emse: &EmseId) -> Result<usize, StoreError> {
        let result = self.inner.remove_emse(emse).await;
        if self.config.is_enabled() {
            let prefix = emse_prefix(emse, 0);
            self.cache.invalidate_where(|k, _| k.starts_with(&prefix));
        }
        result
    }

    fn database(&self) -> Option<DatabaseId> {
        self.inner.database()
    }

    /// A hit goes on to `keys` with the cached IMSI (`keys.get`, through its own cache if
    /// it has one), as [`resolve`](IdentityMap::resolve) followed by `get` would; a miss
    /// asks the backend's `resolve_key` (one query where the backend can join the map and
    /// the keys) and caches the mapping it found under the same rules as a `resolve`.
    async fn resolve_key<K: IntKeyStore>(
        &self,
        keys: &K,
        emse: &EmseId,
        app: &AppIdentity,
        key_id: KeyId,
        now: Timestamp,
    ) -> Result<IdentityKey, IdentityKeyError> {
        if !self.config.is_enabled() {
            return self.inner.resolve_key(keys, emse, app, key_id, now).await;
        }
        let key = mapping_key(emse, app);
        let read_at = self.clock.now();
        let ttl = self.config.ttl;
        let (hit, ticket) = self.cache.read(&key, |e| {
            e.filter(|e| is_fresh(e.read_at, read_at, ttl))
                .map(|e| e.value)
        });
        if let Some(imsi) = hit.and_then(PackedImsi::unpack) {
            return get_for(keys, imsi, key_id, now).await;
        }
        let found = self.inner.resolve_key(keys, emse, app, key_id, now).await;
        // Also after a failure of the key read: the mapping was read (`error.imsi`).
        let imsi = match &found {
            Ok(found) => found.imsi(),
            Err(failed) => failed.imsi.as_ref(),
        };
        if let Some(imsi) = imsi {
            let value = PackedImsi::new(imsi);
            self.cache.fill(key, ticket, |_| Fresh { value, read_at });
        }
        found
    }

    async fn provision_all(&self, rows: Vec<IdentityRow>) -> Result<ImportSummary, StoreError> {
        let result = self.inner.provision_all(rows).await;
        // An import never replaces a mapping, so no cached one can have changed; dropping
        // them all anyway keeps this correct should that rule ever change (imports are rare).
        if self.config.is_enabled() {
            self.cache.invalidate_where(|_, _| true);
        }
        result
    }
}

// ---------------------------------------------------------------------------------------
// Intermediate keys

/// One cached key. Boxed where it is held, so that its octets stay in one place until
/// they are zeroized (a `HashMap` or `Vec` moving it would leave copies in freed memory).
struct CachedKey {
    key: [u8; 32],
    info: KeyInfo,
    read_at: Duration,
}

impl Drop for CachedKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// The cached keys of one UE, at most [`RetentionPolicy::MAX_KEYS_PER_UE`].
type UeKeys = Vec<Box<CachedKey>>;

/// An [`IntKeyStore`] that serves a key it found for at most the TTL (see the
/// [module documentation](self) for the bound).
///
/// `get` hits the cache (entries are per (IMSI, key id)); a miss, `latest` and `held` go
/// to the backend; `push`, `remove_ue` and `sweep` go to the backend and then drop this
/// instance's entries of every UE they touched. So a key evicted or replaced by a push
/// through this instance is never served here again, and one evicted or replaced through
/// another instance is served here at most until the TTL has passed. A cached key past its
/// own expiry at the call's `now` is never served.
///
/// The capacity counts UEs; each holds at most 16 cached keys, so a full cache holds at
/// most `16 × capacity` keys (as many as the UEs' retention keeps, in practice one or two).
pub struct CachedIntKeys<S, C> {
    inner: S,
    clock: C,
    config: CacheConfig,
    cache: BoundedMap<PackedImsi, UeKeys>,
}

impl<S, C> CachedIntKeys<S, C> {
    /// `inner` behind a cache configured by `config`, reading time from `clock`.
    pub fn new(inner: S, config: CacheConfig, clock: C) -> Self {
        CachedIntKeys {
            inner,
            clock,
            config,
            cache: BoundedMap::new(config.capacity),
        }
    }

    /// The backend (reads and writes through it bypass the cache).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// This cache's configuration.
    pub fn config(&self) -> CacheConfig {
        self.config
    }

    /// UEs with at least one cached key (stale ones count until replaced or evicted).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

impl<S, C> core::fmt::Debug for CachedIntKeys<S, C> {
    // By hand: no key, not even a count of them per UE.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CachedIntKeys")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: IntKeyStore, C: MonotonicClock> CachedIntKeys<S, C> {
    fn invalidate(&self, imsi: &Imsi) {
        if self.config.is_enabled() {
            self.cache.invalidate(&PackedImsi::new(imsi));
        }
    }
}

/// The outbox is the wrapped store's: the wrapper's pushes and sweeps are the wrapped
/// store's (which record their notifications in their own transactions), and nothing of
/// the outbox is cached.
impl<S: NotificationOutbox, C: MonotonicClock> NotificationOutbox for CachedIntKeys<S, C> {
    fn claim_due(
        &self,
        claim: &Claim<'_>,
    ) -> impl Future<Output = Result<Vec<PendingNotification>, StoreError>> + Send {
        self.inner.claim_due(claim)
    }

    fn delivered(&self, id: u64) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.inner.delivered(id)
    }

    fn retry_at(
        &self,
        id: u64,
        instance: InstanceId,
        when: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.inner.retry_at(id, instance, when)
    }

    fn next_due(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send {
        self.inner.next_due()
    }

    fn pending(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.inner.pending()
    }
}

impl<S: IntKeyStore, C: MonotonicClock> IntKeyStore for CachedIntKeys<S, C> {
    fn retention(&self) -> RetentionPolicy {
        self.inner.retention()
    }

    /// The inner store's: this cache serves only what the inner store held within the TTL,
    /// so a query that reads the inner store's database directly answers within the same
    /// bound (fresher, if anything).
    fn database(&self) -> Option<DatabaseId> {
        self.inner.database()
    }

    async fn push(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        key: &E2mIntKey,
        created: Timestamp,
        now: Timestamp,
    ) -> Result<PushOutcome, StoreError> {
        let result = self.inner.push(imsi, key_id, key, created, now).await;
        // Also after a failure: the backend may have committed before failing.
        self.invalidate(imsi);
        result
    }

    async fn get(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        now: Timestamp,
    ) -> Result<Option<HeldKey>, StoreError> {
        if !self.config.is_enabled() {
            return self.inner.get(imsi, key_id, now).await;
        }
        let packed = PackedImsi::new(imsi);
        let read_at = self.clock.now();
        let ttl = self.config.ttl;
        let (hit, ticket) = self.cache.read(&packed, |ue| {
            ue.and_then(|keys| {
                keys.iter()
                    .find(|k| k.info.key_id == key_id && is_fresh(k.read_at, read_at, ttl))
            })
            .map(|k| HeldKey {
                info: k.info,
                key: E2mIntKey::from_array(k.key),
            })
        });
        if let Some(held) = hit {
            // The backend serves a key only while `now < expires`; so does its copy.
            return Ok((now < held.info.expires).then_some(held));
        }
        let found = self.inner.get(imsi, key_id, now).await?;
        if let Some(held) = &found {
            let fresh = Box::new(CachedKey {
                key: *held.key.expose_secret(),
                info: held.info,
                read_at,
            });
            self.cache.fill(packed, ticket, |previous| {
                let mut keys = previous.unwrap_or_default();
                // Stale entries and an older copy of this key id go (zeroized as dropped).
                keys.retain(|k| k.info.key_id != key_id && is_fresh(k.read_at, read_at, ttl));
                if keys.len() >= RetentionPolicy::MAX_KEYS_PER_UE {
                    keys.remove(0);
                }
                keys.push(fresh);
                keys
            });
        }
        Ok(found)
    }

    fn latest(
        &self,
        imsi: &Imsi,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<HeldKey>, StoreError>> + Send {
        self.inner.latest(imsi, now)
    }

    fn held(
        &self,
        imsi: &Imsi,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<KeyInfo>, StoreError>> + Send {
        self.inner.held(imsi, now)
    }

    async fn remove_ue(&self, imsi: &Imsi) -> Result<usize, StoreError> {
        let result = self.inner.remove_ue(imsi).await;
        self.invalidate(imsi);
        result
    }

    async fn sweep(&self, now: Timestamp) -> Result<Vec<(Imsi, KeyInfo)>, StoreError> {
        let swept = self.inner.sweep(now).await?;
        // Expired keys are never served from here anyway (a hit checks expiry); dropping
        // their UEs' entries returns the memory and zeroizes the copies now.
        for (imsi, _) in &swept {
            self.invalidate(imsi);
        }
        Ok(swept)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on a broken fixture")]
mod tests {
    use super::*;
    use crate::{MemoryIdentityMap, MemoryIntKeyStore, MemorySessionStore, block_on};

    const TTL: Duration = Duration::from_millis(1000);

    fn config() -> CacheConfig {
        CacheConfig::new(TTL, 1000).unwrap()
    }

    fn t(secs: u64) -> Timestamp {
        Timestamp::from_unix_secs(1_000_000 + secs)
    }

    fn imsi(n: u64) -> Imsi {
        Imsi::new(&format!("00101{n:010}")).unwrap()
    }

    fn key(byte: u8) -> E2mIntKey {
        E2mIntKey::from_array([byte; 32])
    }

    fn served(store: &impl IntKeyStore, ue: u64, id: u32, now: Timestamp) -> Option<[u8; 32]> {
        block_on(store.get(&imsi(ue), KeyId::from_u32(id), now))
            .unwrap()
            .map(|h| *h.key.expose_secret())
    }

    #[test]
    fn a_key_evicted_behind_the_cache_is_served_until_the_ttl_and_never_after() {
        let clock = Arc::new(ManualClock::new());
        let policy = RetentionPolicy::new(1, Duration::from_secs(3600)).unwrap();
        let store = CachedIntKeys::new(MemoryIntKeyStore::new(policy), config(), clock.clone());
        block_on(store.push(&imsi(1), KeyId::from_u32(1), &key(1), t(0), t(0))).unwrap();
        assert_eq!(served(&store, 1, 1, t(0)), Some([1; 32]));
        // Another instance pushes a newer key: the backend evicts key 1 (N = 1).
        block_on(
            store
                .inner()
                .push(&imsi(1), KeyId::from_u32(2), &key(2), t(1), t(1)),
        )
        .unwrap();
        assert_eq!(served(store.inner(), 1, 1, t(1)), None);
        // The new key is found at once (a miss goes to the backend).
        assert_eq!(served(&store, 1, 2, t(1)), Some([2; 32]));
        // The retired one is served until the TTL has passed since it was read ...
        clock.advance(TTL - Duration::from_nanos(1));
        assert_eq!(served(&store, 1, 1, t(1)), Some([1; 32]));
        // ... and never after.
        clock.advance(Duration::from_nanos(1));
        assert_eq!(served(&store, 1, 1, t(1)), None);
        clock.advance(TTL * 10);
        assert_eq!(served(&store, 1, 1, t(1)), None);
        assert_eq!(served(&store, 1, 2, t(1)), Some([2; 32]));
    }

    #[test]
    fn a_push_through_the_cache_drops_the_ues_entries_at_once() {
        let clock = ManualClock::new();
        let policy = RetentionPolicy::new(1, Duration::from_secs(3600)).unwrap();
        let store = CachedIntKeys::new(MemoryIntKeyStore::new(policy), config(), clock);
        block_on(store.push(&imsi(1), KeyId::from_u32(1), &key(1), t(0), t(0))).unwrap();
        assert_eq!(served(&store, 1, 1, t(0)), Some([1; 32]));
        block_on(store.push(&imsi(1), KeyId::from_u32(2), &key(2), t(1), t(1))).unwrap();
        assert_eq!(served(&store, 1, 1, t(1)), None);
        // A replacement (same key id, new octets) pushed here is served here at once.
        block_on(store.push(&imsi(1), KeyId::from_u32(2), &key(3), t(2), t(2))).unwrap();
        assert_eq!(served(&store, 1, 2, t(2)), Some([3; 32]));
        block_on(store.remove_ue(&imsi(1))).unwrap();
        assert_eq!(served(&store, 1, 2, t(2)), None);
    }

    #[test]
    fn a_cached_key_is_not_served_past_its_own_expiry() {
        let clock = ManualClock::new();
        let policy = RetentionPolicy::new(4, Duration::from_secs(10)).unwrap();
        let store = CachedIntKeys::new(MemoryIntKeyStore::new(policy), config(), clock);
        block_on(store.push(&imsi(1), KeyId::from_u32(1), &key(1), t(0), t(0))).unwrap();
        assert_eq!(served(&store, 1, 1, t(9)), Some([1; 32]));
        // The cache clock has not moved: the entry is fresh, the key is not live.
        assert_eq!(served(&store, 1, 1, t(10)), None);
    }

    #[test]
    fn ttl_zero_passes_every_read_through() {
        let clock = ManualClock::new();
        let policy = RetentionPolicy::new(1, Duration::from_secs(3600)).unwrap();
        let store =
            CachedIntKeys::new(MemoryIntKeyStore::new(policy), CacheConfig::DISABLED, clock);
        block_on(store.push(&imsi(1), KeyId::from_u32(1), &key(1), t(0), t(0))).unwrap();
        assert_eq!(served(&store, 1, 1, t(0)), Some([1; 32]));
        block_on(
            store
                .inner()
                .push(&imsi(1), KeyId::from_u32(2), &key(2), t(1), t(1)),
        )
        .unwrap();
        assert_eq!(served(&store, 1, 1, t(1)), None);
        assert_eq!(store.cached(), 0);
    }

    #[test]
    fn the_key_cache_is_bounded() {
        let clock = ManualClock::new();
        let store = CachedIntKeys::new(
            MemoryIntKeyStore::default(),
            CacheConfig::new(TTL, 100).unwrap(),
            clock,
        );
        for ue in 0..1000 {
            block_on(store.push(&imsi(ue), KeyId::from_u32(1), &key(1), t(0), t(0))).unwrap();
            assert_eq!(served(&store, ue, 1, t(0)), Some([1; 32]));
        }
        let held = store.cached();
        assert!(held <= 100, "{held} UEs cached");
        assert!(
            held >= 50,
            "{held} UEs cached: the cache keeps almost nothing"
        );
        // Every key is still served (from the backend once evicted here).
        for ue in 0..1000 {
            assert_eq!(served(&store, ue, 1, t(0)), Some([1; 32]));
        }
    }

    #[test]
    fn shards_never_hold_more_than_the_capacity_in_all() {
        for capacity in [1, 2, 3, 7, 8, 9, 100, 511, 100_000] {
            let map: BoundedMap<u64, ()> = BoundedMap::new(capacity);
            assert!(map.shards.len().is_power_of_two());
            assert!(map.shards.len() * map.per_shard <= capacity, "{capacity}");
            assert!(
                map.shards.len() * map.per_shard * 10 >= capacity * 8,
                "{capacity}"
            );
            for k in 0..(capacity as u64 * 3) {
                let ((), ticket) = map.read(&k, |_| ());
                map.fill(k, ticket, |_| ());
            }
            assert!(map.len() <= capacity, "{capacity}: {} held", map.len());
        }
    }

    #[test]
    fn a_fill_begun_before_an_invalidation_stores_nothing() {
        let map: BoundedMap<u64, u64> = BoundedMap::new(16);
        let ((), ticket) = map.read(&7, |_| ());
        map.invalidate(&7);
        map.fill(7, ticket, |_| 1);
        assert_eq!(map.read(&7, |v| v.copied()).0, None);
        let ((), ticket) = map.read(&7, |_| ());
        map.fill(7, ticket, |_| 2);
        assert_eq!(map.read(&7, |v| v.copied()).0, Some(2));
    }

    /// A key store that runs a hook after its `get` has read, before it returns: the hook
    /// pushes through the cache, so the read's result is stale when the cache would store it.
    struct WriteDuringRead {
        inner: MemoryIntKeyStore,
        hook: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl IntKeyStore for WriteDuringRead {
        fn retention(&self) -> RetentionPolicy {
            self.inner.retention()
        }
        async fn push(
            &self,
            imsi: &Imsi,
            key_id: KeyId,
            key: &E2mIntKey,
            created: Timestamp,
            now: Timestamp,
        ) -> Result<PushOutcome, StoreError> {
            self.inner.push(imsi, key_id, key, created, now).await
        }
        async fn get(
            &self,
            imsi: &Imsi,
            key_id: KeyId,
            now: Timestamp,
        ) -> Result<Option<HeldKey>, StoreError> {
            let found = self.inner.get(imsi, key_id, now).await;
            let hook = self.hook.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
            found
        }
        async fn latest(&self, imsi: &Imsi, now: Timestamp) -> Result<Option<HeldKey>, StoreError> {
            self.inner.latest(imsi, now).await
        }
        async fn held(&self, imsi: &Imsi, now: Timestamp) -> Result<Vec<KeyInfo>, StoreError> {
            self.inner.held(imsi, now).await
        }
        async fn remove_ue(&self, imsi: &Imsi) -> Result<usize, StoreError> {
            self.inner.remove_ue(imsi).await
        }
        async fn sweep(&self, now: Timestamp) -> Result<Vec<(Imsi, KeyInfo)>, StoreError> {
            self.inner.sweep(now).await
        }
    }

    #[test]
    fn a_read_overtaken_by_a_push_through_the_cache_is_not_cached() {
        let policy = RetentionPolicy::new(1, Duration::from_secs(3600)).unwrap();
        let backend = WriteDuringRead {
            inner: MemoryIntKeyStore::new(policy),
            hook: std::sync::Mutex::new(None),
        };
        let store = Arc::new(CachedIntKeys::new(backend, config(), ManualClock::new()));
        block_on(store.push(&imsi(1), KeyId::from_u32(1), &key(1), t(0), t(0))).unwrap();
        let during = store.clone();
        *store.inner().hook.lock().unwrap() = Some(Box::new(move || {
            // Evicts key 1 (N = 1) while the read of key 1 is on its way back.
            block_on(during.push(&imsi(1), KeyId::from_u32(2), &key(2), t(1), t(1))).unwrap();
        }));
        // The read itself began before the push: it may return the old key ...
        assert_eq!(served(&*store, 1, 1, t(1)), Some([1; 32]));
        // ... but it must not leave it cached: the push was acknowledged through this cache.
        assert_eq!(served(&*store, 1, 1, t(1)), None);
        assert_eq!(served(&*store, 1, 2, t(1)), Some([2; 32]));
        // The hook holds a handle to the store; break the cycle.
        drop(store.inner().hook.lock().unwrap().take());
    }

    #[test]
    fn a_session_ended_behind_the_cache_is_served_until_the_ttl_and_never_after() {
        let clock = Arc::new(ManualClock::new());
        let store = CachedSessions::new(MemorySessionStore::default(), config(), clock.clone());
        let emse = EmseId::new("emse-a").unwrap();
        let (id, info) = block_on(store.create(&emse, t(0))).unwrap();
        assert_eq!(block_on(store.get(&id, t(0))).unwrap(), Some(info.clone()));
        // Ended through another instance.
        block_on(store.inner().remove(&id)).unwrap();
        clock.advance(TTL / 2);
        assert_eq!(block_on(store.get(&id, t(0))).unwrap(), Some(info));
        clock.advance(TTL / 2);
        assert_eq!(block_on(store.get(&id, t(0))).unwrap(), None);
        // Created through another instance: found at once.
        let (other, _) = block_on(store.inner().create(&emse, t(1))).unwrap();
        assert!(block_on(store.get(&other, t(1))).unwrap().is_some());
        // Ended through this one: gone at once.
        block_on(store.remove(&other)).unwrap();
        assert_eq!(block_on(store.get(&other, t(1))).unwrap(), None);
    }

    #[test]
    fn evicting_an_emses_oldest_session_through_the_cache_drops_that_emses_entries_only() {
        let clock = ManualClock::new();
        let store = CachedSessions::new(MemorySessionStore::default(), config(), clock);
        let (a, b) = (
            EmseId::new("emse-a").unwrap(),
            EmseId::new("emse-b").unwrap(),
        );
        let (a_old, _) = block_on(store.create(&a, t(0))).unwrap();
        let (a_new, _) = block_on(store.create(&a, t(1))).unwrap();
        let (b_only, _) = block_on(store.create(&b, t(0))).unwrap();
        for id in [&a_old, &a_new, &b_only] {
            assert!(block_on(store.get(id, t(2))).unwrap().is_some());
        }
        assert_eq!(store.cache.len(), 3);
        let evicted = block_on(store.evict_oldest(&a)).unwrap().unwrap();
        assert_eq!(evicted.created, t(0));
        // The evicted session is not served from the cache, not even within the TTL; the
        // other EMSE's entry stays cached.
        assert_eq!(block_on(store.get(&a_old, t(2))).unwrap(), None);
        assert_eq!(store.cache.len(), 1);
        assert!(block_on(store.get(&a_new, t(2))).unwrap().is_some());
        assert!(block_on(store.get(&b_only, t(2))).unwrap().is_some());
    }

    #[test]
    fn a_cached_session_is_not_served_past_its_expiry() {
        let clock = ManualClock::new();
        let policy = SessionPolicy::new(Duration::from_secs(5), 4, 4).unwrap();
        let store = CachedSessions::new(MemorySessionStore::new(policy), config(), clock);
        let emse = EmseId::new("emse-a").unwrap();
        let (id, _) = block_on(store.create(&emse, t(0))).unwrap();
        assert!(block_on(store.get(&id, t(4))).unwrap().is_some());
        assert_eq!(block_on(store.get(&id, t(5))).unwrap(), None);
    }

    #[test]
    fn a_mapping_changed_behind_the_cache_is_served_until_the_ttl_and_never_after() {
        let clock = Arc::new(ManualClock::new());
        let map = CachedIdentities::new(MemoryIdentityMap::new(), config(), clock.clone());
        let emse = EmseId::new("emse-a").unwrap();
        let app = AppIdentity::new("ue@example.com").unwrap();
        block_on(map.provision(&emse, &app, &imsi(1))).unwrap();
        assert_eq!(block_on(map.resolve(&emse, &app)).unwrap(), Some(imsi(1)));
        block_on(map.inner().provision(&emse, &app, &imsi(2))).unwrap();
        clock.advance(TTL - Duration::from_millis(1));
        assert_eq!(block_on(map.resolve(&emse, &app)).unwrap(), Some(imsi(1)));
        clock.advance(Duration::from_millis(1));
        assert_eq!(block_on(map.resolve(&emse, &app)).unwrap(), Some(imsi(2)));
        // Removed behind the cache: served until the TTL, then gone.
        block_on(map.inner().remove(&emse, &app)).unwrap();
        assert_eq!(block_on(map.resolve(&emse, &app)).unwrap(), Some(imsi(2)));
        clock.advance(TTL);
        assert_eq!(block_on(map.resolve(&emse, &app)).unwrap(), None);
        // Provisioned behind the cache: a miss goes to the backend, found at once.
        block_on(map.inner().provision(&emse, &app, &imsi(3))).unwrap();
        assert_eq!(block_on(map.resolve(&emse, &app)).unwrap(), Some(imsi(3)));
        // Removed through the cache (the EMSE taken out of service): gone at once.
        block_on(map.remove_emse(&emse)).unwrap();
        assert_eq!(block_on(map.resolve(&emse, &app)).unwrap(), None);
    }

    /// An identity map that runs a hook after its `resolve` has read, before it returns.
    struct ProvisionDuringRead {
        inner: MemoryIdentityMap,
        hook: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl IdentityMap for ProvisionDuringRead {
        async fn provision(
            &self,
            emse: &EmseId,
            app: &AppIdentity,
            imsi: &Imsi,
        ) -> Result<Provisioned, StoreError> {
            self.inner.provision(emse, app, imsi).await
        }
        async fn resolve(
            &self,
            emse: &EmseId,
            app: &AppIdentity,
        ) -> Result<Option<Imsi>, StoreError> {
            let found = self.inner.resolve(emse, app).await;
            let hook = self.hook.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
            found
        }
        async fn remove(
            &self,
            emse: &EmseId,
            app: &AppIdentity,
        ) -> Result<Option<Imsi>, StoreError> {
            self.inner.remove(emse, app).await
        }
        async fn remove_emse(&self, emse: &EmseId) -> Result<usize, StoreError> {
            self.inner.remove_emse(emse).await
        }
        async fn provision_all(&self, rows: Vec<IdentityRow>) -> Result<ImportSummary, StoreError> {
            self.inner.provision_all(rows).await
        }
    }

    /// The IMSI and key octets `resolve_key` found (`None`: unknown identity).
    fn fetched(
        map: &impl IdentityMap,
        keys: &impl IntKeyStore,
        app: &AppIdentity,
        id: u32,
    ) -> Option<(Imsi, Option<[u8; 32]>)> {
        let emse = EmseId::new("emse-a").unwrap();
        match block_on(map.resolve_key(keys, &emse, app, KeyId::from_u32(id), t(1))).unwrap() {
            IdentityKey::UnknownIdentity => None,
            IdentityKey::NotHeld { imsi } => Some((imsi, None)),
            IdentityKey::Held { imsi, key } => Some((imsi, Some(*key.key.expose_secret()))),
        }
    }

    #[test]
    fn resolve_key_caches_the_mapping_and_keeps_the_staleness_bound() {
        let clock = Arc::new(ManualClock::new());
        let map = CachedIdentities::new(MemoryIdentityMap::new(), config(), clock.clone());
        let keys = CachedIntKeys::new(MemoryIntKeyStore::default(), config(), clock.clone());
        let emse = EmseId::new("emse-a").unwrap();
        let app = AppIdentity::new("ue@example.com").unwrap();
        block_on(map.provision(&emse, &app, &imsi(1))).unwrap();
        for ue in [1, 2] {
            block_on(keys.push(&imsi(ue), KeyId::from_u32(7), &key(ue as u8), t(0), t(0))).unwrap();
        }
        assert_eq!(
            fetched(&map, &keys, &app, 7),
            Some((imsi(1), Some([1; 32])))
        );
        assert_eq!(map.cached(), 1);
        // Re-provisioned behind the cache: the cached mapping goes on to the key store
        // until the TTL has passed since it was read, and never after.
        block_on(map.inner().provision(&emse, &app, &imsi(2))).unwrap();
        clock.advance(TTL - Duration::from_nanos(1));
        assert_eq!(
            fetched(&map, &keys, &app, 7),
            Some((imsi(1), Some([1; 32])))
        );
        assert_eq!(fetched(&map, &keys, &app, 8), Some((imsi(1), None)));
        clock.advance(Duration::from_nanos(1));
        assert_eq!(
            fetched(&map, &keys, &app, 7),
            Some((imsi(2), Some([2; 32])))
        );
        // Re-provisioned through the cache: followed at once.
        block_on(map.provision(&emse, &app, &imsi(1))).unwrap();
        assert_eq!(
            fetched(&map, &keys, &app, 7),
            Some((imsi(1), Some([1; 32])))
        );
        // An unknown identity is not cached (no negative entries): provisioned behind the
        // cache, it is found at once.
        let other = AppIdentity::new("other@example.com").unwrap();
        assert_eq!(fetched(&map, &keys, &other, 7), None);
        block_on(map.inner().provision(&emse, &other, &imsi(2))).unwrap();
        assert_eq!(
            fetched(&map, &keys, &other, 7),
            Some((imsi(2), Some([2; 32])))
        );
    }

    #[test]
    fn a_resolve_key_overtaken_by_a_provision_through_the_cache_is_not_cached() {
        let backend = ProvisionDuringRead {
            inner: MemoryIdentityMap::new(),
            hook: std::sync::Mutex::new(None),
        };
        let map = Arc::new(CachedIdentities::new(backend, config(), ManualClock::new()));
        let keys = MemoryIntKeyStore::default();
        let emse = EmseId::new("emse-a").unwrap();
        let app = AppIdentity::new("ue@example.com").unwrap();
        block_on(map.provision(&emse, &app, &imsi(1))).unwrap();
        let during = map.clone();
        let (e, a) = (emse.clone(), app.clone());
        *map.inner().hook.lock().unwrap() = Some(Box::new(move || {
            block_on(during.provision(&e, &a, &imsi(2))).unwrap();
        }));
        // The read began before the provisioning: it may answer the old IMSI ...
        assert_eq!(fetched(&*map, &keys, &app, 7), Some((imsi(1), None)));
        // ... but must not leave it cached.
        assert_eq!(map.cached(), 0);
        assert_eq!(fetched(&*map, &keys, &app, 7), Some((imsi(2), None)));
        drop(map.inner().hook.lock().unwrap().take());
    }

    #[test]
    fn debug_shows_no_key() {
        let store = CachedIntKeys::new(MemoryIntKeyStore::default(), config(), ManualClock::new());
        block_on(store.push(&imsi(1), KeyId::from_u32(1), &key(0xab), t(0), t(0))).unwrap();
        assert!(served(&store, 1, 1, t(0)).is_some());
        let text = format!("{store:?}");
        assert!(!text.to_lowercase().contains("abab"), "{text}");
        assert!(!text.contains("171"), "{text}");
    }
}
