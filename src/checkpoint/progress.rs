//! [`Progress`]: how far a long local operation has come, for a caller that
//! draws it (the tool's progress bars) or logs it: checkpoint validation
//! ([`super::validate_checkpoint_with_progress`], and recovery choosing its
//! checkpoint) and recovery's reads of each shard's write-ahead log.
//!
//! Reports count bytes and come at the start (`done == 0`), every few MiB
//! ([`PROGRESS_STEP_BYTES`]) and at the end (`done == total`); `done` never
//! goes back within one operation. Nothing is reported per record or per
//! write.

use std::sync::Arc;

/// Bytes between two reports of one operation: 4 MiB.
pub const PROGRESS_STEP_BYTES: u64 = 4 << 20;

/// What a long operation is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Checking a checkpoint's run files, to the depth asked: bytes of the
    /// run files it names.
    Validate,
    /// Recovery reading a shard's log after the checkpoint for its
    /// epoch-commit records (before it chooses the recovery point): bytes of
    /// the log segments read.
    Scan,
    /// Recovery replaying a shard's log into its spines: bytes of the log
    /// segments replayed.
    Replay,
}

impl Phase {
    /// A short lowercase name, for labels: `"validate"`, `"scan"`,
    /// `"replay"`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Validate => "validate",
            Phase::Scan => "scan",
            Phase::Replay => "replay",
        }
    }
}

/// Where a long operation stands: given to a [`ProgressFn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// What runs.
    pub phase: Phase,
    /// The shard, for the per-shard phases ([`Phase::Scan`],
    /// [`Phase::Replay`]); `None` for [`Phase::Validate`].
    pub shard: Option<u32>,
    /// Bytes done so far.
    pub done: u64,
    /// Bytes to do (at least `done`).
    pub total: u64,
}

/// A progress callback. Recovery calls it from its worker threads, one
/// shard's reports in order, shards side by side: keep it short.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// Counts one operation's bytes and tells the callback at the start, every
/// [`PROGRESS_STEP_BYTES`] and at the end.
pub(crate) struct Meter<'a> {
    report: &'a dyn Fn(Progress),
    now: Progress,
    /// Report again once `done` reaches this.
    next: u64,
}

impl<'a> Meter<'a> {
    /// Starts an operation of `total` bytes: reports `done == 0`.
    pub(crate) fn start(report: &'a dyn Fn(Progress), phase: Phase, shard: Option<u32>, total: u64) -> Self {
        let now = Progress {
            phase,
            shard,
            done: 0,
            total,
        };
        report(now);
        Meter {
            report,
            now,
            next: PROGRESS_STEP_BYTES,
        }
    }

    /// `done` bytes are done (less than before changes nothing); reports
    /// if a step was crossed.
    pub(crate) fn set(&mut self, done: u64) {
        if done <= self.now.done {
            return;
        }
        self.now.done = done;
        self.now.total = self.now.total.max(done);
        if done >= self.next {
            (self.report)(self.now);
            self.next = done.saturating_add(PROGRESS_STEP_BYTES);
        }
    }

    /// Bytes done so far.
    pub(crate) fn done(&self) -> u64 {
        self.now.done
    }

    /// The operation is over: reports `done == total`.
    pub(crate) fn finish(mut self) {
        self.now.done = self.now.total;
        (self.report)(self.now);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    #[test]
    fn a_meter_reports_the_start_each_step_and_the_end_never_going_back() {
        let seen = RefCell::new(Vec::new());
        let report = |p: Progress| seen.borrow_mut().push((p.done, p.total));
        let mut m = Meter::start(&report, Phase::Replay, Some(3), 10 << 20);
        m.set(1 << 20);
        m.set(5 << 20);
        m.set(2 << 20);
        m.set(6 << 20);
        m.set(9 << 20);
        m.finish();
        let total = 10 << 20;
        assert_eq!(
            seen.into_inner(),
            [(0, total), (5 << 20, total), (9 << 20, total), (total, total)]
        );
        assert_eq!(Phase::Replay.name(), "replay");
    }

    #[test]
    fn a_meter_past_its_total_raises_the_total() {
        let seen = RefCell::new(Vec::new());
        let report = |p: Progress| seen.borrow_mut().push((p.done, p.total));
        let mut m = Meter::start(&report, Phase::Scan, None, 1);
        m.set(8 << 20);
        assert_eq!(m.done(), 8 << 20);
        m.finish();
        assert_eq!(
            seen.into_inner(),
            [(0, 1), (8 << 20, 8 << 20), (8 << 20, 8 << 20)]
        );
    }
}
