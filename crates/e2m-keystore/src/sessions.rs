//! EMSE sessions (seed 6.x.2.2.2.1 "Initial registration by EMSE": the EMKS establishes a
//! session context for the EMSE and returns a session id; 6.x.2.2.2.3 "Deregistration").

use core::future::Future;
use core::time::Duration;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use e2m_keyid::EmseId;
use e2m_types::SessionId;
use foldhash::fast::RandomState;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::shard::Sharded;
use crate::{Limit, PolicyError, StoreError, Timestamp};

/// A fresh session id from the operating system's random generator (see
/// [`MemorySessionStore`] for why the OS and not a caller-supplied RNG).
///
/// # Errors
/// [`StoreError::RandomUnavailable`] if the generator fails.
pub fn generate_session_id() -> Result<SessionId, StoreError> {
    let mut bytes = Zeroizing::new([0u8; SessionId::LEN]);
    getrandom::fill(bytes.as_mut_slice()).map_err(|_| StoreError::RandomUnavailable)?;
    Ok(SessionId::from_array(*bytes))
}

/// What a store keeps instead of a session id: SHA-256 over a domain label and the id's
/// octets. A dump of the store therefore holds no usable session id (finding a preimage of
/// a 128-bit random value is infeasible), yet a presented id is found with one hash. Public
/// so that every backend stores the same value (a persistent backend keys its table by
/// [`as_bytes`](Self::as_bytes)).
///
/// Equality is constant-time, so a map's own key comparison leaks nothing about how much of
/// a stored digest a presented one matches.
#[derive(Clone, Copy)]
pub struct SessionDigest([u8; 32]);

impl SessionDigest {
    /// The digest of `id`: `SHA-256("e2m session id v1" || 0x00 || id)`.
    pub fn of(id: &SessionId) -> SessionDigest {
        let mut h = Sha256::new();
        h.update(b"e2m session id v1\0");
        h.update(id.expose_secret());
        SessionDigest(h.finalize().into())
    }

    /// A digest read back from storage.
    pub const fn from_bytes(bytes: [u8; 32]) -> SessionDigest {
        SessionDigest(bytes)
    }

    /// Its 32 octets (not secret: a digest opens nothing).
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for SessionDigest {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SessionDigest {}

impl core::hash::Hash for SessionDigest {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        // The digest is uniformly random already; eight octets locate it.
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(head));
    }
}

impl core::fmt::Debug for SessionDigest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SessionDigest(..)")
    }
}

/// A non-secret handle of one session, unique for the life of the store and never reused.
/// It names the session in audit records, subscriptions and logs, where the session id
/// itself must never appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionRef(u64);

impl SessionRef {
    /// The handle with this number (for backends that persist it).
    pub const fn from_u64(n: u64) -> SessionRef {
        SessionRef(n)
    }

    /// Its number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl core::fmt::Display for SessionRef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "session#{}", self.0)
    }
}

/// What the store knows about a session: no secret in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's non-secret handle.
    pub session: SessionRef,
    /// The authenticated EMSE identity the session is bound to (from its TLS certificate,
    /// checked at registration). Every key derived in this session is for this EMSE_Id.
    pub emse: EmseId,
    /// When the session was created.
    pub created: Timestamp,
    /// When it stops being accepted.
    pub expires: Timestamp,
}

/// Session lifetime and limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    ttl: Duration,
    max_per_emse: usize,
    max_total: usize,
}

impl SessionPolicy {
    /// Sessions live 12 hours; at most 64 per EMSE (instances of one EMSE, the seed's
    /// "multiple instances of an EMSE", and their restarts) and 100,000 in all. The limits
    /// keep a misbehaving EMSE from exhausting the EMKS's memory by registering in a loop.
    /// The store refuses a session over either limit; the EMKS (`e2m-emks`) answers an
    /// EMSE at its own limit by ending that EMSE's oldest session
    /// ([`SessionStore::evict_oldest`]) and creating the new one, so an EMSE that lost its
    /// sessions is never locked out, while the total limit still refuses.
    pub const DEFAULT: SessionPolicy = SessionPolicy {
        ttl: Duration::from_secs(12 * 60 * 60),
        max_per_emse: 64,
        max_total: 100_000,
    };

