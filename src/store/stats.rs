//! What a store and its shards report about themselves: [`Shard::stats`]
//! and [`Store::stats`], cheap enough to read every second, and (feature
//! `metrics`) their export through the `metrics` facade.
//!
//! The per-write counters are plain fields of the shard and its spines,
//! bumped by the owner's thread: nothing on the put path is shared, so
//! reading them takes the shard (`&Shard`) and exporting them happens at
//! [`Shard::poll`], at most once per [`PUBLISH_INTERVAL`]. Store-wide
//! figures (epoch commits, checkpoints) are counted by the coordinator,
//! where they complete; WAL figures by the drainer, once per round.

use std::time::{Duration, Instant};

use crate::run::RunMode;
use crate::spine::{LevelShape, SpineStats};

use super::{Shard, Store};

/// How often a shard publishes its counters to the `metrics` facade from
/// [`Shard::poll`] (feature `metrics`).
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Buckets of a [`LatencyHistogram`]: powers of two of microseconds, the
/// last open-ended (bucket `i` holds latencies below `2^i` µs).
const BUCKETS: usize = 40;

/// Latencies in power-of-two buckets of microseconds: constant size, no
/// allocation per sample, quantiles within a factor of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: [u64; BUCKETS],
    count: u64,
    sum: Duration,
    max: Duration,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: [0; BUCKETS],
            count: 0,
            sum: Duration::ZERO,
            max: Duration::ZERO,
        }
    }
}

impl LatencyHistogram {
    /// Adds one sample.
    pub fn record(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let bucket = (u64::BITS - micros.leading_zeros()) as usize;
        self.counts[bucket.min(BUCKETS - 1)] += 1;
        self.count += 1;
        self.sum = self.sum.saturating_add(d);
        self.max = self.max.max(d);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest sample.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The mean sample (zero when empty).
    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        self.sum / u32::try_from(self.count).unwrap_or(u32::MAX)
    }

    /// An upper bound of the `q` quantile (`0.0..=1.0`): the top of the
    /// bucket holding it, never above the largest sample; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank && i + 1 < BUCKETS {
                let top = Duration::from_micros(1u64 << i);
                return top.min(self.max);
            }
        }
        self.max
    }
}

/// One spine's figures, in [`ShardStats::spines`].
#[derive(Debug, Clone, PartialEq)]
pub struct SpineReport {
    /// Its name.
    pub name: String,
    /// Key-value or Z-set.
    pub mode: RunMode,
    /// Its counters since the store opened.
    pub counters: SpineStats,
    /// Its levels (0: sealed memtables; empty levels omitted).
    pub levels: Vec<LevelShape>,
    /// Bytes of its memtables, live and sealed.
    pub memory_bytes: u64,
    /// Bytes of its run files.
    pub run_bytes: u64,
    /// Bytes in levels that hold more than one batch: about what the
    /// pending merges will rewrite (zero once settled).
    pub merge_debt_bytes: u64,
}

/// A shard's figures ([`Shard::stats`]). Counters count since the store
/// opened; sizes are as of the call.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardStats {
    /// The shard's number.
    pub shard: u32,
    /// The epoch its new writes belong to.
    pub epoch: u64,
    /// Single writes (put, delete, update), including each write of a batch.
    pub writes: u64,
    /// Write batches logged.
    pub batches: u64,
    /// Key and value bytes written into the spines (what replay put back
    /// at the open included).
    pub bytes_put: u64,
    /// Writes that had to merge (or wait) first: backpressure.
    pub stalled_writes: u64,
    /// Memtables sealed, over every spine.
    pub seals: u64,
    /// Merges published, over every spine.
    pub merges: u64,
    /// Bytes of run files written (flushes and merges).
    pub run_bytes_written: u64,
    /// Bytes of memtables, live and sealed.
    pub memory_bytes: u64,
    /// Bytes of run files.
    pub run_bytes: u64,
    /// Run files and sealed memtables a read may consult.
    pub batch_count: u64,
    /// Sum of the spines' [`SpineReport::merge_debt_bytes`].
    pub merge_debt_bytes: u64,
    /// WAL bytes on disk (0 without a WAL).
    pub wal_bytes: u64,
    /// WAL bytes appended since open (record frames, segment headers).
    pub wal_bytes_appended: u64,
    /// WAL syncs since open.
    pub wal_syncs: u64,
    /// Epoch commits this shard answered (each appends a commit record
    /// when the store has a WAL).
    pub commits_answered: u64,
    /// Checkpoint cuts this shard answered.
    pub cuts_answered: u64,
    /// How long the shard's thread spent answering commits and cuts.
    pub answer_pauses: LatencyHistogram,
    /// Every spine, in id order.
    pub spines: Vec<SpineReport>,
}

