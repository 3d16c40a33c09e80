//! Intermediate keys: what the HSS pushes and the EMKS keeps (seed 6.x.2.1, "Considerations
//! on the key identifier", and the derivation step 1).

use core::future::Future;
use core::hash::BuildHasher;
use core::time::Duration;

use e2m_kdf::E2mIntKey;
use e2m_keyid::{Imsi, KeyId};
use foldhash::fast::RandomState;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::open_table::{OpenTable, Slots};
use crate::outbox::MemoryOutbox;
use crate::packed::PackedImsi;
use crate::shard::Striped;
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

/// One retained key as a push or a sweep handles it: a copy taken out of a record or about
/// to go into one, zeroized when dropped.
struct Slot {
    key: [u8; 32],
    key_id: u32,
    /// Unix milliseconds (the full resolution).
    created: u64,
}

impl Slot {
    fn new(key: &E2mIntKey, key_id: KeyId, created: Timestamp) -> Slot {
        Slot {
            key: *key.expose_secret(),
            key_id: key_id.as_u32(),
            created: created.as_unix_millis(),
        }
    }

    /// Where the slot stands in retention order: creation time, then key id.
    fn order(&self) -> (u64, u32) {
        (self.created, self.key_id)
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

/// One cache line of the key table. Zeroized when dropped, so that no key outlives the
/// table that held it, whatever the path by which the table is freed.
#[repr(C, align(64))]
struct Line([u8; 64]);

impl Drop for Line {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Where a UE's record lies in its slot of the key table, for N keys per UE: octets 0..8
/// the packed IMSI (0 in a vacant slot: a packed IMSI never is), octet 8 the number of
/// keys held, from 16 the creation times (`u64` Unix milliseconds each), then the key ids
/// (`u32` each), then from a multiple of 32 the keys (32 octets each, so that no key
/// straddles two lines); the whole rounded up to lines. N = 4: the 64-octet header fills
/// the first line and the four keys the next two: 192 octets, three lines. Held keys come
/// first, oldest first in retention order; the places after them are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    keys: usize,
    lines: usize,
    ids_at: usize,
    keys_at: usize,
}

/// Where the creation times start in a record.
const CREATED_AT: usize = 16;

impl Layout {
    fn new(keys: usize) -> Layout {
        let ids_at = CREATED_AT + 8 * keys;
        let keys_at = (ids_at + 4 * keys).next_multiple_of(32);
        Layout {
            keys,
            lines: (keys_at + 32 * keys).div_ceil(64),
            ids_at,
            keys_at,
        }
    }
}

/// The slots of one shard's key table: `lines.len() / layout.lines` records, each
/// `layout.lines` lines long and starting on a line.
struct KeyLines {
    lines: Box<[Line]>,
    /// Records: `lines.len() / layout.lines`, kept to spare a division per lookup.
    records: usize,
    layout: Layout,
    /// Picks a record's home slot (its own seed: independent of the shard choice).
    hasher: RandomState,
}

/// A shard's key table.
type KeyTable = OpenTable<KeyLines>;

fn le_u64(bytes: &[u8]) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(bytes);
    u64::from_le_bytes(b)
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(bytes);
    u32::from_le_bytes(b)
}

impl KeyLines {
    fn empty(layout: Layout) -> KeyLines {
        KeyLines {
            lines: Box::new([]),
            records: 0,
            layout,
            hasher: RandomState::default(),
        }
    }

    fn hash_of(&self, imsi: PackedImsi) -> u64 {
        self.hasher.hash_one(imsi.as_u64())
    }

    /// The lines of record `slot`.
    #[cfg(test)]
    fn record(&self, slot: usize) -> &[Line] {
        let per = self.layout.lines;
        &self.lines[slot * per..(slot + 1) * per]
    }

    fn record_mut(&mut self, slot: usize) -> &mut [Line] {
        let per = self.layout.lines;
        &mut self.lines[slot * per..(slot + 1) * per]
    }

    /// The line of record `slot` that holds octet `offset` of the record.
    fn line(&self, slot: usize, offset: usize) -> &[u8; 64] {
        &self.lines[slot * self.layout.lines + offset / 64].0
    }

    fn imsi(&self, slot: usize) -> u64 {
        le_u64(&self.line(slot, 0)[..8])
    }

    /// Keys held in record `slot`.
    fn count(&self, slot: usize) -> usize {
        usize::from(self.line(slot, 0)[8])
    }

