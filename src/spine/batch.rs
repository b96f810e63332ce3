//! What a spine is made of: [`Batch`]es (sealed memtables in memory, or run
//! files on disk), and [`Source`] cursors that walk either kind alike.
//!
//! A [`RunFile`] deletes its file when the last reference to it goes away
//! after it was retired by a merge: readers and background merges that still
//! hold it keep reading the mapped bytes undisturbed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::Result;
use crate::io::Fs;
use crate::memtable::Memtable;
use crate::run::{self, EntryRef, Run};

/// A run file owned by a spine.
#[derive(Debug)]
pub(crate) struct RunFile {
    pub(crate) run: Run,
    fs: Arc<dyn Fs>,
    retired: AtomicBool,
    /// Its bytes are known durable (a checkpoint synced it, or recovery
    /// linked it from one); set by whoever made it so.
    durable: AtomicBool,
    /// A checkpoint cut has seen it while it was not durable.
    seen: AtomicBool,
    /// When it was published.
    created: std::time::Instant,
    /// Set by the write-behind thread once it synced the run's bytes (real
    /// file systems): a checkpoint then links it without syncing or
    /// deferring it.
    synced_later: Option<Arc<AtomicBool>>,
}

impl RunFile {
    pub(crate) fn new(run: Run, fs: Arc<dyn Fs>) -> Self {
        RunFile {
            run,
            fs,
            retired: AtomicBool::new(false),
            durable: AtomicBool::new(false),
            seen: AtomicBool::new(false),
            created: std::time::Instant::now(),
            synced_later: None,
        }
    }

    /// A run whose bytes a write-behind thread syncs: durable once `flag` is.
    pub(crate) fn synced_by(mut self, flag: Option<Arc<AtomicBool>>) -> Self {
        self.synced_later = flag;
        self
    }

    /// Time since the run was published.
    pub(crate) fn age(&self) -> std::time::Duration {
        self.created.elapsed()
    }

    pub(crate) fn is_durable(&self) -> bool {
        self.durable.load(Ordering::Acquire)
            || self
                .synced_later
                .as_ref()
                .is_some_and(|f| f.load(Ordering::Acquire))
    }

    pub(crate) fn mark_durable(&self) {
        self.durable.store(true, Ordering::Release);
    }

    /// True while something may still make it durable: a cut saw it (its
    /// checkpoint may be committing), or a write-behind sync is pending.
    pub(crate) fn may_become_durable(&self) -> bool {
        self.seen.load(Ordering::Acquire) || self.synced_later.is_some()
    }

    /// Marks the run seen by a cut; returns whether one had seen it before.
    pub(crate) fn see(&self) -> bool {
        self.seen.swap(true, Ordering::AcqRel)
    }

    /// Marks the file for deletion once nothing refers to it.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

impl Drop for RunFile {
    fn drop(&mut self) {
        if *self.retired.get_mut() {
            // A file that fails to go is garbage that the store's open-time
            // cleanup removes; nothing reads a retired run.
            let _ = self.fs.remove_file(self.run.path());
        }
    }
}

/// One immutable sorted batch of a spine.
#[derive(Debug, Clone)]
pub(crate) enum Batch {
    /// A sealed (and sorted) memtable.
    Mem(Arc<Memtable>),
    /// A run file.
    Disk(Arc<RunFile>),
}

impl Batch {
    /// Bytes the batch holds (memory for a memtable, file length for a run).
    pub(crate) fn size_bytes(&self) -> u64 {
        match self {
            Batch::Mem(m) => m.size_bytes() as u64,
            Batch::Disk(r) => r.run.meta().file_len,
        }
    }

