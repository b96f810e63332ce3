//! [`Spine`]: one sorted collection owned by one thread — a memtable over
//! levels of immutable batches, merged by the owner in bounded steps.
//!
//! # Shape
//! Batches are kept in one list ordered by age (oldest first); every batch is
//! labelled with a level:
//! - level 0: sealed memtables, still in memory (sorted, hash-indexed);
//! - level `L >= 1`: run files of at most `base · F^(L-1)` bytes, where `F` is
//!   the fan-in and `base = 2 · F · memtable_size_bytes`.
//!
//! Levels never increase from older to newer batches, and each level's
//! batches are contiguous in the list.
//!
//! # Policy
//! 1. A write goes to the memtable. At `memtable_size_bytes` it is sorted and
//!    sealed into a level-0 batch (no I/O on the writer's path).
//! 2. A level with `F` batches not already merging, and no merge running,
//!    starts a merge of its `F` oldest. Level 0 also starts one, of everything
//!    it holds, once memtables use half the memory budget: small state can
//!    stay in memory, large state spills.
//! 3. A merge replaces its inputs in place (so age order holds) with one run
//!    labelled `max(level by size, input level)`. It is the bottom merge —
//!    tombstones vanish — when its inputs include the oldest batch.
//! 4. `merge_step(budget)` advances the running merges round-robin by at most
//!    `budget` input bytes in total. Past `max_runs` batches, or past the
//!    memory budget, every write first does one step itself (backpressure);
//!    in background mode it waits for the helper instead.
//!
//! # Arithmetic (N bytes of state, B = memtable, F = fan-in)
//! - Levels: `1 + ceil(log_F(N / (2·F·B)))`; N = 2 GiB, B = 8 MiB, F = 4: 4.
//! - Write amplification: each byte is written once per level it passes
//!   through: ≈ levels (one flush plus one rewrite per higher level).
//! - Runs per read: a settled level holds at most `F - 1` batches, one merging
//!   level at most `2F - 1`; a read consults the memtable, the in-memory
//!   batches (≤ budget / B) and `O(F · log_F N)` runs, each behind a bloom
//!   filter, so an absent key costs one filter line per run.
//! - Space amplification: a key appears at most once per batch. With unique
//!   keys it is the format's overhead only (≈ 1.1); with overwrites it is
//!   bounded by the number of batches holding the key, and a bottom merge
//!   removes dead versions and tombstones.
//!
//! # Reads
//! [`Spine::get`] probes the memtable's hash index, then each batch newest
//! first (hash once; a bloom filter line per run). Cursors merge every batch
//! with the consolidation rules above, walk either way ([`Cursor::advance`],
//! [`Cursor::prev`], seeks to either side) and borrow the spine shared, so
//! several may be open at once; see [`Cursor`].
//!
//! ```
//! use std::sync::Arc;
//! use statespine::io::MemFs;
//! use statespine::run::RunMode;
//! use statespine::spine::{Spine, SpineOptions};
//!
//! let mut s = Spine::create(Arc::new(MemFs::new()), "/state", SpineOptions::new(RunMode::KeyValue))?;
//! s.put(b"apple", b"red")?;
//! s.put(b"banana", b"yellow")?;
//! s.delete(b"apple")?;
//! // The owner's loop gives merging a bounded slice of time now and then.
//! s.merge_step(s.options().merge_budget())?;
//! assert_eq!(s.get(b"banana")?, Some(&b"yellow"[..]));
//! assert_eq!(s.get(b"apple")?, None);
//! let keys: Vec<_> = s.prefix(b"b")?.map(|e| e.map(|e| e.key.to_vec())).collect::<Result<_, _>>()?;
//! assert_eq!(keys, [b"banana".to_vec()]);
//!
//! let mut z = Spine::create(Arc::new(MemFs::new()), "/z", SpineOptions::new(RunMode::ZSet))?;
//! z.update(b"k", b"v1", 2)?;
//! z.update(b"k", b"v2", 1)?;
//! z.update(b"k", b"v1", -2)?;
//! assert_eq!(z.values(b"k")?, [(&b"v2"[..], 1)]);
//! assert_eq!(z.key_weight(b"k")?, 1);
//! # Ok::<(), statespine::Error>(())
//! ```

