//! Checkpoint cuts of a spine: which runs hold its writes up to which
//! LSN ([`Spine::cut`]), and the LSN bookkeeping
//! behind it (the WAL position each write carries, what the run files
//! cover, the stand-ins of runs not yet durable; see `lineage`).

use std::sync::Arc;
use std::time::Duration;

use super::batch::{Batch, RunFile};
use super::lineage::{Input, Lineage};
use super::{Slot, Spine};

/// The runs a checkpoint needs for one spine, and how far they reach.
#[derive(Debug, Clone)]
pub struct SpineCut {
    /// Runs, oldest first. Those not yet durable must be synced before the
    /// checkpoint commits (the store marks it durable after).
    pub runs: Vec<RunHandle>,
    /// Every write numbered up to this is in `runs`, none later.
    pub covered_lsn: u64,
    /// Retired runs that stood in for runs now durable: nothing needs them
    /// any more, and dropping the last handle deletes the file. Handed over
    /// so that the unlink happens off the owner's thread.
    pub released: Vec<RunHandle>,
}

/// A run file of a spine, kept on disk while the handle lives (a checkpoint
/// holds these from its cut until it has linked them).
#[derive(Debug, Clone)]
pub struct RunHandle(Arc<RunFile>);

impl RunHandle {
    /// The open run.
    pub fn run(&self) -> &crate::run::Run {
        &self.0.run
    }

    /// True once the run's bytes are known durable.
    pub fn is_durable(&self) -> bool {
        self.0.is_durable()
    }

    /// Records that the run's bytes are durable (a checkpoint synced them):
    /// the store's alone to say.
    pub(crate) fn mark_durable(&self) {
        self.0.mark_durable();
    }
}

impl Slot {
    /// The slot as an input of a merge's lineage.
    pub(super) fn as_input(&self) -> Input {
        match &self.batch {
            Batch::Disk(rf) => Input::Run {
                file: Some(Arc::clone(rf)),
                max_lsn: self.max_lsn,
                lineage: self.lineage.clone(),
            },
            Batch::Mem(_) => Input::Mem,
        }
    }
}

impl Spine {
    /// Sets the LSN of the writes that follow. A store numbers
    /// every write with its WAL LSN, so that [`Spine::covered_lsn`] tells
    /// which part of the log the run files already hold.
    #[inline]
    pub fn set_lsn(&mut self, lsn: u64) {
        self.lsn = lsn;
    }

    /// Records that the writes numbered up to `lsn` include none of this
    /// spine's beyond those it holds: with nothing in memory, its newest
    /// run (or, with none, its base) then covers up to `lsn`, so a spine
    /// nobody writes stops holding back the part of the log it is not in.
    /// A store calls it with its last LSN at each checkpoint cut.
    pub(crate) fn mark_quiet(&mut self, lsn: u64) {
        if !self.memtable.is_empty() || self.batches.iter().any(|s| matches!(s.batch, Batch::Mem(_))) {
            return;
        }
        match self.batches.last_mut() {
            Some(newest) => newest.max_lsn = newest.max_lsn.max(lsn),
            None => self.base_lsn = self.base_lsn.max(lsn),
        }
        self.flushed_lsn = self.flushed_lsn.max(lsn);
    }

    /// Every write numbered up to this (by [`Spine::set_lsn`]) is in the
    /// spine's run files; later ones are in memory only.
    pub fn covered_lsn(&self) -> u64 {
        self.flushed_lsn
    }

    /// The run files of the spine, oldest first. A handle keeps its file on
    /// disk while it lives, even after a merge retires it.
    pub fn runs(&self) -> Vec<RunHandle> {
        self.batches
            .iter()
            .filter_map(|s| match &s.batch {
                Batch::Disk(rf) => Some(RunHandle(Arc::clone(rf))),
                Batch::Mem(_) => None,
            })
            .collect()
    }

