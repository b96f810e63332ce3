//! A flush or merge output of any size lands where the spine's level
//! invariant stays true (levels never increase from older to newer), in
//! both merge modes and across crashes, and the store reopens with any
//! options. Regression: 40 puts of 1 MiB, one of 80 MiB and 6 more of 1 MiB
//! on default options made every later write on the shard fail with "spine
//! invariant broken", and the crash image would not recover.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use statespine::io::{Fs, MemFs};
use statespine::run::RunMode;
use statespine::spine::{MergeMode, Spine, SpineOptions};
use statespine::store::{Options, RecoveryPoint, Shard};

const WAIT: Duration = Duration::from_secs(60);

fn value(i: u64, len: usize) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; len];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// Writes `sizes` (one key each, in order) through shard 0 of a store on
/// `fs`, polling as an owner's loop does; returns the model.
fn write_sizes(shard: &mut Shard, sizes: &[usize]) -> BTreeMap<u64, usize> {
    let id = shard.create_kv("big").unwrap();
    let mut model = BTreeMap::new();
    for (i, &len) in sizes.iter().enumerate() {
        let i = i as u64;
        shard.put(id, &key(i), &value(i, len)).unwrap();
        model.insert(i, len);
        for _ in 0..4 {
            shard.poll().unwrap();
        }
    }
    shard.wait_durable(shard.last_lsn(), WAIT).unwrap();
    model
}

fn check(shard: &Shard, model: &BTreeMap<u64, usize>) {
    let id = shard.kv_spine("big").expect("the spine survives");
    for (&i, &len) in model {
        let got = shard.get(id, &key(i)).unwrap().expect("present");
        assert!(
            got == &value(i, len)[..],
            "key {i}: {} bytes, expected {len}",
            got.len()
        );
    }
}

/// The sequence, on default options, in `mode`; then a crash and
/// recovery with the same options and with others.
fn big_flush_sequence(mode: MergeMode) {
    let mut sizes = vec![1 << 20; 40];
    sizes.push(80 << 20);
    sizes.extend([1 << 20; 6]);
    let fs = Arc::new(MemFs::new());
    let spines = SpineOptions::new(RunMode::KeyValue).merge_mode(mode);
    let opts = |s: SpineOptions| {
        Options::new("/db")
            .recovery_point(RecoveryPoint::Latest)
            .fs(fs.clone())
            .spine_options(s)
    };
    let mut store = opts(spines).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let model = write_sizes(&mut shard, &sizes);
    // The shard keeps working: more writes, merges to the end.
    shard.settle().unwrap();
    check(&shard, &model);
    let crashed = Arc::new(fs.crash());
    drop((shard, store));
    for other in [
        spines,
        SpineOptions::new(RunMode::KeyValue)
            .memtable_size_bytes(256 << 10)
            .fan_in(2),
        SpineOptions::new(RunMode::KeyValue)
            .memtable_size_bytes(256 << 20)
            .fan_in(8),
    ] {
        let image = Arc::new(crashed.crash());
        let mut store = Options::new("/db")
            .recovery_point(RecoveryPoint::Latest)
            .fs(image)
            .spine_options(other)
            .open()
            .unwrap();
        let mut shard = store.take_shards().remove(0);
        check(&shard, &model);
        shard.settle().unwrap();
        check(&shard, &model);
    }
}

#[test]
fn a_huge_flush_newer_than_smaller_runs_keeps_the_shard_working_cooperative() {
    big_flush_sequence(MergeMode::Cooperative);
}

#[test]
fn a_huge_flush_newer_than_smaller_runs_keeps_the_shard_working_background() {
    big_flush_sequence(MergeMode::Background);
}

/// Sizes relative to a 16 KiB memtable: tiny, a fraction, and several
/// memtables in one value.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 1..200usize,
        3 => 1_000..8_000usize,
        1 => 20_000..300_000usize,
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, usize),
    Delete(u8),
    Step,
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (any::<u8>(), size()).prop_map(|(k, n)| Op::Put(k, n)),
        1 => any::<u8>().prop_map(Op::Delete),
        3 => Just(Op::Step),
        1 => Just(Op::Flush),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Random mixes of tiny and huge values against a model, both modes,
    /// small fan-ins: every write and step succeeds (the spine asserts its
    /// shape after every change), reads match, and the runs reopen under
    /// other options.
    #[test]
    fn random_mixes_of_tiny_and_huge_values(
        ops in prop::collection::vec(op(), 1..120),
        fan_in in 2..5usize,
        background in any::<bool>(),
    ) {
        let fs = Arc::new(MemFs::new());
        let mode = if background { MergeMode::Background } else { MergeMode::Cooperative };
        let opts = SpineOptions::new(RunMode::KeyValue)
            .memtable_size_bytes(16 << 10)
            .memory_budget_bytes(48 << 10)
            .fan_in(fan_in)
            .merge_mode(mode);
        let mut s = Spine::create(fs.clone(), "/s", opts).unwrap();
        let mut model: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
        for (n, op) in ops.iter().enumerate() {
            match op {
                Op::Put(k, len) => {
                    let v = value(n as u64, (*len).max(8));
                    s.put(&[*k], &v).unwrap();
                    model.insert(*k, v);
                }
                Op::Delete(k) => {
                    s.delete(&[*k]).unwrap();
                    model.remove(k);
                }
                Op::Step => {
                    s.merge_step(64 << 10).unwrap();
                }
                Op::Flush => s.flush().unwrap(),
            }
        }
        for k in 0..=255u8 {
            prop_assert_eq!(s.get(&[k]).unwrap(), model.get(&k).map(Vec::as_slice));
        }
        s.flush().unwrap();
        s.settle().unwrap();
        let runs: Vec<_> = s.runs().iter().map(|h| h.run().path().to_path_buf()).collect();
        drop(s);
        // The same runs under other options: levels are recomputed by size.
        // (Each reopen gets copies: its merges retire what they merge.)
        for (n, (mt, f)) in [(4 << 10, 2), (1 << 20, 8)].into_iter().enumerate() {
            let dir = PathBuf::from(format!("/r{n}"));
            fs.create_dir_all(&dir).unwrap();
            let copies: Vec<PathBuf> = runs
                .iter()
                .map(|p| {
                    let to = dir.join(p.file_name().unwrap());
                    fs.write(&to, &fs.read(p).unwrap()).unwrap();
                    to
                })
                .collect();
            let other = SpineOptions::new(RunMode::KeyValue).memtable_size_bytes(mt).fan_in(f);
            let mut r = Spine::open(fs.clone(), &dir, other, &copies, 0).unwrap();
            for k in 0..=255u8 {
                prop_assert_eq!(r.get(&[k]).unwrap(), model.get(&k).map(Vec::as_slice));
            }
            // A huge flush newer than the reopened runs.
            r.put(b"x", &value(1, 100_000)).unwrap();
            r.flush().unwrap();
            r.settle().unwrap();
            prop_assert_eq!(r.get(b"x").unwrap(), Some(&value(1, 100_000)[..]));
        }
    }
}
