//! [`Memtable`]: the mutable in-memory write buffer of one spine.
//!
//! 1. Key and value bytes are appended to one arena (values aligned like a
//!    run's, so a typed read can borrow them in place); an entry records where
//!    they are and what it says (put, delete, or a Z-set weight).
//! 2. A `HashIndex` over the key (key-value) or the `(key, value)` pair
//!    (Z-set) finds an existing entry in O(1): a put overwrites it in place, an
//!    update adds to its weight. A Z-set also chains the entries of each key
//!    from a second index, so reading one key's values never sorts anything.
//! 3. Order is made lazily, through `&self`: [`Memtable::sorted`] sorts the
//!    entries added since the last sorted view and merges them into it, so
//!    the memtable pays for ordering only when a range read or a seal asks
//!    for it, and any number of readers may share the view. The view lives in
//!    a `OnceLock`; a write that adds an entry moves it back to `base` (a
//!    check and a move, no allocation), from which the next view grows.
//!
//! Invariant: the view (or `base`) is a permutation of
//! `entries[..view.len()]` in increasing key (key-value) or `(key, value)`
//! (Z-set) order. Entries are never removed; a delete is a tombstone, a
//! weight that sums to zero stays as a zero that merges drop. Overwrites keep
//! an entry's key (and Z-set value), so they never disturb the order.
//!
//! Nothing here allocates per write beyond amortised growth of the arena and
//! entry vector, both sized from the byte budget up front.

mod index;

use std::sync::OnceLock;

use rkyv::util::AlignedVec;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::io::{prefetch, prefetch_value};
use crate::run::bloom::key_hash;
use crate::run::format::{RunMode, align_up};
use crate::run::{EntryKind, EntryRef, entry_cmp, key_cmp, key_prefix};
use crate::{Error, Result};
use index::HashIndex;

/// No next entry in a key's chain.
const NO_ENTRY: u32 = u32::MAX;
/// Expected bytes per entry, to size the tables from the byte budget: a guess
/// on the small side (a 16-byte key and a 32-byte value plus the entry), so
/// typical workloads never grow the table.
const SIZING_BYTES_PER_ENTRY: usize = 96;
/// Largest memtable budget: arena offsets are `u32`, and one entry of
/// [`crate::run::MAX_ENTRY_BYTES`] must still fit on top of a full memtable.
pub const MAX_MEMTABLE_BYTES: usize = 1 << 30;

#[derive(Debug, Clone, Copy)]
struct Slot {
    key_off: u32,
    key_len: u32,
    val_off: u32,
    val_len: u32,
    kind: EntryKind,
    /// Z-set: the previous entry with the same key (a chain per key).
    next_same_key: u32,
}

/// The write buffer of one spine. See the module docs.
#[derive(Debug)]
pub struct Memtable {
    mode: RunMode,
    value_align: usize,
    arena: AlignedVec<16>,
    entries: Vec<Slot>,
    table: HashIndex,
    /// Z-set only: key -> newest entry with that key.
    keys: HashIndex,
    /// The sorted view the next one grows from: the last view, moved here by
    /// the write that outdated it (kept beside a view a reader made, until
    /// [`Memtable::sort`] or the next write).
    base: Vec<u32>,
    /// The sorted view of every entry, made on the first ordered read after
    /// an entry was added.
    view: OnceLock<Vec<u32>>,
}

/// Hash of a `(key, value)` pair, seeded by the key's hash.
#[inline]
fn pair_hash(kh: u64, value: &[u8]) -> u64 {
    xxh3_64_with_seed(value, kh)
}

