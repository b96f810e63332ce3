//! One operation, timed in-process, for A/B comparisons of two builds:
//! `cargo run --release --example ops_bench -- <get|put|merge|store_put|checkpoint> [n]`.
//! Prints `<op> <n> <ns per op>`; run it alternately against the other
//! build and compare medians (`docs/benchmarks.md`, "A/B of a refactor").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../benches/common/keys.rs"]
mod keys;

use keys::{key, mix};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use statespine::io::{Fs, StdFs};
use statespine::run::RunMode;
use statespine::spine::{Spine, SpineOptions};
use statespine::store::{CheckpointRequest, Options};

const VALUE: [u8; 100] = [0x5a; 100];

fn spine(dir: &std::path::Path) -> Spine {
    let fs: Arc<dyn Fs> = Arc::new(StdFs::new());
    Spine::create(fs, dir, SpineOptions::new(RunMode::KeyValue)).unwrap()
}

/// Puts `n` keys with a merge step every 64 (the owner's loop).
fn fill(s: &mut Spine, n: u64) {
    for i in 0..n {
        s.put(&key(i), &VALUE).unwrap();
        if i % 64 == 0 {
            s.merge_step(s.options().merge_budget()).unwrap();
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let op = args.next().unwrap_or_else(|| "get".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (ops, t) = match op.as_str() {
        "put" => {
            let mut s = spine(&dir);
            let t = Instant::now();
            fill(&mut s, n);
            (n, t.elapsed())
        }
        "get" => {
            let mut s = spine(&dir);
            fill(&mut s, n);
            s.settle().unwrap();
            let t = Instant::now();
            let mut x = 0u64;
            for _ in 0..n * 5 {
                x = mix(x);
                black_box(s.get(&key(x % n)).unwrap());
            }
            (n * 5, t.elapsed())
        }
        "merge" => {
            // The put workload, timing only the merge steps (their share of
            // the owner's loop), until the spine is settled.
            let mut s = spine(&dir);
            let budget = s.options().merge_budget();
            let (mut steps, mut spent) = (0u64, std::time::Duration::ZERO);
            let mut step = |s: &mut Spine| {
                let t = Instant::now();
                let st = s.merge_step(budget).unwrap();
                spent += t.elapsed();
                steps += 1;
                st.is_idle()
            };
            for i in 0..n {
                s.put(&key(i), &VALUE).unwrap();
                if i % 64 == 0 {
                    step(&mut s);
                }
            }
            while !step(&mut s) {}
            (steps, spent)
        }
        "store_put" | "checkpoint" => store(&op, &dir, n),
        other => panic!("unknown op {other}"),
    };
    println!("{op} {ops} {:.1}", t.as_nanos() as f64 / ops as f64);
}

/// Through the store: puts (changelog, WAL), then checkpoints of a state
/// that changes a little between them.
fn store(op: &str, dir: &std::path::Path, n: u64) -> (u64, std::time::Duration) {
    let mut store = Options::new(dir).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let kv = shard.create_kv("kv").unwrap();
    let t = Instant::now();
    for i in 0..n {
        shard.put(kv, &key(i), &VALUE).unwrap();
        if i % 64 == 0 {
            shard.poll().unwrap();
        }
    }
    if op == "store_put" {
        return (n, t.elapsed());
    }
    let t = Instant::now();
    let rounds = 20;
    for e in 1..=rounds {
        for i in 0..1000 {
            shard.put(kv, &key(e * 1000 + i), &VALUE).unwrap();
        }
        store
            .checkpoint_inline(&mut [&mut shard], e, CheckpointRequest::default())
            .unwrap();
    }
    (rounds, t.elapsed())
}