    /// Entries in the batch.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Batch::Mem(m) => m.len() as u64,
            Batch::Disk(r) => r.run.len(),
        }
    }

    /// Starts loading what a lookup of hash `h` touches first.
    #[inline]
    pub(crate) fn prefetch(&self, h: u64) {
        match self {
            Batch::Mem(m) => m.prefetch(h),
            Batch::Disk(r) => r.run.prefetch_filter(h),
        }
    }

    /// The key-value entry for `key` with hash `h`.
    #[inline]
    pub(crate) fn get_hashed(&self, key: &[u8], h: u64) -> Result<Option<EntryRef<'_>>> {
        match self {
            Batch::Mem(m) => Ok(m.get_hashed(key, h)),
            Batch::Disk(r) => r.run.get_hashed(key, h),
        }
    }

    /// A cursor at the first entry.
    pub(crate) fn first(&self) -> Result<Source<'_>> {
        Ok(match self {
            Batch::Mem(m) => Source::memtable(m, 0),
            Batch::Disk(r) => Source::Disk(r.run.cursor()?),
        })
    }

    /// A cursor at the first entry whose key is `>= key`.
    pub(crate) fn seek(&self, key: &[u8]) -> Result<Source<'_>> {
        Ok(match self {
            Batch::Mem(m) => Source::memtable(m, m.lower_bound(key)),
            Batch::Disk(r) => Source::Disk(r.run.seek(key)?),
        })
    }

    /// A cursor at a position an earlier one reported.
    pub(crate) fn at(&self, pos: Pos) -> Result<Source<'_>> {
        Ok(match (self, pos) {
            (Batch::Mem(m), Pos::Mem(i)) => Source::memtable(m, i),
            (Batch::Disk(r), Pos::Disk(b, i)) => Source::Disk(run::Cursor::at(&r.run, (b, i))?),
            // A merge saves each input's position from a cursor over it.
            (b, pos) => unreachable!(
                "position {pos:?} does not fit a {} batch",
                if matches!(b, Batch::Mem(_)) {
                    "memory"
                } else {
                    "disk"
                }
            ),
        })
    }
}

/// A resumable position in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pos {
    Mem(usize),
    Disk(usize, usize),
}

/// `i` of a memtable source before its first entry: one step forward
/// (wrapping) lands on entry 0.
const MEM_BEFORE_START: usize = usize::MAX;

/// A cursor over one batch or the live memtable, either way; off either end
/// it has no current entry.
#[derive(Debug, Clone)]
pub(crate) enum Source<'a> {
    /// `i` indexes `sorted`: `sorted.len()` past the end,
    /// `MEM_BEFORE_START` before the start.
    Mem {
        mt: &'a Memtable,
        sorted: &'a [u32],
        i: usize,
    },
    Disk(run::Cursor<'a>),
}

impl<'a> Source<'a> {
    /// A cursor over a memtable in order, from position `i`.
    pub(crate) fn memtable(mt: &'a Memtable, i: usize) -> Self {
        Source::Mem {
            mt,
            sorted: mt.sorted(),
            i,
        }
    }

    #[inline(always)]
    pub(crate) fn current(&self) -> Option<EntryRef<'a>> {
        match self {
            Source::Mem { mt, sorted, i } => sorted.get(*i).map(|&e| mt.entry(e)),
            Source::Disk(c) => c.current(),
        }
    }

    #[inline]
    pub(crate) fn advance(&mut self) -> Result<()> {
        match self {
            Source::Mem { mt, sorted, i } => {
                *i = i.wrapping_add(1).min(sorted.len());
                mt.prefetch_sorted(sorted, *i);
                Ok(())
            }
            Source::Disk(c) => c.advance(),
        }
    }

    /// Moves to the previous entry (from past the end: the last one).
    #[inline]
    pub(crate) fn prev(&mut self) -> Result<()> {
        match self {
            Source::Mem { sorted, i, .. } => {
                *i = (*i).min(sorted.len()).checked_sub(1).unwrap_or(MEM_BEFORE_START);
                Ok(())
            }
            Source::Disk(c) => c.prev(),
        }
    }

    /// Moves to the first entry whose key is `>= key` (anywhere in the batch).
    pub(crate) fn seek(&mut self, key: &[u8]) -> Result<()> {
        match self {
            Source::Mem { mt, i, .. } => *i = mt.lower_bound(key),
            Source::Disk(c) => *c = c.run().seek(key)?,
        }
        Ok(())
    }

    /// Moves to the first entry whose key is `> key`.
    pub(crate) fn seek_past(&mut self, key: &[u8]) -> Result<()> {
        match self {
            Source::Mem { mt, i, .. } => *i = mt.upper_bound(key),
            Source::Disk(c) => *c = c.run().seek_past(key)?,
        }
        Ok(())
    }

    /// Moves to the last entry.
    pub(crate) fn seek_to_last(&mut self) -> Result<()> {
        match self {
            Source::Mem { sorted, i, .. } => *i = sorted.len().checked_sub(1).unwrap_or(MEM_BEFORE_START),
            Source::Disk(c) => *c = c.run().cursor_last()?,
        }
        Ok(())
    }

    pub(crate) fn position(&self) -> Pos {
        match self {
            Source::Mem { i, .. } => Pos::Mem(*i),
            Source::Disk(c) => {
                let (b, i) = c.position();
                Pos::Disk(b, i)
            }
        }
    }
}