impl Memtable {
    /// An empty memtable sized for `budget_bytes` of writes.
    pub fn new(mode: RunMode, budget_bytes: usize, value_align: usize) -> Memtable {
        let budget_bytes = budget_bytes.min(MAX_MEMTABLE_BYTES);
        let expect = budget_bytes / SIZING_BYTES_PER_ENTRY;
        Memtable {
            mode,
            value_align,
            arena: AlignedVec::with_capacity(budget_bytes),
            entries: Vec::with_capacity(expect),
            table: HashIndex::with_capacity(expect),
            keys: HashIndex::with_capacity(if mode == RunMode::ZSet { expect } else { 0 }),
            base: Vec::new(),
            view: OnceLock::new(),
        }
    }

    /// Empties the memtable, keeping its allocations (a spine reuses a
    /// merged-away memtable instead of faulting in a fresh one).
    pub fn clear(&mut self) {
        self.arena.clear();
        self.entries.clear();
        self.table.clear();
        self.keys.clear();
        self.base.clear();
        self.view = OnceLock::new();
    }

    /// Bytes the arena has room for (more than the budget after a value
    /// larger than it).
    pub fn arena_capacity_bytes(&self) -> usize {
        self.arena.capacity()
    }

    /// Key-value or Z-set.
    pub fn mode(&self) -> RunMode {
        self.mode
    }

    /// Entries held (overwritten keys count once; zero weights count).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Memory held: arena, entries and tables.
    pub fn size_bytes(&self) -> usize {
        self.arena.len()
            + self.entries.len() * std::mem::size_of::<Slot>()
            + self.table.size_bytes()
            + self.keys.size_bytes()
            + (self.base.len() + self.view.get().map_or(0, Vec::len)) * std::mem::size_of::<u32>()
    }

    #[inline]
    fn bytes(&self, off: u32, len: u32) -> &[u8] {
        &self.arena[off as usize..off as usize + len as usize]
    }

    #[inline]
    fn key_of(&self, e: u32) -> &[u8] {
        let s = &self.entries[e as usize];
        self.bytes(s.key_off, s.key_len)
    }

    #[inline]
    fn value_of(&self, e: u32) -> &[u8] {
        let s = &self.entries[e as usize];
        self.bytes(s.val_off, s.val_len)
    }