    /// A policy with these values.
    ///
    /// # Errors
    /// [`PolicyError::Zero`] if any is zero (or `ttl` under one second).
    pub fn new(
        ttl: Duration,
        max_per_emse: usize,
        max_total: usize,
    ) -> Result<SessionPolicy, PolicyError> {
        if ttl.as_secs() == 0 {
            return Err(PolicyError::Zero("ttl"));
        }
        if max_per_emse == 0 {
            return Err(PolicyError::Zero("max_per_emse"));
        }
        if max_total == 0 {
            return Err(PolicyError::Zero("max_total"));
        }
        Ok(SessionPolicy {
            ttl,
            max_per_emse,
            max_total,
        })
    }

    /// How long a session is accepted after its creation.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The most live sessions of one EMSE.
    pub fn max_per_emse(&self) -> usize {
        self.max_per_emse
    }

    /// The most live sessions in all.
    pub fn max_total(&self) -> usize {
        self.max_total
    }
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The EMKS's EMSE sessions.
///
/// Promises, checked by [`conformance::sessions`](crate::conformance::sessions): ids are
/// 128-bit, fresh and unpredictable; a session is found only by its exact id, only until it
/// expires or is removed, and is bound to the EMSE identity it was created for; the store
/// keeps no usable copy of an id; the policy limits hold.
pub trait SessionStore: Send + Sync {
    /// The policy this store applies.
    fn session_policy(&self) -> SessionPolicy;

    /// Creates a session for `emse` (already authenticated by the caller) and returns its
    /// id (hand it to the EMSE; the store keeps only a digest) and what the store records.
    ///
    /// # Errors
    /// [`StoreError::LimitReached`] when a policy limit is reached (after expired sessions
    /// were discounted); [`StoreError::RandomUnavailable`]; a backend error.
    fn create(
        &self,
        emse: &EmseId,
        now: Timestamp,
    ) -> impl Future<Output = Result<(SessionId, SessionInfo), StoreError>> + Send;

    /// The live session with this id, if any.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn get(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<SessionInfo>, StoreError>> + Send;

    /// Ends the session with this id (expired or not); returns what it was.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn remove(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<SessionInfo>, StoreError>> + Send;

    /// The live sessions bound to `emse`, oldest first. Used rarely (subscriptions name no
    /// session, so the EMKS finds the subscriber's sessions by its identity); the in-memory
    /// store scans every session.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn of_emse(
        &self,
        emse: &EmseId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<SessionInfo>, StoreError>> + Send;

    /// Ends the oldest session of `emse` still held (the first created: the lowest
    /// [`SessionRef`]; expired or not) and returns what it was, or `None` if `emse` has
    /// none. Other EMSEs' sessions are never touched.
    ///
    /// The EMKS calls it when a registration finds the EMSE at its per-EMSE limit: an EMSE
    /// that lost its session ids (a crash loop, restarts without deregistering) would
    /// otherwise be locked out until its sessions expire; instead, each new registration
    /// replaces its oldest session (issue 9 item 11).
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn evict_oldest(
        &self,
        emse: &EmseId,
    ) -> impl Future<Output = Result<Option<SessionInfo>, StoreError>> + Send;

    /// Removes every session expired at `now`; returns them (so that the caller can drop
    /// their subscriptions and audit the expiry).
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn sweep(
        &self,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<SessionInfo>, StoreError>> + Send;
}

struct Counts {
    per_emse: HashMap<Box<str>, usize, RandomState>,
    total: usize,
}

impl Counts {
    fn release(&mut self, emse: &EmseId) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_emse.get_mut(emse.as_str()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_emse.remove(emse.as_str());
            }
        }
    }
}

