//! The EMSE composed: its PSK resolver asks the EMKS for each UE's `e2m_key` (seed
//! 6.x.2.3 steps 5–7) and keeps a small cache of the answers.
//!
//! The cache exists because a UE that reconnects (a new DTLS session on the same PSK: seed
//! "Key refresh" 1) should not cost a round trip to the EMKS each time. Its rules keep it
//! from ever serving a key the EMKS would no longer serve:
//! - an entry lives at most until the key's `expires` (which the EMKS bounds by the
//!   intermediate key's lifetime) and at most [`KeyCache::MAX_TTL`];
//! - any notification about a UE (new key available, key retired) drops all of that UE's
//!   entries, so the next handshake asks the EMKS again;
//! - at most `capacity` entries: when full, expired entries go first, then the one that
//!   expires soonest. Dropped keys are zeroized ([`E2mKey`] is).
//!
//! Beside it, a [`NegativeCache`] remembers for [`NegativeCache::TTL`] (2 s) that the EMKS
//! had no key for an identity (`ue-unknown`: for the application identity whatever the
//! key id; `key-not-available`: for that key id), so that made-up identities repeated by
//! any number of sources cost the EMKS at most one fetch per identity every 2 s (issue 16
//! item 3; the DTLS server also bounds the fetches per source address). Short, because a
//! key pushed after the EMSE asked must still be found promptly: a UE that raced its own
//! key's push connects on its next attempt 2 s later at worst, and at once when the EMKS's
//! `key-available` notification arrives (it drops the UE's negative entries as it drops
//! its keys). Bounded: at most [`NegativeCache::DEFAULT_CAPACITY`] identities, the oldest
//! forgotten first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2m_kdf::E2mKey;
use e2m_keyid::{AppIdentity, KeyId, PskIdentity};
use e2m_msg::{Notification, ProblemCause, SessionId, UeRef};

use crate::{PskResolver, ResolveError};
use e2m_https::client::{EmksClient, EmseSession};

struct CachedKey {
    key: E2mKey,
    /// Unix seconds after which the entry is dead.
    until: u64,
}

/// The EMSE's bounded key cache, keyed by (application identity, key id).
pub struct KeyCache {
    entries: Mutex<HashMap<(AppIdentity, KeyId), CachedKey>>,
    capacity: usize,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl KeyCache {
    /// The longest an entry lives, whatever the key's own expiry.
    pub const MAX_TTL: Duration = Duration::from_secs(300);

    /// An empty cache holding at most `capacity` keys (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        KeyCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(AppIdentity, KeyId), CachedKey>> {
        // A poisoned lock only means another task panicked mid-update of a map whose every
        // state is valid; keep serving.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A copy of the cached key, if one is live.
    pub fn get(&self, identity: &AppIdentity, key_id: KeyId, now_unix: u64) -> Option<E2mKey> {
        let mut entries = self.lock();
        let slot = (identity.clone(), key_id);
        match entries.get(&slot) {
            Some(entry) if now_unix < entry.until => Some(entry.key.copy_secret()),
            Some(_) => {
                entries.remove(&slot);
                None
            }
            None => None,
        }
    }

    /// Caches `key` until `expires_unix` (bounded by [`Self::MAX_TTL`]).
    pub fn insert(
        &self,
        identity: AppIdentity,
        key_id: KeyId,
        key: E2mKey,
        expires_unix: u64,
        now_unix: u64,
    ) {
        let until = expires_unix.min(now_unix.saturating_add(Self::MAX_TTL.as_secs()));
        if self.capacity == 0 || until <= now_unix {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&(identity.clone(), key_id)) {
            entries.retain(|_, e| now_unix < e.until);
            if entries.len() >= self.capacity {
                let soonest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.until)
                    .map(|(k, _)| k.clone());
                if let Some(slot) = soonest {
                    entries.remove(&slot);
                }
            }
        }
        entries.insert((identity, key_id), CachedKey { key, until });
    }

    /// Drops every entry of `identity`; returns how many.
    pub fn forget_ue(&self, identity: &AppIdentity) -> usize {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|(id, _), _| id != identity);
        before - entries.len()
    }

    /// Live and dead entries currently held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Key ids remembered as not held, per identity: a prober varying the key id of one
/// identity gets a fetch for each, which the DTLS server's per-source budget bounds.
const NOT_HELD_PER_IDENTITY: usize = 8;

/// What the EMKS said about one application identity, and until when it is believed.
#[derive(Debug)]
struct NoKey {
    /// `ue-unknown`: no key id of this identity is served.
    unknown_until: Option<Instant>,
    /// `key-not-available` for these key ids.
    not_held: Vec<(KeyId, Instant)>,
    /// When the entry was last written (its place in the eviction order).
    written: Instant,
}