impl ShardStats {
    /// Bytes written to disk (runs and WAL) per byte the user wrote.
    pub fn write_amplification(&self) -> f64 {
        ratio(self.run_bytes_written + self.wal_bytes_appended, self.bytes_put)
    }

    /// Bytes on disk (runs and WAL) per byte of the deepest level of each
    /// spine, the nearest cheap stand-in for live data (RocksDB's measure).
    pub fn space_amplification(&self) -> f64 {
        let deepest: u64 = self
            .spines
            .iter()
            .filter_map(|s| s.levels.iter().rfind(|l| l.level > 0))
            .map(|l| l.bytes)
            .sum();
        ratio(self.run_bytes + self.wal_bytes, deepest)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// What the last open's recovery did, in [`StoreStats::recovery`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryFigures {
    /// The epoch recovered.
    pub epoch: u64,
    /// Checkpoints passed over because they were damaged.
    pub skipped_checkpoints: u64,
    /// WAL records replayed, over every shard.
    pub replayed_records: u64,
    /// Their payload bytes.
    pub replayed_bytes: u64,
    /// Records after the recovery point, discarded.
    pub discarded_records: u64,
    /// Choosing and validating the checkpoint.
    pub select_time: Duration,
    /// Opening runs and replaying the WALs.
    pub restore_time: Duration,
}

/// Store-wide figures ([`Store::stats`]): counted by the coordinator as
/// commits and checkpoints complete.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreStats {
    /// Epoch commits completed.
    pub epoch_commits: u64,
    /// Their latency, begin to durable.
    pub epoch_commit_latency: LatencyHistogram,
    /// Checkpoints committed.
    pub checkpoints: u64,
    /// Checkpoints that failed.
    pub checkpoint_failures: u64,
    /// Their latency, begin to committed.
    pub checkpoint_latency: LatencyHistogram,
    /// Bytes checkpoints had to sync or copy (runs new since the last
    /// one, side files), over every checkpoint.
    pub checkpoint_new_bytes: u64,
    /// The newest epoch committed.
    pub last_epoch: u64,
    /// Checkpoints retained.
    pub retained_checkpoints: u64,
    /// WAL bytes on disk, over every shard.
    pub wal_bytes: u64,
    /// WAL syncs since open, over every shard.
    pub wal_syncs: u64,
    /// The last open's recovery.
    pub recovery: RecoveryFigures,
}

/// The coordinator's share of [`StoreStats`].
#[derive(Debug, Clone, Default)]
pub(crate) struct CoordinatorCounters {
    pub(crate) epoch_commits: u64,
    pub(crate) epoch_commit_latency: LatencyHistogram,
    pub(crate) checkpoints: u64,
    pub(crate) checkpoint_failures: u64,
    pub(crate) checkpoint_latency: LatencyHistogram,
    pub(crate) checkpoint_new_bytes: u64,
}

