//! The identity map: `(EMSE_Id, application identity) → IMSI`, the seed's preferred case 2
//! (6.x.2.1, "Considerations on the user identity": the EMSE sends the UE's application
//! layer identity and the EMKS translates it to an IMSI).

use core::future::Future;
use core::hash::BuildHasher;
use std::collections::HashMap;

use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId};
use foldhash::fast::RandomState;

use crate::identity_keys::{IdentityKey, IdentityKeyError, resolve_then_get};
use crate::import::{IdentityRow, ImportSummary};
use crate::inline_bytes::InlineBytes;
use crate::open_table::{OpenTable, Slots};
use crate::packed::PackedImsi;
use crate::shard::Sharded;
use crate::{DatabaseId, IntKeyStore, StoreError, Timestamp};

/// What [`IdentityMap::provision`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Provisioned {
    /// A new mapping.
    New,
    /// The identity was mapped to another IMSI, now replaced.
    Replaced {
        /// The IMSI it named before.
        previous: Imsi,
    },
    /// The identical mapping was already there.
    Unchanged,
}

/// Which IMSI an application identity names, for one EMSE.
///
/// Promises, checked by [`conformance::identities`](crate::conformance::identities):
/// a mapping is scoped to the EMSE it was provisioned for, so an identity means nothing to
/// any other EMSE (no cross-EMSE lookups, no enumeration); identities and EMSE_Ids compare
/// octet for octet (no case folding or other normalisation: the types already refuse the
/// invisible characters that make look-alikes); the latest provisioning wins.
pub trait IdentityMap: Send + Sync {
    /// Maps `app` to `imsi` for `emse`.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn provision(
        &self,
        emse: &EmseId,
        app: &AppIdentity,
        imsi: &Imsi,
    ) -> impl Future<Output = Result<Provisioned, StoreError>> + Send;

    /// The IMSI `app` names for `emse`, if provisioned.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn resolve(
        &self,
        emse: &EmseId,
        app: &AppIdentity,
    ) -> impl Future<Output = Result<Option<Imsi>, StoreError>> + Send;

    /// Removes the mapping of `app` for `emse`; returns the IMSI it named.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn remove(
        &self,
        emse: &EmseId,
        app: &AppIdentity,
    ) -> impl Future<Output = Result<Option<Imsi>, StoreError>> + Send;

    /// Removes every mapping of `emse` (an EMSE taken out of service); returns how many.
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn remove_emse(&self, emse: &EmseId) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Provisions every row, atomically: all of them or none (operator provisioning from a
    /// file, parsed by [`parse_identity_csv`](crate::import::parse_identity_csv)).
    ///
    /// Idempotent: a row whose mapping is already there, identical, is counted as
    /// unchanged, so importing the same file again changes nothing and says so
    /// ([`ImportSummary::changed_nothing`]). An import never replaces a mapping: a row that
    /// maps an EMSE_Id and identity already mapped to another IMSI (in the store, or by an
    /// earlier row of `rows`) fails the whole call with [`StoreError::ImportConflict`]
    /// naming that row's line, and nothing is stored (use
    /// [`provision`](Self::provision) to change one mapping on purpose). Readers see the
    /// map before or after the whole call, never part of it.
    ///
    /// # Errors
    /// [`StoreError::ImportConflict`], or a backend error (then nothing was stored).
    fn provision_all(
        &self,
        rows: Vec<IdentityRow>,
    ) -> impl Future<Output = Result<ImportSummary, StoreError>> + Send;

    /// The database this map lives in, if one query can read it together with another
    /// store answering the same token (see [`DatabaseId`]). `None` (the default): never.
    fn database(&self) -> Option<DatabaseId> {
        None
    }

    /// The IMSI `app` names for `emse` and that UE's live key `key_id` in `keys`: what a
    /// key fetch by application identity needs, in one call.
    ///
    /// Answers exactly as [`resolve`](Self::resolve) followed by
    /// [`IntKeyStore::get`] of the IMSI found, which is what the default does
    /// ([`resolve_then_get`]); checked by
    /// [`conformance::identity_keys`](crate::conformance::identity_keys). A backend whose
    /// map and key store share a database ([`database`](Self::database) equal to
    /// `keys.database()`) may answer with one query, and falls back to the default for
    /// any other `keys`.
    ///
    /// ```
    /// use e2m_keystore::{block_on, AppIdentity, E2mIntKey, EmseId, IdentityKey, IdentityMap,
    ///     Imsi, IntKeyStore, KeyId, MemoryIdentityMap, MemoryIntKeyStore, Timestamp};
    ///
    /// let (map, keys) = (MemoryIdentityMap::new(), MemoryIntKeyStore::default());
    /// let emse = EmseId::new("emse-a.example.com").unwrap();
    /// let app = AppIdentity::new("sensor-17@iot.example.com").unwrap();
    /// let imsi = Imsi::new("001010000000017").unwrap();
    /// let now = Timestamp::from_unix_secs(1_800_000_000);
    /// block_on(map.provision(&emse, &app, &imsi)).unwrap();
    /// let key = E2mIntKey::from_array([7; 32]);
    /// block_on(keys.push(&imsi, KeyId::from_u32(9), &key, now, now)).unwrap();
    ///
    /// match block_on(map.resolve_key(&keys, &emse, &app, KeyId::from_u32(9), now)).unwrap() {
    ///     IdentityKey::Held { imsi: found, key } => {
    ///         assert_eq!(found, imsi);
    ///         assert_eq!(key.info.key_id, KeyId::from_u32(9));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// let other = block_on(map.resolve_key(&keys, &emse, &app, KeyId::from_u32(8), now));
    /// assert!(matches!(other.unwrap(), IdentityKey::NotHeld { .. }));
    /// ```
    ///
    /// # Errors
    /// [`IdentityKeyError`]: the store's error, with the IMSI if it was resolved first.
    fn resolve_key<K: IntKeyStore>(
        &self,
        keys: &K,
        emse: &EmseId,
        app: &AppIdentity,
        key_id: KeyId,
        now: Timestamp,
    ) -> impl Future<Output = Result<IdentityKey, IdentityKeyError>> + Send {
        resolve_then_get(self, keys, emse, app, key_id, now)
    }
}

