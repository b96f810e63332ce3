//! The spine against simple models: a `BTreeMap` for key-value spines, a
//! `HashMap<(key, value), weight>` for Z-sets. Random interleavings of writes,
//! reads, ranges, seals and merge steps — thousands of operations per case —
//! on tiny memtables and fan-ins so that every case seals, spills, merges
//! across levels and hits backpressure, in both merge modes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use statespine::io::{Fs, MemFs, StdFs};
use statespine::run::{EntryKind, RunMode};
use statespine::spine::{MergeMode, Spine, SpineOptions};

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Update(Vec<u8>, Vec<u8>, i64),
    Get(Vec<u8>),
    Range(Vec<u8>, Vec<u8>),
    Prefix(Vec<u8>),
    Seal,
    MergeStep(usize),
    Compact,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // Few distinct keys, so that overwrites, deletes and weight cancellations
    // meet across batches.
    prop::collection::vec(0u8..6, 1..4)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (key(), prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(k, v)| Op::Put(k, v)),
        8 => key().prop_map(Op::Delete),
        30 => (key(), prop::collection::vec(0u8..3, 0..3), -2i64..3).prop_map(|(k, v, w)| Op::Update(k, v, w)),
        15 => key().prop_map(Op::Get),
        2 => (key(), key()).prop_map(|(a, b)| Op::Range(a, b)),
        1 => key().prop_map(|mut k| { k.truncate(1); Op::Prefix(k) }),
        1 => Just(Op::Seal),
        1 => Just(Op::Compact),
        6 => prop_oneof![Just(1usize), Just(200), Just(4096), Just(1 << 20)].prop_map(Op::MergeStep),
    ]
}

#[derive(Debug, Clone, Copy)]
struct Setup {
    memtable: usize,
    fan_in: usize,
    max_runs: usize,
    mode: MergeMode,
    real_fs: bool,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![Just(512usize), Just(2048), Just(8192)],
        2usize..5,
        3usize..12,
        prop_oneof![3 => Just(MergeMode::Cooperative), 1 => Just(MergeMode::Background)],
        prop::bool::weighted(0.2),
    )
        .prop_map(|(memtable, fan_in, max_runs, mode, real_fs)| Setup {
            memtable,
            fan_in,
            max_runs,
            mode,
            real_fs,
        })
}

fn open(mode: RunMode, s: Setup) -> (Spine, Arc<dyn Fs>, Option<tempfile::TempDir>) {
    let opts = SpineOptions::new(mode)
        .memtable_size_bytes(s.memtable)
        .memory_budget_bytes(s.memtable * 3)
        .fan_in(s.fan_in)
        .max_runs(s.max_runs)
        .merge_budget_bytes(300)
        .merge_mode(s.mode);
    let (fs, dir, tmp): (Arc<dyn Fs>, std::path::PathBuf, _) = if s.real_fs {
        let tmp = tempfile::tempdir().unwrap();
        (Arc::new(StdFs), tmp.path().join("spine"), Some(tmp))
    } else {
        (Arc::new(MemFs::new()), "/spine".into(), None)
    };
    (Spine::create(Arc::clone(&fs), dir, opts).unwrap(), fs, tmp)
}

fn bounds(a: &[u8], b: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    (Bound::Included(lo.to_vec()), Bound::Excluded(hi.to_vec()))
}

/// Every run file in the spine's directory is a live batch: retired inputs
/// were deleted and no temporary file was left behind. (In background mode
/// the helper thread deletes retired files, so they may take a moment.)
fn no_garbage(spine: &Spine, fs: &dyn Fs) {
    let runs: usize = spine
        .levels()
        .iter()
        .filter(|l| l.level > 0)
        .map(|l| l.batches)
        .sum();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let files = fs.list(spine.dir()).unwrap();
        // Merged-away runs stay as stand-ins until the merged run is durable
        // (synced by a write-behind thread on a real file system).
        if files.len() == runs + spine.stand_ins() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "files {files:?} vs levels {:?}",
            spine.levels()
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn kv_range(spine: &mut Spine, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    spine
        .range((lo, hi))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            assert_eq!(e.kind, EntryKind::Put);
            (e.key.to_vec(), e.value.to_vec())
        })
        .collect()
}

