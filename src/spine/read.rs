//! Reads across the memtable and every batch: point reads, Z-set key reads,
//! typed reads and range [`Cursor`]s.
//!
//! Every read takes `&self`, so any number of cursors and point reads of a
//! spine (and of other spines of the same owner) can be open at once.
//!
//! Point reads (`get`, `contains`, `key_weight`, `values_into`) allocate
//! nothing: the key is hashed once, then the memtable's hash index and each
//! batch (newest first; a bloom filter line per run) are probed. Cursors
//! read the live memtable through its sorted view, made on the first cursor
//! after a write (`Memtable::sorted`) and shared by the cursors after it.

use std::ops::{Bound, RangeBounds};

use rkyv::Portable;
use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;

use super::Spine;
use super::batch::{Batch, Source};
use super::consolidate::Consolidate;
use crate::run::bloom::key_hash;
use crate::run::{EntryKind, EntryRef, RunMode, key_cmp};
use crate::{Error, Result};

/// The weight of a Z-set entry (0 for anything else).
#[inline]
fn weight(e: &EntryRef<'_>) -> i64 {
    match e.kind {
        EntryKind::Weight(w) => w,
        _ => 0,
    }
}

/// The value a key-value entry makes visible (none for a tombstone).
#[inline]
fn visible(e: EntryRef<'_>) -> Option<&[u8]> {
    (e.kind == EntryKind::Put).then_some(e.value)
}

