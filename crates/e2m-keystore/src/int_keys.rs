//! Intermediate keys: what the HSS pushes and the EMKS keeps (seed 6.x.2.1, "Considerations
//! on the key identifier", and the derivation step 1).

use core::future::Future;
use core::time::Duration;

use e2m_kdf::E2mIntKey;
use e2m_keyid::{Imsi, KeyId};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::outbox::MemoryOutbox;
use crate::packed::PackedImsi;
use crate::shard::Sharded;
use crate::{PolicyError, StoreError, Timestamp};

/// How many intermediate keys the EMKS keeps per UE, and for how long.
///
/// The seed (6.x.2.1, race conditions a and b) asks the EMKS to keep "a fixed (small) number
/// of instances of e2m_int_key from the past", so that a UE whose latest AKA run failed, or
/// that has not yet seen the latest challenge, still finds its key; how many is "up to the
/// policy of the EMKS". The maximum age bounds how long a key captured once stays useful,
/// and with it the lifetime of every `e2m_key` derived from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    keys_per_ue: u8,
    max_age: Duration,
}

impl RetentionPolicy {
    /// The most keys per UE a policy may ask for. The seed wants a *small* number; a bound
    /// also keeps a UE's record in a few cache lines.
    pub const MAX_KEYS_PER_UE: usize = 16;

    /// Four keys per UE, for at most 24 hours each: enough for a few failed or racing AKA
    /// runs (the seed's cases a and b), short enough that a stolen key soon stops working.
    pub const DEFAULT: RetentionPolicy = RetentionPolicy {
        keys_per_ue: 4,
        max_age: Duration::from_secs(24 * 60 * 60),
    };

    /// A policy keeping `keys_per_ue` keys per UE, each for at most `max_age` after it was
    /// created (rounded down to whole milliseconds).
    ///
    /// # Errors
    /// [`PolicyError::KeysPerUe`] unless `1 <= keys_per_ue <= 16`;
    /// [`PolicyError::Zero`] for a `max_age` under one second.
    pub fn new(keys_per_ue: usize, max_age: Duration) -> Result<RetentionPolicy, PolicyError> {
        if keys_per_ue == 0 || keys_per_ue > Self::MAX_KEYS_PER_UE {
            return Err(PolicyError::KeysPerUe);
        }
        if max_age.as_secs() == 0 {
            return Err(PolicyError::Zero("max_age"));
        }
        Ok(RetentionPolicy {
            // Bounded by MAX_KEYS_PER_UE above.
            keys_per_ue: keys_per_ue as u8,
            max_age,
        })
    }

    /// Keys kept per UE (N).
    pub fn keys_per_ue(&self) -> usize {
        usize::from(self.keys_per_ue)
    }

    /// How long after its creation a key is served.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// When a key created at `created` stops being served: `created + max_age`. A key is
    /// live while `now < expires_at(created)`.
    pub fn expires_at(&self, created: Timestamp) -> Timestamp {
        created.saturating_add(self.max_age)
    }
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What a [`push`](IntKeyStore::push) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushOutcome {
    /// The key was added. If the UE already held N live keys, the oldest (by creation time,
    /// then key id) was evicted and zeroized; its id is given.
    Stored {
        /// The key id evicted to make room, if any.
        evicted: Option<KeyId>,
    },
    /// The UE already held a live key with this key id, created earlier (or at the same
    /// instant with other octets): the new key replaced it (the old one is zeroized). Two
    /// retained keys never share an id, because the UE can only be on the newer one: its
    /// last AKA run produced it.
    Replaced,
    /// The very same key (id, octets, creation time) was already held: nothing changed.
    /// Repeating a push is therefore safe (idempotent), e.g. after a lost acknowledgement.
    Unchanged,
    /// Not stored, because a newer key wins: the UE already held N live keys that all come
    /// after this one in retention order (storing it would evict it at once), or it held a
    /// key with the same id created later. A push overtaken by newer ones, whatever the
    /// order the pushes arrived in.
    Stale,
    /// The key was already past its maximum age at `now`: not stored.
    Expired,
}

impl PushOutcome {
    /// Whether the pushed key is now held (stored, replaced or already there).
    pub fn is_held(&self) -> bool {
        matches!(
            self,
            PushOutcome::Stored { .. } | PushOutcome::Replaced | PushOutcome::Unchanged
        )
    }
}

/// What is known about one held key, without the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// Its key id.
    pub key_id: KeyId,
    /// When the HSS created it (as pushed).
    pub created: Timestamp,
    /// When it stops being served (`created + max_age`).
    pub expires: Timestamp,
}

