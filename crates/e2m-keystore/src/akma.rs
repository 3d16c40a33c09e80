//! AKMA contexts: what an AAnF keeps (TS 33.535 §6.1: "the AAnF shall store the latest
//! information"), found by A-KID, replaced per UE, and the service-disablement
//! notifications their removal owes to the AFs that asked to be told (TS 29.535 §4.2.2.5).
//!
//! The trait is [`AkmaContexts`]; its outbox, [`AkmaOutbox`], is written in the transaction
//! of the removal that causes each entry and handed to a deliverer exactly as the EMKS's
//! [`NotificationOutbox`](crate::NotificationOutbox) is (a [`Claim`] under a lease, then
//! `delivered` or `retry_at`). Entries have a table of their own because their target is
//! not a subscription: an AF, its `notifUri`, and the A-KID that AF knows.

use core::future::Future;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::sync::{PoisonError, RwLock, RwLockWriteGuard};

use e2m_kdf::Kakma;
use e2m_keyid::akma::{AKid, Fqdn, UeId};
use foldhash::fast::RandomState;

use crate::{Claim, InstanceId, Limit, PolicyError, StoreError, Timestamp};

/// How long a K_AKMA is served, and how many AFs may ask to be notified about one UE.
///
/// TS 33.535 leaves K_AKMA's lifetime to the operator (a new primary authentication
/// replaces it earlier); K_AF's lifetime, bounded by it, is the AAnF's own policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AkmaPolicy {
    max_age: Duration,
    notify_per_ue: u16,
}

impl AkmaPolicy {
    /// The most notification targets per UE a policy may allow.
    pub const MAX_NOTIFY_PER_UE: usize = 1024;

    /// K_AKMA served for at most 24 hours after its registration; at most 32 notification
    /// targets (AF, A-KID) per UE.
    pub const DEFAULT: AkmaPolicy = AkmaPolicy {
        max_age: Duration::from_secs(24 * 60 * 60),
        notify_per_ue: 32,
    };

    /// A policy serving each K_AKMA for `max_age` after its registration (rounded down to
    /// whole milliseconds), with at most `notify_per_ue` live notification targets per UE.
    ///
    /// # Errors
    /// [`PolicyError::Zero`] for a `max_age` under one second or no targets;
    /// [`PolicyError::TooMany`] for more than [`Self::MAX_NOTIFY_PER_UE`] targets.
    pub fn new(max_age: Duration, notify_per_ue: usize) -> Result<AkmaPolicy, PolicyError> {
        if max_age.as_secs() == 0 {
            return Err(PolicyError::Zero("max_age"));
        }
        if notify_per_ue == 0 {
            return Err(PolicyError::Zero("notify_per_ue"));
        }
        let notify_per_ue = u16::try_from(notify_per_ue)
            .ok()
            .filter(|n| usize::from(*n) <= Self::MAX_NOTIFY_PER_UE)
            .ok_or(PolicyError::TooMany("notify_per_ue"))?;
        Ok(AkmaPolicy {
            max_age,
            notify_per_ue,
        })
    }

    /// How long after its registration a K_AKMA is served.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The most live notification targets one UE may have.
    pub fn notify_per_ue(&self) -> usize {
        usize::from(self.notify_per_ue)
    }

    /// When a context registered at `registered` stops being served. A context is live
    /// while `now < expires_at(registered)`.
    pub fn expires_at(&self, registered: Timestamp) -> Timestamp {
        registered.saturating_add(self.max_age)
    }
}

impl Default for AkmaPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What a [`register`](AkmaContexts::register) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per registration, never stored: boxing the A-KID would allocate for nothing"
)]
pub enum AkmaRegistered {
    /// The UE had no live context: this one is stored.
    Stored,
    /// The UE's live context (A-KID `old`, possibly the same A-KID) was replaced, and its
    /// A-KID no longer finds anything (unless it is the new one).
    Replaced {
        /// The A-KID of the context replaced.
        old: AKid,
    },
    /// Another UE's live context holds this A-KID: nothing was stored or changed. A-KIDs
    /// carry a 256-bit A-TID derived from the UE's own K_AUSF, so this is an AUSF fault (or
    /// a foreign A-KID spelling that collides); taking the A-KID from the other UE would
    /// hand that UE's AFs a key it does not have.
    AKidTaken,
}

