//! Run-file benchmarks against the limit: a sorted `Vec` in memory.
//!
//! `cargo bench --bench run` — 1,000,000 entries of 16-byte random keys and
//! 100-byte values, on the real file system (warm page cache). Each run
//! operation is measured next to the same operation on a sorted
//! `Vec<([u8; 16], Vec<u8>)>`, so ratios come from one run on one machine.
//! Set `RUN_BENCH_ENTRIES` to change the size.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use statespine::io::{Fs, StdFs};
use statespine::run::{Run, RunMode, RunOptions, RunWriter};

const VALUE_BYTES: usize = 100;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic, dependency-free.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn key(&mut self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.next().to_le_bytes());
        k[8..].copy_from_slice(&self.next().to_le_bytes());
        k
    }
}

struct Data {
    entries: Vec<([u8; 16], Vec<u8>)>,
    present: Vec<[u8; 16]>,
    absent: Vec<[u8; 16]>,
}

fn data() -> Data {
    let n: usize = std::env::var("RUN_BENCH_ENTRIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut entries: Vec<([u8; 16], Vec<u8>)> = (0..n)
        .map(|i| {
            let k = rng.key();
            (k, vec![(i % 251) as u8; VALUE_BYTES])
        })
        .collect();
    entries.sort_unstable_by_key(|e| e.0);
    entries.dedup_by(|a, b| a.0 == b.0);
    let probes = 100_000;
    let present = (0..probes)
        .map(|_| entries[(rng.next() % entries.len() as u64) as usize].0)
        .collect();
    let absent = (0..probes).map(|_| rng.key()).collect();
    Data {
        entries,
        present,
        absent,
    }
}

fn write(fs: &Arc<dyn Fs>, path: &std::path::Path, entries: &[([u8; 16], Vec<u8>)]) {
    let mut w = RunWriter::create(fs.clone(), path, RunOptions::new(RunMode::KeyValue)).unwrap();
    for (k, v) in entries {
        w.put(k, v).unwrap();
    }
    w.finish().unwrap();
}

fn benches(c: &mut Criterion) {
    let d = data();
    let n = d.entries.len() as u64;
    let bytes = n * (16 + VALUE_BYTES as u64);
    let dir = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = Arc::new(StdFs::new());
    let path = dir.path().join("bench.run");

    let mut g = c.benchmark_group("build");
    g.sample_size(10).throughput(Throughput::Bytes(bytes));
    g.bench_function("run", |b| {
        b.iter_batched(
            || {
                let _ = std::fs::remove_file(&path);
            },
            |_| write(&fs, &path, &d.entries),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("vec", |b| {
        b.iter(|| {
            let v: Vec<([u8; 16], Vec<u8>)> = d.entries.iter().map(|(k, v)| (*k, v.clone())).collect();
            black_box(v)
        })
    });
    g.finish();

    let _ = std::fs::remove_file(&path);
    write(&fs, &path, &d.entries);
    let run = Run::open(&*fs, &path).unwrap();
    run.verify().unwrap(); // warm: every block validated and in the page cache

    for (name, probes) in [("get_present", &d.present), ("get_absent", &d.absent)] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(1));
        let mut i = 0;
        g.bench_function("run", |b| {
            b.iter(|| {
                i = (i + 1) % probes.len();
                black_box(run.get(&probes[i]).unwrap().map(|e| e.value.len()))
            })
        });
        let mut i = 0;
        g.bench_function("vec", |b| {
            b.iter(|| {
                i = (i + 1) % probes.len();
                let k = &probes[i];
                black_box(
                    d.entries
                        .binary_search_by(|e| e.0.as_slice().cmp(k))
                        .ok()
                        .map(|j| d.entries[j].1.len()),
                )
            })
        });
        g.finish();
    }

    let mut g = c.benchmark_group("scan");
    g.sample_size(10).throughput(Throughput::Elements(n));
    g.bench_function("run", |b| {
        b.iter(|| {
            let mut sum = 0usize;
            for e in run.iter() {
                let e = e.unwrap();
                sum += e.key[0] as usize + e.value[0] as usize + e.value.len();
            }
            black_box(sum)
        })
    });
    g.bench_function("vec", |b| {
        b.iter(|| {
            let mut sum = 0usize;
            for (k, v) in &d.entries {
                sum += k[0] as usize + v[0] as usize + v.len();
            }
            black_box(sum)
        })
    });
    // The same walk without reading value bytes: a lower bound no store that
    // returns values can reach; reported for context, not as the target.
    g.bench_function("vec_keys_only", |b| {
        b.iter(|| {
            let mut sum = 0usize;
            for (k, v) in &d.entries {
                sum += k[0] as usize + v.len();
            }
            black_box(sum)
        })
    });
    g.finish();
}

criterion_group!(run_benches, benches);
criterion_main!(run_benches);