/// One held intermediate key: a copy the caller owns, zeroized when dropped.
pub struct HeldKey {
    /// Its id, creation and expiry.
    pub info: KeyInfo,
    /// The key.
    pub key: E2mIntKey,
}

impl core::fmt::Debug for HeldKey {
    // Written by hand so that no future change of the key type can put key bytes here.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HeldKey")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The EMKS's store of intermediate keys, per UE (IMSI) and key id.
///
/// Promises, checked by [`conformance::int_keys`](crate::conformance::int_keys) and
/// [`conformance::shuffled_pushes`](crate::conformance::shuffled_pushes):
/// - per UE at most N live keys ([`RetentionPolicy::keys_per_ue`]), the newest N in
///   *retention order*: by creation time (to the millisecond), keys created in the same
///   millisecond by key id (the higher id is the newer). Never by arrival, so the keys
///   kept do not depend on the order in which concurrent pushes arrive (issue 9 item 15);
/// - of two pushes with the same key id, the one created later wins (the earlier one is
///   [`PushOutcome::Stale`] if it comes second); with the same id and the same creation
///   time but other octets, which no order can decide (an HSS fault), the later push
///   replaces the held key;
/// - a key is served only while `now < created + max_age`, and never after it was evicted,
///   replaced, removed or swept;
/// - a push of a key id already held replaces that key unless the held one was created
///   later; a repeated identical push changes nothing;
/// - keys leaving the store are zeroized (for the in-memory store; a persistent backend
///   states what it does);
/// - all of the above under concurrent use from many threads: no lost and no torn key.
pub trait IntKeyStore: Send + Sync {
    /// The retention policy this store applies.
    fn retention(&self) -> RetentionPolicy;

    /// Stores a copy of `key` with id `key_id`, created at `created`, for `imsi` (the HSS
    /// push).
    ///
    /// The key is borrowed, not moved: a future holding a moved key would leave copies of
    /// its octets wherever the future was moved (an async task's state is freed without
    /// being zeroized), while a borrowed key stays in one place, zeroized once by its owner.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails; the in-memory store never fails.
    fn push(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        key: &E2mIntKey,
        created: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<PushOutcome, StoreError>> + Send;

    /// The live key of `imsi` with id `key_id`, if held.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn get(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<HeldKey>, StoreError>> + Send;

    /// The newest live key of `imsi`, if any.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn latest(
        &self,
        imsi: &Imsi,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<HeldKey>, StoreError>> + Send;

    /// The live keys of `imsi`, oldest first, without key material.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn held(
        &self,
        imsi: &Imsi,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<KeyInfo>, StoreError>> + Send;

    /// Forgets every key of `imsi` (zeroizing them); returns how many were held, expired or
    /// not.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn remove_ue(&self, imsi: &Imsi) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Removes (and zeroizes) every key past its maximum age at `now`; returns the UE and
    /// what was known of each removed key (for notifications and audit), in no particular
    /// order. Expired keys are never served even before a sweep; sweeping returns their
    /// memory.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn sweep(
        &self,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<(Imsi, KeyInfo)>, StoreError>> + Send;

    /// The database this store lives in, if one query can read it together with another
    /// store answering the same token (see [`DatabaseId`](crate::DatabaseId); what
    /// [`IdentityMap::resolve_key`](crate::IdentityMap::resolve_key) checks before joining
    /// the identity map and the keys). `None` (the default): never. A wrapper that serves
    /// nothing but what its inner store holds (such as a read cache) forwards its inner
    /// store's token.
    fn database(&self) -> Option<crate::DatabaseId> {
        None
    }
}

/// One retained key, 44 octets: `created` (Unix milliseconds, the full resolution) is kept
/// as two `u32` halves rather than a `u64` so that the slot needs 4-octet alignment only (a
/// `u64` would pad it to 48, 16 octets more per UE at N = 4).
struct Slot {
    key: [u8; 32],
    key_id: u32,
    created: [u32; 2],
}

impl Slot {
    fn new(key: &E2mIntKey, key_id: KeyId, created: Timestamp) -> Slot {
        let ms = created.as_unix_millis();
        Slot {
            key: *key.expose_secret(),
            key_id: key_id.as_u32(),
            // The two halves of a u64: the casts keep exactly 32 bits each, by design.
            created: [(ms >> 32) as u32, ms as u32],
        }
    }