/// One UE's AKMA context, as read: a copy the caller owns (K_AKMA zeroized on drop).
pub struct AkmaContext {
    /// The UE (SUPI or GPSI) it was registered for.
    pub ue: UeId,
    /// Its A-KID.
    pub a_kid: AKid,
    /// K_AKMA.
    pub k_akma: Kakma,
    /// When it was registered.
    pub registered: Timestamp,
    /// When it stops being served ([`AkmaPolicy::expires_at`] of `registered`).
    pub expires: Timestamp,
}

impl core::fmt::Debug for AkmaContext {
    // By hand, so that no change of the key type can ever print key octets here.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AkmaContext")
            .field("ue", &self.ue)
            .field("a_kid", &self.a_kid)
            .field("registered", &self.registered)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Where an AF wants the service-disablement notification of a UE sent: its FQDN (whom
/// the deliverer must reach) and the `notifUri` of its request, checked by the AAnF before
/// it is stored (printable ASCII, at most [`NotifyTarget::MAX_URI_LEN`] octets here).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NotifyTarget {
    af: Fqdn,
    uri: Box<str>,
}

impl NotifyTarget {
    /// The longest URI a store keeps (TS 29.122 `Uri` is unbounded; e2m-akma's `NotifUri`
    /// accepts up to this).
    pub const MAX_URI_LEN: usize = 2048;

    /// The target of AF `af` at `uri`.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] for an empty or longer URI, or one with other than
    /// printable ASCII.
    pub fn new(af: Fqdn, uri: &str) -> Result<NotifyTarget, StoreError> {
        if uri.is_empty()
            || uri.len() > Self::MAX_URI_LEN
            || !uri.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(StoreError::InvalidInput("notification URI"));
        }
        Ok(NotifyTarget {
            af,
            uri: uri.into(),
        })
    }

    /// The AF.
    pub fn af(&self) -> &Fqdn {
        &self.af
    }

    /// The URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }
}

/// What a [`remove`](AkmaContexts::remove) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AkmaRemoved {
    /// The A-KID of the live context removed; `None` if the UE had none.
    pub a_kid: Option<AKid>,
    /// Service-disablement notifications recorded in the outbox with the removal: one per
    /// live target of the UE.
    pub notifications: usize,
}

/// The AAnF's AKMA contexts: one per UE, found by A-KID.
///
/// A context is `(UE, A-KID, K_AKMA, registered, expires)`. Notification targets
/// `(UE, AF, A-KID) → (notifUri, until)` hang off the UE, not the context: an AF that
/// holds a K_AF from an A-KID that a newer registration replaced is still told when the
/// UE's AKMA service is disabled, with the A-KID it knows, for as long as that K_AF can
/// live (`until` = that context's expiry, which bounds every K_AF derived from it).
///
/// Promises, checked by [`conformance::akma`](crate::conformance::akma):
/// - **one context per UE**: registering for a UE that has a live context replaces it *and
///   its A-KID's index entry* atomically, so the old A-KID finds nothing from the moment
///   the registration returns (else an AF holding it would get the new K_AKMA's K_AF,
///   which the UE does not have); concurrent registrations for one UE leave exactly one
///   context, whose A-KID is the only one of theirs that finds it;
/// - **an A-KID names one context**: a registration whose A-KID another UE's live context
///   holds changes nothing ([`AkmaRegistered::AKidTaken`]);
/// - lookup by the **full A-KID**, octet for octet (never a prefix or a hash of it);
/// - a context is served only while `now < expires`, never after it was replaced, removed
///   or swept; a UE registered by GPSI is served like one registered by SUPI;
/// - [`remove`](Self::remove) drops the UE's context and all its notification targets, and
///   records in the outbox, **in the same transaction**, one service-disablement entry per
///   target still live (`until > now`); nothing else records entries;
/// - a retrieval that gives a target stores it (one per (UE, AF, A-KID), replaced on
///   repeat) in the transaction that reads the context, or answers `None` if the context
///   is gone, so no target is stored for a context that a concurrent removal has already
///   notified; at most [`AkmaPolicy::notify_per_ue`] live targets per UE
///   ([`StoreError::LimitReached`] with [`Limit::NotifyTargetsPerUe`] beyond);
/// - K_AKMA leaving the store (replaced, removed, swept) is zeroized (the in-memory
///   store); durable backends keep it sealed and state what they do.
pub trait AkmaContexts: Send + Sync {
    /// The policy this store applies.
    fn policy(&self) -> AkmaPolicy;

