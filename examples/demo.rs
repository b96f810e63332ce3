//! The demo, the main job end to end: a synthetic stream into a 2-shard store
//! (one worker thread per shard, merging cooperatively from its own loop),
//! a checkpoint every second, then a simulated crash (everything dropped,
//! nothing closed), recovery, and a check that every write acknowledged as
//! durable is there with its value. Prints rates, checkpoint durations,
//! shard pauses and recovery time.
//!
//! `cargo run --release --example demo [seconds] [dir]` (default 5 seconds,
//! a temporary directory). 16-byte pseudo-random keys, 100-byte values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/common/keys.rs"]
mod keys;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keys::key;
use statespine::store::{CheckpointRequest, Lsn, Options, Shard};

const SHARDS: u32 = 2;

/// The `i`-th write of shard `s`: its key and value.
fn entry(s: u32, i: u64) -> ([u8; 16], [u8; 100]) {
    let k = key((u64::from(s) << 48) | i);
    let mut v = [b'v'; 100];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v[8] = s as u8;
    (k, v)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One shard's owner loop: writes until told to stop, polls every 64 writes;
/// returns the shard and how many writes were acknowledged durable.
fn worker(mut shard: Shard, stop: Arc<AtomicBool>, offset: Arc<AtomicU64>) -> (Shard, u64) {
    let id = shard.create_kv("events").unwrap();
    // Each write returns its log position; the source offset it completes
    // is acknowledged once the WAL is durable up to that position.
    let mut pending: VecDeque<(u64, Lsn)> = VecDeque::new();
    let mut acked = 0u64;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (k, v) = entry(shard.id(), i);
        let lsn = shard.put(id, &k, &v).unwrap();
        i += 1;
        if i.is_multiple_of(64) {
            shard.poll().unwrap();
            offset.store(i, Ordering::Relaxed);
            pending.push_back((i, lsn));
            let durable = shard.durable_lsn();
            while pending.front().is_some_and(|&(_, l)| l <= durable) {
                acked = pending.pop_front().map_or(acked, |(n, _)| n);
            }
        }
    }
    // What the WAL has made durable at the moment of the "crash".
    let durable = shard.durable_lsn();
    while pending.front().is_some_and(|&(_, l)| l <= durable) {
        acked = pending.pop_front().map_or(acked, |(n, _)| n);
    }
    (shard, acked)
}

fn main() -> statespine::Result<()> {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args
        .next()
        .map_or(5, |s| s.parse().expect("seconds must be a number"));
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("store"));
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "statespine demo: {SHARDS} shards at {}, {secs} s of writes, a checkpoint every second",
        dir.display()
    );

    let mut store = Options::new(&dir)
        .shards(SHARDS)
        .fingerprint(b"demo-v1".to_vec())
        .open()?;
    let stop = Arc::new(AtomicBool::new(false));
    let offsets: Vec<Arc<AtomicU64>> = (0..SHARDS).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let workers: Vec<_> = store
        .take_shards()
        .into_iter()
        .zip(&offsets)
        .map(|(shard, off)| {
            let (stop, off) = (Arc::clone(&stop), Arc::clone(off));
            std::thread::spawn(move || worker(shard, stop, off))
        })
        .collect();

    let started = Instant::now();
    let mut checkpoints = Vec::new();
    let mut pauses = Vec::new();
    for epoch in 1..=secs {
        std::thread::sleep(Duration::from_secs(1));
        let mut req = CheckpointRequest::default();
        for (s, off) in offsets.iter().enumerate() {
            req.source_offsets
                .insert(format!("synthetic/{s}"), off.load(Ordering::Relaxed));
        }
        let ck = store.checkpoint(epoch, req)?;
        pauses.extend(ck.shard_pauses.iter().copied());
        checkpoints.push(ck);
    }
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(Shard, u64)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let elapsed = started.elapsed();
    let acked: Vec<u64> = results.iter().map(|r| r.1).collect();
    let written: u64 = offsets.iter().map(|o| o.load(Ordering::Relaxed)).sum();
    // The crash: every handle dropped, nothing closed.
    drop(results);
    drop(store);

    let t = Instant::now();
    let mut state = Options::new(&dir)
        .shards(SHARDS)
        .fingerprint(b"demo-v1".to_vec())
        .recover()?;
    let recovery = t.elapsed();
    let shards = state.store.take_shards();
    let mut checked = 0u64;
    for (s, shard) in shards.iter().enumerate() {
        let id = shard.kv_spine("events").expect("the spine survives");
        for i in 0..acked[s] {
            let (k, v) = entry(s as u32, i);
            let got = shard.get(id, &k)?;
            assert_eq!(
                got,
                Some(&v[..]),
                "shard {s} write {i} was acknowledged but is not there"
            );
            checked += 1;
        }
    }
    let verify = t.elapsed() - recovery;

    let mut durations: Vec<Duration> = checkpoints.iter().skip(1).map(|c| c.total_time).collect();
    durations.sort();
    pauses.sort();
    let p99 = pauses[((pauses.len() - 1) as f64 * 0.99).round() as usize];
    println!(
        "ingest:      {written} writes in {:.1} s = {:.2} M writes/s (2 shards, WAL group commit every 1 ms)",
        elapsed.as_secs_f64(),
        written as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!(
        "checkpoints: {} taken; first {:.1} ms, then median {:.1} ms, max {:.1} ms; shard pause p99 {:.0} µs",
        checkpoints.len(),
        ms(checkpoints[0].total_time),
        ms(durations.get(durations.len() / 2).copied().unwrap_or_default()),
        ms(durations.last().copied().unwrap_or_default()),
        p99.as_secs_f64() * 1e6
    );
    println!(
        "recovery:    {:.1} ms to a readable store (checkpoint of epoch {}, {} WAL records replayed in {:.1} ms)",
        ms(recovery),
        state.epoch,
        state.replayed_records,
        ms(state.replay_time)
    );
    println!(
        "verified:    all {checked} writes acknowledged durable before the crash read back intact ({:.2} M reads/s); source offsets at the checkpoint: {:?}",
        checked as f64 / verify.as_secs_f64() / 1e6,
        state.source_offsets
    );
    Ok(())
}
