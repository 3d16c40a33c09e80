//! The AF composed: its [`AkmaResolver`] asks the AAnF (or the NEF) for K_AF through any
//! [`AkmaKeyFetcher`] and keeps two small memories of the answers, with the rules of the
//! e2m side's EMKS key source:
//!
//! - a key cache: an entry lives at most until K_AF's expiry as the AAnF gave it (which
//!   the AAnF bounds by K_AKMA's lifetime, TS 33.535 §6.3) and at most
//!   [`AkmaKeySource::MAX_TTL`]; at most `capacity` entries, expired ones first to go, then
//!   the one that expires soonest; dropped keys are zeroized ([`Kaf`] is);
//! - a memory of "no key" answers ([`AkmaKeySource::NEGATIVE_TTL`], 2 s): the AAnF answered
//!   that it has no AKMA context for an A-KID (TS 29.535: 204 No Content, or a refusal),
//!   so that made-up A-KIDs repeated by any number of sources cost the AAnF at most one
//!   request per A-KID every 2 s (the DTLS server also bounds the fetches per source
//!   address). Short, because a UE that registered its K_AKMA just after its first try
//!   must be served on its next one. Bounded: the oldest answer is forgotten first.
//!
//! [`AkmaKeySource::forget`] drops both for one A-KID: the AF calls it when the AAnF's
//! AKMA service-disable notification (`Naanf_AKMA_ServiceDisableNotification`) arrives.
//! Time is an argument of both memories; the source reads the clocks.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2m_kdf::Kaf;
use e2m_keyid::akma::AKid;

use crate::ResolveError;
use crate::akma::AkmaResolver;

/// K_AF as the AAnF (or NEF) gave it: the key and when it expires.
#[non_exhaustive]
pub struct AfKey {
    /// K_AF for this AF's AF_ID.
    pub kaf: Kaf,
    /// Unix seconds after which K_AF must not be used (TS 29.535 `expiry`).
    pub expires_unix: u64,
}

impl AfKey {
    /// K_AF and its expiry.
    pub fn new(kaf: Kaf, expires_unix: u64) -> AfKey {
        AfKey { kaf, expires_unix }
    }
}

impl core::fmt::Debug for AfKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AfKey")
            .field("expires_unix", &self.expires_unix)
            .finish_non_exhaustive()
    }
}

/// One request to the key server for K_AF (Naanf_AKMA_ApplicationKey_Get, or the NEF's
/// `3gpp-akma` retrieve): what the AAnF or NEF client implements. The fetcher knows its
/// own AF_ID; the key server derives K_AF for the AF it authenticated (TS 33.535 §6.3).
pub trait AkmaKeyFetcher: Send + Sync + 'static {
    /// K_AF for `a_kid`.
    ///
    /// # Errors
    /// [`ResolveError::UnknownIdentity`] when the key server has no AKMA context for the
    /// A-KID or refuses this AF (both are remembered for
    /// [`AkmaKeySource::NEGATIVE_TTL`]), [`ResolveError::Unavailable`] when it cannot be
    /// asked (never remembered).
    fn fetch_kaf(&self, a_kid: &AKid) -> impl Future<Output = Result<AfKey, ResolveError>> + Send;
}

struct Cached {
    kaf: Kaf,
    /// Unix seconds after which the entry is dead.
    until: u64,
}

/// The positive memory: K_AF per A-KID.
struct KeyCache {
    entries: HashMap<AKid, Cached>,
    capacity: usize,
}

