//! [`SpineOptions`]: every knob of a spine, with its default and why.

use crate::memtable::MAX_MEMTABLE_BYTES;
use crate::run::{Compression, RunMode, RunOptions};

/// Default memtable budget: 8 MiB. Small enough that sealing (a sort of
/// ~60,000 entries) stays in the low milliseconds and that several sealed
/// memtables fit the memory budget; large enough that a 2 GiB state is only
/// ~250 memtables, a handful of levels at fan-in 4.
pub const DEFAULT_MEMTABLE_SIZE_BYTES: usize = 8 << 20;
/// Default memory budget: 64 MiB for the memtable plus sealed memtables not
/// yet written to disk (8 memtables at the default size).
pub const DEFAULT_MEMORY_BUDGET_BYTES: usize = 64 << 20;
/// Default fan-in: a level merges when it holds this many runs; levels are
/// this factor apart in size. 4 keeps reads to ~3 runs per level and the
/// write amplification to one rewrite per level (log₄ of the state size in
/// memtables).
pub const DEFAULT_FAN_IN: usize = 4;
/// Largest fan-in: the k-way merge scans its heads linearly.
pub const MAX_FAN_IN: usize = 16;
/// Default backpressure limit on runs (sealed memtables and disk runs): with
/// fan-in 4, a settled spine holds at most 3 runs per level, ~20 for a
/// terabyte; 32 leaves room for merges in flight without letting reads grow.
pub const DEFAULT_MAX_RUNS: usize = 32;
/// Default work of one `merge_step`: 8 KiB of input, about 60 entries of
/// 116 bytes. Measured p99 of a step at this budget: well under 200 µs, where
/// 16 KiB came close to it and 64 KiB passed it (docs/benchmarks.md).
pub const DEFAULT_MERGE_BUDGET_BYTES: usize = 8 << 10;

/// Who advances merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergeMode {
    /// The owner, through `merge_step` (and writes, under backpressure). No
    /// threads. The default.
    #[default]
    Cooperative,
    /// One helper thread per spine runs the same merges; `merge_step` only
    /// installs what it finished. For owners whose loop cannot spare the time.
    Background,
}

/// Options of a [`super::Spine`]. Build with [`SpineOptions::new`] and setters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpineOptions {
    pub(crate) mode: RunMode,
    pub(crate) memtable_size_bytes: usize,
    pub(crate) memory_budget_bytes: usize,
    pub(crate) fan_in: usize,
    pub(crate) max_runs: usize,
    pub(crate) merge_budget_bytes: usize,
    pub(crate) merge_mode: MergeMode,
    pub(crate) run: RunOptions,
}

impl SpineOptions {
    /// Defaults for a key-value or Z-set spine.
    pub fn new(mode: RunMode) -> Self {
        SpineOptions {
            mode,
            memtable_size_bytes: DEFAULT_MEMTABLE_SIZE_BYTES,
            memory_budget_bytes: DEFAULT_MEMORY_BUDGET_BYTES,
            fan_in: DEFAULT_FAN_IN,
            max_runs: DEFAULT_MAX_RUNS,
            merge_budget_bytes: DEFAULT_MERGE_BUDGET_BYTES,
            merge_mode: MergeMode::Cooperative,
            run: RunOptions::new(mode),
        }
    }

    /// Bytes the memtable takes before it is sealed (default 8 MiB, at most 1 GiB).
    #[must_use]
    pub fn memtable_size_bytes(mut self, bytes: usize) -> Self {
        self.memtable_size_bytes = bytes.clamp(1, MAX_MEMTABLE_BYTES);
        self
    }

    /// Bytes of memtables (live and sealed) held in memory before writes help
    /// to flush them to disk (default 64 MiB; at least two memtables).
    #[must_use]
    pub fn memory_budget_bytes(mut self, bytes: usize) -> Self {
        self.memory_budget_bytes = bytes;
        self
    }

    /// Runs merged at once, and the size ratio of levels (default 4, 2..=16).
    #[must_use]
    pub fn fan_in(mut self, fan_in: usize) -> Self {
        self.fan_in = fan_in.clamp(2, MAX_FAN_IN);
        self
    }

    /// Past this many runs, each write does a merge step itself (default 32).
    #[must_use]
    pub fn max_runs(mut self, runs: usize) -> Self {
        self.max_runs = runs.max(2);
        self
    }

    /// Input bytes one merge step processes at the default budget (default 8 KiB).
    #[must_use]
    pub fn merge_budget_bytes(mut self, bytes: usize) -> Self {
        self.merge_budget_bytes = bytes.max(1);
        self
    }

    /// Cooperative (default) or background merging.
    #[must_use]
    pub fn merge_mode(mut self, mode: MergeMode) -> Self {
        self.merge_mode = mode;
        self
    }

    /// Block size, filter, compression and alignment of the runs the spine
    /// writes (default: [`RunOptions::new`]). The mode is the spine's; the
    /// durability is deferred (a checkpoint syncs the runs it needs).
    #[must_use]
    pub fn run_options(mut self, run: RunOptions) -> Self {
        self.run = run;
        self
    }

    /// Sets the run compression (a shortcut for [`SpineOptions::run_options`]).
    #[must_use]
    pub fn compression(mut self, compression: Compression) -> Self {
        self.run = self.run.compression(compression);
        self
    }

    /// The same options for a spine of another mode.
    #[must_use]
    pub fn with_mode(mut self, mode: RunMode) -> Self {
        self.mode = mode;
        self.run.mode = mode;
        self
    }

    /// Key-value or Z-set.
    pub fn mode(&self) -> RunMode {
        self.mode
    }

    /// Bytes of memtables held in memory before writes help flush them.
    pub fn memory_budget(&self) -> usize {
        self.memory_budget_bytes
    }

    /// The default budget of one merge step, in input bytes.
    pub fn merge_budget(&self) -> usize {
        self.merge_budget_bytes
    }
}