/// One mapping: the identity (in its slot when short, see [`InlineBytes`]) and the IMSI.
struct IdEntry {
    app: InlineBytes,
    imsi: PackedImsi,
}

/// The slots of one EMSE's identities within one shard: 40 octets each, so that resolving
/// an identity reads the line (or two adjacent lines) its home slot lies on.
struct IdSlots {
    slots: Box<[Option<IdEntry>]>,
    hasher: RandomState,
}

impl IdSlots {
    fn hash_of(&self, app: &[u8]) -> u64 {
        self.hasher.hash_one(app)
    }

    fn holds(&self, i: usize, app: &[u8]) -> bool {
        self.slots[i]
            .as_ref()
            .is_some_and(|e| e.app.as_bytes() == app)
    }
}

impl Slots for IdSlots {
    fn vacant_like(&self, capacity: usize) -> Self {
        IdSlots {
            slots: (0..capacity).map(|_| None).collect(),
            hasher: self.hasher.clone(),
        }
    }

    fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn is_vacant(&self, i: usize) -> bool {
        self.slots[i].is_none()
    }

    fn hash_at(&self, i: usize) -> u64 {
        self.slots[i]
            .as_ref()
            .map_or(0, |e| self.hash_of(e.app.as_bytes()))
    }

    fn move_to(&mut self, from: usize, dest: &mut Self, to: usize) {
        dest.slots[to] = self.slots[from].take();
    }

    fn move_within(&mut self, from: usize, to: usize) {
        self.slots[to] = self.slots[from].take();
    }

    fn clear(&mut self, i: usize) {
        self.slots[i] = None;
    }

    /// The home slot and the five after it (240 octets, where most searches end): their
    /// lines are requested together rather than one after another.
    fn touch(&self, home: usize) {
        for slot in self.slots.iter().skip(home).take(6) {
            core::hint::black_box(slot.is_some());
        }
    }
}

/// Identities of one EMSE within one shard, in open addressing (the crate's `open_table`
/// module): resolving one touches the lines of its home slot and nothing else, where a
/// `HashMap` read its control bytes first and then the bucket they pointed to.
struct PerEmse(OpenTable<IdSlots>);

