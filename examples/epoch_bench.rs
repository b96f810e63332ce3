//! Epoch-commit figures of a 2-shard store on the real file system
//! (`docs/benchmarks.md`, "Epoch commits"):
//!
//! 1. commit latency p50/p99 (`Store::commit_epoch` with three source
//!    offsets), idle (each shard's worker calls `poll()` in a loop) and under
//!    full ingest, against a bare small append + `fdatasync` on the same file
//!    system, interleaved with the commits in the same runs;
//! 2. ingest throughput with an epoch commit every 10, 100 and 1,000 ms
//!    against none, configurations rotated round by round;
//! 3. the shards' pauses (`EpochCommitted::shard_pauses`);
//! 4. recovery after a crash (the store and shards dropped without a
//!    shutdown, no checkpoint ever taken) against the commit interval.
//!
//! `cargo run --release --example epoch_bench` (about 2 minutes): 5 rounds
//! of the latency and ingest measurements, configurations rotated, 2.5 s
//! ingest runs; recovery in the first 2 rounds, 2,000,000 writes before each
//! crash; a temporary directory under the system's. `--dir DIR --rounds N
//! --secs S --recovery-rounds N --writes N` change those;
//! `--only latency,ingest,recovery` and `--intervals none,10,100,1000`
//! narrow it; `--shards N` and `--ring-kib N` (each shard's changelog ring)
//! open the stores otherwise, for the breakdowns in the doc.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::type_complexity)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use statespine::store::{Answered, CheckpointRequest, EpochCommitted, Options, Shard, Store};

const KEY: usize = 16;
const VALUE: usize = 100;
/// Distinct keys per shard the ingest writes over (random order).
const KEYS_PER_SHARD: u64 = 4_000_000;
/// Writes between two `poll()`s of a writing worker.
const POLL_EVERY: u64 = 64;
/// Commits (and as many bare fdatasyncs) in the idle measurement.
const IDLE_COMMITS: usize = 300;

