//! [`Lineage`]: what a run that is not yet durable stands for at a
//! checkpoint cut ([`super::Spine::cut`]).
//!
//! A merge's output replaces its inputs at once, but it becomes durable
//! only later (a checkpoint syncs it, or the write-behind thread does). Until
//! then a cut that defers it stands in with its inputs: each one itself if
//! durable by the time of the cut, else what *it* stood for, recursively;
//! an input from memory is a hole, past which only the WAL holds the writes.
//!
//! 1. At publication, the output records its inputs, oldest first, with
//!    their own lineages, and the LSN the writes before them
//!    reached (`base`).
//! 2. At a cut, the walk takes each input in order: a durable one is
//!    included (it covers up to its `max_lsn`), a non-durable one is walked
//!    into, a hole stops the walk.
//! 3. Durability is read at the cut, not at publication: an input that a
//!    checkpoint in flight makes durable just after the merge published
//!    (the merge ran in the same `poll` that answered the cut) is a stand-in
//!    at the next cut. Read at publication, the next cut would cover less
//!    than the last committed one, and the WAL truncated after that one
//!    would miss records the new checkpoint replays.
//! 4. Pruning keeps the tree small: below a durable input nothing matters;
//!    an input that can never become durable (no cut saw it and no
//!    write-behind sync is pending: merged away unseen) lets go of its file
//!    and keeps only what stands for it, collapsed to a summary once no
//!    file is left under it.
//!
//! Invariant: the runs a walk yields hold every write of the spine up to
//! the `covered` it returns, and, because inputs stay stand-ins until the
//! output is durable, `covered` never falls below what the last committed
//! cut covered.

use std::sync::Arc;

use super::batch::RunFile;

/// What a run not yet durable stands for; see the module docs.
#[derive(Debug, Clone, Default)]
pub(super) struct Lineage {
    /// Every write up to this came before the inputs.
    base: u64,
    /// The merge's inputs, oldest first, up to the first from memory.
    inputs: Vec<Input>,
}

/// One input of a merge.
#[derive(Debug, Clone)]
pub(super) enum Input {
    /// A run: itself once durable (`None` once it never can be), else what
    /// stands for it.
    Run {
        file: Option<Arc<RunFile>>,
        max_lsn: u64,
        lineage: Lineage,
    },
    /// A sealed memtable: only the WAL holds its writes.
    Mem,
}

/// What a walk yields: stand-in runs, oldest first, the LSN
/// they cover, and whether it stopped at a hole.
#[derive(Debug, Default)]
pub(super) struct StandIn {
    pub(super) runs: Vec<Arc<RunFile>>,
    pub(super) covered: u64,
    pub(super) hole: bool,
}

impl Lineage {
    /// The lineage of a merge of `inputs` (oldest first) after writes up to
    /// `base` (step 1).
    pub(super) fn of(base: u64, inputs: impl IntoIterator<Item = Input>) -> Lineage {
        let mut inputs: Vec<Input> = inputs.into_iter().collect();
        if let Some(p) = inputs.iter().position(|i| matches!(i, Input::Mem)) {
            inputs.truncate(p + 1);
        }
        let mut l = Lineage { base, inputs };
        l.prune();
        l
    }

    /// True when it stands for nothing (the run is durable or was never a
    /// merge output).
    pub(super) fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Step 2.
    pub(super) fn stand_in(&self) -> StandIn {
        let mut out = StandIn {
            covered: self.base,
            ..StandIn::default()
        };
        self.walk(&mut out);
        out
    }

    /// Walks into `out`; false once stopped at a hole.
    fn walk(&self, out: &mut StandIn) -> bool {
        out.covered = out.covered.max(self.base);
        for input in &self.inputs {
            match input {
                Input::Run {
                    file: Some(f),
                    max_lsn,
                    ..
                } if f.is_durable() => {
                    out.runs.push(Arc::clone(f));
                    out.covered = out.covered.max(*max_lsn);
                }
                Input::Run { lineage, .. } => {
                    if !lineage.walk(out) {
                        return false;
                    }
                }
                Input::Mem => {
                    out.hole = true;
                    return false;
                }
            }
        }
        true
    }

    /// Step 4.
    pub(super) fn prune(&mut self) {
        for input in &mut self.inputs {
            let Input::Run { file, lineage, .. } = input else {
                continue;
            };
            match file {
                Some(f) if f.is_durable() => *lineage = Lineage::default(),
                Some(f) if f.may_become_durable() => lineage.prune(),
                _ => {
                    *file = None;
                    lineage.prune();
                    if !lineage.has_files() {
                        *lineage = lineage.summary();
                    }
                }
            }
        }
    }

    /// True if a file is held anywhere under it.
    fn has_files(&self) -> bool {
        self.inputs.iter().any(|i| match i {
            Input::Run { file, lineage, .. } => file.is_some() || lineage.has_files(),
            Input::Mem => false,
        })
    }

    /// The same walk result with no file: its coverage, and the hole if any.
    fn summary(&self) -> Lineage {
        let s = self.stand_in();
        debug_assert!(s.runs.is_empty(), "a summary of a lineage holding files");
        Lineage {
            base: s.covered,
            inputs: if s.hole { vec![Input::Mem] } else { Vec::new() },
        }
    }

    /// Every file held under it (what a durable output releases).
    pub(super) fn into_files(self) -> Vec<Arc<RunFile>> {
        let mut out = Vec::new();
        self.collect_files(&mut out);
        out
    }

    fn collect_files(self, out: &mut Vec<Arc<RunFile>>) {
        for i in self.inputs {
            if let Input::Run { file, lineage, .. } = i {
                out.extend(file);
                lineage.collect_files(out);
            }
        }
    }

    /// Files held under it.
    pub(super) fn file_count(&self) -> usize {
        self.inputs
            .iter()
            .map(|i| match i {
                Input::Run { file, lineage, .. } => usize::from(file.is_some()) + lineage.file_count(),
                Input::Mem => 0,
            })
            .sum()
    }
}