    /// Entry number `e` as an entry reference.
    #[inline]
    pub fn entry(&self, e: u32) -> EntryRef<'_> {
        let s = &self.entries[e as usize];
        EntryRef {
            key: self.bytes(s.key_off, s.key_len),
            value: self.bytes(s.val_off, s.val_len),
            kind: s.kind,
        }
    }

    fn check(&self, key: &[u8], value: &[u8], kind: EntryKind) -> Result<()> {
        crate::run::check_entry_size(key, value)?;
        let ok = matches!(
            (self.mode, kind),
            (RunMode::KeyValue, EntryKind::Put | EntryKind::Delete) | (RunMode::ZSet, EntryKind::Weight(_))
        );
        if !ok {
            return Err(Error::InvalidArgument(format!(
                "a {:?} spine cannot take {kind:?}",
                self.mode
            )));
        }
        if self.arena.len() + key.len() + value.len() + self.value_align > u32::MAX as usize {
            return Err(Error::LimitReached {
                what: "memtable arena bytes",
                limit: u64::from(u32::MAX),
            });
        }
        Ok(())
    }

    fn append_value(&mut self, value: &[u8]) -> u32 {
        let off = align_up(self.arena.len(), self.value_align);
        self.arena.resize(off, 0);
        self.arena.extend_from_slice(value);
        off as u32
    }

    fn push_slot(&mut self, key: &[u8], value: &[u8], kind: EntryKind, next_same_key: u32) -> u32 {
        // A new entry is missing from the view: keep it as the next one's base.
        if let Some(view) = self.view.take() {
            self.base = view;
        }
        let key_off = self.arena.len() as u32;
        self.arena.extend_from_slice(key);
        let val_off = self.append_value(value);
        let e = self.entries.len() as u32;
        self.entries.push(Slot {
            key_off,
            key_len: key.len() as u32,
            val_off,
            val_len: value.len() as u32,
            kind,
            next_same_key,
        });
        e
    }

    /// Sets `key` to `value` (key-value).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.upsert(key, value, EntryKind::Put)
    }

    /// Deletes `key` (key-value): a tombstone that hides older runs.
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.upsert(key, &[], EntryKind::Delete)
    }

    fn upsert(&mut self, key: &[u8], value: &[u8], kind: EntryKind) -> Result<()> {
        self.check(key, value, kind)?;
        let h = key_hash(key);
        match self.table.find(h, |e| self.key_of(e) == key) {
            Some(e) => {
                // The old value's bytes stay in the arena as garbage until the seal.
                let val_off = self.append_value(value);
                let s = &mut self.entries[e as usize];
                s.val_off = val_off;
                s.val_len = value.len() as u32;
                s.kind = kind;
            }
            None => {
                let e = self.push_slot(key, value, kind, NO_ENTRY);
                let (arena, entries) = (&self.arena, &self.entries);
                self.table.insert(h, e, |x| {
                    let s = &entries[x as usize];
                    key_hash(&arena[s.key_off as usize..(s.key_off + s.key_len) as usize])
                });
            }
        }
        Ok(())
    }

    /// Adds `weight` to the multiplicity of `(key, value)` (Z-set). A sum of
    /// zero stays as an entry of weight zero, which reads and merges skip.
    pub fn update(&mut self, key: &[u8], value: &[u8], weight: i64) -> Result<()> {
        self.check(key, value, EntryKind::Weight(weight))?;
        let kh = key_hash(key);
        let h = pair_hash(kh, value);
        let found = self
            .table
            .find(h, |e| self.key_of(e) == key && self.value_of(e) == value);
        if let Some(e) = found {
            let s = &mut self.entries[e as usize];
            if let EntryKind::Weight(w) = &mut s.kind {
                *w = w.wrapping_add(weight);
            }
            return Ok(());
        }
        let head = self.keys.find(kh, |e| self.key_of(e) == key);
        let e = self.push_slot(key, value, EntryKind::Weight(weight), head.unwrap_or(NO_ENTRY));
        let (arena, entries) = (&self.arena, &self.entries);
        let slice = |x: u32, value: bool| {
            let s = &entries[x as usize];
            let (off, len) = if value {
                (s.val_off, s.val_len)
            } else {
                (s.key_off, s.key_len)
            };
            &arena[off as usize..(off + len) as usize]
        };
        self.table
            .insert(h, e, |x| pair_hash(key_hash(slice(x, false)), slice(x, true)));
        match head {
            // The chain head moves to the new entry: repoint the key slot.
            Some(_) => self.keys.replace(kh, |x| slice(x, false) == key, e),
            None => self.keys.insert(kh, e, |x| key_hash(slice(x, false))),
        }
        Ok(())
    }

    /// The entry for `key` (key-value), given `h = key_hash(key)`.
    #[inline]
    pub fn get_hashed(&self, key: &[u8], h: u64) -> Option<EntryRef<'_>> {
        debug_assert_eq!(self.mode, RunMode::KeyValue);
        self.table
            .find(h, |e| self.key_of(e) == key)
            .map(|e| self.entry(e))
    }

    /// Starts loading what a lookup of a key with hash `h` touches first.
    #[inline]
    pub fn prefetch(&self, h: u64) {
        self.table.prefetch(h);
    }

    /// Every entry with this key (Z-set, in no particular order), given
    /// `h = key_hash(key)`. Weights may be zero.
    pub fn key_entries(&self, key: &[u8], h: u64) -> impl Iterator<Item = EntryRef<'_>> {
        let mut next = self.keys.find(h, |e| self.key_of(e) == key).unwrap_or(NO_ENTRY);
        std::iter::from_fn(move || {
            if next == NO_ENTRY {
                return None;
            }
            let e = next;
            next = self.entries[e as usize].next_same_key;
            Some(self.entry(e))
        })
    }

    /// True when the sorted view is made and holds every entry.
    pub fn is_sorted(&self) -> bool {
        self.view.get().is_some_and(|v| v.len() == self.entries.len())
    }

    #[inline]
    fn order(&self, a: u32, b: u32) -> std::cmp::Ordering {
        entry_cmp(
            self.mode,
            self.key_of(a),
            self.value_of(a),
            self.key_of(b),
            self.value_of(b),
        )
    }

    /// Starts pulling the bytes of `sorted[i..]` a little ahead of `i`
    /// into cache: a walk in key order visits the arena in random order.
    #[inline]
    pub fn prefetch_sorted(&self, sorted: &[u32], i: usize) {
        const SLOT_AHEAD: usize = 16;
        const BYTES_AHEAD: usize = 8;
        if let Some(&e) = sorted.get(i + SLOT_AHEAD) {
            prefetch_value(&self.entries[e as usize]);
        }
        if let Some(&e) = sorted.get(i + BYTES_AHEAD) {
            let s = &self.entries[e as usize];
            prefetch(&self.arena[s.key_off as usize..s.key_off as usize + 1]);
            prefetch(&self.arena[s.val_off as usize..(s.val_off + s.val_len) as usize]);
        }
    }

    /// Every entry's number, in order: made on the first call after an
    /// entry was added (sorting the new entries, O(new · log new + total)),
    /// then shared by every reader until the next added entry.
    #[inline]
    pub fn sorted(&self) -> &[u32] {
        self.view.get_or_init(|| self.make_sorted())
    }

    /// The base view with the entries added since merged in.
    #[cold]
    fn make_sorted(&self) -> Vec<u32> {
        let done = self.base.len();
        let total = self.entries.len() as u32;
        // Sort on (8-byte big-endian key prefix, entry): most comparisons of
        // distinct keys are then one integer compare on contiguous memory.
        let mut keyed: Vec<(u64, u32)> = (done as u32..total)
            .map(|e| (key_prefix(self.key_of(e)), e))
            .collect();
        keyed.sort_unstable_by(|x, y| x.0.cmp(&y.0).then_with(|| self.order(x.1, y.1)));
        let mut merged = Vec::with_capacity(total as usize);
        let (old, mut fresh) = (&self.base, keyed.iter().map(|&(_, e)| e).peekable());
        for &o in old {
            while let Some(&f) = fresh.peek().filter(|&&f| self.order(f, o).is_lt()) {
                merged.push(f);
                fresh.next();
            }
            merged.push(o);
        }
        merged.extend(fresh);
        assert_eq!(merged.len(), total as usize, "memtable sorted view lost entries");
        debug_assert!(
            merged.windows(2).all(|w| self.order(w[0], w[1]).is_lt()),
            "memtable sorted view is not strictly increasing"
        );
        merged
    }

    /// Makes the sorted view now (a seal does, so that readers of the sealed
    /// memtable find it made), and lets go of the base it grew from.
    pub fn sort(&mut self) {
        self.sorted();
        self.base = Vec::new();
    }

    /// Entries in the sorted view.
    pub fn sorted_len(&self) -> usize {
        self.sorted().len()
    }

    /// The `i`-th entry in order (`i < sorted_len()`).
    #[inline]
    pub fn sorted_entry(&self, i: usize) -> EntryRef<'_> {
        self.entry(self.sorted()[i])
    }

    /// Position in the sorted view of the first entry whose key is `>= key`.
    pub fn lower_bound(&self, key: &[u8]) -> usize {
        self.sorted()
            .partition_point(|&e| key_cmp(self.key_of(e), key).is_lt())
    }

    /// Position in the sorted view of the first entry whose key is `> key`.
    pub fn upper_bound(&self, key: &[u8]) -> usize {
        self.sorted()
            .partition_point(|&e| key_cmp(self.key_of(e), key).is_le())
    }
}

#[cfg(test)]
mod tests;