    /// Registers `k_akma` under `a_kid` for `ue` at `now` (the AUSF's
    /// `Naanf_AKMA_AnchorKey_Register`), replacing the UE's live context.
    ///
    /// The key is borrowed, not moved (see [`IntKeyStore::push`](crate::IntKeyStore::push)).
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails (nothing changed then).
    fn register(
        &self,
        ue: &UeId,
        a_kid: &AKid,
        k_akma: &Kakma,
        now: Timestamp,
    ) -> impl Future<Output = Result<AkmaRegistered, StoreError>> + Send;

    /// The live context whose A-KID is `a_kid` (all of it), if any; with `notify`, also
    /// stores that target for the context's UE and A-KID in the same transaction.
    ///
    /// # Errors
    /// [`StoreError::LimitReached`] (nothing stored) when the UE has
    /// [`AkmaPolicy::notify_per_ue`] other live targets; [`StoreError::InvalidInput`] for
    /// a target a backend cannot store; [`StoreError`] if the backend fails.
    fn retrieve(
        &self,
        a_kid: &AKid,
        notify: Option<&NotifyTarget>,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<AkmaContext>, StoreError>> + Send;

    /// The live context of `ue`, if any (for the operator and tests).
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn context_of(
        &self,
        ue: &UeId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<AkmaContext>, StoreError>> + Send;

    /// Removes the context of `ue` and its notification targets, recording one
    /// service-disablement entry per live target in the outbox, atomically (the AUSF's
    /// `Naanf_AKMA_ContextRemove`).
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails (nothing changed then).
    fn remove(
        &self,
        ue: &UeId,
        now: Timestamp,
    ) -> impl Future<Output = Result<AkmaRemoved, StoreError>> + Send;

    /// Removes the contexts and notification targets expired at `now`; returns how many
    /// contexts it removed. Records no notification (an expired context's K_AFs expired
    /// with it).
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn sweep(&self, now: Timestamp) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Contexts stored (live, or expired and not yet swept): for metrics and tests.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn stored(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// One service-disablement notification, as handed to a deliverer by
/// [`AkmaOutbox::claim_due`]: POST `ServiceDisableNotif { aKId: a_kid }` to `notif_uri`,
/// a server that must prove to be `af`; the AF answers 204.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AkmaPendingNotification {
    /// Its stable id: unique in the store, never reused, the same on every attempt.
    pub id: u64,
    /// The AF to notify.
    pub af: Fqdn,
    /// Where (the `notifUri` its retrieval gave).
    pub notif_uri: Box<str>,
    /// The A-KID the AF knows the UE by.
    pub a_kid: AKid,
    /// When the removal happened.
    pub time: Timestamp,
    /// Delivery attempts that failed so far (for the backoff).
    pub attempts: u32,
}

/// The pending service-disablement notifications of an [`AkmaContexts`] store.
///
/// The same journey and promises as [`NotificationOutbox`](crate::NotificationOutbox), with
/// the AF (its FQDN) in the subscriber's place: recorded with the removal that causes it;
/// claimed under a lease ([`Claim`] with AF FQDNs to skip), oldest first, at most so many in
/// all and per AF; settled by [`delivered`](Self::delivered) or
/// [`retry_at`](Self::retry_at). There is no subscription to end: an entry leaves only when
/// delivered (a deliverer that will not send one, e.g. for an AF no longer configured,
/// settles it as delivered). At least once; duplicates carry the same id.
pub trait AkmaOutbox: Send + Sync {
    /// Claims the entries due at `claim.now` for `claim.instance` until
    /// [`Claim::lease_until`], oldest first, within the claim's limits.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails (nothing is claimed then).
    fn claim_due(
        &self,
        claim: &Claim<'_, Fqdn>,
    ) -> impl Future<Output = Result<Vec<AkmaPendingNotification>, StoreError>> + Send;

    /// The entry `id` was delivered: removes it. Returns whether it was still there.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn delivered(&self, id: u64) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Delivery of entry `id` failed: if `instance` still holds it, releases it, due at
    /// `when`, with one more attempt counted. Returns whether it did.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn retry_at(
        &self,
        id: u64,
        instance: InstanceId,
        when: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The earliest due time of any entry (claimed ones: the end of their lease), if any.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn next_due(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send;

    /// Entries held (claimed or not).
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn pending(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

// ---------------------------------------------------------------------------------------
// The in-memory store.

/// A stored context (the UE is its key in `by_ue`).
struct Stored {
    a_kid: AKid,
    /// Zeroized when the context is replaced, removed or swept (dropped with this value).
    k_akma: Kakma,
    registered: Timestamp,
    expires: Timestamp,
}

/// One notification target of a UE.
struct Target {
    af: Fqdn,
    a_kid: AKid,
    uri: Box<str>,
    until: Timestamp,
}

/// One outbox entry.
struct Entry {
    af: Fqdn,
    uri: Box<str>,
    a_kid: AKid,
    time: Timestamp,
    due: Timestamp,
    attempts: u32,
    owner: Option<InstanceId>,
}

#[derive(Default)]
struct State {
    by_ue: HashMap<UeId, Stored, RandomState>,
    /// A-KID → UE: the index a retrieval uses; changed with `by_ue`, under the same lock.
    by_a_kid: HashMap<AKid, UeId, RandomState>,
    /// UE → its notification targets (at most the policy's few per UE).
    targets: HashMap<UeId, Vec<Target>, RandomState>,
    outbox: BTreeMap<u64, Entry>,
    due: BTreeSet<(Timestamp, u64)>,
    next_id: u64,
}

impl State {
    /// Drops the UE's context (if any) and its A-KID's index entry; returns the context.
    fn take(&mut self, ue: &UeId) -> Option<Stored> {
        let old = self.by_ue.remove(ue)?;
        if self.by_a_kid.get(&old.a_kid) == Some(ue) {
            self.by_a_kid.remove(&old.a_kid);
        }
        Some(old)
    }
}

/// The in-memory [`AkmaContexts`] and its [`AkmaOutbox`]: two hash maps (by UE, by A-KID)
/// and the notification state behind one `RwLock`, so that every change is seen whole;
/// retrievals without a target share the read lock. Nothing survives a restart.
///
/// About 1.1 KB per UE (a UE and an A-KID are stored inline, up to 260 and 256 octets,
/// each twice: as map key and as value); a store for tens of millions of UEs is a durable
/// backend's job.
pub struct MemoryAkmaContexts {
    policy: AkmaPolicy,
    state: RwLock<State>,
}

impl core::fmt::Debug for MemoryAkmaContexts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemoryAkmaContexts")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryAkmaContexts {
    fn default() -> Self {
        MemoryAkmaContexts::new(AkmaPolicy::DEFAULT)
    }
}

impl MemoryAkmaContexts {
    /// An empty store applying `policy`.
    pub fn new(policy: AkmaPolicy) -> MemoryAkmaContexts {
        MemoryAkmaContexts {
            policy,
            state: RwLock::new(State {
                next_id: 1,
                ..State::default()
            }),
        }
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        // See `Sharded::read` for why poisoning is ignored: every step leaves the maps
        // consistent.
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn register_now(
        &self,
        ue: &UeId,
        a_kid: &AKid,
        k_akma: &Kakma,
        now: Timestamp,
    ) -> AkmaRegistered {
        let mut state = self.write();
        if let Some(holder) = state.by_a_kid.get(a_kid).copied()
            && holder != *ue
        {
            let live = state.by_ue.get(&holder).is_some_and(|c| c.expires > now);
            if live {
                return AkmaRegistered::AKidTaken;
            }
            // Expired, not yet swept: it gives way (and its key is zeroized).
            drop(state.take(&holder));
        }
        let old = state.take(ue).filter(|c| c.expires > now).map(|c| c.a_kid);
        state.by_ue.insert(
            *ue,
            Stored {
                a_kid: *a_kid,
                k_akma: k_akma.copy_secret(),
                registered: now,
                expires: self.policy.expires_at(now),
            },
        );
        state.by_a_kid.insert(*a_kid, *ue);
        match old {
            None => AkmaRegistered::Stored,
            Some(old) => AkmaRegistered::Replaced { old },
        }
    }

    fn context(ue: &UeId, stored: &Stored) -> AkmaContext {
        AkmaContext {
            ue: *ue,
            a_kid: stored.a_kid,
            k_akma: stored.k_akma.copy_secret(),
            registered: stored.registered,
            expires: stored.expires,
        }
    }

    fn retrieve_now(
        &self,
        a_kid: &AKid,
        notify: Option<&NotifyTarget>,
        now: Timestamp,
    ) -> Result<Option<AkmaContext>, StoreError> {
        let Some(target) = notify else {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            return Ok(state.by_a_kid.get(a_kid).and_then(|ue| {
                let stored = state.by_ue.get(ue)?;
                (stored.a_kid == *a_kid && stored.expires > now).then(|| Self::context(ue, stored))
            }));
        };
        let mut state = self.write();
        let Some(ue) = state.by_a_kid.get(a_kid).copied() else {
            return Ok(None);
        };
        let Some(stored) = state
            .by_ue
            .get(&ue)
            .filter(|c| c.a_kid == *a_kid && c.expires > now)
        else {
            return Ok(None);
        };
        let context = Self::context(&ue, stored);
        let expires = context.expires;
        let limit = self.policy.notify_per_ue();
        let targets = state.targets.entry(ue).or_default();
        targets.retain(|t| t.until > now);
        if let Some(known) = targets
            .iter_mut()
            .find(|t| t.af == target.af && t.a_kid == *a_kid)
        {
            known.uri.clone_from(&target.uri);
            known.until = expires;
        } else if targets.len() >= limit {
            return Err(StoreError::LimitReached(Limit::NotifyTargetsPerUe));
        } else {
            targets.push(Target {
                af: target.af,
                a_kid: *a_kid,
                uri: target.uri.clone(),
                until: expires,
            });
        }
        Ok(Some(context))
    }

    fn remove_now(&self, ue: &UeId, now: Timestamp) -> AkmaRemoved {
        let mut state = self.write();
        let a_kid = state.take(ue).filter(|c| c.expires > now).map(|c| c.a_kid);
        let targets = state.targets.remove(ue).unwrap_or_default();
        let mut notifications = 0;
        for target in targets {
            if target.until <= now {
                continue;
            }
            let id = state.next_id.max(1);
            state.next_id = id + 1;
            state.due.insert((now, id));
            state.outbox.insert(
                id,
                Entry {
                    af: target.af,
                    uri: target.uri,
                    a_kid: target.a_kid,
                    time: now,
                    due: now,
                    attempts: 0,
                    owner: None,
                },
            );
            notifications += 1;
        }
        AkmaRemoved {
            a_kid,
            notifications,
        }
    }

    fn sweep_now(&self, now: Timestamp) -> usize {
        let mut state = self.write();
        let expired: Vec<UeId> = state
            .by_ue
            .iter()
            .filter(|(_, c)| c.expires <= now)
            .map(|(ue, _)| *ue)
            .collect();
        for ue in &expired {
            drop(state.take(ue));
        }
        state.targets.retain(|_, targets| {
            targets.retain(|t| t.until > now);
            !targets.is_empty()
        });
        expired.len()
    }

    fn claim_now(&self, claim: &Claim<'_, Fqdn>) -> Vec<AkmaPendingNotification> {
        let until = claim.lease_until();
        let mut state = self.write();
        let due: Vec<(Timestamp, u64)> =
            state.due.range(..=(claim.now, u64::MAX)).copied().collect();
        let mut per_af: HashMap<Fqdn, usize> = HashMap::new();
        let mut out = Vec::new();
        for (at, id) in due {
            if out.len() >= claim.max {
                break;
            }
            let Some(entry) = state.outbox.get_mut(&id) else {
                continue;
            };
            if claim.skip.contains(&entry.af) {
                continue;
            }
            let taken = per_af.entry(entry.af).or_insert(0);
            if *taken >= claim.per_emse {
                continue;
            }
            *taken += 1;
            entry.due = until;
            entry.owner = Some(claim.instance);
            out.push(AkmaPendingNotification {
                id,
                af: entry.af,
                notif_uri: entry.uri.clone(),
                a_kid: entry.a_kid,
                time: entry.time,
                attempts: entry.attempts,
            });
            state.due.remove(&(at, id));
            state.due.insert((until, id));
        }
        out
    }

    fn delivered_now(&self, id: u64) -> bool {
        let mut state = self.write();
        match state.outbox.remove(&id) {
            Some(entry) => {
                state.due.remove(&(entry.due, id));
                true
            }
            None => false,
        }
    }

    fn retry_now(&self, id: u64, instance: InstanceId, when: Timestamp) -> bool {
        let mut state = self.write();
        let Some(entry) = state.outbox.get_mut(&id) else {
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
}

impl AkmaContexts for MemoryAkmaContexts {
    fn policy(&self) -> AkmaPolicy {
        self.policy
    }

    async fn register(
        &self,
        ue: &UeId,
        a_kid: &AKid,
        k_akma: &Kakma,
        now: Timestamp,
    ) -> Result<AkmaRegistered, StoreError> {
        Ok(self.register_now(ue, a_kid, k_akma, now))
    }

    async fn retrieve(
        &self,
        a_kid: &AKid,
        notify: Option<&NotifyTarget>,
        now: Timestamp,
    ) -> Result<Option<AkmaContext>, StoreError> {
        self.retrieve_now(a_kid, notify, now)
    }

    async fn context_of(
        &self,
        ue: &UeId,
        now: Timestamp,
    ) -> Result<Option<AkmaContext>, StoreError> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(state
            .by_ue
            .get(ue)
            .filter(|c| c.expires > now)
            .map(|c| Self::context(ue, c)))
    }

    async fn remove(&self, ue: &UeId, now: Timestamp) -> Result<AkmaRemoved, StoreError> {
        Ok(self.remove_now(ue, now))
    }

    async fn sweep(&self, now: Timestamp) -> Result<usize, StoreError> {
        Ok(self.sweep_now(now))
    }

    async fn stored(&self) -> Result<u64, StoreError> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(state.by_ue.len() as u64)
    }
}

impl AkmaOutbox for MemoryAkmaContexts {
    async fn claim_due(
        &self,
        claim: &Claim<'_, Fqdn>,
    ) -> Result<Vec<AkmaPendingNotification>, StoreError> {
        Ok(self.claim_now(claim))
    }

    async fn delivered(&self, id: u64) -> Result<bool, StoreError> {
        Ok(self.delivered_now(id))
    }

    async fn retry_at(
        &self,
        id: u64,
        instance: InstanceId,
        when: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.retry_now(id, instance, when))
    }

    async fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(state.due.first().map(|(at, _)| *at))
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(state.outbox.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// K_AKMA leaves the in-memory store only by being dropped with its `Stored` (replaced,
    /// removed, swept): the field's type must zeroize on drop, or eviction would leave its
    /// octets in freed memory. A compile-time check, so that a change of the field's type
    /// cannot pass unnoticed.
    #[test]
    fn the_stored_key_zeroizes_on_drop() {
        fn zeroizes_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let stored = Stored {
            a_kid: AKid::parse("rid0.atid00@example.org").unwrap_or_else(|_| unreachable!()),
            k_akma: Kakma::from_array([1; 32]),
            registered: Timestamp::from_unix_secs(0),
            expires: Timestamp::from_unix_secs(1),
        };
        zeroizes_on_drop(&stored.k_akma);
    }

    #[test]
    fn policies_are_checked() {
        assert!(AkmaPolicy::new(Duration::from_millis(999), 1).is_err());
        assert!(AkmaPolicy::new(Duration::from_secs(1), 0).is_err());
        assert!(
            AkmaPolicy::new(Duration::from_secs(1), AkmaPolicy::MAX_NOTIFY_PER_UE + 1).is_err()
        );
        let p = AkmaPolicy::new(Duration::from_secs(60), 3).unwrap_or_default();
        assert_eq!(
            (p.max_age(), p.notify_per_ue()),
            (Duration::from_secs(60), 3)
        );
    }
}