impl CoordinatorCounters {
    pub(crate) fn commit_done(&mut self, took: Duration) {
        self.epoch_commits += 1;
        self.epoch_commit_latency.record(took);
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("statespine_epoch_commits_total").increment(1);
            metrics::histogram!("statespine_epoch_commit_seconds").record(took.as_secs_f64());
        }
    }

    pub(crate) fn checkpoint_done(&mut self, took: Duration, new_bytes: u64) {
        self.checkpoints += 1;
        self.checkpoint_latency.record(took);
        self.checkpoint_new_bytes += new_bytes;
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("statespine_checkpoints_total").increment(1);
            metrics::counter!("statespine_checkpoint_new_bytes_total").increment(new_bytes);
            metrics::histogram!("statespine_checkpoint_seconds").record(took.as_secs_f64());
        }
    }

    pub(crate) fn checkpoint_failed(&mut self) {
        self.checkpoint_failures += 1;
        #[cfg(feature = "metrics")]
        metrics::counter!("statespine_checkpoint_failures_total").increment(1);
    }
}

/// The shard's own counters (plain fields: only its thread writes them).
#[derive(Debug, Clone)]
pub(crate) struct ShardCounters {
    pub(crate) writes: u64,
    pub(crate) batches: u64,
    pub(crate) commits_answered: u64,
    pub(crate) cuts_answered: u64,
    pub(crate) answer_pauses: LatencyHistogram,
    /// The counters of spines dropped since the open, so that the shard's
    /// totals never go back.
    pub(crate) dropped: SpineStats,
    /// The write path logged that the drainer stopped (once, not per
    /// refused write).
    pub(crate) drainer_stop_logged: bool,
    /// When the shard last published to the `metrics` facade.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) published: Instant,
}

impl Default for ShardCounters {
    fn default() -> Self {
        ShardCounters {
            writes: 0,
            batches: 0,
            commits_answered: 0,
            cuts_answered: 0,
            answer_pauses: LatencyHistogram::default(),
            dropped: SpineStats::default(),
            drainer_stop_logged: false,
            published: Instant::now(),
        }
    }
}

impl Shard {
    /// The shard's figures: its counters since the store opened, and the
    /// sizes of its spines now. Walks the spines' levels (no I/O, no lock):
    /// cheap enough to call every second.
    pub fn stats(&self) -> ShardStats {
        let spines: Vec<SpineReport> = self
            .spines_named()
            .map(|(name, spine)| {
                let levels = spine.levels();
                let merge_debt_bytes = levels.iter().filter(|l| l.batches > 1).map(|l| l.bytes).sum();
                SpineReport {
                    name: name.to_owned(),
                    mode: spine.mode(),
                    counters: spine.stats(),
                    memory_bytes: spine.memory_size_bytes() as u64,
                    run_bytes: spine.disk_size_bytes(),
                    merge_debt_bytes,
                    levels,
                }
            })
            .collect();
        let sum = |f: fn(&SpineReport) -> u64| spines.iter().map(f).sum::<u64>();
        let c = self.counters();
        let d = &c.dropped;
        let w = self.watermark();
        ShardStats {
            shard: self.id(),
            epoch: self.epoch(),
            writes: c.writes,
            batches: c.batches,
            bytes_put: d.bytes_put + sum(|s| s.counters.bytes_put),
            stalled_writes: d.stalled_writes + sum(|s| s.counters.stalled_writes),
            seals: d.seals + sum(|s| s.counters.seals),
            merges: d.merges + sum(|s| s.counters.merges),
            run_bytes_written: d.bytes_written + sum(|s| s.counters.bytes_written),
            memory_bytes: sum(|s| s.memory_bytes),
            run_bytes: sum(|s| s.run_bytes),
            batch_count: sum(|s| s.levels.iter().map(|l| l.batches as u64).sum()),
            merge_debt_bytes: sum(|s| s.merge_debt_bytes),
            wal_bytes: w.map_or(0, |w| w.wal_size()),
            wal_bytes_appended: w.map_or(0, |w| w.appended_bytes()),
            wal_syncs: w.map_or(0, |w| w.syncs()),
            commits_answered: c.commits_answered,
            cuts_answered: c.cuts_answered,
            answer_pauses: c.answer_pauses,
            spines,
        }
    }

