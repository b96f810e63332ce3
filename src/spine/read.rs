//! Reads across the memtable and every batch: point reads, Z-set key reads,
//! typed reads and range [`Cursor`]s.
//!
//! Point reads (`get`, `contains`, `key_weight`, `values_into`) take `&self`
//! and allocate nothing: the key is hashed once, then the memtable's hash
//! index and each batch (newest first; a bloom filter line per run) are
//! probed. Cursors take `&mut self` because they need the live memtable in
//! order, which is made lazily (`Memtable::sort`).

use std::ops::{Bound, RangeBounds};

use rkyv::Portable;
use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;

use super::Spine;
use super::batch::{Batch, Source};
use super::consolidate::Consolidate;
use crate::run::bloom::key_hash;
use crate::run::{EntryKind, EntryRef, RunMode};
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
        tail.sort_unstable_by(|a, b| a.0.cmp(b.0));
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
    fn sources(&mut self, key: Option<&[u8]>) -> Result<Vec<Source<'_>>> {
        self.memtable.sort();
        let this = &*self;
        let mut out = Vec::with_capacity(this.batches.len() + 1);
        let mem_at = key.map_or(0, |k| this.memtable.lower_bound(k));
        out.push(Source::memtable(&this.memtable, mem_at));
        for s in this.batches.iter().rev() {
            out.push(match key {
                Some(k) => s.batch.seek(k)?,
                None => s.batch.first()?,
            });
        }
        Ok(out)
    }

    /// A cursor over every live entry, in key order.
    pub fn cursor(&mut self) -> Result<Cursor<'_>> {
        self.range::<std::ops::RangeFull>(..)
    }

    /// A cursor over the live entries whose keys fall in `range`, given as
    /// a pair of bounds (`[u8]` is unsized, so `a..b` is not a range of it):
    /// `spine.range((Bound::Included(&b"a"[..]), Bound::Excluded(&b"m"[..])))`.
    pub fn range<R: RangeBounds<[u8]>>(&mut self, range: R) -> Result<Cursor<'_>> {
        let end = range.end_bound().map(<[u8]>::to_vec);
        let (start, skip) = match range.start_bound() {
            Bound::Included(k) => (Some(k.to_vec()), None),
            Bound::Excluded(k) => (Some(k.to_vec()), Some(k.to_vec())),
            Bound::Unbounded => (None, None),
        };
        let mode = self.opts.mode;
        let sources = self.sources(start.as_deref())?;
        let mut c = Cursor {
            merged: Consolidate::new(sources, mode, false),
            current: None,
            end,
            prefix: None,
        };
        c.fill()?;
        if let Some(skip) = skip {
            while c.key().is_some_and(|k| k == skip.as_slice()) {
                c.advance()?;
            }
        }
        Ok(c)
    }

    /// A cursor over the live entries whose keys start with `prefix`.
    pub fn prefix(&mut self, prefix: &[u8]) -> Result<Cursor<'_>> {
        let mut c =
            self.range::<(Bound<&[u8]>, Bound<&[u8]>)>((Bound::Included(prefix), Bound::Unbounded))?;
        c.prefix = Some(prefix.to_vec());
        c.current = c.current.filter(|e| e.key.starts_with(prefix));
        Ok(c)
    }
}

/// A forward cursor over a spine: consolidated entries in key (then value)
/// order. Key-value entries come as [`EntryKind::Put`]; Z-set entries as
/// [`EntryKind::Weight`] with their summed, non-zero weight. Keys and values
/// borrow from the memtable or the mapped runs.
#[derive(Debug)]
pub struct Cursor<'a> {
    merged: Consolidate<'a>,
    current: Option<EntryRef<'a>>,
    end: Bound<Vec<u8>>,
    prefix: Option<Vec<u8>>,
}

impl<'a> Cursor<'a> {
    fn in_bounds(&self, key: &[u8]) -> bool {
        let below_end = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        below_end && self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
    }

    fn fill(&mut self) -> Result<()> {
        let mut consumed = 0;
        self.current = self.merged.next(&mut consumed)?.filter(|e| self.in_bounds(e.key));
        Ok(())
    }

    /// The entry under the cursor, or `None` past the end.
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

    /// Moves to the next entry.
    #[inline]
    pub fn advance(&mut self) -> Result<()> {
        if self.current.is_some() {
            self.fill()?;
        }
        Ok(())
    }

    /// Moves to the first entry whose key is `>= key` (forward or back),
    /// within the cursor's end bound and prefix.
    pub fn seek(&mut self, key: &[u8]) -> Result<()> {
        self.merged.seek(key)?;
        self.fill()
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
