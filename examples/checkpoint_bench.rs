//! Checkpoint and recovery figures of a 2-shard store on the real disk
//! (`docs/benchmarks.md`, "Checkpoints and recovery"):
//!
//! - per state size: the full checkpoint, then incremental ones after 1% of
//!   the keys changed each (duration, bytes written, shard pauses), against
//!   the physical floor measured in the same run (new bytes / sequential
//!   write bandwidth + four bare `fdatasync` latencies);
//! - recovery: time to the first read, of which WAL replay, and replay rate;
//! - ingest with a checkpoint every second against none, alternating runs.
//!
//! `cargo run --release --example checkpoint_bench [size-MB ...]` (default
//! `100 1000`). Data goes to `target/checkpoint-bench`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use statespine::io::{Fs, StdFs};
use statespine::store::{CheckpointRequest, Options, Shard};

const SHARDS: u32 = 2;
const KEY: usize = 16;
const VALUE: usize = 100;
const INCREMENTS: usize = 5;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/checkpoint-bench")
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn key(i: u64) -> [u8; KEY] {
    // Spread the keys: a multiplicative hash, big-endian, so writes are random.
    let mut k = [0u8; KEY];
    k[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn value(i: u64, round: u64) -> [u8; VALUE] {
    let mut v = [(i ^ round) as u8; VALUE];
    v[..8].copy_from_slice(&round.to_le_bytes());
    v
}

/// The machine's floor, measured now: sequential write bandwidth (256 MiB in
/// 1 MiB appends, then one fdatasync) and the median 4 KiB append+fdatasync.
fn floor(dir: &Path) -> (f64, Duration) {
    let fs = StdFs::new();
    fs.create_dir_all(dir).unwrap();
    let path = dir.join("bandwidth");
    let _ = fs.remove_file(&path);
    let buf = vec![7u8; 1 << 20];
    let t = Instant::now();
    let mut f = fs.create(&path).unwrap();
    for _ in 0..256 {
        f.append(&buf).unwrap();
    }
    f.sync_data().unwrap();
    let bw = 256.0 * 1048576.0 / t.elapsed().as_secs_f64();
    drop(f);
    fs.remove_file(&path).unwrap();
    let path = dir.join("fsync");
    let _ = fs.remove_file(&path);
    let mut f = fs.create(&path).unwrap();
    let mut lat: Vec<Duration> = (0..21)
        .map(|_| {
            let t = Instant::now();
            f.append(&buf[..4096]).unwrap();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    fs.remove_file(&path).unwrap();
    (bw, median(&mut lat))
}

enum Job {
    /// Write keys `[0, n)` of this shard.
    Load(u64),
    /// Rewrite every `1/stride`-th key of `[0, n)` with a new value.
    Update(u64, u64, u64),
    /// Write random keys until told to stop; count them.
    Stream(Arc<AtomicBool>, Arc<AtomicU64>),
    Flush,
}

/// A worker thread owning one shard: runs jobs, polls in between.
struct Worker {
    jobs: mpsc::Sender<Job>,
    done: mpsc::Receiver<()>,
    thread: JoinHandle<Shard>,
}

impl Worker {
    fn spawn(mut shard: Shard) -> Worker {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let id = shard.create_kv("state").unwrap();
            loop {
                match rx.try_recv() {
                    Ok(job) => {
                        run_job(&mut shard, id, job);
                        done_tx.send(()).unwrap();
                    }
                    Err(mpsc::TryRecvError::Empty) => {
                        if shard.poll().unwrap().is_none() {
                            std::thread::sleep(Duration::from_micros(20));
                        }
                    }
                    Err(mpsc::TryRecvError::Disconnected) => return shard,
                }
            }
        });
        Worker { jobs, done, thread }
    }

    fn run(&self, job: Job) {
        self.jobs.send(job).unwrap();
    }

    fn wait(&self) {
        self.done.recv().unwrap();
    }
}

fn run_job(shard: &mut Shard, id: statespine::store::KvSpine, job: Job) {
    let base = u64::from(shard.id()) << 40;
    match job {
        Job::Load(n) => {
            for i in 0..n {
                shard.put(id, &key(base + i), &value(i, 0)).unwrap();
                if i % 64 == 0 {
                    shard.poll().unwrap();
                }
            }
        }
        Job::Update(n, stride, round) => {
            let mut i = round % stride;
            let mut k = 0u64;
            while i < n {
                shard.put(id, &key(base + i), &value(i, round)).unwrap();
                i += stride;
                k += 1;
                if k.is_multiple_of(64) {
                    shard.poll().unwrap();
                }
            }
        }
        Job::Stream(stop, count) => {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = i.wrapping_mul(0x2545_F491_4F6C_DD1D) % 4_000_000;
                shard.put(id, &key(base + k), &value(k, i)).unwrap();
                i += 1;
                if i.is_multiple_of(64) {
                    shard.poll().unwrap();
                }
            }
            count.fetch_add(i, Ordering::Relaxed);
        }
        Job::Flush => {
            shard.flush_all().unwrap();
            while shard.spine(id).unwrap().levels().iter().any(|l| l.merging > 0) {
                shard.poll().unwrap();
            }
        }
    }
    shard
        .wait_durable(shard.last_lsn(), Duration::from_secs(60))
        .unwrap();
}

fn all(workers: &[Worker], job: impl Fn() -> Job) {
    for w in workers {
        w.run(job());
    }
    for w in workers {
        w.wait();
    }
}

fn open(dir: &Path) -> (statespine::store::Store, Vec<Worker>) {
    let mut store = Options::new(dir).shards(SHARDS).open().unwrap();
    let workers = store.take_shards().into_iter().map(Worker::spawn).collect();
    (store, workers)
}

fn stop(workers: Vec<Worker>) -> Vec<Shard> {
    workers
        .into_iter()
        .map(|w| {
            drop(w.jobs);
            w.thread.join().unwrap()
        })
        .collect()
}

fn size_case(mb: u64, bw: f64, fsync: Duration) {
    let dir = root().join(format!("state-{mb}"));
    let _ = std::fs::remove_dir_all(&dir);
    let per_shard = mb * 1_000_000 / (KEY + VALUE) as u64 / u64::from(SHARDS);
    let (mut store, workers) = open(&dir);
    let t = Instant::now();
    all(&workers, || Job::Load(per_shard));
    all(&workers, || Job::Flush);
    let load = t.elapsed();
    // The first cut only sees the freshly written runs (they might be merged
    // away soon); the second syncs and links them: that is the full one.
    store.checkpoint(1, CheckpointRequest::default()).unwrap();
    let full = store.checkpoint(2, CheckpointRequest::default()).unwrap();
    let mut times = Vec::new();
    let mut pauses: Vec<Duration> = full.shard_pauses.clone();
    let mut new_bytes = Vec::new();
    let (mut cut, mut commit, mut wal) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=INCREMENTS as u64 {
        all(&workers, || Job::Update(per_shard, 100, round));
        let ck = store.checkpoint(round + 2, CheckpointRequest::default()).unwrap();
        eprintln!(
            "  increment {round}: {} B new, {} runs synced",
            ck.commit.new_bytes + ck.commit.metadata_bytes,
            ck.commit.synced_runs
        );
        times.push(ck.total_time);
        cut.push(ck.cut_time);
        commit.push(ck.commit_time);
        wal.push(ck.wal_sync_time);
        pauses.extend(ck.shard_pauses.iter().copied());
        new_bytes.push(ck.commit.new_bytes + ck.commit.metadata_bytes);
    }
    let changed = per_shard * u64::from(SHARDS) / 100 * (KEY + VALUE) as u64;
    new_bytes.sort();
    let written = new_bytes[new_bytes.len() / 2];
    let floor = Duration::from_secs_f64(written as f64 / bw) + 4 * fsync;
    let inc = median(&mut times);
    pauses.sort();
    let shards = stop(workers);
    drop(shards);
    drop(store);
    // Recovery: to the first read.
    let t = Instant::now();
    let mut state = Options::new(&dir).shards(SHARDS).recover().unwrap();
    let shards = state.store.take_shards();
    let id = shards[0].kv_spine("state").unwrap();
    assert!(shards[0].get(id, &key(5)).unwrap().is_some());
    let first_read = t.elapsed();
    let rate = state.replayed_bytes as f64 / state.replay_time.as_secs_f64().max(1e-9) / 1e6;
    println!(
        "| {mb} MB | {:.1} s | {:.0} ms | {:.1} ms | {} B (changed {:.0} KB, {:.4}x) | {:.1} ms ({:.2}x) | {:.0} µs / {:.0} µs | {:.1} ms | {:.1} ms ({} records, {:.0} MB/s) |",
        load.as_secs_f64(),
        full.total_time.as_secs_f64() * 1e3,
        inc.as_secs_f64() * 1e3,
        written,
        changed as f64 / 1e3,
        written as f64 / changed as f64,
        floor.as_secs_f64() * 1e3,
        inc.as_secs_f64() / floor.as_secs_f64(),
        pct(&pauses, 0.5).as_secs_f64() * 1e6,
        pct(&pauses, 0.99).as_secs_f64() * 1e6,
        first_read.as_secs_f64() * 1e3,
        state.replay_time.as_secs_f64() * 1e3,
        state.replayed_records,
        rate,
    );
    println!(
        "|   | (incremental: cut {:.2} ms, commit {:.2} ms, of which waiting for the WAL {:.2} ms) |",
        median(&mut cut).as_secs_f64() * 1e3,
        median(&mut commit).as_secs_f64() * 1e3,
        median(&mut wal).as_secs_f64() * 1e3
    );
    drop(shards);
    drop(state);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Records written by 2 shards in `secs`, with a checkpoint every second or none.
fn ingest(secs: u64, checkpoints: bool) -> (f64, Vec<Duration>) {
    let dir = root().join("ingest");
    let _ = std::fs::remove_dir_all(&dir);
    let (mut store, workers) = open(&dir);
    let stop_flag = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    for w in &workers {
        w.run(Job::Stream(Arc::clone(&stop_flag), Arc::clone(&count)));
    }
    let mut pauses = Vec::new();
    let mut epoch = 0;
    while t.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1).min(Duration::from_secs(secs).saturating_sub(t.elapsed())));
        if checkpoints && t.elapsed() < Duration::from_secs(secs) {
            epoch += 1;
            let ck = store.checkpoint(epoch, CheckpointRequest::default()).unwrap();
            pauses.extend(ck.shard_pauses);
        }
    }
    stop_flag.store(true, Ordering::Relaxed);
    let elapsed = t.elapsed();
    for w in &workers {
        w.wait();
    }
    let rate = count.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64();
    drop(stop(workers));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    (rate, pauses)
}