impl KeyCache {
    fn get(&mut self, a_kid: &AKid, now_unix: u64) -> Option<Kaf> {
        match self.entries.get(a_kid) {
            Some(entry) if now_unix < entry.until => Some(entry.kaf.copy_secret()),
            Some(_) => {
                self.entries.remove(a_kid);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, a_kid: AKid, kaf: Kaf, expires_unix: u64, now_unix: u64) {
        let until = expires_unix.min(now_unix.saturating_add(AkmaKeySource::<()>::MAX_TTL_SECS));
        if self.capacity == 0 || until <= now_unix {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&a_kid) {
            self.entries.retain(|_, e| now_unix < e.until);
            if self.entries.len() >= self.capacity {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.until)
                    .map(|(k, _)| *k);
                if let Some(a_kid) = soonest {
                    self.entries.remove(&a_kid);
                }
            }
        }
        self.entries.insert(a_kid, Cached { kaf, until });
    }
}

/// The negative memory: "no key for this A-KID" until an instant, oldest forgotten first.
struct NoKeys {
    entries: HashMap<AKid, (ResolveError, Instant)>,
    /// A-KIDs in the order they were written; a record whose instant is not its entry's is
    /// stale and skipped.
    order: VecDeque<(AKid, Instant)>,
    capacity: usize,
}

impl NoKeys {
    fn get(&self, a_kid: &AKid, now: Instant) -> Option<ResolveError> {
        let (error, until) = self.entries.get(a_kid)?;
        (now < *until).then(|| error.clone())
    }