    /// Record `slot`, to read its keys.
    fn rec(&self, slot: usize) -> Rec<'_> {
        let per = self.layout.lines;
        Rec {
            lines: &self.lines[slot * per..(slot + 1) * per],
            layout: self.layout,
        }
    }

    /// `len` octets at `offset` in record `slot`, to write.
    fn octets_mut(&mut self, slot: usize, offset: usize, len: usize) -> &mut [u8] {
        let line = &mut self.lines[slot * self.layout.lines + offset / 64].0;
        &mut line[offset % 64..][..len]
    }

    /// The places of key `k`'s three fields: creation time, key id, key.
    fn places(&self, k: usize) -> [(usize, usize); 3] {
        [
            (CREATED_AT + 8 * k, 8),
            (self.layout.ids_at + 4 * k, 4),
            (self.layout.keys_at + 32 * k, 32),
        ]
    }

    /// Sets the IMSI and the number of keys of record `slot`.
    fn set_header(&mut self, slot: usize, imsi: PackedImsi, count: usize) {
        self.octets_mut(slot, 0, 8)
            .copy_from_slice(&imsi.as_u64().to_le_bytes());
        // At most MAX_KEYS_PER_UE (16).
        self.octets_mut(slot, 8, 1)[0] = count as u8;
    }

    /// Writes `key` into place `k` of record `slot`.
    fn put_key(&mut self, slot: usize, k: usize, key: &Slot) {
        let [created, id, octets] = self.places(k);
        self.octets_mut(slot, created.0, created.1)
            .copy_from_slice(&key.created.to_le_bytes());
        self.octets_mut(slot, id.0, id.1)
            .copy_from_slice(&key.key_id.to_le_bytes());
        self.octets_mut(slot, octets.0, octets.1)
            .copy_from_slice(&key.key);
    }

    /// Copies place `from` of record `slot` over place `to` (the caller overwrites or
    /// clears `from` afterwards), line to line: no copy of a key passes through the stack.
    fn copy_key(&mut self, slot: usize, from: usize, to: usize) {
        let base = slot * self.layout.lines;
        for ((at, len), (to_at, _)) in self.places(from).into_iter().zip(self.places(to)) {
            let (src, dst) = (base + at / 64, base + to_at / 64);
            let (src_range, dst_at) = (at % 64..at % 64 + len, to_at % 64);
            if src == dst {
                self.lines[src].0.copy_within(src_range, dst_at);
            } else if src < dst {
                let (before, from_dst) = self.lines.split_at_mut(dst);
                from_dst[0].0[dst_at..][..len].copy_from_slice(&before[src].0[src_range]);
            } else {
                let (before, from_src) = self.lines.split_at_mut(src);
                before[dst].0[dst_at..][..len].copy_from_slice(&from_src[0].0[src_range]);
            }
        }
    }

    /// Zeroes place `k` of record `slot`.
    fn clear_key(&mut self, slot: usize, k: usize) {
        for (at, len) in self.places(k) {
            self.octets_mut(slot, at, len).zeroize();
        }
    }
}

/// One record's lines, to read its fields (the record's place is found once).
#[derive(Clone, Copy)]
struct Rec<'a> {
    lines: &'a [Line],
    layout: Layout,
}

impl Rec<'_> {
    /// `len` octets at `offset` (the layout keeps every field within a line).
    fn octets(&self, offset: usize, len: usize) -> &[u8] {
        &self.lines[offset / 64].0[offset % 64..][..len]
    }

    /// Keys held.
    fn count(&self) -> usize {
        usize::from(self.octets(8, 1)[0])
    }

    fn key_id(&self, k: usize) -> u32 {
        le_u32(self.octets(self.layout.ids_at + 4 * k, 4))
    }

    fn created(&self, k: usize) -> Timestamp {
        Timestamp::from_unix_millis(le_u64(self.octets(CREATED_AT + 8 * k, 8)))
    }

    fn key(&self, k: usize) -> &[u8] {
        self.octets(self.layout.keys_at + 32 * k, 32)
    }

    fn is_live(&self, k: usize, policy: &RetentionPolicy, now: Timestamp) -> bool {
        now < policy.expires_at(self.created(k))
    }

    fn info(&self, k: usize, policy: &RetentionPolicy) -> KeyInfo {
        let created = self.created(k);
        KeyInfo {
            key_id: KeyId::from_u32(self.key_id(k)),
            created,
            expires: policy.expires_at(created),
        }
    }

    fn held(&self, k: usize, policy: &RetentionPolicy) -> Option<HeldKey> {
        Some(HeldKey {
            info: self.info(k, policy),
            // A 32-octet field: this cannot fail.
            key: E2mIntKey::from_slice(self.key(k)).ok()?,
        })
    }
}