mod background;
mod batch;
mod consolidate;
mod cut;
mod levels;
mod lineage;
mod merge;
mod merger;
mod options;
mod read;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::io::Fs;
use crate::memtable::Memtable;
use crate::run::{Durability, RunMode, RunWriter};
use crate::{Error, Result};
use batch::{Batch, RunFile};
use lineage::Lineage;
use merge::Merge;
use merger::{Finished, Merger};

pub use background::DEFAULT_MERGE_THREADS;
pub use cut::{RunHandle, SpineCut};
pub use options::{
    DEFAULT_FAN_IN, DEFAULT_MAX_RUNS, DEFAULT_MEMORY_BUDGET_BYTES, DEFAULT_MEMTABLE_SIZE_BYTES,
    DEFAULT_MERGE_BUDGET_BYTES, MAX_FAN_IN, MergeMode, SpineOptions,
};
pub use read::Cursor;

/// Longest a write under backpressure waits for the background helper before
/// going on (it then re-checks; the wait only paces the writer).
const BACKPRESSURE_WAIT: Duration = Duration::from_millis(10);

#[derive(Debug)]
struct Slot {
    id: u64,
    batch: Batch,
    level: usize,
    merging: bool,
    /// The highest LSN (see [`Spine::set_lsn`]) in the batch.
    max_lsn: u64,
    /// For a run not yet durable: what a checkpoint cut may use instead.
    lineage: Lineage,
}

/// What one [`Spine::merge_step`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeStep {
    /// Input bytes merged (keys, values and a small per-entry overhead).
    pub bytes: usize,
    /// Merges finished and published.
    pub completed: usize,
    /// Merges still running.
    pub pending: usize,
}

impl MergeStep {
    /// True when no merge is running: the spine is settled.
    pub fn is_idle(&self) -> bool {
        self.pending == 0
    }
}

/// Counters of a spine since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpineStats {
    /// Key and value bytes the user wrote.
    pub bytes_put: u64,
    /// Bytes of run files written by merges.
    pub bytes_written: u64,
    /// Input bytes merges consumed (keys, values, per-entry overhead).
    pub bytes_merged: u64,
    /// Memtables sealed.
    pub seals: u64,
    /// Merges published.
    pub merges: u64,
    /// Writes that had to merge (or wait) first because of backpressure.
    pub stalled_writes: u64,
}

/// One level of the spine, as [`Spine::levels`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelShape {
    /// 0 for sealed memtables in memory, 1.. for run files.
    pub level: usize,
    /// Batches in the level.
    pub batches: usize,
    /// Entries in them.
    pub entries: u64,
    /// Their bytes (memory for level 0, file length above).
    pub bytes: u64,
    /// Batches of it being merged right now.
    pub merging: usize,
}

/// One sorted collection owned by one thread. See the module docs.
#[derive(Debug)]
pub struct Spine {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    opts: SpineOptions,
    memtable: Memtable,
    /// A merged-away memtable kept for the next seal: its arena and tables
    /// are already faulted in, so sealing costs no page zeroing.
    spare: Option<Memtable>,
    /// Oldest first.
    batches: Vec<Slot>,
    /// The running merges, advanced inline or by a helper thread.
    merger: Merger,
    next_id: u64,
    /// Past `max_runs` or the memory budget: writes help merging.
    pressure: bool,
    stats: SpineStats,
    /// Sequence number of the writes that follow ([`Spine::set_lsn`]).
    lsn: u64,
    /// Highest LSN in the live memtable.
    memtable_lsn: u64,
    /// Every write with an LSN up to this is in a run file (or
    /// was merged away): what [`Spine::covered_lsn`] reports.
    flushed_lsn: u64,
    /// Level-0 batches with data up to this LSN are to be
    /// flushed ([`Spine::request_flush`]).
    flush_upto: u64,
    /// Writes up to this need no run: covered at open, or merged away to
    /// nothing by a bottom merge.
    base_lsn: u64,
    /// Writes do not seal the memtable ([`Spine::hold_seal`]).
    seal_held: bool,
}