impl PerEmse {
    fn new(hasher: RandomState) -> PerEmse {
        PerEmse(OpenTable::new(IdSlots {
            slots: Box::new([]),
            hasher,
        }))
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    fn find(&self, app: &[u8]) -> Result<usize, Option<usize>> {
        self.0
            .find(self.0.slots().hash_of(app), |s, i| s.holds(i, app))
    }

    fn get(&self, app: &[u8]) -> Option<PackedImsi> {
        let i = self.find(app).ok()?;
        self.0.slots().slots[i].as_ref().map(|e| e.imsi)
    }

    /// Maps `app` to `imsi`; the IMSI it named before, if any.
    fn insert(&mut self, app: &[u8], imsi: PackedImsi) -> Option<PackedImsi> {
        if let Ok(i) = self.find(app) {
            let entry = self.0.slots_mut().slots[i].as_mut()?;
            return Some(core::mem::replace(&mut entry.imsi, imsi));
        }
        self.0.reserve_one();
        if let Err(Some(vacant)) = self.find(app) {
            self.0.insert_at(vacant, |s, i| {
                s.slots[i] = Some(IdEntry {
                    app: app.into(),
                    imsi,
                });
            });
        }
        None
    }

    fn remove(&mut self, app: &[u8]) -> Option<PackedImsi> {
        let i = self.find(app).ok()?;
        let imsi = self.0.slots().slots[i].as_ref().map(|e| e.imsi);
        self.0.remove_at(i);
        imsi
    }
}

/// The in-memory [`IdentityMap`].
///
/// Lock-striped by `(EMSE_Id, identity)`; each shard maps the EMSE_Id to that EMSE's
/// identities, so a lookup borrows both strings (no allocation) and the large EMSE_Id is
/// stored once per shard rather than once per mapping.
pub struct MemoryIdentityMap {
    map: Sharded<Box<[u8]>, PerEmse>,
    hasher: RandomState,
}

impl MemoryIdentityMap {
    /// An empty map.
    pub fn new() -> Self {
        MemoryIdentityMap {
            map: Sharded::new(64),
            hasher: RandomState::default(),
        }
    }

    /// Mappings held, over all EMSEs.
    pub fn len(&self) -> usize {
        let mut n = 0;
        self.map
            .for_each_shard(|m| n += m.values().map(PerEmse::len).sum::<usize>());
        n
    }

    /// Whether no mapping is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shard key: both names, so that one EMSE's identities spread over every shard.
    /// Octets, not text: the names compare octet for octet anyway, and `as_bytes` skips the
    /// UTF-8 check that `as_str` repeats on every call (four per lookup, on the fetch path).
    fn shard_key<'a>(emse: &'a EmseId, app: &'a AppIdentity) -> (&'a [u8], &'a [u8]) {
        (emse.as_bytes(), app.as_bytes())
    }
}

impl Default for MemoryIdentityMap {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for MemoryIdentityMap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemoryIdentityMap").finish_non_exhaustive()
    }
}

/// The synchronous work behind the trait methods: the in-memory store never waits, so
/// each trait method is an `async fn` that does this work at its first poll (computing
/// in `poll` rather than at the call keeps the result from being copied through a `Ready`).
impl MemoryIdentityMap {
    fn provision_now(
        &self,
        emse: &EmseId,
        app: &AppIdentity,
        imsi: &Imsi,
    ) -> Result<Provisioned, StoreError> {
        let packed = PackedImsi::new(imsi);
        let mut shard = self.map.write(&Self::shard_key(emse, app));
        let per_emse = match shard.get_mut(emse.as_bytes()) {
            Some(m) => m,
            None => shard
                .entry(emse.as_bytes().into())
                .or_insert_with(|| PerEmse::new(self.hasher.clone())),
        };
        let previous = per_emse.insert(app.as_bytes(), packed);
        Ok(match previous {
            None => Provisioned::New,
            Some(p) if p == packed => Provisioned::Unchanged,
            Some(p) => match p.unpack() {
                Some(previous) => Provisioned::Replaced { previous },
                None => Provisioned::New,
            },
        })
    }