#[derive(Debug, Default)]
struct NegativeState {
    entries: HashMap<AppIdentity, NoKey>,
    /// Identities in the order they were written, for eviction; a record whose time is
    /// not its entry's `written` is stale and skipped.
    order: VecDeque<(AppIdentity, Instant)>,
}

/// The EMSE's short memory of "the EMKS has no key for this" (module docs): answers
/// [`ResolveError::UnknownIdentity`] or [`ResolveError::KeyNotHeld`] without a fetch for
/// [`Self::TTL`] after the EMKS gave them. Time is an argument.
#[derive(Debug)]
pub struct NegativeCache {
    state: Mutex<NegativeState>,
    capacity: usize,
}

impl NegativeCache {
    /// How long an answer is believed: long enough that one fetch answers a burst of
    /// handshakes naming the same identity, short enough that a key pushed later is found
    /// on the UE's next attempt (module docs).
    pub const TTL: Duration = Duration::from_secs(2);

    /// Identities remembered by [`EmksKeySource::new`]'s cache (a few hundred KiB at most).
    pub const DEFAULT_CAPACITY: usize = 4096;

    /// An empty cache of at most `capacity` identities (0 disables it).
    pub fn new(capacity: usize) -> Self {
        NegativeCache {
            state: Mutex::new(NegativeState::default()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NegativeState> {
        // A poisoned lock only means another task panicked mid-update; every state of the
        // map is valid.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The remembered answer for (`identity`, `key_id`) at `now`, if any is still believed.
    pub fn get(&self, identity: &AppIdentity, key_id: KeyId, now: Instant) -> Option<ResolveError> {
        let state = self.lock();
        let entry = state.entries.get(identity)?;
        if entry.unknown_until.is_some_and(|until| now < until) {
            return Some(ResolveError::UnknownIdentity);
        }
        entry
            .not_held
            .iter()
            .any(|(id, until)| *id == key_id && now < *until)
            .then_some(ResolveError::KeyNotHeld)
    }

    /// Remembers the EMKS's answer `error` for (`identity`, `key_id`) from `now` for
    /// [`Self::TTL`]. Other answers (the EMKS unreachable) are not remembered.
    pub fn insert(
        &self,
        identity: &AppIdentity,
        key_id: KeyId,
        error: &ResolveError,
        now: Instant,
    ) {
        let remembered = matches!(
            error,
            ResolveError::UnknownIdentity | ResolveError::KeyNotHeld
        );
        if self.capacity == 0 || !remembered {
            return;
        }
        let until = now + Self::TTL;
        let mut state = self.lock();
        Self::forget_expired(&mut state, now);
        let is_new = !state.entries.contains_key(identity);
        if is_new {
            while state.entries.len() >= self.capacity {
                let Some((oldest, written)) = state.order.pop_front() else {
                    break;
                };
                if state
                    .entries
                    .get(&oldest)
                    .is_some_and(|e| e.written == written)
                {
                    state.entries.remove(&oldest);
                }
            }
        }
        let entry = state.entries.entry(identity.clone()).or_insert(NoKey {
            unknown_until: None,
            not_held: Vec::new(),
            written: now,
        });
        match error {
            ResolveError::UnknownIdentity => entry.unknown_until = Some(until),
            ResolveError::KeyNotHeld => {
                entry.not_held.retain(|(id, t)| *id != key_id && now < *t);
                if entry.not_held.len() >= NOT_HELD_PER_IDENTITY {
                    entry.not_held.remove(0);
                }
                entry.not_held.push((key_id, until));
            }
            // Not remembered (checked above).
            _ => {}
        }
        if !is_new && entry.written == now {
            // Its order record already says `now`.
            return;
        }
        entry.written = now;
        state.order.push_back((identity.clone(), now));
        // Records made stale by rewrites: compact before they outgrow the entries.
        if state.order.len() > 2 * self.capacity.max(1) {
            let NegativeState { entries, order } = &mut *state;
            order.retain(|(id, t)| entries.get(id).is_some_and(|e| e.written == *t));
        }
    }

    /// Drops entries whose every answer has expired, oldest first (every answer lives
    /// [`Self::TTL`], so an entry written before `now - TTL` holds nothing believed).
    fn forget_expired(state: &mut NegativeState, now: Instant) {
        while let Some((identity, written)) = state.order.front() {
            if now < *written + Self::TTL {
                break;
            }
            if state
                .entries
                .get(identity)
                .is_some_and(|e| e.written == *written)
            {
                state.entries.remove(identity);
            }
            state.order.pop_front();
        }
    }

    /// Forgets everything about `identity` (a notification about the UE arrived).
    pub fn forget_ue(&self, identity: &AppIdentity) -> bool {
        self.lock().entries.remove(identity).is_some()
    }

    /// Identities remembered (some answers may have expired).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The EMSE's PSK resolver: the cache, then the EMKS over the EMSE's registered session.
pub struct EmksKeySource {
    session: EmseSession,
    cache: KeyCache,
    negative: NegativeCache,
    fetches: AtomicU64,
}

impl EmksKeySource {
    /// A resolver fetching in `session` (the EMSE's registration, seed prerequisite c,
    /// kept across EMKS restarts: a fetch answered `unknown-session` registers again and
    /// is repeated), with a cache of `cache_capacity` keys.
    pub fn new(session: EmseSession, cache_capacity: usize) -> Self {
        EmksKeySource {
            session,
            cache: KeyCache::new(cache_capacity),
            negative: NegativeCache::new(NegativeCache::DEFAULT_CAPACITY),
            fetches: AtomicU64::new(0),
        }
    }

    /// The EMKS client (to subscribe and notify).
    pub fn client(&self) -> &EmksClient {
        self.session.client()
    }

    /// The EMSE's session (to read its current id, or to deregister with
    /// [`EmseSession::close`]).
    pub fn session(&self) -> &EmseSession {
        &self.session
    }

    /// A copy of the current session id (it changes when the session is renewed).
    pub async fn session_id(&self) -> SessionId {
        self.session.session_id().await
    }

    /// Key fetches sent to the EMKS so far (cache misses).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The cache.
    pub fn cache(&self) -> &KeyCache {
        &self.cache
    }

    /// The memory of "no key" answers.
    pub fn negative_cache(&self) -> &NegativeCache {
        &self.negative
    }

    /// Applies a notification from the EMKS: drops the named UE's cached keys and its
    /// remembered "no key" answers (a new key may be there now). Returns how many keys
    /// were dropped.
    pub fn on_notification(&self, notification: &Notification) -> usize {
        match &notification.ue {
            UeRef::AppIdentity(identity) => {
                self.negative.forget_ue(identity);
                self.cache.forget_ue(identity)
            }
            // This EMSE names UEs by application identity only; an IMSI-named notification
            // cannot match a cache entry, so clear nothing rather than guess.
            UeRef::Imsi(_) => 0,
        }
    }
}

impl PskResolver for EmksKeySource {
    fn resolve_local(&self, identity: &PskIdentity) -> Option<Result<E2mKey, ResolveError>> {
        if let Some(key) = self
            .cache
            .get(&identity.identity, identity.key_id, unix_now())
        {
            return Some(Ok(key));
        }
        self.negative
            .get(&identity.identity, identity.key_id, Instant::now())
            .map(Err)
    }

    async fn resolve(&self, identity: &PskIdentity) -> Result<E2mKey, ResolveError> {
        let now = unix_now();
        if let Some(answer) = self.resolve_local(identity) {
            return answer;
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        // Seed step 5: GET with the UE's identity and key id; the EMKS derives the key for
        // the EMSE_Id bound to this session (step 6), never one named in the request.
        let ue = UeRef::AppIdentity(identity.identity.clone());
        match self.session.fetch_key(ue, identity.key_id).await {
            Ok(answer) if answer.key_id == identity.key_id => {
                self.cache.insert(
                    identity.identity.clone(),
                    identity.key_id,
                    answer.key.copy_secret(),
                    answer.expires.as_unix_secs(),
                    now,
                );
                Ok(answer.key)
            }
            Ok(_) => Err(ResolveError::Unavailable(
                "the EMKS answered with another key id".into(),
            )),
            Err(e) => {
                let error = match e.problem_cause() {
                    Some(ProblemCause::KeyNotAvailable) => ResolveError::KeyNotHeld,
                    Some(ProblemCause::UeUnknown) => ResolveError::UnknownIdentity,
                    _ => return Err(ResolveError::Unavailable(e.to_string())),
                };
                self.negative
                    .insert(&identity.identity, identity.key_id, &error, Instant::now());
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> AppIdentity {
        AppIdentity::new(s).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn entries_expire_and_are_bounded() {
        let cache = KeyCache::new(2);
        let k = |b| E2mKey::from_array([b; 32]);
        cache.insert(id("a"), KeyId::from_u32(1), k(1), 1_000, 900);
        assert!(cache.get(&id("a"), KeyId::from_u32(1), 999) == Some(k(1)));
        assert!(
            cache.get(&id("a"), KeyId::from_u32(1), 1_000).is_none(),
            "expired"
        );
        // MAX_TTL bounds a far expiry.
        cache.insert(id("b"), KeyId::from_u32(2), k(2), u64::MAX, 0);
        assert!(
            cache
                .get(&id("b"), KeyId::from_u32(2), KeyCache::MAX_TTL.as_secs())
                .is_none()
        );
        // Capacity: the soonest-expiring entry goes.
        // (Expiries under MAX_TTL, so that they are not all capped to the same instant.)
        cache.insert(id("c"), KeyId::from_u32(3), k(3), 250, 0);
        cache.insert(id("d"), KeyId::from_u32(4), k(4), 150, 0);
        cache.insert(id("e"), KeyId::from_u32(5), k(5), 200, 0);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&id("d"), KeyId::from_u32(4), 1).is_none());
        assert!(cache.get(&id("c"), KeyId::from_u32(3), 1).is_some());
        assert!(cache.get(&id("e"), KeyId::from_u32(5), 1).is_some());
    }

    #[test]
    fn notification_drops_all_keys_of_the_ue() {
        let cache = KeyCache::new(8);
        for n in 0..3 {
            cache.insert(
                id("ue"),
                KeyId::from_u32(n),
                E2mKey::from_array([0; 32]),
                100,
                0,
            );
        }
        cache.insert(
            id("other"),
            KeyId::from_u32(0),
            E2mKey::from_array([0; 32]),
            100,
            0,
        );
        assert_eq!(cache.forget_ue(&id("ue")), 3);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn no_key_answers_are_believed_for_the_ttl_only() {
        let negative = NegativeCache::new(16);
        let t0 = Instant::now();
        let later = |ms| t0 + Duration::from_millis(ms);
        let ttl = u64::try_from(NegativeCache::TTL.as_millis()).unwrap_or(u64::MAX);
        negative.insert(
            &id("junk"),
            KeyId::from_u32(1),
            &ResolveError::UnknownIdentity,
            t0,
        );
        negative.insert(
            &id("stale"),
            KeyId::from_u32(7),
            &ResolveError::KeyNotHeld,
            t0,
        );
        // Unknown: for every key id of the identity.
        assert_eq!(
            negative.get(&id("junk"), KeyId::from_u32(99), later(ttl - 1)),
            Some(ResolveError::UnknownIdentity)
        );
        // Not held: for that key id only.
        assert_eq!(
            negative.get(&id("stale"), KeyId::from_u32(7), later(ttl - 1)),
            Some(ResolveError::KeyNotHeld)
        );
        assert_eq!(negative.get(&id("stale"), KeyId::from_u32(8), t0), None);
        // Expired at the TTL: the EMKS is asked again.
        assert_eq!(
            negative.get(&id("junk"), KeyId::from_u32(1), later(ttl)),
            None
        );
        assert_eq!(
            negative.get(&id("stale"), KeyId::from_u32(7), later(ttl)),
            None
        );
        // And expired entries leave on the next write.
        negative.insert(
            &id("new"),
            KeyId::from_u32(1),
            &ResolveError::UnknownIdentity,
            later(ttl),
        );
        assert_eq!(negative.len(), 1);
        // Unavailable is never remembered.
        negative.insert(
            &id("down"),
            KeyId::from_u32(1),
            &ResolveError::Unavailable("x".into()),
            later(ttl),
        );
        assert_eq!(
            negative.get(&id("down"), KeyId::from_u32(1), later(ttl)),
            None
        );
    }

    #[test]
    fn no_key_answers_are_bounded_and_dropped_by_a_notification() {
        let negative = NegativeCache::new(3);
        let t0 = Instant::now();
        for n in 0..10u32 {
            let at = t0 + Duration::from_millis(u64::from(n));
            negative.insert(
                &id(&format!("junk-{n}")),
                KeyId::from_u32(n),
                &ResolveError::UnknownIdentity,
                at,
            );
            assert!(negative.len() <= 3);
        }
        // The newest three are kept.
        for n in 7..10u32 {
            assert!(
                negative
                    .get(&id(&format!("junk-{n}")), KeyId::from_u32(0), t0)
                    .is_some()
            );
        }
        assert!(
            negative
                .get(&id("junk-0"), KeyId::from_u32(0), t0)
                .is_none()
        );
        // Key ids per identity are bounded too.
        for n in 0..20u32 {
            negative.insert(
                &id("junk-9"),
                KeyId::from_u32(n),
                &ResolveError::KeyNotHeld,
                t0,
            );
        }
        let entries = negative.lock();
        assert!(
            entries
                .entries
                .get(&id("junk-9"))
                .is_some_and(|e| e.not_held.len() <= NOT_HELD_PER_IDENTITY)
        );
        assert!(
            entries.order.len() <= 6,
            "stale order records are compacted"
        );
        drop(entries);
        assert!(negative.forget_ue(&id("junk-9")));
        assert!(
            negative
                .get(&id("junk-9"), KeyId::from_u32(0), t0)
                .is_none()
        );
        assert!(NegativeCache::new(0).is_empty());
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = KeyCache::new(0);
        cache.insert(
            id("a"),
            KeyId::from_u32(1),
            E2mKey::from_array([0; 32]),
            100,
            0,
        );
        assert!(cache.is_empty());
    }
}
