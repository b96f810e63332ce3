//! [`Merger`]: who advances a spine's running merges, behind one set of
//! methods: the owner itself, inline in `merge_step` (cooperative mode), or
//! a bounded pool of merge threads shared by spines (background mode,
//! [`Helper`]).
//!
//! Either way the spine starts merges with [`Merger::start`] and installs
//! each one that finished, handed back by [`Merger::next_finished`] (never
//! waits) or [`Merger::wait_finished`] (waits for the helper; inline there
//! is nothing to wait for). The merger tracks which batches each running
//! merge takes, so the spine can place its output.

use std::sync::Arc;
use std::time::Duration;

use super::background::Helper;
use super::batch::Batch;
use super::merge::{Merge, Output};
use super::options::MergeMode;
use crate::Result;
use crate::io::Fs;

#[derive(Debug)]
struct Running {
    id: u64,
    /// Input batch ids, oldest first.
    inputs: Vec<u64>,
    /// `None` while the background helper holds it.
    merge: Option<Merge>,
}

/// A merge that finished, or failed.
#[derive(Debug)]
pub(super) struct Finished {
    pub(super) id: u64,
    /// Input batch ids, oldest first.
    pub(super) inputs: Vec<u64>,
    pub(super) output: Result<Output>,
}

#[derive(Debug)]
enum Mode {
    /// Advanced round-robin from `next` by the owner's merge steps.
    Inline {
        next: usize,
    },
    Background(Helper),
}

/// The running merges of a spine and whoever advances them.
#[derive(Debug)]
pub(super) struct Merger {
    running: Vec<Running>,
    mode: Mode,
}

impl Merger {
    /// A merger of the given mode; background queues merges on a pool,
    /// which merges `budget` input bytes per slice.
    pub(super) fn new(mode: MergeMode, fs: &Arc<dyn Fs>, budget: usize) -> Merger {
        let mode = match mode {
            MergeMode::Cooperative => Mode::Inline { next: 0 },
            MergeMode::Background => Mode::Background(Helper::new(Arc::clone(fs), budget)),
        };
        Merger {
            running: Vec::new(),
            mode,
        }
    }

    /// Background merges from now on run on `pool` (inline: nothing to do).
    pub(super) fn set_pool(&mut self, pool: Arc<crate::io::Pool>) {
        if let Mode::Background(h) = &mut self.mode {
            h.set_pool(pool);
        }
    }

    /// True in background mode.
    pub(super) fn is_background(&self) -> bool {
        matches!(self.mode, Mode::Background(_))
    }

    /// Merges started and not yet handed back.
    pub(super) fn pending(&self) -> usize {
        self.running.len()
    }

    /// Starts `merge` of the batches `inputs` (ids, oldest first).
    pub(super) fn start(&mut self, id: u64, inputs: Vec<u64>, merge: Merge) -> Result<()> {
        let merge = match &self.mode {
            Mode::Inline { .. } => Some(merge),
            Mode::Background(h) => {
                h.submit(id, merge)?;
                None
            }
        };
        self.running.push(Running { id, inputs, merge });
        Ok(())
    }

    /// A merge that finished, if any, without waiting. Inline, this advances
    /// the running merges round-robin until one finishes or fails, or until
    /// about `left` input bytes (one entry group past it at most) are spent,
    /// subtracting what it did; background, it only collects what the
    /// helper finished and leaves `left` alone.
    pub(super) fn next_finished(&mut self, fs: &Arc<dyn Fs>, left: &mut usize) -> Option<Finished> {
        let next = match &mut self.mode {
            Mode::Background(h) => {
                let (id, output) = h.try_finished()?;
                return Some(self.take(id, output));
            }
            Mode::Inline { next } => next,
        };
        while *left > 0 && !self.running.is_empty() {
            let i = *next % self.running.len();
            let worked = match self.running[i].merge.as_mut() {
                Some(m) => m.work(left),
                None => unreachable!("an inline merge is held by the spine"),
            };
            let output = match worked {
                Ok(false) => {
                    *next = i + 1;
                    continue;
                }
                Ok(true) => None,
                Err(e) => Some(Err(e)),
            };
            let Running { id, inputs, merge } = self.running.remove(i);
            let output = output.unwrap_or_else(|| match merge {
                Some(m) => m.done(fs),
                None => unreachable!("an inline merge is held by the spine"),
            });
            return Some(Finished { id, inputs, output });
        }
        None
    }

    /// A merge the helper finished, waiting at most `timeout` for one
    /// (background; inline there is nothing to wait for: `None` at once).
    pub(super) fn wait_finished(&mut self, timeout: Duration) -> Option<Finished> {
        let Mode::Background(h) = &self.mode else {
            return None;
        };
        let (id, output) = h.wait_finished(timeout)?;
        Some(self.take(id, output))
    }

    fn take(&mut self, id: u64, output: Result<Output>) -> Finished {
        let Some(i) = self.running.iter().position(|m| m.id == id) else {
            unreachable!("unknown merge {id} finished");
        };
        let Running { id, inputs, .. } = self.running.remove(i);
        Finished { id, inputs, output }
    }

    /// Retired batches: the helper drops them (so the owner never pays for
    /// unmapping or unlinking); inline they come back to the caller.
    pub(super) fn bury(&self, retired: Vec<Batch>) -> Vec<Batch> {
        match &self.mode {
            Mode::Inline { .. } => retired,
            Mode::Background(h) => {
                h.bury(retired);
                Vec::new()
            }
        }
    }

    /// Stops every merge: the helper is joined (its merges drop with it)
    /// and inline merges are dropped; their temporary files go.
    pub(super) fn stop(&mut self) {
        self.mode = Mode::Inline { next: 0 };
        self.running.clear();
    }
}
