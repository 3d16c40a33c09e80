//! Lock striping: a store split into independently locked shards.
//!
//! Why hand-written rather than a concurrent-map crate: it is a few lines over `std`, and it
//! keeps full control of where values live and when they are dropped, which the zeroizing
//! stores need (a value is dropped, and so zeroized, exactly when it leaves the map).
//! Each shard is aligned to its own cache lines so that two threads reading different
//! shards never bounce one line between cores.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use foldhash::fast::RandomState;

/// One shard: a `RwLock`ed part, padded to 128 bytes (two cache lines: the adjacent-line
/// prefetcher of x86 pulls pairs).
#[repr(align(128))]
pub(crate) struct Shard<T>(RwLock<T>);

/// `T`s behind independent locks, the one for a key picked by the key's hash.
pub(crate) struct Striped<T> {
    shards: Box<[Shard<T>]>,
    hasher: RandomState,
    mask: usize,
}

/// Striped hash maps: the common case.
pub(crate) type Sharded<K, V> = Striped<HashMap<K, V, RandomState>>;

impl<K, V> Sharded<K, V> {
    /// `shards` hash maps (rounded up to a power of two, at least 1).
    pub(crate) fn new(shards: usize) -> Self {
        Striped::with(shards, |hasher| HashMap::with_hasher(hasher.clone()))
    }
}

impl<T> Striped<T> {
    /// `shards` parts (rounded up to a power of two, at least 1, at most 256), each made by
    /// `make` from the hasher that picks the shards.
    pub(crate) fn with(shards: usize, mut make: impl FnMut(&RandomState) -> T) -> Self {
        // At most 256 shards: the shard index uses hash bits 48..56, which must stay clear of
        // the top seven bits that hashbrown keeps as its control tag.
        let n = shards.clamp(1, 256).next_power_of_two();
        let hasher = RandomState::default();
        let shards = (0..n).map(|_| Shard(RwLock::new(make(&hasher)))).collect();
        Striped {
            shards,
            hasher,
            mask: n - 1,
        }
    }

    fn index<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        // The top bits pick the shard; the map inside uses the low bits of its own hash.
        let h = self.hasher.hash_one(key);
        ((h >> 48) as usize) & self.mask
    }

    /// The shard holding `key`, locked for reading.
    ///
    /// Poisoning is ignored on purpose: a panic while holding the lock can only come from
    /// an allocation failure (which aborts) or a bug, and every critical section leaves the
    /// map consistent at each step (values are built before they are inserted), so the data
    /// behind a poisoned lock is still valid.
    pub(crate) fn read<Q: Hash + ?Sized>(&self, key: &Q) -> RwLockReadGuard<'_, T> {
        let shard = &self.shards[self.index(key)];
        shard.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shard holding `key`, locked for writing.
    pub(crate) fn write<Q: Hash + ?Sized>(&self, key: &Q) -> RwLockWriteGuard<'_, T> {
        let shard = &self.shards[self.index(key)];
        shard.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The index of the shard holding `key`, into [`lock_all`](Self::lock_all)'s guards.
    pub(crate) fn shard_of<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        self.index(key)
    }

    /// Every shard locked for writing at once, in index order (one fixed order, so two
    /// callers cannot deadlock), for a change that must be seen whole or not at all.
    pub(crate) fn lock_all(&self) -> Vec<RwLockWriteGuard<'_, T>> {
        self.shards
            .iter()
            .map(|s| s.0.write().unwrap_or_else(PoisonError::into_inner))
            .collect()
    }

    /// Every shard in turn, locked for writing (for sweeps and counts).
    pub(crate) fn for_each_shard_mut(&self, mut f: impl FnMut(&mut T)) {
        for shard in &*self.shards {
            let mut guard = shard.0.write().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard);
        }
    }

    /// Every shard in turn, locked for reading.
    pub(crate) fn for_each_shard(&self, mut f: impl FnMut(&T)) {
        for shard in &*self.shards {
            let guard = shard.0.read().unwrap_or_else(PoisonError::into_inner);
            f(&guard);
        }
    }
}