    fn resolve_now(&self, emse: &EmseId, app: &AppIdentity) -> Result<Option<Imsi>, StoreError> {
        let shard = self.map.read(&Self::shard_key(emse, app));
        Ok(shard
            .get(emse.as_bytes())
            .and_then(|m| m.get(app.as_bytes()))
            .and_then(PackedImsi::unpack))
    }

    fn remove_now(&self, emse: &EmseId, app: &AppIdentity) -> Result<Option<Imsi>, StoreError> {
        let mut shard = self.map.write(&Self::shard_key(emse, app));
        let Some(per_emse) = shard.get_mut(emse.as_bytes()) else {
            return Ok(None);
        };
        let removed = per_emse.remove(app.as_bytes());
        if per_emse.is_empty() {
            shard.remove(emse.as_bytes());
        }
        Ok(removed.and_then(PackedImsi::unpack))
    }

    /// Holds every shard's write lock for the whole call, so that readers see all rows or
    /// none; checks every row before changing anything.
    fn provision_all_now(&self, rows: &[IdentityRow]) -> Result<ImportSummary, StoreError> {
        let mut shards = self.map.lock_all();
        // (EMSE_Id, identity) → (IMSI, line) of the rows met so far in this call.
        let mut in_call: HashMap<RowKey<'_>, (PackedImsi, usize), RandomState> =
            HashMap::with_capacity_and_hasher(rows.len(), RandomState::default());
        let mut unchanged = 0;
        for row in rows {
            let packed = PackedImsi::new(&row.imsi);
            let key = (row.emse.as_bytes(), row.app.as_bytes());
            if let Some(&(earlier, _)) = in_call.get(&key) {
                if earlier != packed {
                    return Err(StoreError::ImportConflict { line: row.line });
                }
                unchanged += 1;
                continue;
            }
            let shard = &shards[self.map.shard_of(&Self::shard_key(&row.emse, &row.app))];
            match shard
                .get(row.emse.as_bytes())
                .and_then(|m| m.get(row.app.as_bytes()))
            {
                Some(stored) if stored != packed => {
                    return Err(StoreError::ImportConflict { line: row.line });
                }
                Some(_) => unchanged += 1,
                None => {}
            }
            in_call.insert(key, (packed, row.line));
        }
        let mut added = 0;
        for row in rows {
            let shard = &mut shards[self.map.shard_of(&Self::shard_key(&row.emse, &row.app))];
            let per_emse = match shard.get_mut(row.emse.as_bytes()) {
                Some(m) => m,
                None => shard
                    .entry(row.emse.as_bytes().into())
                    .or_insert_with(|| PerEmse::new(self.hasher.clone())),
            };
            if per_emse.get(row.app.as_bytes()).is_none() {
                per_emse.insert(row.app.as_bytes(), PackedImsi::new(&row.imsi));
                added += 1;
            }
        }
        Ok(ImportSummary::new(added, unchanged))
    }

    fn remove_emse_now(&self, emse: &EmseId) -> Result<usize, StoreError> {
        let mut removed = 0;
        self.map.for_each_shard_mut(|m| {
            if let Some(per_emse) = m.remove(emse.as_bytes()) {
                removed += per_emse.len();
            }
        });
        Ok(removed)
    }
}

/// (EMSE_Id, application identity) octets of one import row.
type RowKey<'a> = (&'a [u8], &'a [u8]);

impl IdentityMap for MemoryIdentityMap {
    async fn provision(
        &self,
        emse: &EmseId,
        app: &AppIdentity,
        imsi: &Imsi,
    ) -> Result<Provisioned, StoreError> {
        self.provision_now(emse, app, imsi)
    }

    async fn resolve(&self, emse: &EmseId, app: &AppIdentity) -> Result<Option<Imsi>, StoreError> {
        self.resolve_now(emse, app)
    }

    async fn remove(&self, emse: &EmseId, app: &AppIdentity) -> Result<Option<Imsi>, StoreError> {
        self.remove_now(emse, app)
    }

    async fn remove_emse(&self, emse: &EmseId) -> Result<usize, StoreError> {
        self.remove_emse_now(emse)
    }

    async fn provision_all(&self, rows: Vec<IdentityRow>) -> Result<ImportSummary, StoreError> {
        self.provision_all_now(&rows)
    }
}