    /// The LSN side of publishing a merge of the `n` batches
    /// from position `first`: what is on disk now reaches further, and the
    /// output's lineage (what a cut uses until it is durable). `emptied`: the
    /// merge left no run. Returns the output's highest LSN and
    /// its lineage.
    pub(super) fn account_merge(&mut self, first: usize, n: usize, emptied: bool) -> (u64, Lineage) {
        let max_lsn = self.batches[first..first + n]
            .iter()
            .map(|s| s.max_lsn)
            .max()
            .unwrap_or(0);
        // Merges take the oldest batches of a level, so what is on disk is a
        // prefix of the writes: everything up to the newest merged sequence.
        self.flushed_lsn = self.flushed_lsn.max(max_lsn);
        // What came before the inputs is in older batches: their lineage
        // starts from the newest write those hold.
        let before = if first == 0 {
            self.base_lsn
        } else {
            self.batches[first - 1].max_lsn.max(self.base_lsn)
        };
        let lineage = Lineage::of(before, self.batches[first..first + n].iter().map(Slot::as_input));
        if emptied {
            // A merge that left nothing (tombstones at the bottom, Z-set
            // weights that cancel): those writes need no run, so what came
            // before the inputs now covers them too.
            match first.checked_sub(1) {
                None => self.base_lsn = self.base_lsn.max(max_lsn),
                Some(older) => {
                    let older = &mut self.batches[older].max_lsn;
                    *older = (*older).max(max_lsn);
                }
            }
        }
        (max_lsn, lineage)
    }

    /// Drops the stand-ins of runs that became durable since (a write-behind
    /// thread synced them): a cut would release them now anyway. Without
    /// this a store that merges between checkpoints, or a spine with none,
    /// would keep every merged-away run on disk.
    pub(super) fn release_stand_ins(&mut self) {
        for s in &mut self.batches {
            if let Batch::Disk(rf) = &s.batch
                && !s.lineage.is_empty()
            {
                if rf.is_durable() {
                    s.lineage = Lineage::default();
                } else {
                    s.lineage.prune();
                }
            }
        }
    }

    pub(super) fn wait_stand_ins(&mut self, limit: Duration) {
        let start = std::time::Instant::now();
        loop {
            self.release_stand_ins();
            if self.stand_ins() == 0 || start.elapsed() >= limit {
                return;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Runs kept on disk only as stand-ins for merged runs not yet durable
    /// (see [`Spine::cut`]); released once those are.
    pub fn stand_ins(&self) -> usize {
        self.batches.iter().map(|s| s.lineage.file_count()).sum()
    }

    /// The runs a checkpoint of this spine needs now, and the LSN
    /// up to which they hold every write (the WAL covers the rest).
    ///
    /// `young: None`: every run, durable or not (the caller syncs the new
    /// ones). `Some(age)`: a run younger than `age` that no earlier cut saw
    /// is not synced yet: most such runs are merged away within a second or
    /// two, and syncing them is most of what a checkpoint would cost under
    /// fast ingest. The cut uses the durable runs it replaced instead (kept
    /// on disk until then), or, where its data came from memory, stops
    /// there and leaves the rest to the WAL. It is included (and synced) at
    /// the next cut that finds it alive. Replay after a crash thus grows by
    /// at most about `age` of writes (or one interval, if shorter).
    pub fn cut(&mut self, young: Option<Duration>) -> SpineCut {
        let eager = young.is_none();
        let young = young.unwrap_or_default();
        let mut runs = Vec::new();
        let mut covered = self.base_lsn;
        let mut released = Vec::new();
        // Past a hole the cut stops, but every young run is still marked
        // seen, so each is included at its second cut whatever lies before.
        // Every run not yet durable is marked seen, eager cuts too: its
        // checkpoint may make it durable after a merge took it as an input,
        // and that merge's lineage must then keep it (`lineage` module).
        let mut stopped = false;
        for s in &mut self.batches {
            let Batch::Disk(rf) = &s.batch else { break };
            if rf.is_durable() {
                let old = std::mem::take(&mut s.lineage);
                released.extend(old.into_files().into_iter().map(RunHandle));
            } else if !rf.see() && !eager && rf.age() < young {
                if !stopped {
                    let stand_in = s.lineage.stand_in();
                    runs.extend(stand_in.runs.into_iter().map(RunHandle));
                    covered = covered.max(stand_in.covered);
                    stopped = stand_in.hole;
                }
                continue;
            }
            if !stopped {
                runs.push(RunHandle(Arc::clone(rf)));
                covered = covered.max(s.max_lsn);
            }
        }
        if eager {
            covered = covered.max(self.flushed_lsn);
        }
        SpineCut {
            runs,
            covered_lsn: covered,
            released,
        }
    }
}