// ---------------------------------------------------------------- helpers

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn median_f(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn key(i: u64) -> [u8; KEY] {
    let mut k = [0u8; KEY];
    k[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn value(i: u64) -> [u8; VALUE] {
    let mut v = [i as u8; VALUE];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

/// A small request: three source offsets.
fn request(n: u64) -> CheckpointRequest {
    CheckpointRequest {
        source_offsets: BTreeMap::from([
            ("orders/0".to_owned(), n * 1000),
            ("orders/1".to_owned(), n * 1000 + 7),
            ("payments/0".to_owned(), n * 300),
        ]),
        ..CheckpointRequest::default()
    }
}

/// The baseline: a 128-byte append to a file of its own, then `fdatasync`
/// (a commit record with three offsets is about that size).
struct SyncProbe(File);

impl SyncProbe {
    fn new(dir: &Path) -> SyncProbe {
        SyncProbe(File::create(dir.join("fdatasync-probe")).unwrap())
    }

    fn once(&mut self) -> Duration {
        let t = Instant::now();
        append_sync(&mut self.0);
        t.elapsed()
    }
}

fn append_sync(f: &mut File) {
    f.write_all(&[0x5a; 128]).unwrap();
    f.sync_data().unwrap();
}

/// What a 2-shard commit needs at least: a small append + `fdatasync` on
/// each of two files at once (a thread spawned for the second, as the
/// drainer spawns threads for the shards it syncs in one round).
struct PairProbe(File, File);

impl PairProbe {
    fn new(dir: &Path) -> PairProbe {
        PairProbe(
            File::create(dir.join("pair-probe-0")).unwrap(),
            File::create(dir.join("pair-probe-1")).unwrap(),
        )
    }

    fn once(&mut self) -> Duration {
        let t = Instant::now();
        let PairProbe(a, b) = self;
        std::thread::scope(|s| {
            s.spawn(|| append_sync(b));
            append_sync(a);
        });
        t.elapsed()
    }
}

// ---------------------------------------------------------------- workers

/// How every store of a run is opened: default options but for these.
#[derive(Clone, Copy)]
struct Setup {
    shards: u32,
    /// Each shard's changelog ring, bytes (default: the store's, 8 MiB).
    ring_bytes: Option<usize>,
}

impl Setup {
    fn options(self, dir: &Path) -> Options {
        let opts = Options::new(dir).shards(self.shards);
        match self.ring_bytes {
            Some(b) => opts.changelog_capacity(b, 1 << 16),
            None => opts,
        }
    }
}

const IDLE: u8 = 0;
const INGEST: u8 = 1;
const EXIT: u8 = 2;

/// An open store whose shards are owned by worker threads: idle, they
/// `poll()` in a loop (sleeping 20 µs when nothing was answered); ingesting,
/// they `put` as fast as they can (up to `limit` writes each), polling every
/// 64 writes.
struct Session {
    store: Store,
    mode: Arc<AtomicU8>,
    written: Vec<Arc<AtomicU64>>,
    limit: u64,
    seen: Arc<Mutex<Vec<Seen>>>,
    spans: Vec<Span>,
    workers: Vec<JoinHandle<Shard>>,
}

/// A commit made: epoch, start, end.
type Span = (u64, Instant, Instant);

/// What a worker saw of a commit it answered.
struct Seen {
    epoch: u64,
    /// Records of its log not yet durable when it appended the commit
    /// record: those the commit waits for.
    lag: u64,
    answered: Instant,
    /// When the worker first saw its log durable up to the record (it looks
    /// at each poll: within ~20 µs idle, ~64 writes busy).
    durable: Instant,
}

impl Session {
    fn open(setup: Setup, dir: &Path, limit: u64) -> Session {
        let mut store = setup.options(dir).open().unwrap();
        let mode = Arc::new(AtomicU8::new(IDLE));
        let mut written = Vec::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let workers = store
            .take_shards()
            .into_iter()
            .map(|shard| {
                let count = Arc::new(AtomicU64::new(0));
                written.push(Arc::clone(&count));
                let (mode, seen) = (Arc::clone(&mode), Arc::clone(&seen));
                std::thread::spawn(move || work(shard, &mode, &count, limit, &seen))
            })
            .collect();
        Session {
            store,
            mode,
            written,
            limit,
            seen,
            spans: Vec::new(),
            workers,
        }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::Relaxed);
    }

    fn written(&self) -> u64 {
        self.written.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn loaded(&self) -> bool {
        self.written
            .iter()
            .all(|c| c.load(Ordering::Relaxed) >= self.limit)
    }

    fn commit(&mut self) -> EpochCommitted {
        let epoch = self.store.next_epoch();
        let t = Instant::now();
        let c = self.store.commit_epoch(epoch, &request(epoch)).unwrap();
        self.spans.push((epoch, t, Instant::now()));
        c
    }

    /// Stops the workers and drops the store and shards without a shutdown
    /// or a checkpoint: a crash, except that the drainer still syncs what
    /// the rings held (records past the last commit are on disk, and
    /// recovery discards them). Returns the commits made and what the
    /// workers saw of them.
    fn crash(self) -> (Vec<Span>, Vec<Seen>) {
        self.set(EXIT);
        let shards: Vec<Shard> = self.workers.into_iter().map(|w| w.join().unwrap()).collect();
        drop(shards);
        drop(self.store);
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        (self.spans, seen)
    }
}

/// A worker's `poll()`, noting when the commits it answers become durable.
struct Watcher<'a> {
    seen: &'a Mutex<Vec<Seen>>,
    /// Answered, not yet seen durable: epoch, LSN, lag, answered.
    pending: Vec<(u64, u64, u64, Instant)>,
}

impl Watcher<'_> {
    fn poll(&mut self, shard: &mut Shard) -> Option<Answered> {
        let answered = shard.poll().unwrap();
        if let Some(Answered::EpochCommit { epoch, lsn }) = answered {
            let lag = lsn.0 - shard.durable_lsn().0;
            self.pending.push((epoch, lsn.0, lag, Instant::now()));
        }
        // One atomic load per poll while a commit is pending; the lock only
        // once it is durable.
        let durable = shard.durable_lsn().0;
        if self.pending.iter().any(|p| p.1 <= durable) {
            let now = Instant::now();
            let mut seen = self.seen.lock().unwrap();
            self.pending.retain(|&(epoch, lsn, lag, answered)| {
                let done = lsn <= durable;
                if done {
                    seen.push(Seen {
                        epoch,
                        lag,
                        answered,
                        durable: now,
                    });
                }
                !done
            });
        }
        answered
    }
}

fn work(
    mut shard: Shard,
    mode: &AtomicU8,
    written: &AtomicU64,
    limit: u64,
    seen: &Mutex<Vec<Seen>>,
) -> Shard {
    let kv = shard.create_kv("state").unwrap();
    let base = u64::from(shard.id()) << 40;
    let mut i = 0u64;
    let mut watcher = Watcher {
        seen,
        pending: Vec::new(),
    };
    loop {
        match mode.load(Ordering::Relaxed) {
            EXIT => return shard,
            INGEST if i < limit => {
                for _ in 0..POLL_EVERY.min(limit - i) {
                    let k = i.wrapping_mul(0x2545_F491_4F6C_DD1D) % KEYS_PER_SHARD;
                    shard.put(kv, &key(base + k), &value(i)).unwrap();
                    i += 1;
                }
                watcher.poll(&mut shard);
                written.store(i, Ordering::Relaxed);
            }
            _ => {
                if watcher.poll(&mut shard).is_none() {
                    std::thread::sleep(Duration::from_micros(20));
                }
            }
        }
    }
}

/// What the commits of one or more runs took.
#[derive(Default)]
struct Commits {
    /// Wall time of `commit_epoch`, as the caller sees it.
    latency: Vec<Duration>,
    /// Request to every shard's answer (`answer_time`).
    answer: Vec<Duration>,
    /// From the last answer until the workers saw every record durable (the
    /// drainer: waking, appending what is ahead, `fdatasync`).
    drain: Vec<Duration>,
    /// From then until `commit_epoch` returned (the coordinator noticing).
    notice: Vec<Duration>,
    pauses: Vec<Duration>,
    /// Records each commit record waited behind ([`Seen::lag`]).
    lags: Vec<u64>,
}

impl Commits {
    fn add(&mut self, c: &EpochCommitted) {
        self.answer.push(c.answer_time);
        self.pauses.extend(c.shard_pauses.iter().copied());
    }

    /// A session's commits and what its workers saw of them.
    fn trace(&mut self, (spans, seen): (Vec<Span>, Vec<Seen>)) {
        for (epoch, start, end) in spans {
            self.latency.push(end - start);
            let mine = || seen.iter().filter(|s| s.epoch == epoch);
            let (Some(answered), Some(durable)) =
                (mine().map(|s| s.answered).max(), mine().map(|s| s.durable).max())
            else {
                continue;
            };
            self.drain.push(durable.saturating_duration_since(answered));
            self.notice.push(end.saturating_duration_since(durable));
        }
        self.lags.extend(seen.iter().map(|s| s.lag));
    }

    fn extend(&mut self, other: Commits) {
        self.latency.extend(other.latency);
        self.answer.extend(other.answer);
        self.drain.extend(other.drain);
        self.notice.extend(other.notice);
        self.pauses.extend(other.pauses);
        self.lags.extend(other.lags);
    }

    fn sort(&mut self) {
        self.latency.sort_unstable();
        self.answer.sort_unstable();
        self.drain.sort_unstable();
        self.notice.sort_unstable();
        self.pauses.sort_unstable();
        self.lags.sort_unstable();
    }

    fn lag(&self, p: f64) -> u64 {
        self.lags
            .get(((self.lags.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or_default()
    }
}

// ----------------------------------------------------------- measurements

/// The bare syncs measured between the commits.
#[derive(Default)]
struct Syncs {
    /// One file: [`SyncProbe`].
    one: Vec<Duration>,
    /// Two files at once: [`PairProbe`].
    pair: Vec<Duration>,
}

/// A commit, a bare fdatasync and a pair of them in turn, 1 ms apart;
/// `ingest`: for `secs` while every worker writes, else [`IDLE_COMMITS`]
/// times while they poll idle. Returns the writes/s.
fn latency(
    setup: Setup,
    dir: &Path,
    ingest: bool,
    secs: f64,
    commits: &mut Commits,
    syncs: &mut Syncs,
) -> f64 {
    let mut s = Session::open(setup, dir, u64::MAX);
    let mut one = SyncProbe::new(dir);
    let mut pair = PairProbe::new(dir);
    let t = Instant::now();
    if ingest {
        s.set(INGEST);
    }
    let more = |n: usize| {
        if ingest {
            t.elapsed().as_secs_f64() < secs
        } else {
            n < IDLE_COMMITS
        }
    };
    let gap = Duration::from_millis(1);
    let mut n = 0;
    while more(n) {
        std::thread::sleep(gap);
        commits.add(&s.commit());
        std::thread::sleep(gap);
        syncs.one.push(one.once());
        std::thread::sleep(gap);
        syncs.pair.push(pair.once());
        n += 1;
    }
    let rate = s.written() as f64 / t.elapsed().as_secs_f64();
    commits.trace(s.crash());
    rate
}

/// Writes/s of all workers over `secs`, committing every `interval` ms.
fn ingest(setup: Setup, dir: &Path, interval: Option<u64>, secs: f64, commits: &mut Commits) -> f64 {
    let mut s = Session::open(setup, dir, u64::MAX);
    let end = Duration::from_secs_f64(secs);
    let t = Instant::now();
    s.set(INGEST);
    // Counted at `end` exactly, whether or not a commit is in flight then.
    let counters = s.written.clone();
    let sampler = std::thread::spawn(move || {
        std::thread::sleep(end.saturating_sub(t.elapsed()));
        let n: u64 = counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        n as f64 / t.elapsed().as_secs_f64()
    });
    if let Some(ms) = interval {
        let every = Duration::from_millis(ms);
        let mut next = every;
        while next < end {
            std::thread::sleep(next.saturating_sub(t.elapsed()));
            commits.add(&s.commit());
            next = (next + every).max(t.elapsed());
        }
    }
    let rate = sampler.join().unwrap();
    commits.trace(s.crash());
    rate
}

struct Recovery {
    load: Duration,
    commits: u64,
    wall: Duration,
    select: Duration,
    restore: Duration,
    replay: Duration,
    replayed: u64,
    discarded: u64,
    /// Records logged that recovery neither replayed nor discarded.
    unaccounted: u64,
}

/// `writes` writes over both shards with a commit every `interval` ms, a
/// crash, then `recover()` (the last epoch committed on both shards).
fn recovery(setup: Setup, dir: &Path, interval: Option<u64>, writes: u64) -> Recovery {
    let mut s = Session::open(setup, dir, writes / u64::from(setup.shards));
    let t = Instant::now();
    s.set(INGEST);
    let every = Duration::from_millis(interval.unwrap_or(u64::MAX / 4));
    let mut next = every;
    let mut commits = 0;
    while !s.loaded() {
        std::thread::sleep(next.saturating_sub(t.elapsed()).min(Duration::from_millis(1)));
        if t.elapsed() >= next && !s.loaded() {
            s.commit();
            commits += 1;
            next = (next + every).max(t.elapsed());
        }
    }
    let load = t.elapsed();
    let committed = s.store.last_epoch();
    s.crash();
    let t = Instant::now();
    let mut state = setup.options(dir).recover().unwrap();
    let wall = t.elapsed();
    assert_eq!(state.epoch, committed, "recovered epoch");
    // Every write, and each shard's spine creation, is replayed or
    // discarded: a difference is a write the WAL lost, or a miscount.
    let logged = writes + u64::from(setup.shards);
    let accounted = state.replayed_records + state.discarded_records;
    if accounted != logged {
        eprintln!(
            "  WARNING: {logged} records logged before the crash, recovery replayed or discarded {accounted}; per shard: {:?}",
            state.shards
        );
    }
    drop(state.store.take_shards());
    Recovery {
        load,
        commits,
        wall,
        select: state.select_time,
        restore: state.restore_time,
        replay: state.replay_time,
        replayed: state.replayed_records,
        discarded: state.discarded_records,
        unaccounted: logged.abs_diff(accounted),
    }
}

// ------------------------------------------------------------------- main

struct Args {
    setup: Setup,
    dir: Option<PathBuf>,
    rounds: usize,
    secs: f64,
    writes: u64,
    recovery_rounds: usize,
    intervals: Vec<Option<u64>>,
    sections: Vec<String>,
}

const USAGE: &str = "usage: epoch_bench [--dir DIR] [--rounds N] [--secs S] [--writes N] \
                     [--recovery-rounds N] [--intervals none,10,100,1000] [--only latency,ingest,recovery] \
                     [--shards N] [--ring-kib N]";

fn args() -> Args {
    let mut a = Args {
        setup: Setup {
            shards: 2,
            ring_bytes: None,
        },
        dir: None,
        rounds: 5,
        secs: 2.5,
        writes: 2_000_000,
        recovery_rounds: 2,
        intervals: vec![None, Some(10), Some(100), Some(1000)],
        sections: ["latency", "ingest", "recovery"].map(String::from).to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_else(|| {
            eprintln!("{flag} needs a value\n{USAGE}");
            std::process::exit(2)
        });
        let list = || v.split(',').map(str::to_owned);
        match flag.as_str() {
            "--shards" => a.setup.shards = v.parse().expect("--shards N"),
            "--ring-kib" => a.setup.ring_bytes = Some(v.parse::<usize>().expect("--ring-kib N") << 10),
            "--dir" => a.dir = Some(v.clone().into()),
            "--rounds" => a.rounds = v.parse().expect("--rounds N"),
            "--secs" => a.secs = v.parse().expect("--secs S"),
            "--writes" => a.writes = v.parse().expect("--writes N"),
            "--recovery-rounds" => a.recovery_rounds = v.parse().expect("--recovery-rounds N"),
            "--intervals" => {
                a.intervals = list()
                    .map(|i| (i != "none").then(|| i.parse().expect("--intervals: none or ms")))
                    .collect();
            }
            "--only" => a.sections = list().collect(),
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2)
            }
        }
    }
    a
}

fn label(interval: Option<u64>) -> String {
    interval.map_or("none".to_owned(), |ms| format!("every {ms} ms"))
}

/// Sections 1 and 3, idle and busy: a row each.
fn print_latency(rows: &mut [(&str, Commits, Syncs, Vec<f64>)]) {
    println!(
        "| commit_epoch, 3 offsets | commits | p50 | p99 | bare fdatasync, same runs: p50 / p99 | p50 ratio | 2 files synced at once p50 / p99 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (what, c, sync, _) in rows.iter_mut() {
        c.sort();
        sync.one.sort_unstable();
        sync.pair.sort_unstable();
        println!(
            "| {what} | {} | {} | {} | {} / {} | {:.2}× | {} / {} |",
            c.latency.len(),
            ms(pct(&c.latency, 0.5)),
            ms(pct(&c.latency, 0.99)),
            ms(pct(&sync.one, 0.5)),
            ms(pct(&sync.one, 0.99)),
            pct(&c.latency, 0.5).as_secs_f64() / pct(&sync.one, 0.5).as_secs_f64(),
            ms(pct(&sync.pair, 0.5)),
            ms(pct(&sync.pair, 0.99)),
        );
    }
    println!(
        "\n| where a commit's time goes, p50 / p99 | every shard answered | then its workers saw every record durable | then commit_epoch returned | log records not yet durable ahead of a commit record | shard pause p50 / p99 / max | writes/s meanwhile |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (what, c, _, rate) in rows.iter_mut() {
        println!(
            "| {what} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} / {} | {:.0}k |",
            ms(pct(&c.answer, 0.5)),
            ms(pct(&c.answer, 0.99)),
            ms(pct(&c.drain, 0.5)),
            ms(pct(&c.drain, 0.99)),
            ms(pct(&c.notice, 0.5)),
            ms(pct(&c.notice, 0.99)),
            c.lag(0.5),
            c.lag(0.99),
            us(pct(&c.pauses, 0.5)),
            us(pct(&c.pauses, 0.99)),
            us(c.pauses.last().copied().unwrap_or_default()),
            median_f(rate) / 1e3,
        );
    }
    println!();
}

/// Section 2: `rates[i][round]` of `intervals[i]`; ratios against `None`
/// are taken round by round (the runs of one round are neighbours in time).
fn print_ingest(a: &Args, rates: &[Vec<f64>], commits: &mut [Commits]) {
    let base = a.intervals.iter().position(Option::is_none);
    println!(
        "| ingest, {} s runs | writes/s, median of {} | vs none, median of the rounds' ratios | runs, k writes/s | commits (per s) | commit p50 / p99 | shard pause p50 / p99 / max |",
        a.secs, a.rounds
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (i, interval) in a.intervals.iter().enumerate() {
        let c = &mut commits[i];
        c.sort();
        let ratio = base.map_or("—".to_owned(), |b| {
            let mut r: Vec<f64> = rates[i].iter().zip(&rates[b]).map(|(x, y)| x / y).collect();
            let m = median_f(&mut r);
            format!(
                "{:+.1}% ({:+.1}% … {:+.1}%)",
                (m - 1.0) * 100.0,
                (r[0] - 1.0) * 100.0,
                (r[r.len() - 1] - 1.0) * 100.0
            )
        });
        let (lat, pause) = if c.latency.is_empty() {
            ("—".to_owned(), "—".to_owned())
        } else {
            (
                format!("{} / {}", ms(pct(&c.latency, 0.5)), ms(pct(&c.latency, 0.99))),
                format!(
                    "{} / {} / {}",
                    us(pct(&c.pauses, 0.5)),
                    us(pct(&c.pauses, 0.99)),
                    us(c.pauses.last().copied().unwrap_or_default())
                ),
            )
        };
        println!(
            "| {} | {:.0}k | {ratio} | {:?} | {} ({:.1}) | {lat} | {pause} |",
            label(*interval),
            median_f(&mut rates[i].clone()) / 1e3,
            rates[i].iter().map(|r| (r / 1e3).round()).collect::<Vec<_>>(),
            c.latency.len(),
            c.latency.len() as f64 / (a.secs * rates[i].len() as f64),
        );
    }
    println!();
}

/// Section 4.
fn print_recovery(a: &Args, recoveries: &[Vec<Recovery>]) {
    println!(
        "| recovery after {} writes and a crash, median of {} | commits | recover() wall | select | restore | of which replay | replayed records | discarded records |",
        a.writes,
        a.recovery_rounds.min(a.rounds)
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (interval, rs) in a.intervals.iter().zip(recoveries) {
        let med = |f: &dyn Fn(&Recovery) -> f64| median_f(&mut rs.iter().map(f).collect::<Vec<_>>());
        println!(
            "| commits {} | {:.0} | {:.0} ms | {:.1} ms | {:.0} ms | {:.0} ms | {:.0} | {:.0} |",
            label(*interval),
            med(&|r| r.commits as f64),
            med(&|r| r.wall.as_secs_f64() * 1e3),
            med(&|r| r.select.as_secs_f64() * 1e3),
            med(&|r| r.restore.as_secs_f64() * 1e3),
            med(&|r| r.replay.as_secs_f64() * 1e3),
            med(&|r| r.replayed as f64),
            med(&|r| r.discarded as f64),
        );
    }
    let odd: Vec<u64> = recoveries
        .iter()
        .flatten()
        .map(|r| r.unaccounted)
        .filter(|&n| n > 0)
        .collect();
    if odd.is_empty() {
        println!("(every recovery replayed or discarded every record logged)");
    } else {
        println!("(**{} recoveries missed records**: {odd:?} records)", odd.len());
    }
}

/// The 1-minute load average (Linux), to tell a quiet run from one the
/// machine's other tenants shared.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn main() {
    let a = args();
    let setup = a.setup;
    let parent = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).unwrap();
    let root = tempfile::Builder::new()
        .prefix("epoch-bench-")
        .tempdir_in(&parent)
        .unwrap();
    let mut run = 0;
    let mut fresh = || {
        run += 1;
        root.path().join(format!("run-{run}"))
    };
    let on = |section: &str| a.sections.iter().any(|s| s == section);
    println!(
        "epoch_bench: {} shards, {KEY}-byte keys, {VALUE}-byte values, changelog ring {}, {} rounds, {} s ingest runs; under {}\n",
        setup.shards,
        setup
            .ring_bytes
            .map_or("8192 KiB (default)".to_owned(), |b| format!("{} KiB", b >> 10)),
        a.rounds,
        a.secs,
        root.path().display()
    );
    let load_before = load();

    let n = a.intervals.len();
    let mut latency_rows = [
        (
            "idle (workers poll in a loop)",
            Commits::default(),
            Syncs::default(),
            Vec::new(),
        ),
        (
            "full ingest (a writer per shard)",
            Commits::default(),
            Syncs::default(),
            Vec::new(),
        ),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut commits: Vec<Commits> = (0..n).map(|_| Commits::default()).collect();
    let mut recoveries: Vec<Vec<Recovery>> = (0..n).map(|_| Vec::new()).collect();
    for round in 0..a.rounds {
        if on("latency") {
            for (k, (_, c, sync, rate)) in latency_rows.iter_mut().enumerate() {
                rate.push(latency(setup, &fresh(), k == 1, a.secs, c, sync));
            }
        }
        // Rotate the order so that no configuration always runs first.
        for i in (0..n).map(|k| (k + round) % n).filter(|_| on("ingest")) {
            let mut c = Commits::default();
            let r = ingest(setup, &fresh(), a.intervals[i], a.secs, &mut c);
            eprintln!(
                "  round {round}: ingest, commits {:<13} {:>5.0}k writes/s, {} commits",
                label(a.intervals[i]),
                r / 1e3,
                c.latency.len()
            );
            rates[i].push(r);
            commits[i].extend(c);
        }
        for i in (0..n)
            .map(|k| (k + round) % n)
            .filter(|_| on("recovery") && round < a.recovery_rounds)
        {
            let r = recovery(setup, &fresh(), a.intervals[i], a.writes);
            eprintln!(
                "  round {round}: recovery, commits {:<13} load {:.2} s, {} commits, recover {:.0} ms, {} replayed, {} discarded",
                label(a.intervals[i]),
                r.load.as_secs_f64(),
                r.commits,
                r.wall.as_secs_f64() * 1e3,
                r.replayed,
                r.discarded
            );
            recoveries[i].push(r);
        }
    }
    if on("latency") {
        print_latency(&mut latency_rows);
    }
    if on("ingest") {
        print_ingest(&a, &rates, &mut commits);
    }
    if on("recovery") {
        print_recovery(&a, &recoveries);
    }
    println!("\n1-minute load average: {load_before} before, {} after", load());
}