    fn insert(&mut self, a_kid: AKid, error: ResolveError, now: Instant, ttl: Duration) {
        if self.capacity == 0 || matches!(error, ResolveError::Unavailable(_)) {
            return;
        }
        // Every answer lives `ttl`: a record is current while its entry's end is its
        // instant + `ttl`; what was written before `now - ttl` is dead.
        let current = |entries: &HashMap<AKid, (ResolveError, Instant)>, k: &AKid, t: Instant| {
            entries.get(k).is_some_and(|(_, until)| *until == t + ttl)
        };
        while let Some(&(old, written)) = self.order.front() {
            let live = current(&self.entries, &old, written);
            if live && now < written + ttl {
                break;
            }
            if live {
                self.entries.remove(&old);
            }
            self.order.pop_front();
        }
        while self.entries.len() >= self.capacity && !self.entries.contains_key(&a_kid) {
            let Some((old, written)) = self.order.pop_front() else {
                break;
            };
            if current(&self.entries, &old, written) {
                self.entries.remove(&old);
            }
        }
        if current(&self.entries, &a_kid, now) {
            // Written at this instant already: its order record says so.
            self.entries.insert(a_kid, (error, now + ttl));
            return;
        }
        self.entries.insert(a_kid, (error, now + ttl));
        self.order.push_back((a_kid, now));
        if self.order.len() > 2 * self.capacity.max(1) {
            let entries = &self.entries;
            self.order.retain(|(k, t)| current(entries, k, *t));
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another task panicked mid-update of a map whose every
    // state is valid; keep serving.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The AF's [`AkmaResolver`]: its memories (module docs), then the key server through `F`.
pub struct AkmaKeySource<F> {
    fetcher: F,
    keys: Mutex<KeyCache>,
    no_keys: Mutex<NoKeys>,
    fetches: AtomicU64,
}

impl<F> AkmaKeySource<F> {
    /// The longest a K_AF is kept, whatever its own expiry.
    pub const MAX_TTL: Duration = Duration::from_secs(Self::MAX_TTL_SECS);
    const MAX_TTL_SECS: u64 = 300;

    /// How long a "no key" answer is believed.
    pub const NEGATIVE_TTL: Duration = Duration::from_secs(2);

    /// A-KIDs remembered as "no key" by [`AkmaKeySource::new`] (a few hundred KiB at most).
    pub const DEFAULT_NEGATIVE_CAPACITY: usize = 4096;

    /// A source fetching through `fetcher`, caching at most `cache_capacity` keys (0
    /// disables the key cache) and [`Self::DEFAULT_NEGATIVE_CAPACITY`] "no key" answers.
    pub fn new(fetcher: F, cache_capacity: usize) -> Self {
        Self::with_capacities(fetcher, cache_capacity, Self::DEFAULT_NEGATIVE_CAPACITY)
    }

    /// As [`Self::new`], with `negative_capacity` "no key" answers (0 disables them).
    pub fn with_capacities(fetcher: F, cache_capacity: usize, negative_capacity: usize) -> Self {
        AkmaKeySource {
            fetcher,
            keys: Mutex::new(KeyCache {
                entries: HashMap::new(),
                capacity: cache_capacity,
            }),
            no_keys: Mutex::new(NoKeys {
                entries: HashMap::new(),
                order: VecDeque::new(),
                capacity: negative_capacity,
            }),
            fetches: AtomicU64::new(0),
        }
    }

    /// The fetcher (the AAnF or NEF client).
    pub fn fetcher(&self) -> &F {
        &self.fetcher
    }

    /// Requests sent to the key server so far (misses of both memories).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// K_AF cached for `a_kid` at `now_unix`, if any.
    fn cached(
        &self,
        a_kid: &AKid,
        now_unix: u64,
        now: Instant,
    ) -> Option<Result<Kaf, ResolveError>> {
        if let Some(kaf) = lock(&self.keys).get(a_kid, now_unix) {
            return Some(Ok(kaf));
        }
        lock(&self.no_keys).get(a_kid, now).map(Err)
    }

    /// Forgets everything about `a_kid` (the AAnF's AKMA service-disable notification for
    /// it arrived, or the AF learned otherwise that its context is gone). Returns whether
    /// a key was dropped.
    pub fn forget(&self, a_kid: &AKid) -> bool {
        lock(&self.no_keys).entries.remove(a_kid);
        lock(&self.keys).entries.remove(a_kid).is_some()
    }

    /// Keys cached (some may have expired).
    pub fn cached_keys(&self) -> usize {
        lock(&self.keys).entries.len()
    }
}

impl<F: AkmaKeyFetcher> AkmaResolver for AkmaKeySource<F> {
    fn resolve_local(&self, a_kid: &AKid) -> Option<Result<Kaf, ResolveError>> {
        self.cached(a_kid, unix_now(), Instant::now())
    }

    async fn resolve(&self, a_kid: &AKid) -> Result<Kaf, ResolveError> {
        if let Some(answer) = self.resolve_local(a_kid) {
            return answer;
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetcher.fetch_kaf(a_kid).await {
            Ok(AfKey { kaf, expires_unix }) => {
                lock(&self.keys).insert(*a_kid, kaf.copy_secret(), expires_unix, unix_now());
                Ok(kaf)
            }
            Err(error) => {
                lock(&self.no_keys).insert(
                    *a_kid,
                    error.clone(),
                    Instant::now(),
                    Self::NEGATIVE_TTL,
                );
                Err(error)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn a_kid(n: u32) -> AKid {
        AKid::parse(&format!(
            "rid0.atid{n:064x}@5gc.mnc093.mcc208.3gppnetwork.org"
        ))
        .unwrap()
    }

    fn key(b: u8) -> Kaf {
        Kaf::from_array([b; 32])
    }

    #[test]
    fn keys_expire_and_are_bounded() {
        let mut cache = KeyCache {
            entries: HashMap::new(),
            capacity: 2,
        };
        cache.insert(a_kid(1), key(1), 1_000, 900);
        assert!(cache.get(&a_kid(1), 999) == Some(key(1)));
        assert!(
            cache.get(&a_kid(1), 1_000).is_none(),
            "expired at its expiry"
        );
        // MAX_TTL bounds a far expiry.
        cache.insert(a_kid(2), key(2), u64::MAX, 0);
        assert!(
            cache
                .get(&a_kid(2), AkmaKeySource::<()>::MAX_TTL_SECS)
                .is_none()
        );
        // An already expired key is not kept.
        cache.insert(a_kid(9), key(9), 10, 10);
        assert!(cache.get(&a_kid(9), 0).is_none());
        // Full: the one that expires soonest goes.
        cache.insert(a_kid(3), key(3), 250, 0);
        cache.insert(a_kid(4), key(4), 150, 0);
        cache.insert(a_kid(5), key(5), 200, 0);
        assert_eq!(cache.entries.len(), 2);
        assert!(cache.get(&a_kid(4), 1).is_none());
        assert!(cache.get(&a_kid(3), 1).is_some() && cache.get(&a_kid(5), 1).is_some());
    }

    #[test]
    fn no_key_answers_are_believed_for_the_ttl_and_bounded() {
        let ttl = Duration::from_secs(2);
        let t0 = Instant::now();
        let mut no = NoKeys {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: 3,
        };
        no.insert(a_kid(1), ResolveError::UnknownIdentity, t0, ttl);
        assert_eq!(
            no.get(&a_kid(1), t0 + ttl - Duration::from_millis(1)),
            Some(ResolveError::UnknownIdentity)
        );
        assert_eq!(no.get(&a_kid(1), t0 + ttl), None, "expired at the TTL");
        // "Unavailable" is never remembered.
        no.insert(a_kid(2), ResolveError::Unavailable("down".into()), t0, ttl);
        assert_eq!(no.get(&a_kid(2), t0), None);
        // Bounded: the newest three are kept, and the order queue stays small.
        for n in 10..30u32 {
            let at = t0 + Duration::from_millis(u64::from(n));
            no.insert(a_kid(n), ResolveError::UnknownIdentity, at, ttl);
            assert!(no.entries.len() <= 3);
            // Rewrites of one A-KID leave stale order records behind.
            no.insert(a_kid(n), ResolveError::KeyNotHeld, at, ttl);
        }
        assert!(no.order.len() <= 3, "{}", no.order.len());
        for n in 27..30u32 {
            assert_eq!(no.get(&a_kid(n), t0), Some(ResolveError::KeyNotHeld));
        }
        assert_eq!(no.get(&a_kid(10), t0), None);
        // Expired answers leave on the next write.
        no.insert(a_kid(99), ResolveError::UnknownIdentity, t0 + 2 * ttl, ttl);
        assert_eq!(no.entries.len(), 1);
        // Capacity 0 remembers nothing.
        let mut none = NoKeys {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: 0,
        };
        none.insert(a_kid(1), ResolveError::UnknownIdentity, t0, ttl);
        assert!(none.entries.is_empty());
    }

    /// A key server that knows A-KID 1 and counts its requests.
    struct Counting {
        calls: AtomicUsize,
        down: bool,
    }

    impl AkmaKeyFetcher for Counting {
        async fn fetch_kaf(&self, asked: &AKid) -> Result<AfKey, ResolveError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down {
                return Err(ResolveError::Unavailable("connection refused".into()));
            }
            if *asked == a_kid(1) {
                Ok(AfKey::new(key(7), unix_now() + 3_600))
            } else {
                Err(ResolveError::UnknownIdentity)
            }
        }
    }

    fn block_on<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn the_source_asks_once_per_a_kid_and_forgets_on_notification() {
        let source = AkmaKeySource::new(
            Counting {
                calls: AtomicUsize::new(0),
                down: false,
            },
            16,
        );
        assert!(source.resolve_local(&a_kid(1)).is_none());
        for _ in 0..3 {
            assert!(block_on(source.resolve(&a_kid(1))).unwrap() == key(7));
            assert_eq!(
                block_on(source.resolve(&a_kid(2))).err(),
                Some(ResolveError::UnknownIdentity)
            );
        }
        assert_eq!(source.fetches(), 2, "one request per A-KID");
        assert!(matches!(source.resolve_local(&a_kid(1)), Some(Ok(_))));
        assert_eq!(
            source.resolve_local(&a_kid(2)).map(|r| r.err()),
            Some(Some(ResolveError::UnknownIdentity))
        );
        // The service-disable notification: both memories forget.
        assert!(source.forget(&a_kid(1)));
        assert!(!source.forget(&a_kid(2)));
        assert!(source.resolve_local(&a_kid(1)).is_none());
        assert!(source.resolve_local(&a_kid(2)).is_none());
        assert_eq!(source.cached_keys(), 0);
    }

    #[test]
    fn an_unreachable_key_server_is_asked_again() {
        let source = AkmaKeySource::new(
            Counting {
                calls: AtomicUsize::new(0),
                down: true,
            },
            16,
        );
        for _ in 0..3 {
            assert!(matches!(
                block_on(source.resolve(&a_kid(1))),
                Err(ResolveError::Unavailable(_))
            ));
        }
        assert_eq!(source.fetcher().calls.load(Ordering::SeqCst), 3);
    }
}