impl Spine {
    /// Creates an empty spine whose runs live in `dir` (created if missing).
    /// Run names continue after any run already in `dir`, so an old file is
    /// never overwritten.
    pub fn create(fs: Arc<dyn Fs>, dir: impl Into<PathBuf>, mut opts: SpineOptions) -> Result<Spine> {
        let dir = dir.into();
        fs.create_dir_all(&dir)?;
        let next_id = fs
            .list(&dir)?
            .iter()
            .filter_map(|n| n.split('.').next()?.parse::<u64>().ok())
            .max()
            .map_or(1, |m| m + 1);
        opts.run.mode = opts.mode;
        opts.memory_budget_bytes = opts.memory_budget_bytes.max(2 * opts.memtable_size_bytes);
        let merger = Merger::new(opts.merge_mode, &fs, opts.merge_budget_bytes);
        Ok(Spine {
            memtable: Memtable::new(opts.mode, opts.memtable_size_bytes, opts.run.value_align_bytes),
            spare: None,
            fs,
            dir,
            opts,
            batches: Vec::new(),
            merger,
            next_id,
            pressure: false,
            stats: SpineStats::default(),
            lsn: 0,
            memtable_lsn: 0,
            flushed_lsn: 0,
            flush_upto: 0,
            base_lsn: 0,
            seal_held: false,
        })
    }

    /// Opens a spine over run files already in `dir`, oldest first, which
    /// hold every write up to LSN `covered_lsn` (recovery). They
    /// are opened lazily: mapped, with only their footer, index and filter
    /// checked.
    pub fn open(
        fs: Arc<dyn Fs>,
        dir: impl Into<PathBuf>,
        opts: SpineOptions,
        runs: &[PathBuf],
        covered_lsn: u64,
    ) -> Result<Spine> {
        let runs = runs
            .iter()
            .map(|p| crate::run::Run::open(fs.as_ref(), p))
            .collect::<Result<Vec<_>>>()?;
        Self::open_runs(fs, dir, opts, runs, covered_lsn)
    }

    /// [`Spine::open`] over runs already open (recovery validated them).
    pub(crate) fn open_runs(
        fs: Arc<dyn Fs>,
        dir: impl Into<PathBuf>,
        opts: SpineOptions,
        runs: Vec<crate::run::Run>,
        covered_lsn: u64,
    ) -> Result<Spine> {
        let mut spine = Spine::create(Arc::clone(&fs), dir, opts)?;
        let mut level = usize::MAX;
        for run in runs {
            if run.mode() != spine.opts.mode {
                return Err(Error::InvalidArgument(format!(
                    "run {} is {:?}, the spine is {:?}",
                    run.path().display(),
                    run.mode(),
                    spine.opts.mode
                )));
            }
            let size = levels::level_for_size(
                run.meta().file_len,
                spine.opts.memtable_size_bytes,
                spine.opts.fan_in,
            );
            // Levels never increase from older to newer batches.
            level = level.min(size);
            let id = spine.take_id();
            // Recovery opens runs a checkpoint made durable.
            let file = RunFile::new(run, Arc::clone(&fs));
            file.mark_durable();
            spine.batches.push(Slot {
                id,
                batch: Batch::Disk(Arc::new(file)),
                level,
                merging: false,
                max_lsn: covered_lsn,
                lineage: Lineage::default(),
            });
        }
        spine.base_lsn = covered_lsn;
        spine.lsn = covered_lsn;
        spine.memtable_lsn = covered_lsn;
        spine.flushed_lsn = covered_lsn;
        spine.schedule()?;
        Ok(spine)
    }

    /// Ends the spine for good: merges stop (their temporary files go) and
    /// every run file is deleted once nothing else holds it (a checkpoint
    /// cut may, until it has linked it). What dropping a spine of a store
    /// does; dropping a `Spine` value alone keeps its files for a reopen.
    pub fn destroy(mut self) {
        self.merger.stop();
        for s in &self.batches {
            if let Batch::Disk(rf) = &s.batch {
                rf.retire();
            }
            for r in s.lineage.clone().into_files() {
                r.retire();
            }
        }
    }

    /// Seals the memtable and asks for every batch in memory to be merged
    /// into a run by the coming merge steps, so the WAL behind them can go.
    pub fn request_flush(&mut self) -> Result<()> {
        self.seal()?;
        self.flush_upto = self.flush_upto.max(self.memtable_lsn);
        self.schedule()
    }

