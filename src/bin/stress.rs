//! `statespine-stress DIR`: the child of the kill -9 loop (`tests/kill9.rs`).
//!
//! Recovers the store at DIR (2 shards, small memtables and segments so that
//! merges, WAL rotation, checkpoints, retention and truncation all happen
//! within a second), then writes unique keys `s<shard>-<n>` with values
//! derived from them, forever, reporting on stdout:
//! - `START <shard> <n>`: the writes it recovered (and continues after);
//! - `RECOVERED <microseconds>`: recovery until the first read;
//! - `ACK <shard> <n>`: writes `0..n` of the shard are durable (a WAL sync
//!   or a checkpoint returned);
//! - `CKPT <epoch>`: a checkpoint committed.
//!
//! The parent kills it with SIGKILL at random; `STATESPINE_KILL_POINT` makes
//! it abort itself inside the library's named kill points too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use statespine::run::RunMode;
use statespine::spine::SpineOptions;
use statespine::store::{CheckpointConfig, CheckpointRequest, Options, RecoveryPoint, Shard};

/// The options the stress child and its verifier both open the store with.
fn options(dir: &str) -> Options {
    Options::new(dir)
        .recovery_point(RecoveryPoint::Latest)
        .shards(2)
        .spine_options(
            SpineOptions::new(RunMode::KeyValue)
                .memtable_size_bytes(32 << 10)
                .memory_budget_bytes(128 << 10)
                .fan_in(3),
        )
        .wal_segment_size(128 << 10)
        .checkpoint(CheckpointConfig::new(dir).with_max_retained(2))
}

fn key(shard: u32, n: u64) -> String {
    format!("s{shard}-{n:010}")
}

fn value(shard: u32, n: u64) -> Vec<u8> {
    let mut v = format!("v{shard}:{n}:").into_bytes();
    v.resize(24 + (n % 50) as usize, b'0' + (n % 10) as u8);
    v
}

/// How many of the shard's writes are present (they must be a prefix).
fn present(shard: &mut Shard) -> u64 {
    let Some(id) = shard.kv_spine("data") else {
        return 0;
    };
    let prefix = format!("s{}-", shard.id());
    shard.prefix(id, prefix.as_bytes()).unwrap().count() as u64
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: statespine-stress DIR");
    let verify = std::env::args().nth(2).as_deref() == Some("--verify");
    let t = Instant::now();
    let mut state = options(&dir).recover().expect("recovery");
    let mut shards = state.store.take_shards();
    // Recovery ends at the first read.
    if let Some(id) = shards[0].kv_spine("data") {
        let _ = shards[0].get(id, key(0, 0).as_bytes()).expect("first read");
    }
    let recovered = t.elapsed();
    let mut next = Vec::new();
    let mut ids = Vec::new();
    for s in &mut shards {
        let id = s.create_kv("data").expect("spine");
        let n = present(s);
        // Every present write has its own value, in order.
        if verify {
            for i in 0..n {
                let got = s.get(id, key(s.id(), i).as_bytes()).unwrap();
                assert_eq!(got, Some(&value(s.id(), i)[..]), "shard {} write {i}", s.id());
            }
        }
        next.push(n);
        ids.push(id);
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    for (s, n) in next.iter().enumerate() {
        writeln!(out, "START {s} {n}").unwrap();
    }
    writeln!(out, "RECOVERED {}", recovered.as_micros()).unwrap();
    out.flush().unwrap();
    if verify {
        return;
    }
    let mut epoch = state.epoch;
    let mut round = 0u64;
    loop {
        for (s, shard) in shards.iter_mut().enumerate() {
            for _ in 0..16 {
                let n = next[s];
                shard
                    .put(ids[s], key(s as u32, n).as_bytes(), &value(s as u32, n))
                    .unwrap();
                next[s] += 1;
            }
            shard.poll().unwrap();
        }
        round += 1;
        if round.is_multiple_of(4) {
            for (s, shard) in shards.iter().enumerate() {
                if shard
                    .wait_durable(shard.last_lsn(), Duration::from_secs(10))
                    .is_ok()
                {
                    writeln!(out, "ACK {s} {}", next[s]).unwrap();
                }
            }
            out.flush().unwrap();
        }
        if round.is_multiple_of(16) {
            epoch += 1;
            let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
            state
                .store
                .checkpoint_inline(&mut refs, epoch, CheckpointRequest::default())
                .unwrap();
            writeln!(out, "CKPT {epoch}").unwrap();
            for (s, n) in next.iter().enumerate() {
                writeln!(out, "ACK {s} {n}").unwrap();
            }
            out.flush().unwrap();
        }
    }
}
