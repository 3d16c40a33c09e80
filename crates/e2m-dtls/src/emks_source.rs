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

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// The EMSE's PSK resolver: the cache, then the EMKS over the EMSE's registered session.
pub struct EmksKeySource {
    session: EmseSession,
    cache: KeyCache,
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

    /// Applies a notification from the EMKS: drops the named UE's cached keys. Returns how
    /// many were dropped.
    pub fn on_notification(&self, notification: &Notification) -> usize {
        match &notification.ue {
            UeRef::AppIdentity(identity) => self.cache.forget_ue(identity),
            // This EMSE names UEs by application identity only; an IMSI-named notification
            // cannot match a cache entry, so clear nothing rather than guess.
            UeRef::Imsi(_) => 0,
        }
    }
}

impl PskResolver for EmksKeySource {
    async fn resolve(&self, identity: &PskIdentity) -> Result<E2mKey, ResolveError> {
        let now = unix_now();
        if let Some(key) = self.cache.get(&identity.identity, identity.key_id, now) {
            return Ok(key);
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
            Err(e) => Err(match e.problem_cause() {
                Some(ProblemCause::KeyNotAvailable) => ResolveError::KeyNotHeld,
                Some(ProblemCause::UeUnknown) => ResolveError::UnknownIdentity,
                _ => ResolveError::Unavailable(e.to_string()),
            }),
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
