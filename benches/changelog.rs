//! Criterion: the changelog ring's push (a consumer thread draining
//! meanwhile) against a `crossbeam_queue::ArrayQueue` of owned records as the
//! baseline, a push of a record too large for the ring (the spill path), and
//! `WriteAheadLog::append` per record (no sync).
//! `cargo bench --bench changelog`. Percentiles, bandwidth against raw writes
//! and group commit: `cargo run --release --example wal_bench`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use statespine::changelog::{ChangeRecord, StateChangelogBuffer, StateOp};
use statespine::io::StdFs;
use statespine::wal::{WalOptions, WriteAheadLog, encode_change};

const KEY: [u8; 16] = [7; 16];
const VALUE: [u8; 100] = [9; 100];

fn record(value: &[u8]) -> ChangeRecord<'_> {
    ChangeRecord {
        spine: 1,
        epoch: 2,
        op: StateOp::Put,
        key: &KEY,
        value,
    }
}

/// Pushes of `rec` into a 1 MiB ring while a consumer thread drains it.
fn bench_two_threads(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, rec: &ChangeRecord<'_>) {
    let (mut p, mut cons) = StateChangelogBuffer::with_capacity(1 << 20, 1 << 16);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let drain = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            while cons.pop().is_some() {}
            std::hint::spin_loop();
        }
    });
    g.bench_function(name, |b| b.iter(|| p.push(black_box(rec)).unwrap()));
    stop.store(true, Ordering::Relaxed);
    drain.join().unwrap();
}

fn push(c: &mut Criterion) {
    let mut g = c.benchmark_group("push");
    g.throughput(Throughput::Elements(1));
    let rec = record(&VALUE);
    bench_two_threads(&mut g, "ring (16 B key, 100 B value)", &rec);

    // The same record pushed and popped on one thread, 64 at a time: the
    // instructions of both paths without the cross-core traffic, which is
    // what the two-thread figure mostly measures (and steadier on a busy
    // machine).
    let (mut p, mut cons) = StateChangelogBuffer::with_capacity(1 << 20, 1 << 16);
    g.throughput(Throughput::Elements(64));
    g.bench_function("ring, one thread (64 pushes, 64 pops)", |b| {
        b.iter(|| {
            for _ in 0..64 {
                p.try_push(black_box(&rec)).unwrap();
            }
            for _ in 0..64 {
                black_box(cons.pop().unwrap());
            }
        })
    });
    g.throughput(Throughput::Elements(1));

    // Baseline: a bounded MPMC queue of owned records (one allocation each).
    let q = Arc::new(crossbeam_queue::ArrayQueue::<(u32, u64, Vec<u8>, Vec<u8>)>::new(
        1 << 16,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let (q2, flag) = (Arc::clone(&q), Arc::clone(&stop));
    let drain = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            while q2.pop().is_some() {}
            std::hint::spin_loop();
        }
    });
    g.bench_function("crossbeam ArrayQueue of owned records", |b| {
        b.iter(|| {
            let mut item = (1u32, 2u64, KEY.to_vec(), VALUE.to_vec());
            while let Err(back) = q.push(item) {
                item = back;
                std::hint::spin_loop();
            }
        })
    });
    stop.store(true, Ordering::Relaxed);
    drain.join().unwrap();
    g.finish();
}

/// A record too large for the ring: one allocation and copy, the side queue's
/// lock, and the consumer dropping the buffer it popped.
fn push_spilled(c: &mut Criterion) {
    let mut g = c.benchmark_group("push spilled");
    let value = vec![9u8; 1 << 20];
    g.throughput(Throughput::Bytes((KEY.len() + value.len()) as u64));
    bench_two_threads(&mut g, "ring of 1 MiB (16 B key, 1 MiB value)", &record(&value));
    g.finish();
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal");
    let tmp = tempfile::tempdir().unwrap();
    let mut wal =
        WriteAheadLog::open(Arc::new(StdFs::new()), tmp.path().join("wal"), WalOptions::new(0)).unwrap();
    let mut payload = Vec::new();
    encode_change(&mut payload, &record(&VALUE));
    g.throughput(Throughput::Bytes(payload.len() as u64 + 24));
    let mut n = 0u64;
    g.bench_function("append (no sync)", |b| {
        b.iter(|| {
            wal.append(2, black_box(&payload)).unwrap();
            n += 1;
            // Keep the log bounded: drop old segments as a checkpoint would.
            if n.is_multiple_of(1 << 20) {
                wal.sync().unwrap();
                let next = wal.next_lsn();
                wal.truncate_below(next).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, push, push_spilled, append);
criterion_main!(benches);