    /// Seals and writes everything in memory to run files now, waiting for
    /// it (a store without a WAL does this at each checkpoint).
    pub fn flush(&mut self) -> Result<()> {
        self.seal()?;
        if !self.merger.is_background() {
            return self.flush_memory();
        }
        loop {
            self.settle()?;
            let idle: Vec<usize> = (0..self.batches.len())
                .filter(|&i| self.batches[i].level == 0)
                .collect();
            if idle.is_empty() {
                return Ok(());
            }
            self.start_merge(0, &idle)?;
        }
    }

    /// Cooperative `flush`: merges the level-0 batches into a run and stops
    /// there. Merges that run creates (a cascade into bigger levels) are left
    /// to later merge steps: a flush must not cost a rewrite of the spine.
    fn flush_memory(&mut self) -> Result<()> {
        loop {
            let level0: Vec<usize> = (0..self.batches.len())
                .filter(|&i| self.batches[i].level == 0)
                .collect();
            if level0.is_empty() {
                return Ok(());
            }
            if level0.iter().all(|&i| !self.batches[i].merging) {
                self.start_merge(0, &level0)?;
                continue;
            }
            let step = self.merge_step(self.opts.merge_budget_bytes.max(1 << 20))?;
            // A batch marked merging has its merge in the merger until published.
            assert!(
                !step.is_idle() || !self.batches.iter().any(|s| s.level == 0 && s.merging),
                "spine {}: a level-0 merge is marked running but none is ({:?})",
                self.dir.display(),
                self.levels()
            );
        }
    }

    /// The options the spine runs with.
    pub fn options(&self) -> &SpineOptions {
        &self.opts
    }

    /// In background merge mode, runs this spine's merges on `pool` from now
    /// on (by default: a process-wide pool of two merge threads). A store
    /// gives all its spines one bounded pool, so a hundred spines share a
    /// fixed number of threads.
    pub fn set_merge_pool(&mut self, pool: Arc<crate::io::Pool>) {
        self.merger.set_pool(pool);
    }

    /// Key-value or Z-set.
    pub fn mode(&self) -> RunMode {
        self.opts.mode
    }

    /// Where the spine's runs live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counters since creation.
    pub fn stats(&self) -> SpineStats {
        self.stats
    }