/// The in-memory [`SessionStore`]: lock-striped by the id's digest, with per-EMSE counts
/// under one small mutex taken only to create and end sessions.
///
/// Session ids come from the operating system's generator (`getrandom`), not from a
/// caller-supplied RNG: a session id is a bearer secret, and the one source that is both
/// always available and cryptographically strong is the OS; taking an RNG argument would
/// invite a seeded or weak generator in production. Only the ids are random: every
/// decision still depends on `now` and the inputs alone.
pub struct MemorySessionStore {
    map: Sharded<SessionDigest, SessionInfo>,
    counts: Mutex<Counts>,
    next_ref: AtomicU64,
    policy: SessionPolicy,
}

impl MemorySessionStore {
    /// An empty store applying `policy`.
    pub fn new(policy: SessionPolicy) -> Self {
        MemorySessionStore {
            map: Sharded::new(16),
            counts: Mutex::new(Counts {
                per_emse: HashMap::default(),
                total: 0,
            }),
            next_ref: AtomicU64::new(1),
            policy,
        }
    }

    /// Sessions held (expired ones count until swept).
    pub fn len(&self) -> usize {
        let mut n = 0;
        self.map.for_each_shard(|m| n += m.len());
        n
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // See `Sharded::read` for why poisoning is ignored.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn limit_hit(&self, counts: &Counts, emse: &EmseId) -> Option<Limit> {
        if counts.total >= self.policy.max_total {
            return Some(Limit::SessionsTotal);
        }
        let n = counts.per_emse.get(emse.as_str()).copied().unwrap_or(0);
        (n >= self.policy.max_per_emse).then_some(Limit::SessionsPerEmse)
    }
}

impl Default for MemorySessionStore {
    fn default() -> Self {
        Self::new(SessionPolicy::DEFAULT)
    }
}

impl core::fmt::Debug for MemorySessionStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemorySessionStore")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The synchronous work behind the trait methods: the in-memory store never waits, so
/// each trait method is an `async fn` that does this work at its first poll (computing
/// in `poll` rather than at the call keeps the result from being copied through a `Ready`).
impl MemorySessionStore {
    fn create_now(
        &self,
        emse: &EmseId,
        now: Timestamp,
    ) -> Result<(SessionId, SessionInfo), StoreError> {
        let mut counts = self.counts();
        if self.limit_hit(&counts, emse).is_some() {
            // Expired sessions must not hold a place: sweep, then look again.
            drop(counts);
            self.sweep_now(now)?;
            counts = self.counts();
            if let Some(limit) = self.limit_hit(&counts, emse) {
                return Err(StoreError::LimitReached(limit));
            }
        }
        let info = SessionInfo {
            session: SessionRef(self.next_ref.fetch_add(1, Ordering::Relaxed)),
            emse: emse.clone(),
            created: now,
            expires: now.saturating_add(self.policy.ttl),
        };
        // A collision of two 128-bit random ids is not expected in the life of the universe;
        // it is still checked, because overwriting another EMSE's session would hand it over.
        for _ in 0..4 {
            let id = generate_session_id()?;
            let digest = SessionDigest::of(&id);
            let mut shard = self.map.write(&digest);
            if shard.contains_key(&digest) {
                continue;
            }
            shard.insert(digest, info.clone());
            drop(shard);
            counts.total += 1;
            *counts.per_emse.entry(emse.as_str().into()).or_insert(0) += 1;
            return Ok((id, info));
        }
        Err(StoreError::RandomUnavailable)
    }

    fn get_now(&self, id: &SessionId, now: Timestamp) -> Result<Option<SessionInfo>, StoreError> {
        let digest = SessionDigest::of(id);
        let shard = self.map.read(&digest);
        Ok(shard.get(&digest).filter(|s| now < s.expires).cloned())
    }

    fn remove_now(&self, id: &SessionId) -> Result<Option<SessionInfo>, StoreError> {
        let digest = SessionDigest::of(id);
        let removed = self.map.write(&digest).remove(&digest);
        if let Some(info) = &removed {
            self.counts().release(&info.emse);
        }
        Ok(removed)
    }

    fn of_emse_now(&self, emse: &EmseId, now: Timestamp) -> Result<Vec<SessionInfo>, StoreError> {
        let mut found = Vec::new();
        self.map.for_each_shard(|m| {
            found.extend(
                m.values()
                    .filter(|s| now < s.expires && s.emse == *emse)
                    .cloned(),
            );
        });
        found.sort_by_key(|s| s.session);
        Ok(found)
    }

