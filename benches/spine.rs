//! Criterion benchmarks of the spine against an in-memory `BTreeMap` baseline
//! measured in the same run. `cargo bench --bench spine`;
//! `SPINE_BENCH_ENTRIES` sets the state size (default 200,000).
//! The full 2,000,000-entry table with both merge modes is
//! `cargo run --release --example spine_bench`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/keys.rs"]
mod keys;

use keys::{key, mix};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use statespine::io::{Fs, StdFs};
use statespine::run::RunMode;
use statespine::spine::{Spine, SpineOptions};

const VALUE: [u8; 100] = [0x5a; 100];

fn entries() -> u64 {
    std::env::var("SPINE_BENCH_ENTRIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000)
}

fn spine(dir: &std::path::Path, opts: SpineOptions) -> Spine {
    let fs: Arc<dyn Fs> = Arc::new(StdFs::new());
    Spine::create(fs, dir, opts).unwrap()
}

fn filled(dir: &std::path::Path, n: u64) -> Spine {
    let mut s = spine(dir, SpineOptions::new(RunMode::KeyValue));
    for i in 0..n {
        s.put(&key(i), &VALUE).unwrap();
        if i % 64 == 0 {
            s.merge_step(s.options().merge_budget()).unwrap();
        }
    }
    s.settle().unwrap();
    s
}

fn reads(c: &mut Criterion) {
    let n = entries();
    let tmp = tempfile::tempdir().unwrap();
    let s = filled(tmp.path(), n);
    let map: BTreeMap<[u8; 16], Vec<u8>> = (0..n).map(|i| (key(i), VALUE.to_vec())).collect();
    let mut g = c.benchmark_group("get");
    let mut x = 0u64;
    g.bench_function("spine/present", |b| {
        b.iter(|| {
            x = mix(x);
            black_box(s.get(&key(x % n)).unwrap().unwrap());
        })
    });
    g.bench_function("btreemap/present", |b| {
        b.iter(|| {
            x = mix(x);
            black_box(map.get(&key(x % n)).unwrap());
        })
    });
    g.bench_function("spine/absent", |b| {
        b.iter(|| {
            x = mix(x);
            black_box(s.get(&key(n + x % n)).unwrap());
        })
    });
    g.bench_function("btreemap/absent", |b| {
        b.iter(|| {
            x = mix(x);
            black_box(map.get(&key(n + x % n)));
        })
    });
    g.finish();
}

/// Filling a fresh spine (and a fresh `BTreeMap`) with the state size; per
/// element figures are one put, with the owner's merge steps and seals.
fn writes(c: &mut Criterion) {
    let n = entries();
    let mut g = c.benchmark_group("fill");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Elements(n));
    g.bench_function("spine/random, merge_step every 64", |b| {
        b.iter(|| {
            let tmp = tempfile::tempdir().unwrap();
            let mut s = spine(tmp.path(), SpineOptions::new(RunMode::KeyValue));
            for i in 0..n {
                s.put(&key(i), &VALUE).unwrap();
                if i % 64 == 63 {
                    s.merge_step(s.options().merge_budget()).unwrap();
                }
            }
            black_box(s.batch_count())
        })
    });
    g.bench_function("btreemap/random", |b| {
        b.iter(|| {
            let mut map = BTreeMap::new();
            for i in 0..n {
                map.insert(key(i), VALUE.to_vec());
            }
            black_box(map.len())
        })
    });
    g.finish();
}

/// One `merge_step` at the default budget, on a spine with a backlog of
/// merges (written without stepping; backpressure disabled).
fn merge_step(c: &mut Criterion) {
    let n = entries();
    let mut g = c.benchmark_group("merge_step");
    g.bench_function("default budget", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let tmp = tempfile::tempdir().unwrap();
                let opts = SpineOptions::new(RunMode::KeyValue)
                    .max_runs(1 << 20)
                    .memory_budget_bytes(1 << 34);
                let mut s = spine(tmp.path(), opts);
                for i in 0..n {
                    s.put(&key(i), &VALUE).unwrap();
                }
                s.seal().unwrap();
                let budget = s.options().merge_budget();
                while done < iters {
                    let t = Instant::now();
                    let step = s.merge_step(budget).unwrap();
                    total += t.elapsed();
                    done += 1;
                    if step.is_idle() {
                        break;
                    }
                }
            }
            total
        })
    });
    g.finish();
}

fn scan(c: &mut Criterion) {
    let n = entries();
    let tmp = tempfile::tempdir().unwrap();
    let s = filled(tmp.path(), n);
    let map: BTreeMap<[u8; 16], Vec<u8>> = (0..n).map(|i| (key(i), VALUE.to_vec())).collect();
    let mut g = c.benchmark_group("scan");
    g.sample_size(20);
    g.bench_function("spine", |b| {
        b.iter(|| {
            let mut c = s.cursor().unwrap();
            let mut sum = 0u64;
            while let Some(e) = c.current() {
                sum += u64::from(e.key[0]) + u64::from(e.value[0]);
                c.advance().unwrap();
            }
            black_box(sum)
        })
    });
    g.bench_function("btreemap", |b| {
        b.iter(|| {
            black_box(
                map.iter()
                    .map(|(k, v)| u64::from(k[0]) + u64::from(v[0]))
                    .sum::<u64>(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, reads, writes, merge_step, scan);
criterion_main!(benches);