/// Rearranges the keys of record `slot` in place: place `p` receives what `plan[p]` names
/// (an old place, or `new`), the places after the plan are zeroed, and the count is set.
/// The old places a plan names must be strictly increasing (they are: held keys keep their
/// order), which makes a safe order of copies: first the moves to a later place, from the
/// last, then the moves to an earlier place, from the first, then `new`.
fn rearrange(
    s: &mut KeyLines,
    slot: usize,
    imsi: PackedImsi,
    plan: &[Src],
    new: &Slot,
    held_before: usize,
) {
    for (p, src) in plan.iter().enumerate().rev() {
        if let Src::Old(o) = *src
            && o < p
        {
            s.copy_key(slot, o, p);
        }
    }
    for (p, src) in plan.iter().enumerate() {
        if let Src::Old(o) = *src
            && o > p
        {
            s.copy_key(slot, o, p);
        }
    }
    for (p, src) in plan.iter().enumerate() {
        if let Src::New = src {
            s.put_key(slot, p, new);
        }
    }
    for k in plan.len()..held_before {
        s.clear_key(slot, k);
    }
    s.set_header(slot, imsi, plan.len());
}

impl Slots for KeyLines {
    fn vacant_like(&self, capacity: usize) -> Self {
        KeyLines {
            lines: (0..capacity * self.layout.lines)
                .map(|_| Line([0; 64]))
                .collect(),
            records: capacity,
            layout: self.layout,
            hasher: self.hasher.clone(),
        }
    }

    fn capacity(&self) -> usize {
        self.records
    }

    fn is_vacant(&self, i: usize) -> bool {
        self.imsi(i) == 0
    }

    fn hash_at(&self, i: usize) -> u64 {
        self.hasher.hash_one(self.imsi(i))
    }

    fn move_to(&mut self, from: usize, dest: &mut Self, to: usize) {
        for (d, s) in dest
            .record_mut(to)
            .iter_mut()
            .zip(self.record_mut(from).iter_mut())
        {
            d.0 = s.0;
            s.0.zeroize();
        }
    }

    fn move_within(&mut self, from: usize, to: usize) {
        let per = self.layout.lines;
        for l in 0..per {
            let line = self.lines[from * per + l].0;
            self.lines[to * per + l].0 = line;
            self.lines[from * per + l].0.zeroize();
        }
    }

    fn clear(&mut self, i: usize) {
        for line in self.record_mut(i) {
            line.0.zeroize();
        }
    }

    /// The home record and the two after it, whole (576 octets, in one run of lines): a
    /// hit reads the header line and then one key line of the record that holds the IMSI,
    /// which is one of these three for most records (linear probing keeps about 3 in 4
    /// within two slots of their home at the highest load), so their misses overlap
    /// instead of following one another.
    fn touch(&self, home: usize) {
        let per = self.layout.lines;
        for line in self.lines.iter().skip(home * per).take(3 * per) {
            core::hint::black_box(line.0[0]);
        }
    }
}