    fn evict_oldest_now(&self, emse: &EmseId) -> Result<Option<SessionInfo>, StoreError> {
        // Held under the counts lock, as creation is: two evictions for one EMSE at once
        // end two different sessions, and none races a creation's count.
        let mut counts = self.counts();
        let mut oldest: Option<(SessionDigest, SessionRef)> = None;
        self.map.for_each_shard(|m| {
            for (digest, s) in m.iter() {
                if s.emse == *emse && oldest.is_none_or(|(_, r)| s.session < r) {
                    oldest = Some((*digest, s.session));
                }
            }
        });
        let Some((digest, _)) = oldest else {
            return Ok(None);
        };
        let removed = self.map.write(&digest).remove(&digest);
        if let Some(info) = &removed {
            counts.release(&info.emse);
        }
        Ok(removed)
    }

    fn sweep_now(&self, now: Timestamp) -> Result<Vec<SessionInfo>, StoreError> {
        let mut removed = Vec::new();
        self.map.for_each_shard_mut(|m| {
            m.retain(|_, s| {
                if now < s.expires {
                    return true;
                }
                removed.push(s.clone());
                false
            });
        });
        if !removed.is_empty() {
            let mut counts = self.counts();
            for s in &removed {
                counts.release(&s.emse);
            }
        }
        removed.sort_by_key(|s| s.session);
        Ok(removed)
    }
}

impl SessionStore for MemorySessionStore {
    fn session_policy(&self) -> SessionPolicy {
        self.policy
    }

    async fn create(
        &self,
        emse: &EmseId,
        now: Timestamp,
    ) -> Result<(SessionId, SessionInfo), StoreError> {
        self.create_now(emse, now)
    }

    async fn get(&self, id: &SessionId, now: Timestamp) -> Result<Option<SessionInfo>, StoreError> {
        self.get_now(id, now)
    }

    async fn remove(&self, id: &SessionId) -> Result<Option<SessionInfo>, StoreError> {
        self.remove_now(id)
    }

    async fn of_emse(&self, emse: &EmseId, now: Timestamp) -> Result<Vec<SessionInfo>, StoreError> {
        self.of_emse_now(emse, now)
    }

    async fn evict_oldest(&self, emse: &EmseId) -> Result<Option<SessionInfo>, StoreError> {
        self.evict_oldest_now(emse)
    }

    async fn sweep(&self, now: Timestamp) -> Result<Vec<SessionInfo>, StoreError> {
        self.sweep_now(now)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on a broken fixture")]
mod tests {
    use super::*;

    #[test]
    fn store_keeps_no_usable_id() {
        let store = MemorySessionStore::default();
        let emse = EmseId::new("emse-a.example.com").unwrap();
        let (id, _) = crate::block_on(store.create(&emse, Timestamp::from_unix_secs(1))).unwrap();
        let mut stored = Vec::new();
        store
            .map
            .for_each_shard(|m| stored.extend(m.keys().map(|d| d.0)));
        assert_eq!(stored.len(), 1);
        // What a dump would show is the digest, which contains no run of the id's octets.
        let raw = id.expose_secret();
        assert!(!stored[0].windows(4).any(|w| raw.windows(4).any(|r| r == w)));
        assert!(stored[0] == SessionDigest::of(&id).0);
        assert!(!format!("{store:?}").contains(id.to_text().as_str()));
    }

    #[test]
    fn digest_is_domain_separated_sha256() {
        // Independent: python3 -c "import hashlib; print(hashlib.sha256(b'e2m session id v1\x00' + bytes([0xab]*16)).hexdigest())"
        let digest = SessionDigest::of(&SessionId::from_array([0xab; 16]));
        let expected = "fe64ff400db0c2aaa348ea7b61f317ced6a43a22e0caccf414b9770ffd40a17c";
        let mut hex = [0u8; 64];
        let text = base16ct::lower::encode_str(digest.as_bytes(), &mut hex).unwrap();
        assert_eq!(text, expected);
    }
}
