//! Open addressing with linear probing: the layout of the stores' large maps.
//!
//! Why not `std`'s `HashMap` (hashbrown) there: a hashbrown lookup reads a group of
//! control bytes and then, at an address that depends on what those bytes say, the bucket
//! — two dependent cache misses when the map is far larger than the caches — and a value
//! too large to move cheaply must then be boxed, a third. Here an entry lives in its slot
//! and the slot where a search starts is computed from the hash alone, so the lines a
//! lookup needs can all be requested at once ([`Slots::touch`]): about one memory latency
//! per lookup at any size (issue 20).
//!
//! Why hand-written: hashbrown moves its buckets with `memcpy` when it grows and frees the
//! old allocation as it is, which would leave copies of every key in freed memory. Here
//! every move goes through [`Slots`], whose implementation wipes the place an entry left
//! (copy, then wipe): growing, and the backward shift of a removal, leave nothing behind.
//!
//! Linear probing, first come first served: the entry that arrived first keeps its home
//! slot, which keeps most entries at or near their home (a simulation at load 0.9 finds
//! 55 % at home and 76 % within two slots of it, against 19 % and 52 % for Robin Hood
//! ordering at 7/8), so a lookup that requests its home slot and the next few at once
//! usually needs nothing more. Removal by backward shift: no tombstones, and a search ends
//! at the first vacant slot. The load stays between [`GROW_TO`] and [`MAX_LOAD`]: growing
//! to 3/4 rather than doubling keeps the memory per entry within 1.33× the slot (doubling
//! would reach 2.2×), at about six moves per insertion, amortised.

/// The load past which a table grows: 9/10.
const MAX_LOAD: (usize, usize) = (9, 10);

/// The load a table grows to: 3/4.
const GROW_TO: (usize, usize) = (3, 4);

/// The smallest table that holds anything.
const MIN_CAPACITY: usize = 8;

/// The storage of an [`OpenTable`]: `capacity()` slots, each vacant or holding one entry.
pub(crate) trait Slots: Sized {
    /// `capacity` vacant slots that hash as these do.
    fn vacant_like(&self, capacity: usize) -> Self;

    /// How many slots.
    fn capacity(&self) -> usize;

    /// Whether slot `i` holds nothing.
    fn is_vacant(&self, i: usize) -> bool;

    /// The hash of the key of the entry in slot `i` (occupied), as the table's user
    /// computes it for a search.
    fn hash_at(&self, i: usize) -> u64;

    /// Moves the entry of slot `from` into the vacant slot `to` of `dest`, leaving `from`
    /// vacant and wiped.
    fn move_to(&mut self, from: usize, dest: &mut Self, to: usize);

    /// Moves the entry of slot `from` into the vacant slot `to` of the same storage,
    /// leaving `from` vacant and wiped.
    fn move_within(&mut self, from: usize, to: usize);

    /// Makes slot `i` vacant, wiping what it held.
    fn clear(&mut self, i: usize);

    /// Starts reading the slots a search from `home` will most likely read, so that their
    /// cache misses overlap instead of following one another. A hint: the default does
    /// nothing.
    fn touch(&self, home: usize) {
        let _ = home;
    }
}

/// A map laid out in one array of slots (see the module docs).
pub(crate) struct OpenTable<S> {
    slots: S,
    len: usize,
}

/// The slot after `i` in a table of `capacity` slots (the table wraps around).
fn next(i: usize, capacity: usize) -> usize {
    if i + 1 == capacity { 0 } else { i + 1 }
}

/// Where a search for `hash` starts: the hash scaled to `capacity` (its high bits; any
/// capacity, not only powers of two). `capacity > 0`.
fn home(hash: u64, capacity: usize) -> usize {
    // The product is below capacity << 64, so the shifted value is below capacity.
    ((u128::from(hash) * capacity as u128) >> 64) as usize
}

/// Whether `h` lies in the cyclic interval `(after, upto]`.
fn cyclic_between(after: usize, h: usize, upto: usize) -> bool {
    if after <= upto {
        after < h && h <= upto
    } else {
        h > after || h <= upto
    }
}

