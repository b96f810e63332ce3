//! [`HashIndex`]: an open-addressing hash table of entry numbers.
//!
//! The memtable keeps its bytes in an arena and its entries in a `Vec`; this
//! table maps a hash to entry numbers without owning any key, so an insert
//! allocates nothing (until the table doubles, which is amortised and rare
//! because the memtable sizes it from its byte budget up front).
//!
//! 1. A slot is a `u64`: the hash's top 32 bits (a tag that rejects most
//!    mismatches without touching the arena) and `entry + 1` (0 is empty).
//! 2. Linear probing from `hash & mask`; the load factor stays at most 1/2, so
//!    a probe sequence is short and always ends at an empty slot.
//! 3. No deletes: memtable entries are only ever added or overwritten in place.

/// Smallest table, in slots.
const MIN_SLOTS: usize = 16;

#[derive(Debug, Clone)]
pub(crate) struct HashIndex {
    slots: Vec<u64>,
    mask: usize,
    len: usize,
}

#[inline]
fn tag(h: u64) -> u64 {
    h >> 32
}

impl HashIndex {
    /// A table that holds `entries` without growing.
    pub(crate) fn with_capacity(entries: usize) -> Self {
        let n = (entries.saturating_mul(2)).next_power_of_two().max(MIN_SLOTS);
        HashIndex {
            slots: vec![0; n],
            mask: n - 1,
            len: 0,
        }
    }

    /// Removes every entry, keeping the table's size.
    pub(crate) fn clear(&mut self) {
        self.slots.fill(0);
        self.len = 0;
    }

    /// Bytes the table occupies.
    pub(crate) fn size_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<u64>()
    }

    /// The entry with hash `h` for which `eq` holds.
    #[inline]
    pub(crate) fn find(&self, h: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut i = h as usize & self.mask;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return None;
            }
            if slot >> 32 == tag(h) {
                let entry = (slot as u32) - 1;
                if eq(entry) {
                    return Some(entry);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Starts loading the slot a lookup of `h` begins at.
    #[inline]
    pub(crate) fn prefetch(&self, h: u64) {
        crate::io::prefetch_value(&self.slots[h as usize & self.mask]);
    }

    /// Adds `entry` under hash `h`; the caller has checked it is absent.
    /// `rehash` gives the hash of any entry already in the table (for growth).
    #[inline]
    pub(crate) fn insert(&mut self, h: u64, entry: u32, rehash: impl Fn(u32) -> u64) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow(rehash);
        }
        self.place(h, entry);
        self.len += 1;
    }

    /// Points the slot of the entry with hash `h` for which `eq` holds at
    /// `entry` instead (the hash must be the same for both).
    #[inline]
    pub(crate) fn replace(&mut self, h: u64, mut eq: impl FnMut(u32) -> bool, entry: u32) {
        let mut i = h as usize & self.mask;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return;
            }
            if slot >> 32 == tag(h) && eq((slot as u32) - 1) {
                self.slots[i] = (tag(h) << 32) | u64::from(entry + 1);
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    fn place(&mut self, h: u64, entry: u32) {
        let mut i = h as usize & self.mask;
        while self.slots[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = (tag(h) << 32) | u64::from(entry + 1);
    }

    #[cold]
    fn grow(&mut self, rehash: impl Fn(u32) -> u64) {
        let old = std::mem::take(&mut self.slots);
        self.slots = vec![0; old.len() * 2];
        self.mask = self.slots.len() - 1;
        for slot in old.into_iter().filter(|&s| s != 0) {
            let entry = (slot as u32) - 1;
            self.place(rehash(entry), entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_it_holds_through_growth_and_collisions() {
        // A weak hash (many equal low bits and tags) forces long probe runs.
        let hash = |e: u32| u64::from(e % 7) * 0x1_0000_0001;
        let mut t = HashIndex::with_capacity(1);
        for e in 0..1000u32 {
            assert_eq!(t.find(hash(e), |x| x == e), None);
            t.insert(hash(e), e, hash);
        }
        for e in 0..1000u32 {
            assert_eq!(t.find(hash(e), |x| x == e), Some(e));
        }
        assert_eq!(t.find(hash(5), |x| x == 5000), None);
        assert!(t.size_bytes() >= 2000 * 8);
    }
}