    /// Sets `key` to `value` (key-value spines).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.memtable.put(key, value)?;
        self.after_write(key.len() + value.len())
    }

    /// Deletes `key` (key-value spines).
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.memtable.delete(key)?;
        self.after_write(key.len())
    }

    /// Adds `weight` to `(key, value)` (Z-set spines).
    pub fn update(&mut self, key: &[u8], value: &[u8], weight: i64) -> Result<()> {
        self.memtable.update(key, value, weight)?;
        self.after_write(key.len() + value.len())
    }

    #[inline]
    fn after_write(&mut self, bytes: usize) -> Result<()> {
        self.stats.bytes_put += bytes as u64;
        self.memtable_lsn = self.lsn;
        if !self.seal_held && self.memtable.size_bytes() >= self.opts.memtable_size_bytes {
            self.seal()?;
        }
        if self.pressure {
            self.relieve()?;
        }
        Ok(())
    }

    /// While `held`, writes do not seal the memtable, however full; the
    /// release seals it if it is. The writes of one logged batch share a
    /// LSN: a seal between them would let the spine report
    /// that number covered with part of the batch still in memory.
    pub(crate) fn hold_seal(&mut self, held: bool) -> Result<()> {
        self.seal_held = held;
        if !held && self.memtable.size_bytes() >= self.opts.memtable_size_bytes {
            self.seal()?;
        }
        Ok(())
    }

    /// Seals the memtable into a level-0 batch now (a no-op when empty).
    pub fn seal(&mut self) -> Result<()> {
        if self.memtable.is_empty() {
            return Ok(());
        }
        let fresh = self.spare.take().unwrap_or_else(|| {
            Memtable::new(
                self.opts.mode,
                self.opts.memtable_size_bytes,
                self.opts.run.value_align_bytes,
            )
        });
        let mut sealed = std::mem::replace(&mut self.memtable, fresh);
        // Made once here, the sorted view is shared by every later reader.
        sealed.sort();
        debug_assert!(sealed.is_sorted(), "a sealed memtable's view misses entries");
        let id = self.take_id();
        self.batches.push(Slot {
            id,
            batch: Batch::Mem(Arc::new(sealed)),
            level: 0,
            merging: false,
            max_lsn: self.memtable_lsn,
            lineage: Lineage::default(),
        });
        self.stats.seals += 1;
        tracing::trace!(spine = %self.dir.display(), lsn = self.memtable_lsn, "memtable sealed");
        // Never waits, and inline it merges nothing (no budget).
        while let Some(f) = self.merger.next_finished(&self.fs, &mut 0) {
            self.publish(f)?;
        }
        self.schedule()
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn memory_bytes(&self) -> usize {
        let sealed: u64 = self
            .batches
            .iter()
            .filter(|s| s.level == 0)
            .map(|s| s.batch.size_bytes())
            .sum();
        sealed as usize + self.memtable.size_bytes()
    }

    fn update_pressure(&mut self) {
        self.pressure =
            self.batches.len() > self.opts.max_runs || self.memory_bytes() > self.opts.memory_budget_bytes;
    }

    /// Backpressure: one merge step (cooperative) or one wait for the helper.
    /// With no merge in flight there is nothing to wait for: the count is then
    /// at most one idle batch per level short of a merge, and writes go on.
    #[cold]
    fn relieve(&mut self) -> Result<()> {
        if self.merger.pending() == 0 {
            return Ok(());
        }
        self.stats.stalled_writes += 1;
        if self.merger.is_background() {
            if let Some(f) = self.merger.wait_finished(BACKPRESSURE_WAIT) {
                self.publish(f)?;
            }
        } else {
            self.merge_step(self.opts.merge_budget_bytes)?;
        }
        self.update_pressure();
        Ok(())
    }

    /// Starts every merge the policy calls for (module docs, step 2).
    fn schedule(&mut self) -> Result<()> {
        let top = self.batches.iter().map(|s| s.level).max().unwrap_or(0);
        let memtables_half_budget = self.memory_bytes() * 2 >= self.opts.memory_budget_bytes;
        for level in 0..=top {
            // One merge per level: a level with a batch being merged waits.
            if self.batches.iter().any(|s| s.level == level && s.merging) {
                continue;
            }
            let Some(first) = self.batches.iter().position(|s| s.level == level) else {
                continue;
            };
            // A level is contiguous in age (levels never increase from older
            // to newer) and none of it is merging: its batches are `first..end`.
            let end = first
                + self.batches[first..]
                    .iter()
                    .take_while(|s| s.level == level)
                    .count();
            let idle = end - first;
            let flush_due = level == 0 && self.batches[first].max_lsn <= self.flush_upto;
            let take = if idle >= self.opts.fan_in {
                self.opts.fan_in
            } else if level == 0 && (memtables_half_budget || flush_due) {
                idle
            } else {
                continue;
            };
            let picked: Vec<usize> = (first..first + take).collect();
            self.start_merge(level, &picked)?;
        }
        self.update_pressure();
        Ok(())
    }

    /// Levels never increase from older to newer batches, so each level's
    /// batches are contiguous in age, and in-memory batches are exactly the
    /// level-0 ones (module docs, "Shape"). Checked where batches change.
    fn assert_shape(&self) {
        for w in self.batches.windows(2) {
            assert!(
                w[0].level >= w[1].level,
                "spine {}: a level-{} batch is older than a level-{} one: {:?}",
                self.dir.display(),
                w[0].level,
                w[1].level,
                self.levels()
            );
        }
        for s in &self.batches {
            assert_eq!(
                s.level == 0,
                matches!(s.batch, Batch::Mem(_)),
                "spine {}: batch {} at level {} is {}",
                self.dir.display(),
                s.id,
                s.level,
                if matches!(s.batch, Batch::Mem(_)) {
                    "in memory"
                } else {
                    "a run"
                }
            );
        }
    }

    fn start_merge(&mut self, level: usize, picked: &[usize]) -> Result<()> {
        // Merged batches are replaced in place, so they must be neighbours.
        assert!(
            picked.windows(2).all(|w| w[1] == w[0] + 1),
            "spine {}: level {level} batches {picked:?} are not contiguous in age",
            self.dir.display()
        );
        let inputs: Vec<Batch> = picked
            .iter()
            .rev()
            .map(|&i| self.batches[i].batch.clone())
            .collect();
        let id = self.take_id();
        let path = self.dir.join(crate::run::format::run_file_name(id));
        let run_opts = self
            .opts
            .run
            .durability(Durability::Deferred)
            .expected_entries(Merge::input_entries(&inputs));
        let writer = RunWriter::create(Arc::clone(&self.fs), path, run_opts)?;
        let bottom = picked[0] == 0;
        let merge = Merge::new(inputs, writer, self.opts.mode, bottom)?;
        for &i in picked {
            self.batches[i].merging = true;
        }
        let inputs = picked.iter().map(|&i| self.batches[i].id).collect();
        self.merger.start(id, inputs, merge)
    }

    /// Advances running merges by at most about `budget` input bytes (one
    /// entry group past it at most), publishing those that finish. In
    /// background mode it only publishes what the helper finished.
    pub fn merge_step(&mut self, budget: usize) -> Result<MergeStep> {
        let mut step = MergeStep::default();
        self.release_stand_ins();
        let mut left = budget;
        while let Some(f) = self.merger.next_finished(&self.fs, &mut left) {
            self.publish(f)?;
            step.completed += 1;
        }
        step.bytes = budget - left;
        step.pending = self.merger.pending();
        Ok(step)
    }

    /// Runs merges until none is left (tests, benchmarks, shutdown), then
    /// waits (up to a second) for the write-behind syncs of their outputs, so
    /// the merged-away runs they stand in for are released now: a settled
    /// spine holds no extra files or mappings.
    pub fn settle(&mut self) -> Result<()> {
        loop {
            let step = self.merge_step(self.opts.merge_budget_bytes.max(1 << 20))?;
            if step.is_idle() {
                self.wait_stand_ins(Duration::from_secs(1));
                return Ok(());
            }
            // Inline every step merged; background, wait for the helper.
            if step.completed == 0
                && let Some(f) = self.merger.wait_finished(BACKPRESSURE_WAIT)
            {
                self.publish(f)?;
            }
        }
    }

    /// Merges everything into one bottom run now, waiting for it: tombstones
    /// and zero weights vanish, dead versions go, and reads then consult one
    /// run. For an owner that wants its space back (after mass deletes) or
    /// read-optimised state; ordinary merging never needs it.
    pub fn compact(&mut self) -> Result<()> {
        self.seal()?;
        self.settle()?;
        let single_run = self.batches.len() == 1 && self.batches[0].level > 0;
        if self.batches.is_empty() || single_run {
            return Ok(());
        }
        let top = self.batches.iter().map(|s| s.level).max().unwrap_or(0);
        let all: Vec<usize> = (0..self.batches.len()).collect();
        self.start_merge(top, &all)?;
        self.settle()
    }

    /// A failed merge: its inputs stay as they were, free to merge again.
    fn abandon(&mut self, inputs: &[u64]) {
        for s in &mut self.batches {
            if inputs.contains(&s.id) {
                s.merging = false;
            }
        }
    }

    /// Replaces a finished merge's inputs by its output and retires them.
    fn publish(&mut self, finished: Finished) -> Result<()> {
        let Finished { id, inputs, output } = finished;
        let inputs = inputs.as_slice();
        let output = match output {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(spine = %self.dir.display(), merge = id, error = %e, "merge failed");
                self.abandon(inputs);
                return Err(e);
            }
        };
        // Inputs are marked merging, and nothing else replaces a merging
        // batch: they are where the merge found them.
        let first = self.batches.iter().position(|s| s.id == inputs[0]);
        let Some(first) = first.filter(|&f| {
            inputs
                .iter()
                .enumerate()
                .all(|(k, id)| self.batches.get(f + k).is_some_and(|s| s.id == *id))
        }) else {
            unreachable!(
                "spine {}: inputs {inputs:?} of merge {id} are gone or out of place",
                self.dir.display()
            );
        };
        let in_level = self.batches[first].level;
        let (max_lsn, lineage) = self.account_merge(first, inputs.len(), output.run.is_none());
        let replacement = output.run.map(|rf| {
            self.stats.bytes_written += rf.run.meta().file_len;
            let bytes = rf.run.meta().file_len;
            let level = levels::level_for_size(bytes, self.opts.memtable_size_bytes, self.opts.fan_in);
            Slot {
                id,
                batch: Batch::Disk(Arc::new(rf)),
                // At least its inputs' level: newer batches are at most that.
                level: level.max(in_level),
                merging: false,
                max_lsn,
                lineage,
            }
        });
        if let Some(level) = replacement.as_ref().map(|r| r.level) {
            self.promote_older(first, level);
        }
        let work = (output.bytes_in, output.elapsed);
        self.trace_merge(id, inputs.len(), in_level, work, replacement.as_ref());
        crate::io::kill_point("merge-publish");
        let retired: Vec<Batch> = self
            .batches
            .splice(first..first + inputs.len(), replacement)
            .map(|s| s.batch)
            .collect();
        for b in &retired {
            if let Batch::Disk(rf) = b {
                rf.retire();
            }
        }
        let back = self.merger.bury(retired);
        self.recycle(back);
        self.stats.merges += 1;
        self.stats.bytes_merged += output.bytes_in;
        self.assert_shape();
        self.schedule()
    }

    /// Says that merge `id` of `inputs` batches at level `in_level`
    /// published, after `bytes_in` bytes of input and `elapsed`, into the
    /// slot `placed` (if anything survived).
    fn trace_merge(
        &self,
        id: u64,
        inputs: usize,
        in_level: usize,
        (bytes_in, elapsed): (u64, Duration),
        placed: Option<&Slot>,
    ) {
        tracing::debug!(
            spine = %self.dir.display(),
            merge = id,
            level = in_level,
            output_level = placed.map(|s| s.level),
            inputs,
            bytes_in,
            output_bytes = placed.map_or(0, |s| s.batch.size_bytes()),
            entries = placed.map_or(0, |s| s.batch.len()),
            elapsed_us = elapsed.as_micros() as u64,
            "merge published"
        );
    }

    /// An output larger than its inputs' level holds (a huge memtable, a
    /// merge of huge values) is placed by its size; the batches older than
    /// position `first` below that level are promoted to it, so levels still
    /// never increase from older to newer. They merge with it at that level
    /// later: a promotion rewrites nothing now.
    fn promote_older(&mut self, first: usize, level: usize) {
        for older in self.batches[..first].iter_mut().rev() {
            if older.level >= level {
                break;
            }
            older.level = level;
        }
    }

    /// Keeps one retired memtable, emptied, for the next seal (not one a
    /// huge value grew far past the budget: that memory goes back).
    fn recycle(&mut self, retired: Vec<Batch>) {
        let keep_below = 2 * self.opts.memtable_size_bytes;
        for b in retired {
            if let Batch::Mem(m) = b
                && self.spare.is_none()
                && m.arena_capacity_bytes() <= keep_below
                && let Ok(mut m) = Arc::try_unwrap(m)
            {
                m.clear();
                self.spare = Some(m);
            }
        }
    }

    /// The shape of the spine, level by level (empty levels omitted).
    pub fn levels(&self) -> Vec<LevelShape> {
        let mut out = std::collections::BTreeMap::<usize, LevelShape>::new();
        for s in &self.batches {
            let shape = out.entry(s.level).or_insert(LevelShape {
                level: s.level,
                batches: 0,
                entries: 0,
                bytes: 0,
                merging: 0,
            });
            shape.batches += 1;
            shape.entries += s.batch.len();
            shape.bytes += s.batch.size_bytes();
            shape.merging += usize::from(s.merging);
        }
        out.into_values().collect()
    }

    /// Batches a read may consult, besides the live memtable.
    pub fn batch_count(&self) -> usize {
        self.batches.len()
    }

    /// Bytes of memtables (live and sealed) in memory.
    pub fn memory_size_bytes(&self) -> usize {
        self.memory_bytes()
    }

    /// Bytes of the spine's run files.
    pub fn disk_size_bytes(&self) -> u64 {
        self.batches
            .iter()
            .filter(|s| s.level > 0)
            .map(|s| s.batch.size_bytes())
            .sum()
    }
}

#[cfg(test)]
mod tests;