    fn created(&self) -> Timestamp {
        Timestamp::from_unix_millis((u64::from(self.created[0]) << 32) | u64::from(self.created[1]))
    }

    /// Where the slot stands in retention order: creation time, then key id.
    fn order(&self) -> (Timestamp, u32) {
        (self.created(), self.key_id)
    }

    fn key_id(&self) -> KeyId {
        KeyId::from_u32(self.key_id)
    }

    fn duplicate(&self) -> Slot {
        Slot {
            key: self.key,
            key_id: self.key_id,
            created: self.created,
        }
    }

    fn info(&self, policy: &RetentionPolicy) -> KeyInfo {
        let created = self.created();
        KeyInfo {
            key_id: self.key_id(),
            created,
            expires: policy.expires_at(created),
        }
    }

    fn held(&self, policy: &RetentionPolicy) -> HeldKey {
        HeldKey {
            info: self.info(policy),
            key: E2mIntKey::from_array(self.key),
        }
    }

    fn is_live(&self, policy: &RetentionPolicy, now: Timestamp) -> bool {
        now < policy.expires_at(self.created())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// Where each slot of a rebuilt record comes from.
#[derive(Clone, Copy)]
enum Src {
    Old(usize),
    New,
}

/// The in-memory [`IntKeyStore`], built for tens of millions of UEs.
///
/// Layout: a lock-striped hash map (foldhash) from the IMSI, packed into one `u64`, to an
/// exactly sized boxed slice of 44-octet slots, oldest first in retention order. The key
/// octets live only in those boxes, which the map moves by pointer when it grows, so a
/// rehash never leaves a stray copy of a key in freed memory; a record is rebuilt into a
/// new box of the exact size on every change (never `realloc`ed, which would free the old
/// bytes unzeroized) and the old box is zeroized as it drops. About 230 octets per UE at N = 4 (see the
/// `keystore` benchmark for the measured figure).
pub struct MemoryIntKeyStore {
    map: Sharded<PackedImsi, Box<[Slot]>>,
    policy: RetentionPolicy,
    /// Notifications its pushes and sweeps cause (none unless linked to subscriptions).
    outbox: MemoryOutbox,
}

impl MemoryIntKeyStore {
    /// Shards used by [`MemoryIntKeyStore::new`]: enough that two threads rarely meet on one
    /// lock, few enough to cost nothing when the store is small.
    pub const DEFAULT_SHARDS: usize = 64;

    /// An empty store applying `policy`.
    pub fn new(policy: RetentionPolicy) -> Self {
        Self::with_shards(policy, Self::DEFAULT_SHARDS)
    }

    /// An empty store with `shards` independently locked parts (rounded up to a power of
    /// two, at most 256). More shards mean less contention between many threads.
    pub fn with_shards(policy: RetentionPolicy, shards: usize) -> Self {
        MemoryIntKeyStore {
            map: Sharded::new(shards),
            policy,
            outbox: MemoryOutbox::default(),
        }
    }

    /// An empty store applying `policy` whose pushes and sweeps record their notifications
    /// for the matching subscriptions of `subscriptions` (its
    /// [`NotificationOutbox`](crate::NotificationOutbox)); without this link (`new`) a
    /// push records none.
    pub fn with_subscriptions(
        policy: RetentionPolicy,
        subscriptions: &crate::MemorySubscriptionStore,
    ) -> Self {
        MemoryIntKeyStore {
            map: Sharded::new(Self::DEFAULT_SHARDS),
            policy,
            outbox: MemoryOutbox::linked(subscriptions),
        }
    }

    pub(crate) fn outbox(&self) -> &MemoryOutbox {
        &self.outbox
    }

    /// UEs with at least one key record (expired keys count until swept).
    pub fn ue_count(&self) -> usize {
        let mut n = 0;
        self.map.for_each_shard(|m| n += m.len());
        n
    }

    /// Keys held (expired keys count until swept).
    pub fn key_count(&self) -> usize {
        let mut n = 0;
        self.map
            .for_each_shard(|m| n += m.values().map(|r| r.len()).sum::<usize>());
        n
    }
}

impl Default for MemoryIntKeyStore {
    fn default() -> Self {
        Self::new(RetentionPolicy::DEFAULT)
    }
}

impl core::fmt::Debug for MemoryIntKeyStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemoryIntKeyStore")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Builds a record of exactly `plan.len()` slots from `old` and `new`.
fn build(old: &[Slot], new: &Slot, plan: &[Src]) -> Box<[Slot]> {
    let mut slots = Vec::with_capacity(plan.len());
    for src in plan {
        let slot = match *src {
            Src::Old(i) => old[i].duplicate(),
            Src::New => new.duplicate(),
        };
        slots.push(slot);
    }
    // Capacity equals length, so this does not reallocate.
    slots.into_boxed_slice()
}

/// The synchronous work behind the trait methods: the in-memory store never waits, so
/// each trait method is an `async fn` that does this work at its first poll (computing
/// in `poll` rather than at the call keeps the result from being copied through a `Ready`).
impl MemoryIntKeyStore {
    fn push_now(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        key: &E2mIntKey,
        created: Timestamp,
        now: Timestamp,
    ) -> Result<PushOutcome, StoreError> {
        let policy = &self.policy;
        if now >= policy.expires_at(created) {
            return Ok(PushOutcome::Expired);
        }
        let new = Slot::new(key, key_id, created);
        let packed = PackedImsi::new(imsi);
        let mut shard = self.map.write(&packed);
        let old: &[Slot] = shard.get(&packed).map_or(&[], |r| r);

        // Plan the new record: the live old slots except one with the same id, then the new
        // slot at its place in retention order (creation time, then key id).
        let mut plan = [Src::New; RetentionPolicy::MAX_KEYS_PER_UE + 1];
        let mut len = 0;
        let mut replaced = false;
        for (i, slot) in old.iter().enumerate() {
            if !slot.is_live(policy, now) {
                continue;
            }
            if slot.key_id == new.key_id {
                if slot.created == new.created && bool::from(slot.key.ct_eq(&new.key)) {
                    return Ok(PushOutcome::Unchanged);
                }
                if slot.created() > created {
                    // The held key with this id is newer: it wins, whatever the arrival order.
                    return Ok(PushOutcome::Stale);
                }
                replaced = true;
                continue;
            }
            if len < plan.len() {
                plan[len] = Src::Old(i);
                len += 1;
            }
        }
        let order_of = |src: &Src| match *src {
            Src::Old(i) => old[i].order(),
            Src::New => new.order(),
        };
        // Every planned slot has another id than the new one, so no slot ties with it.
        let mut pos = plan[..len].partition_point(|s| order_of(s) < new.order());
        let mut evicted = None;
        if !replaced && len >= policy.keys_per_ue() {
            if pos == 0 {
                return Ok(PushOutcome::Stale);
            }
            // Evict the oldest live key.
            if let Src::Old(i) = plan[0] {
                evicted = Some(old[i].key_id());
            }
            plan.copy_within(1..len, 0);
            len -= 1;
            pos -= 1;
        }
        plan.copy_within(pos..len, pos + 1);
        plan[pos] = Src::New;
        len += 1;
        let record = build(old, &new, &plan[..len]);
        // The replaced record drops here: every slot in it is zeroized before it is freed.
        shard.insert(packed, record);
        Ok(if replaced {
            PushOutcome::Replaced
        } else {
            PushOutcome::Stored { evicted }
        })
    }

    fn get_now(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        now: Timestamp,
    ) -> Result<Option<HeldKey>, StoreError> {
        let packed = PackedImsi::new(imsi);
        let shard = self.map.read(&packed);
        let id = key_id.as_u32();
        Ok(shard.get(&packed).and_then(|record| {
            record
                .iter()
                .find(|s| s.key_id == id && s.is_live(&self.policy, now))
                .map(|s| s.held(&self.policy))
        }))
    }

    fn latest_now(&self, imsi: &Imsi, now: Timestamp) -> Result<Option<HeldKey>, StoreError> {
        let packed = PackedImsi::new(imsi);
        let shard = self.map.read(&packed);
        Ok(shard.get(&packed).and_then(|record| {
            record
                .last()
                .filter(|s| s.is_live(&self.policy, now))
                .map(|s| s.held(&self.policy))
        }))
    }

    fn held_now(&self, imsi: &Imsi, now: Timestamp) -> Result<Vec<KeyInfo>, StoreError> {
        let packed = PackedImsi::new(imsi);
        let shard = self.map.read(&packed);
        Ok(shard.get(&packed).map_or_else(Vec::new, |record| {
            record
                .iter()
                .filter(|s| s.is_live(&self.policy, now))
                .map(|s| s.info(&self.policy))
                .collect()
        }))
    }

    fn remove_ue_now(&self, imsi: &Imsi) -> Result<usize, StoreError> {
        let packed = PackedImsi::new(imsi);
        let removed = self.map.write(&packed).remove(&packed);
        Ok(removed.map_or(0, |r| r.len()))
    }

    fn sweep_now(&self, now: Timestamp) -> Vec<(Imsi, KeyInfo)> {
        let policy = &self.policy;
        let mut gone: Vec<(PackedImsi, KeyInfo)> = Vec::new();
        self.map.for_each_shard_mut(|map| {
            map.retain(|imsi, record| {
                // Records are in creation order, so the expired slots are a prefix.
                let expired = record
                    .iter()
                    .take_while(|s| !s.is_live(policy, now))
                    .count();
                if expired == 0 {
                    return true;
                }
                gone.extend(record[..expired].iter().map(|s| (*imsi, s.info(policy))));
                if expired == record.len() {
                    return false;
                }
                // Exactly sized, so `into_boxed_slice` does not reallocate (see `build`).
                let mut kept = Vec::with_capacity(record.len() - expired);
                kept.extend(record[expired..].iter().map(Slot::duplicate));
                *record = kept.into_boxed_slice();
                true
            });
        });
        // Unpacked after the locks are released.
        gone.into_iter()
            .filter_map(|(imsi, info)| Some((imsi.unpack()?, info)))
            .collect()
    }
}

impl IntKeyStore for MemoryIntKeyStore {
    fn retention(&self) -> RetentionPolicy {
        self.policy
    }

    async fn push(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        key: &E2mIntKey,
        created: Timestamp,
        now: Timestamp,
    ) -> Result<PushOutcome, StoreError> {
        let outcome = self.push_now(imsi, key_id, key, created, now)?;
        self.outbox.record_push(imsi, key_id, &outcome, now);
        Ok(outcome)
    }

    async fn get(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        now: Timestamp,
    ) -> Result<Option<HeldKey>, StoreError> {
        self.get_now(imsi, key_id, now)
    }

    async fn latest(&self, imsi: &Imsi, now: Timestamp) -> Result<Option<HeldKey>, StoreError> {
        self.latest_now(imsi, now)
    }

    async fn held(&self, imsi: &Imsi, now: Timestamp) -> Result<Vec<KeyInfo>, StoreError> {
        self.held_now(imsi, now)
    }

    async fn remove_ue(&self, imsi: &Imsi) -> Result<usize, StoreError> {
        self.remove_ue_now(imsi)
    }

    async fn sweep(&self, now: Timestamp) -> Result<Vec<(Imsi, KeyInfo)>, StoreError> {
        let gone = self.sweep_now(now);
        for (imsi, info) in &gone {
            self.outbox
                .record(imsi, e2m_types::EventType::KeyRetired, info.key_id, now);
        }
        Ok(gone)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on a broken fixture")]
mod tests {
    use super::*;
    use crate::block_on;

    #[test]
    fn slot_is_44_octets() {
        assert_eq!(core::mem::size_of::<Slot>(), 44);
    }

    #[test]
    fn debug_output_has_no_key_bytes() {
        let store = MemoryIntKeyStore::default();
        let imsi = Imsi::new("001010000000001").unwrap();
        let t = Timestamp::from_unix_secs(10);
        block_on(store.push(
            &imsi,
            KeyId::from_u32(1),
            &E2mIntKey::from_array([0xab; 32]),
            t,
            t,
        ))
        .unwrap();
        let held = block_on(store.get(&imsi, KeyId::from_u32(1), t))
            .unwrap()
            .unwrap();
        for text in [format!("{held:?}"), format!("{store:?}")] {
            assert!(!text.to_lowercase().contains("abab"), "{text}");
            assert!(!text.contains("171, 171"), "{text}");
        }
    }

    #[test]
    fn policy_bounds() {
        assert_eq!(
            RetentionPolicy::new(0, Duration::from_secs(1)),
            Err(PolicyError::KeysPerUe)
        );
        assert_eq!(
            RetentionPolicy::new(17, Duration::from_secs(1)),
            Err(PolicyError::KeysPerUe)
        );
        assert_eq!(
            RetentionPolicy::new(4, Duration::from_millis(999)),
            Err(PolicyError::Zero("max_age"))
        );
        assert!(RetentionPolicy::new(16, Duration::from_secs(1)).is_ok());
    }
}