impl Spine {
    fn require(&self, mode: RunMode, what: &str) -> Result<()> {
        if self.opts.mode == mode {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "{what} needs a {mode:?} spine; this one is {:?}",
            self.opts.mode
        )))
    }

    /// The value of `key` (key-value spines), borrowed from the memtable or
    /// straight from the mapped run that holds it.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Result<Option<&[u8]>> {
        self.require(RunMode::KeyValue, "get")?;
        let h = key_hash(key);
        // Independent first touches: issue them all, then probe in order.
        self.memtable.prefetch(h);
        for s in &self.batches {
            s.batch.prefetch(h);
        }
        if let Some(e) = self.memtable.get_hashed(key, h) {
            return Ok(visible(e));
        }
        for s in self.batches.iter().rev() {
            if let Some(e) = s.batch.get_hashed(key, h)? {
                return Ok(visible(e));
            }
        }
        Ok(None)
    }

    /// True if `key` has a value (key-value) or any value of non-zero weight (Z-set).
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        match self.opts.mode {
            RunMode::KeyValue => Ok(self.get(key)?.is_some()),
            RunMode::ZSet => {
                let mut values = Vec::new();
                self.values_into(key, &mut values)?;
                Ok(!values.is_empty())
            }
        }
    }

    /// The value of `key` read as an rkyv archive of `T`, borrowed in place.
    /// The value's bytes are checked (rkyv's validation) on every call; values
    /// are stored aligned to the spine's `value_align_bytes` (default 8), which
    /// must be at least the archive's alignment.
    pub fn get_archived<T>(&self, key: &[u8]) -> Result<Option<&T>>
    where
        T: Portable + for<'b> CheckBytes<HighValidator<'b, rkyv::rancor::Error>>,
    {
        let Some(bytes) = self.get(key)? else {
            return Ok(None);
        };
        rkyv::access::<T, rkyv::rancor::Error>(bytes)
            .map(Some)
            .map_err(|e| Error::InvalidArgument(format!("the value of the key is not a valid archive: {e}")))
    }

    /// Appends every `(value, weight)` of `key` with a non-zero consolidated
    /// weight to `out`, in value order (Z-set spines). Reuse `out` across
    /// calls to read without allocating.
    pub fn values_into<'a>(&'a self, key: &[u8], out: &mut Vec<(&'a [u8], i64)>) -> Result<()> {
        self.require(RunMode::ZSet, "values")?;
        let start = out.len();
        self.for_each_of_key(key, |e| out.push((e.value, weight(&e))))?;
        let tail = &mut out[start..];
        // One key's entries, in entry order: with the key equal, by value
        // (the value half of `entry_cmp`, without comparing the key to itself).
        tail.sort_unstable_by(|a, b| key_cmp(a.0, b.0));
        // Sum runs of equal values into their first slot, then keep non-zeros.
        let mut w = start;
        for r in start..out.len() {
            if w > start && out[w - 1].0 == out[r].0 {
                out[w - 1].1 = out[w - 1].1.wrapping_add(out[r].1);
            } else {
                out[w] = out[r];
                w += 1;
            }
        }
        out.truncate(w);
        let mut k = start;
        for r in start..out.len() {
            if out[r].1 != 0 {
                out[k] = out[r];
                k += 1;
            }
        }
        out.truncate(k);
        Ok(())
    }

    /// Every `(value, weight)` of `key` with a non-zero weight (Z-set spines).
    pub fn values(&self, key: &[u8]) -> Result<Vec<(&[u8], i64)>> {
        let mut out = Vec::new();
        self.values_into(key, &mut out)?;
        Ok(out)
    }

    /// The sum of the weights of every value of `key` (Z-set spines).
    pub fn key_weight(&self, key: &[u8]) -> Result<i64> {
        self.require(RunMode::ZSet, "key_weight")?;
        let mut total = 0i64;
        self.for_each_of_key(key, |e| total = total.wrapping_add(weight(&e)))?;
        Ok(total)
    }

    /// Calls `f` on every entry of `key` in the memtable and every batch
    /// (Z-set; unconsolidated, in no particular order). Runs whose filter
    /// rules the key out are skipped.
    fn for_each_of_key<'a>(&'a self, key: &[u8], mut f: impl FnMut(EntryRef<'a>)) -> Result<()> {
        let h = key_hash(key);
        self.memtable.key_entries(key, h).for_each(&mut f);
        for s in &self.batches {
            if let Batch::Disk(rf) = &s.batch
                && !rf.run.may_contain_hash(h)
            {
                continue;
            }
            let mut c = s.batch.seek(key)?;
            while let Some(e) = c.current().filter(|e| e.key == key) {
                f(e);
                c.advance()?;
            }
        }
        Ok(())
    }

    /// Sources newest first, each at its first entry `>= key` (or its first).
    fn sources(&self, key: Option<&[u8]>) -> Result<Vec<Source<'_>>> {
        let mut out = Vec::with_capacity(self.batches.len() + 1);
        let mem_at = key.map_or(0, |k| self.memtable.lower_bound(k));
        out.push(Source::memtable(&self.memtable, mem_at));
        for s in self.batches.iter().rev() {
            out.push(match key {
                Some(k) => s.batch.seek(k)?,
                None => s.batch.first()?,
            });
        }
        Ok(out)
    }

    /// A cursor over every live entry, in key order, at the first one.
    /// Borrows the spine shared: other reads may run alongside it.
    pub fn cursor(&self) -> Result<Cursor<'_>> {
        self.range::<std::ops::RangeFull>(..)
    }

    /// A cursor over the live entries whose keys fall in `range`, at the
    /// first one, given as a pair of bounds (`[u8]` is unsized, so `a..b`
    /// is not a range of it):
    /// `spine.range((Bound::Included(&b"a"[..]), Bound::Excluded(&b"m"[..])))`.
    pub fn range<R: RangeBounds<[u8]>>(&self, range: R) -> Result<Cursor<'_>> {
        let start = range.start_bound().map(<[u8]>::to_vec);
        let end = range.end_bound().map(<[u8]>::to_vec);
        self.cursor_in(start, end)
    }

    /// A cursor over the live entries whose keys start with `prefix`.
    pub fn prefix(&self, prefix: &[u8]) -> Result<Cursor<'_>> {
        let end = match prefix_end(prefix) {
            Some(e) => Bound::Excluded(e),
            None => Bound::Unbounded,
        };
        self.cursor_in(Bound::Included(prefix.to_vec()), end)
    }

    fn cursor_in(&self, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<Cursor<'_>> {
        let from = match &start {
            Bound::Included(k) | Bound::Excluded(k) => Some(k.as_slice()),
            Bound::Unbounded => None,
        };
        let sources = self.sources(from)?;
        let mut c = Cursor {
            merged: Consolidate::new(sources, self.opts.mode, false),
            current: None,
            back: false,
            start,
            end,
        };
        if let Bound::Excluded(k) = &c.start {
            c.merged.seek(k, false)?;
        }
        c.fill()?;
        Ok(c)
    }
}

/// The smallest key greater than every key starting with `prefix`, if any
/// (none when the prefix is empty or all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

/// A cursor over a spine: consolidated entries in key (then value) order,
/// walked forward ([`Cursor::advance`], or as an [`Iterator`]) or back
/// ([`Cursor::prev`]). Key-value entries come as [`EntryKind::Put`]
/// (deleted keys are not shown); Z-set entries as [`EntryKind::Weight`] with
/// their summed, non-zero weight. Keys and values borrow from the memtable
/// or the mapped runs. A step allocates nothing.
///
/// Off either end of its range the cursor has no current entry; `prev`
/// past the end comes back to the last entry, `advance` before the start to
/// the first. After an error, seek before going on.
#[derive(Debug)]
pub struct Cursor<'a> {
    merged: Consolidate<'a>,
    current: Option<EntryRef<'a>>,
    /// The last move went backward: the sources rest before `current`,
    /// not after it.
    back: bool,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
}

