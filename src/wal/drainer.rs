//! [`ChangelogDrainer`]: the Ring-1 side. It drains the changelog rings of
//! one or more shards into their write-ahead logs in batches, syncs by the
//! [`SyncPolicy`], and publishes each shard's durable position as a
//! [`Watermark`] the hot thread reads without waiting.
//!
//! 1. Per shard, pop up to `batch_records` records, encode each as a WAL
//!    payload (`format/wal.md`, "Changelog payload") and append it.
//! 2. If the policy says so, `sync` the shard's log: one `fdatasync` covers
//!    the whole batch and everything before it (group commit). The shards due
//!    in one round are synced in parallel.
//! 3. Publish the durable LSN (what a writer holding its write's LSN waits
//!    for), the epoch of the last durable record and the count of durable
//!    records with Release stores.
//! 4. A failed append or sync marks the watermark failed, with its cause,
//!    and stops the drainer with the error: nothing after it is acknowledged
//!    (fail-stop).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::change::encode_change;
use super::log::WriteAheadLog;
use crate::changelog::ChangelogConsumer;
use crate::io::{Job, Pool};
use crate::{Error, Result};

/// Records drained from one shard per round before the next shard's turn.
pub const DEFAULT_BATCH_RECORDS: usize = 4096;
/// Most jobs one round's `fdatasync`s are split into (each syncs a share of
/// the logs due), so a round never queues more than this on the pool.
const MAX_SYNC_JOBS: usize = 16;
/// Capacity the drainer's payload buffer keeps between rounds: records
/// larger than this (up to the store's value limit) get their buffer back.
const PAYLOAD_KEEP_BYTES: usize = 1 << 20;
/// Longest an idle drainer sleeps between rounds.
const IDLE_SLEEP: Duration = Duration::from_micros(100);

/// When the drainer makes appended records durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// After every append the drainer makes (one drained batch per shard).
    EveryAppend,
    /// Once this many bytes are appended and not yet synced.
    EveryBytes(u64),
    /// Once this many records are appended and not yet synced.
    EveryRecords(u64),
    /// At this interval, by a timer on the drainer thread, so an idle log's
    /// tail is synced too.
    Interval(Duration),
    /// Only when a shard asks ([`Watermark::request_sync`]).
    Manual,
}

/// A shard's durable position, published by the drainer.
#[derive(Debug, Default)]
pub struct Watermark {
    durable_lsn: AtomicU64,
    durable_epoch: AtomicU64,
    durable_records: AtomicU64,
    sync_requested: AtomicU64,
    truncate_requested: AtomicU64,
    wal_bytes: AtomicU64,
    /// Bytes appended since open (frames and segment headers), and syncs
    /// that made them durable
    /// (the shard's `Stats`; written once per drain round, never per write).
    appended_bytes: AtomicU64,
    syncs: AtomicU64,
    failed: AtomicBool,
    /// Why the log failed, set once before `failed`.
    cause: OnceLock<String>,
    /// The drainer has stopped: nothing more becomes durable.
    stopped: AtomicBool,
    /// The log's directory, for errors.
    dir: PathBuf,
}

impl Watermark {
    /// The highest durable LSN of the shard's log.
    pub fn durable_lsn(&self) -> u64 {
        self.durable_lsn.load(Ordering::Acquire)
    }

    /// The epoch of the last durable record: every record of an earlier
    /// epoch is durable.
    pub fn durable_epoch(&self) -> u64 {
        self.durable_epoch.load(Ordering::Acquire)
    }

    /// Records of the ring made durable: durable up to the producer's
    /// `pushed()` count of that moment.
    pub fn durable_records(&self) -> u64 {
        self.durable_records.load(Ordering::Acquire)
    }

    /// True once the drainer failed on this shard (fail-stop).
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// The failure that stopped the log, once it failed.
    pub fn failure(&self) -> Option<&str> {
        self.cause.get().map(String::as_str)
    }

    fn fail(&self, cause: &crate::Error) {
        let _ = self.cause.set(cause.to_string());
        self.failed.store(true, Ordering::Release);
    }

    /// Asks for a sync of every record up to LSN `lsn`, whatever the policy
    /// (a checkpoint needs its cut durable now, not at the next interval).
    pub fn request_sync(&self, lsn: u64) {
        self.sync_requested.fetch_max(lsn, Ordering::AcqRel);
    }

