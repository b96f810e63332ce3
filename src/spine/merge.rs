//! [`Merge`]: a merge you can hold, advance a little, and finish.
//!
//! 1. `new`: the inputs (a contiguous, age-ordered group of batches) and a
//!    [`RunWriter`] for the output, sized so its filter is built as it goes.
//! 2. `work(&mut budget)`: re-enter every input at its saved position, emit
//!    consolidated entries until the budget (input bytes, see
//!    `consolidate::ENTRY_OVERHEAD_BYTES`) is spent or the inputs run out, save the
//!    positions. Consolidation: newest version wins; tombstones vanish when the
//!    merge includes the oldest batch of the spine (nothing older can hold the
//!    key); Z-set weights add up and zeros vanish.
//! 3. `done`: seal the output run (no sync: a checkpoint syncs the runs it
//!    needs) and open it. The spine then publishes it in place of the inputs
//!    and retires them; their files go when the last reader lets go.
//!
//! A merge owns everything it needs (`Send`), so the very same value can be
//! advanced by the owner's `merge_step` or by a helper thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::batch::{Batch, Pos, RunFile};
use super::consolidate::Consolidate;
use crate::io::Fs;
use crate::run::{Run, RunMode, RunWriter};
use crate::{Error, Result};

#[derive(Debug)]
pub(crate) struct Merge {
    /// Newest first.
    inputs: Vec<Batch>,
    positions: Vec<Pos>,
    writer: RunWriter,
    mode: RunMode,
    bottom: bool,
    exhausted: bool,
    bytes_in: u64,
    /// When it was made, for the time it took.
    started: Instant,
}

/// What a finished merge produced.
#[derive(Debug)]
pub(crate) struct Output {
    /// The output run, or `None` if everything cancelled out.
    pub(crate) run: Option<RunFile>,
    /// Input bytes consumed (keys, values and per-entry overhead).
    pub(crate) bytes_in: u64,
    /// From its start to its output's opening.
    pub(crate) elapsed: Duration,
}

impl Merge {
    /// A merge of `inputs` (newest first) into `writer`. `bottom`: the inputs
    /// include the spine's oldest batch, so tombstones can go.
    pub(crate) fn new(inputs: Vec<Batch>, writer: RunWriter, mode: RunMode, bottom: bool) -> Result<Merge> {
        let positions = inputs
            .iter()
            .map(|b| b.first().map(|s| s.position()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Merge {
            inputs,
            positions,
            writer,
            mode,
            bottom,
            exhausted: false,
            bytes_in: 0,
            started: Instant::now(),
        })
    }

    /// Upper bound on output entries: the sum of the inputs.
    pub(crate) fn input_entries(inputs: &[Batch]) -> u64 {
        inputs.iter().map(Batch::len).sum()
    }

    /// Does at most about `budget` bytes of input (one entry group past it at
    /// most), subtracting what it did. True once every input is consumed.
    pub(crate) fn work(&mut self, budget: &mut usize) -> Result<bool> {
        if self.exhausted {
            return Ok(true);
        }
        let sources = self
            .inputs
            .iter()
            .zip(&self.positions)
            .map(|(b, &p)| b.at(p))
            .collect::<Result<Vec<_>>>()?;
        let mut merged = Consolidate::new(sources, self.mode, !self.bottom);
        let mut consumed = 0usize;
        while consumed < *budget {
            match merged.next(&mut consumed)? {
                Some(e) => match self.writer.push(e.key, e.value, e.kind) {
                    // Consolidation emits strictly increasing entries.
                    Err(Error::OutOfOrder { path, index }) => unreachable!(
                        "merge into {}: entry {index} ({e:?}) out of order",
                        path.display()
                    ),
                    other => other?,
                },
                None => {
                    self.exhausted = true;
                    break;
                }
            }
        }
        for (slot, p) in self.positions.iter_mut().zip(merged.positions()) {
            *slot = p;
        }
        *budget = budget.saturating_sub(consumed);
        self.bytes_in += consumed as u64;
        Ok(self.exhausted)
    }

    /// Seals and opens the output. Call after `work` returned true.
    pub(crate) fn done(self, fs: &Arc<dyn Fs>) -> Result<Output> {
        let bytes_in = self.bytes_in;
        if self.writer.entry_count() == 0 {
            // Dropping an unfinished writer removes its temporary file.
            return Ok(Output {
                run: None,
                bytes_in,
                elapsed: self.started.elapsed(),
            });
        }
        let (meta, synced) = self.writer.finish_syncing_later()?;
        let run = Run::open(fs.as_ref(), &meta.path)?;
        // What the writer recorded is what the reader finds (the bytes are
        // checksummed, so a difference is a bug on one side).
        let found = run.meta();
        assert!(
            (
                found.entry_count,
                &found.key_range,
                found.file_len,
                found.body_crc32c
            ) == (meta.entry_count, &meta.key_range, meta.file_len, meta.body_crc32c),
            "merge output {}: written as {meta:?}, read back as {found:?}",
            meta.path.display()
        );
        Ok(Output {
            run: Some(RunFile::new(run, Arc::clone(fs)).synced_by(synced)),
            bytes_in,
            elapsed: self.started.elapsed(),
        })
    }
}