impl<'a> Cursor<'a> {
    fn in_bounds(&self, key: &[u8]) -> bool {
        let above_start = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let below_end = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        above_start && below_end
    }

    /// Keys below this are before the cursor's range.
    fn below_start(&self, key: &[u8]) -> bool {
        match &self.start {
            Bound::Included(s) => key < s.as_slice(),
            Bound::Excluded(s) => key <= s.as_slice(),
            Bound::Unbounded => false,
        }
    }

    /// Keys above this are past the cursor's range.
    fn above_end(&self, key: &[u8]) -> bool {
        match &self.end {
            Bound::Included(e) => key > e.as_slice(),
            Bound::Excluded(e) => key >= e.as_slice(),
            Bound::Unbounded => false,
        }
    }

    fn fill(&mut self) -> Result<()> {
        let mut consumed = 0;
        self.back = false;
        self.current = self.merged.next(&mut consumed)?.filter(|e| self.in_bounds(e.key));
        Ok(())
    }

    fn fill_back(&mut self) -> Result<()> {
        self.back = true;
        self.current = self.merged.next_back()?.filter(|e| self.in_bounds(e.key));
        Ok(())
    }

    /// The entry under the cursor, or `None` off either end.
    #[inline]
    pub fn current(&self) -> Option<EntryRef<'a>> {
        self.current
    }

    /// The key under the cursor.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.current.map(|e| e.key)
    }

    /// The value under the cursor.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.current.map(|e| e.value)
    }

    /// The weight under the cursor (Z-set spines; `None` for key-value).
    pub fn weight(&self) -> Option<i64> {
        match self.current?.kind {
            EntryKind::Weight(w) => Some(w),
            _ => None,
        }
    }

    /// Moves to the next entry (from before the start: the first one; past
    /// the end it stays there).
    #[inline]
    pub fn advance(&mut self) -> Result<()> {
        match (self.current, self.back) {
            (Some(_), false) => self.fill(),
            (Some(at), true) => {
                self.merged.turn_forward(&at)?;
                self.fill()
            }
            (None, false) => Ok(()),
            (None, true) => self.seek_to_first(),
        }
    }

    /// Moves to the previous entry (from past the end: the last one; before
    /// the start it stays there).
    #[inline]
    pub fn prev(&mut self) -> Result<()> {
        match (self.current, self.back) {
            (Some(_), true) => self.fill_back(),
            (Some(at), false) => {
                self.merged.turn_back(&at)?;
                self.fill_back()
            }
            (None, true) => Ok(()),
            (None, false) => self.seek_to_last(),
        }
    }

    /// Moves to the first entry of the cursor's range.
    pub fn seek_to_first(&mut self) -> Result<()> {
        match &self.start {
            Bound::Included(s) => self.merged.seek(s, true)?,
            Bound::Excluded(s) => self.merged.seek(s, false)?,
            Bound::Unbounded => self.merged.seek(&[], true)?,
        }
        self.fill()
    }

    /// Moves to the last entry of the cursor's range.
    pub fn seek_to_last(&mut self) -> Result<()> {
        match &self.end {
            Bound::Included(e) => self.merged.seek_back(e, true)?,
            Bound::Excluded(e) => self.merged.seek_back(e, false)?,
            Bound::Unbounded => self.merged.seek_to_last()?,
        }
        self.fill_back()
    }

    /// Moves to the first entry whose key is `>= key` (forward or back),
    /// within the cursor's range (a key before it: the first entry).
    pub fn seek(&mut self, key: &[u8]) -> Result<()> {
        if self.below_start(key) {
            return self.seek_to_first();
        }
        self.merged.seek(key, true)?;
        self.fill()
    }

    /// Moves to the last entry whose key is `<= key` (forward or back),
    /// within the cursor's range (a key past it: the last entry).
    pub fn seek_back(&mut self, key: &[u8]) -> Result<()> {
        if self.above_end(key) {
            return self.seek_to_last();
        }
        self.merged.seek_back(key, true)?;
        self.fill_back()
    }
}

impl<'a> Iterator for Cursor<'a> {
    type Item = Result<EntryRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let e = self.current?;
        match self.advance() {
            Ok(()) => Some(Ok(e)),
            Err(err) => {
                // Stop after reporting the error once.
                self.current = None;
                Some(Err(err))
            }
        }
    }
}
