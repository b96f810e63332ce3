//! [`Consolidate`]: the k-way merge at the heart of both reads and merges.
//!
//! Sources are ordered newest first. Each forward step:
//! 1. Find the smallest head in entry order (`run::entry_cmp`: by key, or
//!    `(key, value)` for Z-sets); on a tie the newest source's entry is the
//!    one kept (scan order).
//! 2. Advance every source whose head equals it, adding up Z-set weights.
//! 3. Key-value: the newest entry wins; a tombstone is emitted only when the
//!    caller keeps tombstones (a merge above the bottom of the spine), else
//!    skipped. Z-set: the summed weight is emitted unless it is zero.
//!
//! A backward step is the mirror image: the largest head, and every source
//! holding it steps back. Forward, every head is past the last entry
//! emitted; backward, before it. Turning around re-seeks every source to
//! the other side of that entry (`turn_forward`, `turn_back`).
//!
//! Heads are scanned linearly: fan-in and the number of sources a read
//! consults are small (a few dozen at most), and a scan of them is cheaper
//! than a heap's bookkeeping at that size.

use std::cmp::Ordering;

use super::batch::{Pos, Source};
use crate::Result;
use crate::run::{EntryKind, EntryRef, RunMode};

/// Bytes of budget an input entry costs beyond its key and value, so that a
/// merge of many tiny entries still yields within its budget.
pub(crate) const ENTRY_OVERHEAD_BYTES: usize = 16;

#[derive(Debug)]
pub(crate) struct Consolidate<'a> {
    sources: Vec<Source<'a>>,
    /// `heads[i]` is `sources[i].current()`, cached: each step reads every
    /// head but moves only the sources that held the chosen one.
    heads: Vec<Option<EntryRef<'a>>>,
    mode: RunMode,
    keep_tombstones: bool,
    /// The entry emitted last since the last seek or turn (kept with debug
    /// assertions on only): each step's must lie strictly beyond it.
    last: Option<EntryRef<'a>>,
}

/// Consumes head `e` of source `s`: counts its bytes, moves the source on
/// (back if `BACK`), refreshes the cached head, and returns its weight (0
/// for key-value).
#[inline(always)]
fn take<'a, const BACK: bool>(
    s: &mut Source<'a>,
    head: &mut Option<EntryRef<'a>>,
    e: EntryRef<'a>,
    consumed: &mut usize,
) -> Result<i64> {
    *consumed += e.key.len() + e.value.len() + ENTRY_OVERHEAD_BYTES;
    if BACK {
        s.prev()?;
    } else {
        s.advance()?;
    }
    *head = s.current();
    Ok(match e.kind {
        EntryKind::Weight(w) => w,
        _ => 0,
    })
}

impl<'a> Consolidate<'a> {
    /// `sources` newest first.
    pub(crate) fn new(sources: Vec<Source<'a>>, mode: RunMode, keep_tombstones: bool) -> Self {
        let heads = sources.iter().map(Source::current).collect();
        Consolidate {
            sources,
            heads,
            mode,
            keep_tombstones,
            last: None,
        }
    }