    /// Asks the drainer to delete the log's segments whose records are all
    /// below `lsn` (after a checkpoint covering them is durable).
    pub fn request_truncate(&self, lsn: u64) {
        self.truncate_requested.fetch_max(lsn, Ordering::AcqRel);
    }

    /// Bytes of the shard's log, as of the drainer's last round.
    pub fn wal_size(&self) -> u64 {
        self.wal_bytes.load(Ordering::Acquire)
    }

    /// Bytes appended to the log since it opened: record frames and the
    /// headers of the segments it started.
    pub fn appended_bytes(&self) -> u64 {
        self.appended_bytes.load(Ordering::Relaxed)
    }

    /// Syncs of the log since it opened.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Waits until every record up to LSN `lsn` is durable: spins, then
    /// sleeps with a backoff capped at 128 µs — finer than the ring's
    /// (`changelog`'s `pause`, ~1 ms), since an fdatasync takes ~0.4 ms and a
    /// coarse sleep would show up in every ack.
    ///
    /// [`Error::TimedOut`] if `timeout` passes first (the records may still
    /// become durable); [`Error::Poisoned`], with the failure, if the log
    /// failed (they never will: fail-stop).
    pub fn wait_durable(&self, lsn: u64, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        let mut round = 0u32;
        loop {
            if self.durable_lsn() >= lsn {
                return Ok(());
            }
            if self.is_failed() {
                return Err(Error::Poisoned {
                    path: self.dir.clone(),
                    cause: self.failure().unwrap_or("the log failed").to_owned(),
                });
            }
            if self.stopped.load(Ordering::Acquire) && self.durable_lsn() < lsn {
                return Err(Error::Poisoned {
                    path: self.dir.clone(),
                    cause: "the store was closed: its log takes nothing more".into(),
                });
            }
            if start.elapsed() >= timeout {
                return Err(Error::TimedOut {
                    what: format!("{}: durable up to LSN {lsn}", self.dir.display()),
                    after: timeout,
                });
            }
            if round < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(1 << (round - 64).min(7)));
            }
            round += 1;
        }
    }
}

#[derive(Debug)]
struct Shard {
    consumer: ChangelogConsumer,
    /// Shared with the pool's sync jobs for the length of a sync round.
    wal: Arc<Mutex<WriteAheadLog>>,
    watermark: Arc<Watermark>,
    appended: u64,
    unsynced_records: u64,
    unsynced_bytes: u64,
    last_epoch: u64,
    truncated: u64,
}

/// Counters of a drainer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainStats {
    /// Records moved from rings to logs.
    pub records: u64,
    /// `fdatasync`s issued.
    pub syncs: u64,
}

/// Drains shards' rings into their logs. See the module docs.
#[derive(Debug)]
pub struct ChangelogDrainer {
    shards: Vec<Shard>,
    policy: SyncPolicy,
    batch_records: usize,
    last_sync: Instant,
    payload: Vec<u8>,
    stats: DrainStats,
    /// Where a round's syncs run side by side: [`Pool::shared`] unless
    /// [`ChangelogDrainer::with_pool`] gave one.
    pool: Option<Arc<Pool>>,
}

/// Locks a shard's log; a sync job that panicked holding it poisoned it.
fn lock(wal: &Mutex<WriteAheadLog>) -> Result<MutexGuard<'_, WriteAheadLog>> {
    wal.lock().map_err(|_| Error::Panicked {
        thread: "a sync thread",
    })
}

impl ChangelogDrainer {
    /// A drainer with no shards yet.
    pub fn new(policy: SyncPolicy) -> Self {
        ChangelogDrainer {
            shards: Vec::new(),
            policy,
            batch_records: DEFAULT_BATCH_RECORDS,
            last_sync: Instant::now(),
            payload: Vec::new(),
            stats: DrainStats::default(),
            pool: None,
        }
    }

