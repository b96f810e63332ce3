//! The durability-path table: changelog push latency, WAL append bandwidth
//! against the machine's raw sequential writes (same run), group commit with
//! 1, 8 and 64 producers, and end-to-end push → durable latency.
//!
//! `cargo run --release --example wal_bench` (files under `target/wal-bench`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use statespine::changelog::{ChangeRecord, StateChangelogBuffer, StateOp};
use statespine::io::{Fs, StdFs};
use statespine::wal::{ChangelogDrainer, SyncPolicy, WalOptions, WriteAheadLog, encode_change};

const KEY: [u8; 16] = [7; 16];
const VALUE: [u8; 100] = [9; 100];

fn rec(epoch: u64) -> ChangeRecord<'static> {
    ChangeRecord {
        spine: 1,
        epoch,
        op: StateOp::Put,
        key: &KEY,
        value: &VALUE,
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/wal-bench")
}

/// Each push timed alone (a consumer thread drains meanwhile), minus the
/// median cost of reading the clock twice.
fn push_latency() {
    let (mut p, mut c) = StateChangelogBuffer::with_capacity(1 << 20, 1 << 16);
    let consumer = std::thread::spawn(move || {
        let mut n = 0u64;
        while !c.is_finished() {
            while c.pop().is_some() {
                n += 1;
            }
            std::hint::spin_loop();
        }
        n
    });
    let mut clock: Vec<Duration> = (0..100_000)
        .map(|_| {
            let t = Instant::now();
            t.elapsed()
        })
        .collect();
    clock.sort_unstable();
    let overhead = pct(&clock, 0.5);
    let n = 1_000_000u64;
    let mut lat = Vec::with_capacity(n as usize);
    for i in 0..n {
        let r = rec(i);
        let t = Instant::now();
        p.push(&r).unwrap();
        lat.push(t.elapsed().saturating_sub(overhead));
    }
    let full = p.full_events();
    drop(p);
    assert_eq!(consumer.join().unwrap(), n);
    lat.sort_unstable();
    println!(
        "| changelog push (16 B key, 100 B value) | p50 {:?}, p99 {:?}, p99.9 {:?} | clock overhead {overhead:?} subtracted; {full} pushes found the ring full |",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 0.999)
    );
}

/// MB/s of `WriteAheadLog::append` (one sync at the end) against plain
/// sequential `write`s of as many bytes (one sync at the end), in 5 rounds
/// whose order alternates, so page-cache writeback from one side does not
/// always land on the other.
fn append_bandwidth() {
    let total: u64 = 256 << 20;
    let mut payload = Vec::new();
    encode_change(&mut payload, &rec(1));
    let frame = payload.len() as u64 + 24;
    let n = total / frame;
    let wal_run = |round: usize| {
        let dir = root().join(format!("append-{round}"));
        let _ = std::fs::remove_dir_all(&dir);
        let t = Instant::now();
        let mut wal = WriteAheadLog::open(Arc::new(StdFs::new()), &dir, WalOptions::new(0)).unwrap();
        for _ in 0..n {
            wal.append(1, &payload).unwrap();
        }
        wal.sync().unwrap();
        let mbs = (n * frame) as f64 / t.elapsed().as_secs_f64() / 1e6;
        drop(wal);
        let _ = std::fs::remove_dir_all(&dir);
        mbs
    };
    let raw_run = |round: usize| {
        let path = root().join(format!("raw-{round}"));
        let chunk = vec![0x5au8; 256 << 10];
        let t = Instant::now();
        let mut f = std::fs::File::create(&path).unwrap();
        let mut written = 0;
        while written < n * frame {
            f.write_all(&chunk).unwrap();
            written += chunk.len() as u64;
        }
        f.sync_data().unwrap();
        let mbs = written as f64 / t.elapsed().as_secs_f64() / 1e6;
        let _ = std::fs::remove_file(&path);
        mbs
    };
    let mut rounds = Vec::new();
    for round in 0..5 {
        let (wal_mbs, raw_mbs) = if round % 2 == 0 {
            let w = wal_run(round);
            (w, raw_run(round))
        } else {
            let r = raw_run(round);
            (wal_run(round), r)
        };
        println!("  (round {round}: WAL append {wal_mbs:.0} MB/s, raw sequential write {raw_mbs:.0} MB/s)");
        rounds.push((wal_mbs / raw_mbs, wal_mbs, raw_mbs));
    }
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ratio, wal_mbs, raw_mbs) = rounds[rounds.len() / 2];
    println!(
        "| WAL append, {} MiB of {}-byte records, one sync at the end | {wal_mbs:.0} MB/s = {:.0}% of raw sequential write ({raw_mbs:.0} MB/s, same round) | median ratio of 5 rounds; ratios {:.2}–{:.2} |",
        total >> 20,
        frame,
        100.0 * ratio,
        rounds[0].0,
        rounds[rounds.len() - 1].0
    );
}

