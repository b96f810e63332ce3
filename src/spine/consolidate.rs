//! [`Consolidate`]: the k-way merge at the heart of both reads and merges.
//!
//! Sources are ordered newest first. Each step:
//! 1. Find the smallest head: by key (key-value) or `(key, value)` (Z-set);
//!    on a tie the newest source's entry is the one kept (scan order).
//! 2. Advance every source whose head equals it, adding up Z-set weights.
//! 3. Key-value: the newest entry wins; a tombstone is emitted only when the
//!    caller keeps tombstones (a merge above the bottom of the spine), else
//!    skipped. Z-set: the summed weight is emitted unless it is zero.
//!
//! Heads are scanned linearly: fan-in and the number of sources a read
//! consults are small (a few dozen at most), and a scan of them is cheaper
//! than a heap's bookkeeping at that size.

use std::cmp::Ordering;

use super::batch::{Pos, Source};
use crate::Result;
use crate::run::{EntryKind, EntryRef, RunMode, key_cmp};

/// Bytes of budget an input entry costs beyond its key and value, so that a
/// merge of many tiny entries still yields within its budget.
pub(crate) const ENTRY_OVERHEAD_BYTES: usize = 16;

#[derive(Debug)]
pub(crate) struct Consolidate<'a> {
    sources: Vec<Source<'a>>,
    /// `heads[i]` is `sources[i].current()`, cached: each step reads every
    /// head but advances only the sources that held the smallest one.
    heads: Vec<Option<EntryRef<'a>>>,
    mode: RunMode,
    keep_tombstones: bool,
}

// Always inlined: the merge loop's inner comparison (measured 10% of a scan
// as a call).
#[inline(always)]
fn order(mode: RunMode, a: &EntryRef<'_>, b: &EntryRef<'_>) -> Ordering {
    match mode {
        RunMode::KeyValue => key_cmp(a.key, b.key),
        RunMode::ZSet => key_cmp(a.key, b.key).then_with(|| key_cmp(a.value, b.value)),
    }
}

/// Consumes head `e` of source `s`: counts its bytes, advances the source,
/// refreshes the cached head, and returns its weight (0 for key-value).
#[inline(always)]
fn take<'a>(
    s: &mut Source<'a>,
    head: &mut Option<EntryRef<'a>>,
    e: EntryRef<'a>,
    consumed: &mut usize,
) -> Result<i64> {
    *consumed += e.key.len() + e.value.len() + ENTRY_OVERHEAD_BYTES;
    s.advance()?;
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
        }
    }

    /// The next consolidated entry, or `None` when every source is exhausted.
    /// Adds the input bytes it consumed to `consumed`.
    #[inline]
    pub(crate) fn next(&mut self, consumed: &mut usize) -> Result<Option<EntryRef<'a>>> {
        loop {
            // One pass finds the smallest head and whether another head ties
            // with it; without a tie (the common case) only its source moves.
            let mut min: Option<(usize, EntryRef<'a>)> = None;
            let mut tie = false;
            for (i, e) in self.heads.iter().enumerate() {
                let Some(e) = e else { continue };
                match min.map(|(_, m)| order(self.mode, e, &m)) {
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
                for (s, head) in self.sources.iter_mut().zip(self.heads.iter_mut()).skip(at) {
                    let Some(e) = *head else { continue };
                    if order(self.mode, &e, &first).is_eq() {
                        weight = weight.wrapping_add(take(s, head, e, consumed)?);
                    }
                }
            } else {
                weight = take(&mut self.sources[at], &mut self.heads[at], first, consumed)?;
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

    /// Moves every source to the first entry whose key is `>= key`.
    pub(crate) fn seek(&mut self, key: &[u8]) -> Result<()> {
        for (s, head) in self.sources.iter_mut().zip(self.heads.iter_mut()) {
            s.seek(key)?;
            *head = s.current();
        }
        Ok(())
    }

    /// Where each source rests, in source order.
    pub(crate) fn positions(&self) -> impl Iterator<Item = Pos> + '_ {
        self.sources.iter().map(Source::position)
    }
}