    /// Publishes [`Shard::stats`] to the `metrics` facade if
    /// [`PUBLISH_INTERVAL`] has passed since the last time (from `poll`).
    #[cfg(feature = "metrics")]
    pub(super) fn publish_if_due(&mut self) {
        if self.counters().published.elapsed() < PUBLISH_INTERVAL {
            return;
        }
        self.publish_metrics();
    }

    /// Publishes [`Shard::stats`] to the `metrics` facade now, labelled with
    /// the shard's number (feature `metrics`; `poll` does it every
    /// [`PUBLISH_INTERVAL`]).
    #[cfg(feature = "metrics")]
    pub fn publish_metrics(&mut self) {
        self.counters_mut().published = Instant::now();
        let s = self.stats();
        let shard = s.shard.to_string();
        let counters: [(&'static str, u64); 9] = [
            ("statespine_writes_total", s.writes),
            ("statespine_write_batches_total", s.batches),
            ("statespine_bytes_put_total", s.bytes_put),
            ("statespine_stalled_writes_total", s.stalled_writes),
            ("statespine_seals_total", s.seals),
            ("statespine_merges_total", s.merges),
            ("statespine_run_bytes_written_total", s.run_bytes_written),
            ("statespine_wal_bytes_appended_total", s.wal_bytes_appended),
            ("statespine_wal_syncs_total", s.wal_syncs),
        ];
        for (name, v) in counters {
            metrics::counter!(name, "shard" => shard.clone()).absolute(v);
        }
        let gauges: [(&'static str, f64); 8] = [
            ("statespine_memory_bytes", s.memory_bytes as f64),
            ("statespine_run_bytes", s.run_bytes as f64),
            ("statespine_batches", s.batch_count as f64),
            ("statespine_merge_debt_bytes", s.merge_debt_bytes as f64),
            ("statespine_wal_bytes", s.wal_bytes as f64),
            ("statespine_write_amplification", s.write_amplification()),
            ("statespine_space_amplification", s.space_amplification()),
            ("statespine_epoch", s.epoch as f64),
        ];
        for (name, v) in gauges {
            metrics::gauge!(name, "shard" => shard.clone()).set(v);
        }
    }
}

impl Store {
    /// Store-wide figures: epoch commits and checkpoints (counts and
    /// latencies), WAL totals and what the last recovery did. Per-shard
    /// figures come from each shard's [`Shard::stats`], on its thread.
    pub fn stats(&self) -> StoreStats {
        let c = self.coordinator_ref().counters();
        let wal = self.watermarks().iter().flatten();
        StoreStats {
            epoch_commits: c.epoch_commits,
            epoch_commit_latency: c.epoch_commit_latency,
            checkpoints: c.checkpoints,
            checkpoint_failures: c.checkpoint_failures,
            checkpoint_latency: c.checkpoint_latency,
            checkpoint_new_bytes: c.checkpoint_new_bytes,
            last_epoch: self.last_epoch(),
            retained_checkpoints: self.coordinator_ref().retained().len() as u64,
            wal_bytes: wal.clone().map(|w| w.wal_size()).sum(),
            wal_syncs: wal.map(|w| w.syncs()).sum(),
            recovery: self.recovery_figures(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_bound_the_samples() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.quantile(0.99), Duration::ZERO);
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.max(), Duration::from_millis(100));
        let p50 = h.quantile(0.5);
        // Within a factor of two above the true median, never below it.
        assert!(
            p50 >= Duration::from_millis(50) && p50 <= Duration::from_millis(100),
            "{p50:?}"
        );
        assert_eq!(h.quantile(1.0), Duration::from_millis(100));
        assert!(h.quantile(0.0) <= Duration::from_millis(2));
        assert_eq!(h.mean(), Duration::from_micros(50_500));
    }

    #[test]
    fn histogram_takes_zero_and_huge_samples() {
        let mut h = LatencyHistogram::default();
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(u64::MAX / 4));
        assert_eq!(h.count(), 2);
        assert_eq!(
            h.quantile(0.5),
            Duration::from_micros(1),
            "the top of the lowest bucket"
        );
        assert_eq!(h.quantile(1.0), Duration::from_secs(u64::MAX / 4));
    }
}