fn run_kv(s: Setup, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (mut spine, fs, _tmp) = open(RunMode::KeyValue, s);
    let mut model = BTreeMap::<Vec<u8>, Vec<u8>>::new();
    for op in ops {
        match op {
            Op::Put(k, v) => {
                spine.put(&k, &v).unwrap();
                model.insert(k, v);
            }
            Op::Delete(k) => {
                spine.delete(&k).unwrap();
                model.remove(&k);
            }
            Op::Update(k, v, w) => prop_assert!(spine.update(&k, &v, w).is_err()),
            Op::Get(k) => {
                prop_assert_eq!(spine.get(&k).unwrap(), model.get(&k).map(Vec::as_slice));
                prop_assert_eq!(spine.contains(&k).unwrap(), model.contains_key(&k));
            }
            Op::Range(a, b) => {
                let (lo, hi) = bounds(&a, &b);
                let got = kv_range(
                    &mut spine,
                    lo.as_ref().map(Vec::as_slice),
                    hi.as_ref().map(Vec::as_slice),
                );
                let want: Vec<_> = model
                    .range::<Vec<u8>, _>((lo, hi))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                prop_assert_eq!(got, want);
            }
            Op::Prefix(p) => {
                let got: Vec<_> = spine
                    .prefix(&p)
                    .unwrap()
                    .map(|e| e.unwrap().key.to_vec())
                    .collect();
                let want: Vec<_> = model.keys().filter(|k| k.starts_with(&p)).cloned().collect();
                prop_assert_eq!(got, want);
            }
            Op::Seal => spine.seal().unwrap(),
            Op::Compact => {
                spine.compact().unwrap();
                prop_assert!(spine.batch_count() <= 1, "{:?}", spine.levels());
            }
            Op::MergeStep(b) => {
                spine.merge_step(b).unwrap();
            }
        }
        prop_assert!(
            spine.batch_count() <= s.max_runs + 2 * s.fan_in + 2,
            "{:?}",
            spine.levels()
        );
    }
    let all = kv_range(&mut spine, Bound::Unbounded, Bound::Unbounded);
    prop_assert_eq!(all, model.clone().into_iter().collect::<Vec<_>>());
    spine.settle().unwrap();
    for (k, v) in &model {
        prop_assert_eq!(spine.get(k).unwrap(), Some(v.as_slice()));
    }
    let all = kv_range(&mut spine, Bound::Unbounded, Bound::Unbounded);
    prop_assert_eq!(all, model.into_iter().collect::<Vec<_>>());
    no_garbage(&spine, fs.as_ref());
    let stats = spine.stats();
    prop_assert!(
        stats.seals > 0 && stats.merges > 0,
        "the case never merged: {stats:?}"
    );
    Ok(())
}

type ZModel = HashMap<(Vec<u8>, Vec<u8>), i64>;
type ZEntries = Vec<((Vec<u8>, Vec<u8>), i64)>;

fn z_values(model: &ZModel, k: &[u8]) -> Vec<(Vec<u8>, i64)> {
    let mut v: Vec<_> = model
        .iter()
        .filter(|((mk, _), w)| mk == k && **w != 0)
        .map(|((_, v), w)| (v.clone(), *w))
        .collect();
    v.sort();
    v
}

fn z_all(spine: &mut Spine) -> ZEntries {
    spine
        .cursor()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let EntryKind::Weight(w) = e.kind else {
                panic!("{e:?}")
            };
            assert_ne!(w, 0);
            ((e.key.to_vec(), e.value.to_vec()), w)
        })
        .collect()
}

fn z_model_all(model: &ZModel) -> ZEntries {
    let mut v: Vec<_> = model
        .iter()
        .filter(|(_, w)| **w != 0)
        .map(|(k, w)| (k.clone(), *w))
        .collect();
    v.sort();
    v
}

fn run_zset(s: Setup, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (mut spine, fs, _tmp) = open(RunMode::ZSet, s);
    let mut model = ZModel::new();
    for op in ops {
        match op {
            Op::Update(k, v, w) => {
                spine.update(&k, &v, w).unwrap();
                *model.entry((k, v)).or_default() += w;
            }
            Op::Put(k, v) => prop_assert!(spine.put(&k, &v).is_err()),
            Op::Delete(k) => prop_assert!(spine.delete(&k).is_err()),
            Op::Get(k) => {
                let got: Vec<_> = spine
                    .values(&k)
                    .unwrap()
                    .into_iter()
                    .map(|(v, w)| (v.to_vec(), w))
                    .collect();
                let want = z_values(&model, &k);
                prop_assert_eq!(spine.contains(&k).unwrap(), !want.is_empty());
                prop_assert_eq!(
                    spine.key_weight(&k).unwrap(),
                    want.iter().map(|x| x.1).sum::<i64>()
                );
                prop_assert_eq!(got, want);
                prop_assert!(spine.get(&k).is_err());
            }
            Op::Range(a, b) => {
                let (lo, hi) = bounds(&a, &b);
                let got: Vec<_> = spine
                    .range((lo.as_ref().map(Vec::as_slice), hi.as_ref().map(Vec::as_slice)))
                    .unwrap()
                    .map(|e| e.unwrap().key.to_vec())
                    .collect();
                let want: Vec<_> = z_model_all(&model)
                    .into_iter()
                    .map(|((k, _), _)| k)
                    .filter(|k| RangeBounds::<Vec<u8>>::contains(&(lo.as_ref(), hi.as_ref()), k))
                    .collect();
                prop_assert_eq!(got, want);
            }
            Op::Prefix(_) => {}
            Op::Seal => spine.seal().unwrap(),
            Op::Compact => spine.compact().unwrap(),
            Op::MergeStep(b) => {
                spine.merge_step(b).unwrap();
            }
        }
    }
    prop_assert_eq!(z_all(&mut spine), z_model_all(&model));
    spine.settle().unwrap();
    prop_assert_eq!(z_all(&mut spine), z_model_all(&model));
    no_garbage(&spine, fs.as_ref());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/proptest-regressions/spine_model.txt"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn key_value_spine_matches_a_btreemap(s in setup(), ops in prop::collection::vec(op(), 1000..3000)) {
        run_kv(s, ops)?;
    }

    #[test]
    fn zset_spine_matches_a_hashmap(s in setup(), ops in prop::collection::vec(op(), 1000..3000)) {
        run_zset(s, ops)?;
    }
}