    /// The next consolidated entry, or `None` when every source is exhausted.
    /// Adds the input bytes it consumed to `consumed`.
    #[inline]
    pub(crate) fn next(&mut self, consumed: &mut usize) -> Result<Option<EntryRef<'a>>> {
        let e = self.step::<false>(consumed)?;
        self.check_order::<false>(e);
        Ok(e)
    }

    /// The previous consolidated entry (the mirror of `next`).
    #[inline]
    pub(crate) fn next_back(&mut self) -> Result<Option<EntryRef<'a>>> {
        let e = self.step::<true>(&mut 0)?;
        self.check_order::<true>(e);
        Ok(e)
    }

    /// Debug builds: the walk moves strictly one way (what a merge writes
    /// is strictly increasing; a cursor never shows an entry twice).
    #[inline(always)]
    fn check_order<const BACK: bool>(&mut self, e: Option<EntryRef<'a>>) {
        if cfg!(debug_assertions) {
            if let (Some(last), Some(e)) = (self.last, e) {
                assert!(
                    self.before::<BACK>(&last, &e).is_lt(),
                    "consolidated entries out of order ({}): {last:?} then {e:?}",
                    if BACK { "backward" } else { "forward" }
                );
            }
            self.last = e;
        }
    }

    // Always inlined: the merge loop's inner comparison (measured 10% of a
    // scan as a call).
    #[inline(always)]
    fn before<const BACK: bool>(&self, a: &EntryRef<'_>, b: &EntryRef<'_>) -> Ordering {
        let o = a.cmp_in(self.mode, b);
        if BACK { o.reverse() } else { o }
    }

    #[inline(always)]
    fn step<const BACK: bool>(&mut self, consumed: &mut usize) -> Result<Option<EntryRef<'a>>> {
        loop {
            // One pass finds the first head in walk order and whether another
            // head ties with it; without a tie (the common case) only its
            // source moves.
            let mut min: Option<(usize, EntryRef<'a>)> = None;
            let mut tie = false;
            for (i, e) in self.heads.iter().enumerate() {
                let Some(e) = e else { continue };
                match min.map(|(_, m)| self.before::<BACK>(e, &m)) {
                    None | Some(Ordering::Less) => {
                        min = Some((i, *e));
                        tie = false;
                    }
                    Some(Ordering::Equal) => tie = true,
                    Some(Ordering::Greater) => {}
                }
            }
            let Some((at, first)) = min else { return Ok(None) };
            let mut weight = 0i64;
            if tie {
                let mode = self.mode;
                for (s, head) in self.sources.iter_mut().zip(self.heads.iter_mut()).skip(at) {
                    let Some(e) = *head else { continue };
                    if e.cmp_in(mode, &first).is_eq() {
                        weight = weight.wrapping_add(take::<BACK>(s, head, e, consumed)?);
                    }
                }
            } else {
                weight = take::<BACK>(&mut self.sources[at], &mut self.heads[at], first, consumed)?;
            }
            match first.kind {
                EntryKind::Put => return Ok(Some(first)),
                EntryKind::Delete if self.keep_tombstones => return Ok(Some(first)),
                EntryKind::Delete => {}
                EntryKind::Weight(_) if weight != 0 => {
                    return Ok(Some(EntryRef {
                        kind: EntryKind::Weight(weight),
                        ..first
                    }));
                }
                EntryKind::Weight(_) => {}
            }
        }
    }

    /// Moves every source to its first entry whose key is `>= key`
    /// (`inclusive`) or `> key`: then `next` walks forward from there.
    pub(crate) fn seek(&mut self, key: &[u8], inclusive: bool) -> Result<()> {
        self.last = None;
        for (s, head) in self.sources.iter_mut().zip(self.heads.iter_mut()) {
            if inclusive {
                s.seek(key)?;
            } else {
                s.seek_past(key)?;
            }
            *head = s.current();
        }
        Ok(())
    }

    /// Moves every source to its last entry whose key is `<= key`
    /// (`inclusive`) or `< key`: then `next_back` walks back from there.
    pub(crate) fn seek_back(&mut self, key: &[u8], inclusive: bool) -> Result<()> {
        self.last = None;
        for (s, head) in self.sources.iter_mut().zip(self.heads.iter_mut()) {
            if inclusive {
                s.seek_past(key)?;
            } else {
                s.seek(key)?;
            }
            s.prev()?;
            *head = s.current();
        }
        Ok(())
    }

    /// Moves every source to its last entry.
    pub(crate) fn seek_to_last(&mut self) -> Result<()> {
        self.last = None;
        for (s, head) in self.sources.iter_mut().zip(self.heads.iter_mut()) {
            s.seek_to_last()?;
            *head = s.current();
        }
        Ok(())
    }

    /// After walking back to `at`: moves every source to its first entry
    /// after `at` in entry order, so `next` goes on forward from there.
    pub(crate) fn turn_forward(&mut self, at: &EntryRef<'_>) -> Result<()> {
        self.last = None;
        let mode = self.mode;
        for (s, head) in self.sources.iter_mut().zip(self.heads.iter_mut()) {
            s.seek(at.key)?;
            // Past `at`'s key's smaller values (Z-set) and `at` itself.
            while s.current().is_some_and(|e| e.cmp_in(mode, at).is_le()) {
                s.advance()?;
            }
            *head = s.current();
        }
        Ok(())
    }

    /// After walking forward to `at`: moves every source to its last entry
    /// before `at` in entry order, so `next_back` goes on back from there.
    pub(crate) fn turn_back(&mut self, at: &EntryRef<'_>) -> Result<()> {
        self.last = None;
        let mode = self.mode;
        for (s, head) in self.sources.iter_mut().zip(self.heads.iter_mut()) {
            s.seek(at.key)?;
            while s.current().is_some_and(|e| e.cmp_in(mode, at).is_lt()) {
                s.advance()?;
            }
            s.prev()?;
            *head = s.current();
        }
        Ok(())
    }

    /// Where each source rests, in source order.
    pub(crate) fn positions(&self) -> impl Iterator<Item = Pos> + '_ {
        self.sources.iter().map(Source::position)
    }
}