fn main() {
    let sizes: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![100, 1000] } else { sizes };
    let (bw, fsync) = floor(&root());
    println!(
        "floor: sequential write {:.0} MB/s, 4 KiB append+fdatasync median {:.2} ms\n",
        bw / 1e6,
        fsync.as_secs_f64() * 1e3
    );
    println!(
        "| state | load | full checkpoint | incremental (median of {INCREMENTS}, 1% changed) | written by it | floor (ratio) | shard pause p50 / p99 | recovery to first read | of which WAL replay |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for mb in sizes {
        size_case(mb, bw, fsync);
    }
    let mut with = Vec::new();
    let mut without = Vec::new();
    let mut pauses = Vec::new();
    for _ in 0..5 {
        without.push(ingest(6, false).0);
        let (r, p) = ingest(6, true);
        with.push(r);
        pauses.extend(p);
    }
    with.sort_by(f64::total_cmp);
    without.sort_by(f64::total_cmp);
    pauses.sort();
    let (w, wo) = (with[2], without[2]);
    println!(
        "\ningest, 2 shards, 6 s runs alternating (median of 5): no checkpoints {:.0}k writes/s, a checkpoint every second {:.0}k writes/s ({:+.1}%); shard pause p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs over {} cuts",
        wo / 1e3,
        w / 1e3,
        (w / wo - 1.0) * 100.0,
        pct(&pauses, 0.5).as_secs_f64() * 1e6,
        pct(&pauses, 0.99).as_secs_f64() * 1e6,
        pauses.last().copied().unwrap_or_default().as_secs_f64() * 1e6,
        pauses.len()
    );
    println!(
        "  runs without: {:?}k/s; with: {:?}k/s",
        without.iter().map(|r| (r / 1e3).round()).collect::<Vec<_>>(),
        with.iter().map(|r| (r / 1e3).round()).collect::<Vec<_>>()
    );
}