/// The in-memory [`IntKeyStore`], built for tens of millions of UEs.
///
/// Layout: lock-striped tables (64 shards by default), each one array of fixed-size
/// records in open addressing (the crate's `open_table` module): a UE's IMSI, packed into
/// one `u64`, and its N keys lie together in one slot of a fixed size (192 octets,
/// three cache lines, at N = 4), oldest first in retention order. A lookup computes the
/// home slot from the IMSI's hash and reads that record's lines at once: about one memory
/// latency at any size, where a map of boxed records took three in a row (issue 20).
/// Keys are never left behind: a record is rewritten in place; a table grows by copying
/// each record and then wiping its old place, and a removal's backward shift likewise;
/// every line is zeroized when freed. Memory: the slot size over the load (between 3/4
/// and 9/10), 213–256 octets per UE at N = 4 (see the `keystore` benchmark for the
/// measured figure).
pub struct MemoryIntKeyStore {
    map: Striped<KeyTable>,
    policy: RetentionPolicy,
    /// Notifications its pushes and sweeps record (none unless linked to subscriptions).
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
        Self::build(policy, shards, MemoryOutbox::default())
    }

    /// An empty store applying `policy` whose pushes and sweeps record their notifications
    /// for the matching subscriptions of `subscriptions` (its
    /// [`NotificationOutbox`](crate::NotificationOutbox)); without this link (`new`) a
    /// push records none.
    pub fn with_subscriptions(
        policy: RetentionPolicy,
        subscriptions: &crate::MemorySubscriptionStore,
    ) -> Self {
        Self::build(
            policy,
            Self::DEFAULT_SHARDS,
            MemoryOutbox::linked(subscriptions),
        )
    }

    fn build(policy: RetentionPolicy, shards: usize, outbox: MemoryOutbox) -> Self {
        let layout = Layout::new(policy.keys_per_ue());
        MemoryIntKeyStore {
            map: Striped::with(shards, |_| OpenTable::new(KeyLines::empty(layout))),
            policy,
            outbox,
        }
    }

    pub(crate) fn outbox(&self) -> &MemoryOutbox {
        &self.outbox
    }

    /// UEs with at least one key record (expired keys count until swept).
    pub fn ue_count(&self) -> usize {
        let mut n = 0;
        self.map.for_each_shard(|t| n += t.len());
        n
    }

    /// Keys held (expired keys count until swept).
    pub fn key_count(&self) -> usize {
        let mut n = 0;
        self.map.for_each_shard(|t| {
            n += t.occupied().map(|i| t.slots().count(i)).sum::<usize>();
        });
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

/// The slot of `imsi`'s record in `table`, or the vacant slot where it would go.
fn find(table: &KeyTable, imsi: PackedImsi) -> Result<usize, Option<usize>> {
    let want = imsi.as_u64();
    table.find(table.slots().hash_of(imsi), |s, i| s.imsi(i) == want)
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
        let mut table = self.map.write(&packed);
        let found = find(&table, packed);
        let s = table.slots();
        let old = found.ok().map(|i| s.rec(i));
        let held = old.map_or(0, |r| r.count());
        let order_of = |src: &Src| match (*src, old) {
            (Src::Old(k), Some(r)) => (r.created(k).as_unix_millis(), r.key_id(k)),
            _ => new.order(),
        };

        // Plan the new record: the live old keys except one with the same id, then the new
        // key at its place in retention order (creation time, then key id).
        let mut plan = [Src::New; RetentionPolicy::MAX_KEYS_PER_UE + 1];
        let mut len = 0;
        let mut replaced = false;
        if let Some(r) = old {
            for k in 0..held {
                if !r.is_live(k, policy, now) {
                    continue;
                }
                if r.key_id(k) == new.key_id {
                    if r.created(k) == created && bool::from(r.key(k).ct_eq(&new.key)) {
                        return Ok(PushOutcome::Unchanged);
                    }
                    if r.created(k) > created {
                        // The held key with this id is newer: it wins, whatever the arrival order.
                        return Ok(PushOutcome::Stale);
                    }
                    replaced = true;
                    continue;
                }
                if len < plan.len() {
                    plan[len] = Src::Old(k);
                    len += 1;
                }
            }
        }
        // Every planned key has another id than the new one, so none ties with it.
        let mut pos = plan[..len].partition_point(|src| order_of(src) < new.order());
        let mut evicted = None;
        if !replaced && len >= policy.keys_per_ue() {
            if pos == 0 {
                return Ok(PushOutcome::Stale);
            }
            // Evict the oldest live key.
            if let (Src::Old(k), Some(r)) = (plan[0], old) {
                evicted = Some(KeyId::from_u32(r.key_id(k)));
            }
            plan.copy_within(1..len, 0);
            len -= 1;
            pos -= 1;
        }
        plan.copy_within(pos..len, pos + 1);
        plan[pos] = Src::New;
        len += 1;
        // The record is rewritten where it lies: no copy of a key is made anywhere else.
        match found {
            Ok(i) => rearrange(table.slots_mut(), i, packed, &plan[..len], &new, held),
            Err(_) => {
                table.reserve_one();
                if let Err(Some(vacant)) = find(&table, packed) {
                    table.insert_at(vacant, |s, i| {
                        rearrange(s, i, packed, &plan[..len], &new, 0);
                    });
                }
            }
        }
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
        let table = self.map.read(&packed);
        let Ok(i) = find(&table, packed) else {
            return Ok(None);
        };
        let (r, id, policy) = (table.slots().rec(i), key_id.as_u32(), &self.policy);
        Ok((0..r.count())
            .find(|&k| r.key_id(k) == id && r.is_live(k, policy, now))
            .and_then(|k| r.held(k, policy)))
    }

    fn latest_now(&self, imsi: &Imsi, now: Timestamp) -> Result<Option<HeldKey>, StoreError> {
        let packed = PackedImsi::new(imsi);
        let table = self.map.read(&packed);
        let Ok(i) = find(&table, packed) else {
            return Ok(None);
        };
        let (r, policy) = (table.slots().rec(i), &self.policy);
        Ok(r.count()
            .checked_sub(1)
            .filter(|&k| r.is_live(k, policy, now))
            .and_then(|k| r.held(k, policy)))
    }

    fn held_now(&self, imsi: &Imsi, now: Timestamp) -> Result<Vec<KeyInfo>, StoreError> {
        let packed = PackedImsi::new(imsi);
        let table = self.map.read(&packed);
        let Ok(i) = find(&table, packed) else {
            return Ok(Vec::new());
        };
        let (r, policy) = (table.slots().rec(i), &self.policy);
        Ok((0..r.count())
            .filter(|&k| r.is_live(k, policy, now))
            .map(|k| r.info(k, policy))
            .collect())
    }

    fn remove_ue_now(&self, imsi: &Imsi) -> Result<usize, StoreError> {
        let packed = PackedImsi::new(imsi);
        let mut table = self.map.write(&packed);
        let Ok(i) = find(&table, packed) else {
            return Ok(0);
        };
        let held = table.slots().count(i);
        table.remove_at(i);
        Ok(held)
    }

    fn sweep_now(&self, now: Timestamp) -> Vec<(Imsi, KeyInfo)> {
        let policy = &self.policy;
        let mut gone: Vec<(PackedImsi, KeyInfo)> = Vec::new();
        self.map.for_each_shard_mut(|table| {
            table.retain(|s, i| {
                // Records are in creation order, so the expired keys are a prefix.
                let r = s.rec(i);
                let held = r.count();
                let expired = (0..held)
                    .take_while(|&k| !r.is_live(k, policy, now))
                    .count();
                if expired == 0 {
                    return true;
                }
                let imsi = PackedImsi::from_u64(s.imsi(i));
                gone.extend((0..expired).map(|k| (imsi, r.info(k, policy))));
                if expired == held {
                    return false;
                }
                let plan: Vec<Src> = (expired..held).map(Src::Old).collect();
                // `new` is not placed: the plan names old keys only.
                let none = Slot {
                    key: [0; 32],
                    key_id: 0,
                    created: 0,
                };
                rearrange(s, i, imsi, &plan, &none, held);
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
    fn four_keys_take_three_lines_and_no_key_straddles_two() {
        assert_eq!(core::mem::size_of::<Line>(), 64);
        assert_eq!(core::mem::align_of::<Line>(), 64);
        let four = Layout::new(4);
        assert_eq!((four.lines, four.ids_at, four.keys_at), (3, 48, 64));
        for n in 1..=RetentionPolicy::MAX_KEYS_PER_UE {
            let l = Layout::new(n);
            assert!(l.ids_at + 4 * n <= l.keys_at, "{l:?}");
            assert_eq!(l.keys_at % 32, 0, "{l:?}");
            assert!(l.keys_at + 32 * n <= 64 * l.lines, "{l:?}");
            // Every u64 field lies within a line (offsets are multiples of 8).
            assert_eq!(CREATED_AT % 8, 0);
        }
    }

    fn key_of(ue: u32, id: u32) -> E2mIntKey {
        let mut k = [0x5a; 32];
        k[..4].copy_from_slice(&ue.to_le_bytes());
        k[4..8].copy_from_slice(&id.to_le_bytes());
        E2mIntKey::from_array(k)
    }

    /// Every way a record leaves a place wipes that place: moving it to another table (a
    /// table growing), within one (a removal's backward shift), or clearing it.
    #[test]
    fn a_record_leaves_nothing_where_it_was() {
        let policy = RetentionPolicy::DEFAULT;
        let mut lines = KeyLines::empty(Layout::new(policy.keys_per_ue())).vacant_like(4);
        let imsi = PackedImsi::new(&Imsi::new("001010000000001").unwrap());
        let held = [
            Slot::new(
                &key_of(1, 1),
                KeyId::from_u32(1),
                Timestamp::from_unix_secs(5),
            ),
            Slot::new(
                &key_of(1, 2),
                KeyId::from_u32(2),
                Timestamp::from_unix_secs(6),
            ),
        ];
        let wiped = |l: &KeyLines, slot: usize| l.record(slot).iter().all(|x| x.0 == [0; 64]);
        for (k, key) in held.iter().enumerate() {
            lines.put_key(0, k, key);
        }
        lines.set_header(0, imsi, held.len());
        assert!(!wiped(&lines, 0));
        assert_eq!(
            (lines.count(0), lines.rec(0).key(1)),
            (2, key_of(1, 2).expose_secret().as_slice())
        );

        lines.move_within(0, 2);
        assert!(wiped(&lines, 0));
        assert_eq!(lines.imsi(2), imsi.as_u64());

        let mut other = lines.vacant_like(8);
        lines.move_to(2, &mut other, 5);
        assert!(wiped(&lines, 2));
        assert_eq!(other.rec(5).key(0), key_of(1, 1).expose_secret().as_slice());

        other.clear(5);
        assert!(wiped(&other, 5));
        assert!(other.is_vacant(5));
    }

    /// Thousands of UEs in two shards: the tables grow many times, then half the UEs are
    /// removed and a sweep expires part of the rest (backward shifts all over the tables);
    /// after each step every UE holds exactly the keys it should.
    #[test]
    fn growing_removing_and_sweeping_keep_every_record() {
        let policy = RetentionPolicy::new(3, Duration::from_secs(100)).unwrap();
        let store = MemoryIntKeyStore::with_shards(policy, 2);
        let imsi = |ue: u32| Imsi::new(&format!("00101{ue:010}")).unwrap();
        let t = |s: u64| Timestamp::from_unix_secs(s);
        const UES: u32 = 3000;
        // UE n gets keys 1..=4 (the first evicted), created at second id + n % 50.
        for id in 1..=4u32 {
            for ue in 0..UES {
                let created = t(u64::from(id + ue % 50));
                let out = block_on(store.push(
                    &imsi(ue),
                    KeyId::from_u32(id),
                    &key_of(ue, id),
                    created,
                    created,
                ));
                assert!(out.unwrap().is_held());
            }
        }
        let check = |ue: u32, now: Timestamp, removed: bool| {
            for id in 1..=4u32 {
                let created = u64::from(id + ue % 50);
                let live = !removed && id >= 2 && now < t(created + 100);
                let got = block_on(store.get(&imsi(ue), KeyId::from_u32(id), now)).unwrap();
                assert_eq!(got.is_some(), live, "UE {ue} key {id} at {now:?}");
                if let Some(held) = got {
                    assert!(held.key == key_of(ue, id), "UE {ue} key {id}: other octets");
                    assert_eq!(held.info.created, t(created));
                }
            }
        };
        let now = t(60);
        assert_eq!(store.ue_count(), UES as usize);
        assert_eq!(store.key_count(), 3 * UES as usize);
        (0..UES).for_each(|ue| check(ue, now, false));
        for ue in (0..UES).step_by(2) {
            assert_eq!(block_on(store.remove_ue(&imsi(ue))).unwrap(), 3);
        }
        (0..UES).for_each(|ue| check(ue, now, ue % 2 == 0));
        // At 130 s, keys created before 30 s are gone: for UEs with ue % 50 < 28, key 2
        // (created at 2 + ue % 50); others keep all three.
        let later = t(130);
        let gone = block_on(store.sweep(later)).unwrap();
        let expected: usize = (1..UES)
            .step_by(2)
            .map(|ue| (2..=4).filter(|id| id + ue % 50 + 100 <= 130).count())
            .sum();
        assert_eq!(gone.len(), expected);
        (0..UES).for_each(|ue| check(ue, later, ue % 2 == 0));
        let still: usize = (1..UES)
            .step_by(2)
            .filter(|ue| (2..=4).any(|id| id + ue % 50 + 100 > 130))
            .count();
        assert_eq!(store.ue_count(), still);
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