impl<S: Slots> OpenTable<S> {
    /// A table over `empty`, storage with no entry (usually no slot at all: the first
    /// insertion allocates).
    pub(crate) fn new(empty: S) -> Self {
        OpenTable {
            slots: empty,
            len: 0,
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The storage, to read entries found by [`find`](Self::find).
    pub(crate) fn slots(&self) -> &S {
        &self.slots
    }

    /// The storage, to change entries in place (never their keys).
    pub(crate) fn slots_mut(&mut self) -> &mut S {
        &mut self.slots
    }

    /// Occupied slots, in slot order.
    pub(crate) fn occupied(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.slots.capacity()).filter(|&i| !self.slots.is_vacant(i))
    }

    /// The slot of the entry whose key hashes to `hash` and satisfies `is_key` (asked of
    /// occupied slots only): `Ok(slot)`, or `Err(slot)`, the vacant slot that ended the
    /// search, where [`insert_at`](Self::insert_at) may put it (`Err` of an empty table:
    /// no slot; call [`reserve_one`](Self::reserve_one) first).
    pub(crate) fn find(
        &self,
        hash: u64,
        mut is_key: impl FnMut(&S, usize) -> bool,
    ) -> Result<usize, Option<usize>> {
        let capacity = self.slots.capacity();
        if capacity == 0 {
            return Err(None);
        }
        let mut i = home(hash, capacity);
        self.slots.touch(i);
        // Ends: the load stays below one, so some slot is vacant.
        loop {
            if self.slots.is_vacant(i) {
                return Err(Some(i));
            }
            if is_key(&self.slots, i) {
                return Ok(i);
            }
            i = next(i, capacity);
        }
    }

    /// Makes room for one more entry, growing the table if it would pass its maximum
    /// load. Slots found before may move: search again afterwards.
    pub(crate) fn reserve_one(&mut self) {
        let capacity = self.slots.capacity();
        if (self.len + 1) * MAX_LOAD.1 <= capacity * MAX_LOAD.0 {
            return;
        }
        let wanted = ((self.len + 1) * GROW_TO.1).div_ceil(GROW_TO.0);
        self.grow_to(wanted.max(MIN_CAPACITY).max(capacity + 1));
    }

    /// Moves every entry into a table of `capacity` slots; the old slots are wiped as each
    /// entry leaves them.
    fn grow_to(&mut self, capacity: usize) {
        let mut grown = self.slots.vacant_like(capacity);
        for from in 0..self.slots.capacity() {
            if self.slots.is_vacant(from) {
                continue;
            }
            let mut to = home(self.slots.hash_at(from), capacity);
            while !grown.is_vacant(to) {
                to = next(to, capacity);
            }
            self.slots.move_to(from, &mut grown, to);
        }
        self.slots = grown;
    }

    /// Takes the vacant `slot` that [`find`](Self::find) returned (after
    /// [`reserve_one`](Self::reserve_one), with no change since) for a new entry, which
    /// `write` puts there.
    pub(crate) fn insert_at(&mut self, slot: usize, write: impl FnOnce(&mut S, usize)) {
        write(&mut self.slots, slot);
        self.len += 1;
    }

    /// Removes the entry in `slot` (occupied), wiping it, and moves back the entries after
    /// it that a search would no longer reach (backward shift: no tombstones).
    pub(crate) fn remove_at(&mut self, slot: usize) {
        let capacity = self.slots.capacity();
        self.slots.clear(slot);
        self.len -= 1;
        let mut hole = slot;
        let mut j = next(slot, capacity);
        while !self.slots.is_vacant(j) {
            let h = home(self.slots.hash_at(j), capacity);
            // An entry whose home lies after the hole (and up to itself) is still reached
            // from its home; any other would be cut off by the hole: it moves into it.
            if !cyclic_between(hole, h, j) {
                self.slots.move_within(j, hole);
                hole = j;
            }
            j = next(j, capacity);
        }
    }

    /// Visits every entry once (an entry moved to a slot not yet visited by a removal may
    /// be visited twice: `f` must not mind); `f` says whether to keep it.
    pub(crate) fn retain(&mut self, mut f: impl FnMut(&mut S, usize) -> bool) {
        let mut i = 0;
        while i < self.slots.capacity() {
            if !self.slots.is_vacant(i) && !f(&mut self.slots, i) {
                // Another entry may have moved into `i`: look at it again.
                self.remove_at(i);
                continue;
            }
            i += 1;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on a broken fixture")]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// `(key, value)` entries whose hash function the test chooses; a wiped slot reads
    /// `None`.
    struct Plain {
        slots: Vec<Option<(u64, u64)>>,
        hash: fn(u64) -> u64,
    }

    impl Slots for Plain {
        fn vacant_like(&self, capacity: usize) -> Self {
            Plain {
                slots: vec![None; capacity],
                hash: self.hash,
            }
        }
        fn capacity(&self) -> usize {
            self.slots.len()
        }
        fn is_vacant(&self, i: usize) -> bool {
            self.slots[i].is_none()
        }
        fn hash_at(&self, i: usize) -> u64 {
            (self.hash)(self.slots[i].unwrap().0)
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
    }

    fn get(t: &OpenTable<Plain>, hash: fn(u64) -> u64, k: u64) -> Option<u64> {
        t.find(hash(k), |s, i| s.slots[i].unwrap().0 == k)
            .ok()
            .map(|i| t.slots().slots[i].unwrap().1)
    }

    fn table(hash: fn(u64) -> u64) -> OpenTable<Plain> {
        OpenTable::new(Plain {
            slots: Vec::new(),
            hash,
        })
    }

    fn put(t: &mut OpenTable<Plain>, hash: fn(u64) -> u64, k: u64, v: u64) {
        match t.find(hash(k), |s, i| s.slots[i].unwrap().0 == k) {
            Ok(i) => t.slots_mut().slots[i] = Some((k, v)),
            Err(_) => {
                t.reserve_one();
                let found = t.find(hash(k), |s, i| s.slots[i].unwrap().0 == k);
                let at = found.unwrap_err().unwrap();
                t.insert_at(at, |s, i| s.slots[i] = Some((k, v)));
            }
        }
    }

    fn del(t: &mut OpenTable<Plain>, hash: fn(u64) -> u64, k: u64) -> bool {
        match t.find(hash(k), |s, i| s.slots[i].unwrap().0 == k) {
            Ok(i) => {
                t.remove_at(i);
                true
            }
            Err(_) => false,
        }
    }

    /// A model check over hash functions that make long clusters and wrap around the end
    /// of the table: every operation agrees with `HashMap`, and the load stays bounded.
    #[test]
    fn agrees_with_a_hash_map_under_collisions_and_wrap_around() {
        let hashes: [fn(u64) -> u64; 4] = [
            // Good spread.
            |k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            // Everything near the end of the table: clusters wrap around to slot 0.
            |k| u64::MAX - (k % 3),
            // Everything in one home slot.
            |_| 1 << 63,
            // Few distinct homes.
            |k| (k % 5) << 61,
        ];
        for hash in hashes {
            let mut t = table(hash);
            let mut model = HashMap::new();
            let mut x = 0x2545_F491_4F6C_DD1Du64;
            for step in 0..4000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let k = x % 300;
                match x % 7 {
                    0..=3 => {
                        put(&mut t, hash, k, step);
                        model.insert(k, step);
                    }
                    4 | 5 => assert_eq!(del(&mut t, hash, k), model.remove(&k).is_some()),
                    _ => {
                        let drop_odd =
                            |s: &mut Plain, i: usize| s.slots[i].unwrap().1.is_multiple_of(2);
                        t.retain(drop_odd);
                        model.retain(|_, v| v.is_multiple_of(2));
                    }
                }
                assert_eq!(t.len(), model.len());
                assert_eq!(t.occupied().count(), model.len());
                assert!(t.len() * MAX_LOAD.1 <= t.slots.capacity() * MAX_LOAD.0);
                for k in 0..300 {
                    assert_eq!(get(&t, hash, k), model.get(&k).copied(), "key {k}");
                }
            }
        }
    }

    #[test]
    fn growing_keeps_the_load_between_the_bounds() {
        let hash: fn(u64) -> u64 = |k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut t = table(hash);
        for k in 0..100_000 {
            put(&mut t, hash, k, k);
            let (len, cap) = (t.len(), t.slots.capacity());
            assert!(len * MAX_LOAD.1 <= cap * MAX_LOAD.0, "{len} in {cap}");
            if cap > 64 {
                // Right after growing the load is GROW_TO (rounded); it only rises until the
                // next growth.
                assert!(
                    len * GROW_TO.1 + GROW_TO.1 >= cap * GROW_TO.0,
                    "{len} in {cap}"
                );
            }
        }
    }
}