/// `producers` hot threads, each its own shard (ring + log), one drainer
/// syncing every append: each producer pushes a batch and waits until it is
/// durable, for `secs`.
fn group_commit(producers: usize, batch: u64, secs: u64) {
    let dir = root().join(format!("group-{producers}"));
    let _ = std::fs::remove_dir_all(&dir);
    let fs: Arc<dyn Fs> = Arc::new(StdFs::new());
    let mut drainer = ChangelogDrainer::new(SyncPolicy::EveryAppend);
    let mut shards = Vec::new();
    for s in 0..producers {
        let (p, c) = StateChangelogBuffer::with_capacity(1 << 20, 1 << 14);
        let wal = WriteAheadLog::open(
            Arc::clone(&fs),
            dir.join(s.to_string()),
            WalOptions::new(s as u32),
        )
        .unwrap();
        shards.push((p, drainer.add_shard(c, wal)));
    }
    let handle = drainer.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = shards
        .into_iter()
        .map(|(mut p, mark)| {
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    for _ in 0..batch {
                        p.push(&rec(1)).unwrap();
                    }
                    mark.wait_durable(p.pushed(), Duration::from_secs(30)).unwrap();
                    lat.push(t.elapsed());
                }
                (p.pushed(), lat)
            })
        })
        .collect();
    let t = Instant::now();
    let mut records = 0;
    let mut lat = Vec::new();
    for th in threads {
        let (n, l) = th.join().unwrap();
        records += n;
        lat.extend(l);
    }
    let elapsed = t.elapsed();
    let drainer = handle.stop().unwrap();
    lat.sort_unstable();
    println!(
        "| group commit, {producers} producer(s), batches of {batch} | {:.0} k records/s; durable ack p50 {:?}, p99 {:?} | {} fdatasyncs for {records} records |",
        records as f64 / elapsed.as_secs_f64() / 1e3,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        drainer.stats().syncs
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One record at a time: push, then wait until the drainer reports it durable.
fn end_to_end(records: u64) {
    let dir = root().join("e2e");
    let _ = std::fs::remove_dir_all(&dir);
    let mut drainer = ChangelogDrainer::new(SyncPolicy::EveryAppend);
    let (mut p, c) = StateChangelogBuffer::with_capacity(1 << 20, 1 << 14);
    let wal = WriteAheadLog::open(Arc::new(StdFs::new()), &dir, WalOptions::new(0)).unwrap();
    let mark = drainer.add_shard(c, wal);
    let handle = drainer.spawn().unwrap();
    let mut lat = Vec::new();
    for i in 0..records {
        let t = Instant::now();
        p.push(&rec(i)).unwrap();
        mark.wait_durable(p.pushed(), Duration::from_secs(30)).unwrap();
        lat.push(t.elapsed());
    }
    drop(p);
    handle.stop().unwrap();
    lat.sort_unstable();
    println!(
        "| end to end: push → durable, one record at a time | p50 {:?}, p99 {:?} | {records} records, fdatasync per record |",
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    std::fs::create_dir_all(root()).unwrap();
    println!("wal_bench: 16-byte keys, 100-byte values; real file system under target/wal-bench\n");
    println!("| measure | result | detail |");
    println!("| --- | --- | --- |");
    push_latency();
    append_bandwidth();
    for producers in [1, 8, 64] {
        group_commit(producers, 100, 3);
    }
    end_to_end(2000);
}