    /// Runs the parallel syncs of a round on `pool` (the store's) instead
    /// of the process-wide [`Pool::shared`].
    #[must_use]
    pub fn with_pool(mut self, pool: Arc<Pool>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Takes over a shard's ring and log; returns its watermark.
    pub fn add_shard(&mut self, consumer: ChangelogConsumer, wal: WriteAheadLog) -> Arc<Watermark> {
        let watermark = Arc::new(Watermark {
            dir: wal.dir().to_path_buf(),
            ..Watermark::default()
        });
        watermark.durable_lsn.store(wal.durable_lsn(), Ordering::Release);
        watermark.wal_bytes.store(wal.wal_size(), Ordering::Release);
        self.shards.push(Shard {
            consumer,
            wal: Arc::new(Mutex::new(wal)),
            watermark: Arc::clone(&watermark),
            appended: 0,
            unsynced_records: 0,
            unsynced_bytes: 0,
            last_epoch: 0,
            truncated: 0,
        });
        watermark
    }

    /// Counters so far.
    pub fn stats(&self) -> DrainStats {
        self.stats
    }

    /// One round over every shard (module docs, steps 1–3); returns the
    /// records moved. The shards due for a sync are synced in parallel.
    pub fn drain_once(&mut self) -> Result<usize> {
        let interval_due = match self.policy {
            SyncPolicy::Interval(d) => self.last_sync.elapsed() >= d,
            _ => false,
        };
        let mut moved = 0;
        let mut due = Vec::new();
        for i in 0..self.shards.len() {
            match self.drain_shard(i) {
                Ok(n) => moved += n,
                Err(e) => {
                    self.shards[i].watermark.fail(&e);
                    return Err(e);
                }
            }
            if self.is_due(&self.shards[i], interval_due)? {
                due.push(i);
            }
        }
        self.sync_shards(&due)?;
        if interval_due || !due.is_empty() {
            self.last_sync = Instant::now();
        }
        Ok(moved)
    }

    /// Step 1 for shard `i`: pop and append up to a batch.
    fn drain_shard(&mut self, i: usize) -> Result<usize> {
        let payload = &mut self.payload;
        let s = &mut self.shards[i];
        let mut wal = lock(&s.wal)?;
        let mut n = 0;
        // Every byte the round writes: frames and any new segment's header.
        let size_before = wal.wal_size();
        while n < self.batch_records {
            let Some((lsn, rec)) = s.consumer.pop_with_lsn() else {
                break;
            };
            payload.clear();
            encode_change(payload, &rec);
            let logged = wal.append(rec.epoch, payload)?;
            // The shard numbered the record when it pushed it; the log
            // numbers it again when it appends: two counts of one sequence.
            assert_eq!(logged, lsn, "the shard's LSN and the WAL's disagree");
            s.last_epoch = rec.epoch;
            s.unsynced_bytes += payload.len() as u64;
            n += 1;
        }
        // A record past the ring's size grew the buffer: give that back.
        if payload.capacity() > PAYLOAD_KEEP_BYTES {
            payload.clear();
            payload.shrink_to(PAYLOAD_KEEP_BYTES);
        }
        s.appended += n as u64;
        s.unsynced_records += n as u64;
        if n > 0 {
            let written = wal.wal_size().saturating_sub(size_before);
            s.watermark.appended_bytes.fetch_add(written, Ordering::Relaxed);
        }
        let cut = s.watermark.truncate_requested.load(Ordering::Acquire);
        if cut > s.truncated {
            wal.truncate_below(cut)?;
            s.truncated = cut;
        }
        s.watermark.wal_bytes.store(wal.wal_size(), Ordering::Release);
        self.stats.records += n as u64;
        Ok(n)
    }

    fn is_due(&self, s: &Shard, interval_due: bool) -> Result<bool> {
        let durable = lock(&s.wal)?.durable_lsn();
        let requested = s.watermark.sync_requested.load(Ordering::Acquire) > durable;
        Ok(s.unsynced_records > 0
            && (requested
                || match self.policy {
                    SyncPolicy::EveryAppend => true,
                    SyncPolicy::EveryBytes(b) => s.unsynced_bytes >= b,
                    SyncPolicy::EveryRecords(r) => s.unsynced_records >= r,
                    SyncPolicy::Interval(_) => interval_due,
                    SyncPolicy::Manual => false,
                }))
    }

    /// Steps 2–3 for the shards at `due`: their `fdatasync`s run in parallel
    /// (the device and the file system's journal merge concurrent syncs, where
    /// one after another each pays the full latency), then the watermarks.
    fn sync_shards(&mut self, due: &[usize]) -> Result<()> {
        let results = self.sync_logs(due)?;
        let mut first_err = None;
        for (&i, r) in due.iter().zip(results) {
            let s = &mut self.shards[i];
            match r {
                Ok(lsn) => {
                    self.stats.syncs += 1;
                    s.watermark.syncs.fetch_add(1, Ordering::Relaxed);
                    s.unsynced_records = 0;
                    s.unsynced_bytes = 0;
                    s.watermark.durable_lsn.store(lsn, Ordering::Release);
                    s.watermark.durable_epoch.store(s.last_epoch, Ordering::Release);
                    s.watermark.durable_records.store(s.appended, Ordering::Release);
                }
                Err(e) => {
                    s.watermark.fail(&e);
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Step 2 for the shards at `due`: the durable LSN of each, or why its
    /// sync failed. More than one log: jobs on the pool, each syncing a
    /// share of them.
    fn sync_logs(&mut self, due: &[usize]) -> Result<Vec<Result<u64>>> {
        if due.len() <= 1 {
            return Ok(due
                .iter()
                .map(|&i| lock(&self.shards[i].wal).and_then(|mut w| w.sync()))
                .collect());
        }
        let pool = self.pool.clone().map_or_else(Pool::shared, Ok)?;
        // No more jobs than the pool has threads: more would only queue.
        let per = due.len().div_ceil(MAX_SYNC_JOBS.min(pool.size()));
        let jobs: Vec<Job<Vec<Result<u64>>>> = due
            .chunks(per)
            .map(|chunk| {
                let logs: Vec<_> = chunk.iter().map(|&i| Arc::clone(&self.shards[i].wal)).collect();
                Box::new(move || Ok(logs.iter().map(|l| lock(l).and_then(|mut w| w.sync())).collect()))
                    as Job<_>
            })
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for (chunk, r) in due.chunks(per).zip(pool.run_all("a sync thread", jobs)) {
            match r {
                Ok(lsns) => out.extend(lsns),
                Err(_) => out.extend(chunk.iter().map(|_| {
                    Err(Error::Panicked {
                        thread: "a sync thread",
                    })
                })),
            }
        }
        Ok(out)
    }

    /// Syncs every shard's log now and publishes the watermarks.
    pub fn sync_all(&mut self) -> Result<()> {
        let due: Vec<usize> = (0..self.shards.len())
            .filter(|&i| self.shards[i].unsynced_records > 0)
            .collect();
        self.sync_shards(&due)
    }

    /// Drains until `stop` is set and every producer is gone and drained,
    /// then syncs what is left. An error stops the drainer for every shard,
    /// so every shard's watermark fails with it (fail-stop): a shard whose
    /// own log is fine would otherwise wait for a durability that never
    /// comes and only time out.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        self.drain_until(stop).inspect_err(|e| {
            tracing::error!(shards = self.shards.len(), error = %e, "changelog drainer stopped");
            let stopped = Error::Poisoned {
                path: std::path::PathBuf::new(),
                cause: format!("the changelog drainer stopped: {e}"),
            };
            for s in &self.shards {
                s.watermark.fail(&stopped);
            }
        })
    }

    fn drain_until(&mut self, stop: &AtomicBool) -> Result<()> {
        loop {
            let moved = self.drain_once()?;
            if moved == 0 {
                let finished = self.shards.iter().all(|s| s.consumer.is_finished());
                if stop.load(Ordering::Acquire) || finished {
                    // One more round: records pushed just before the producers left.
                    self.drain_once()?;
                    self.sync_all()?;
                    let sealed = self.shards.iter().try_for_each(|s| lock(&s.wal)?.seal());
                    for s in &self.shards {
                        s.watermark.stopped.store(true, Ordering::Release);
                    }
                    return sealed;
                }
                std::thread::sleep(IDLE_SLEEP);
            }
        }
    }

    /// Runs the drainer on its own thread.
    pub fn spawn(mut self) -> Result<DrainerHandle> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("statespine-drainer".into())
            .spawn(move || self.run(&flag).map(|()| self))
            .map_err(|e| Error::io("spawn drainer thread", std::path::Path::new(""), e))?;
        Ok(DrainerHandle { stop, thread })
    }
}

/// A drainer running on its own thread.
#[derive(Debug)]
pub struct DrainerHandle {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<ChangelogDrainer>>,
}

impl DrainerHandle {
    /// Stops after draining and syncing what the rings hold; returns the
    /// drainer (its logs and counters) or the error that stopped it.
    pub fn stop(self) -> Result<ChangelogDrainer> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().map_err(|_| Error::Panicked {
            thread: "the drainer thread",
        })?
    }
}
