//! Write batches (`Shard::batch`, `Shard::write`): a batch's writes equal a
//! model's, before and after recovery; a refused batch changes nothing; a
//! crash at any point while batches are written leaves each batch whole or
//! absent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/sim_store.rs"]
mod sim_store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use statespine::Error;
use statespine::io::{CrashVariant, MemFs, SimFs};
use statespine::run::{EntryKind, RunMode};
use statespine::spine::SpineOptions;
use statespine::store::{
    CheckpointRequest, KvSpine, MAX_KEY_BYTES, Options, RecoveryPoint, Shard, ZSetSpine,
};

const WAIT: Duration = Duration::from_secs(20);

type Kv = BTreeMap<Vec<u8>, Vec<u8>>;
type Z = BTreeMap<(Vec<u8>, Vec<u8>), i64>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Model {
    kv: [Kv; 2],
    z: Z,
}

#[derive(Debug, Clone)]
enum Op {
    Put(usize, u8, Vec<u8>),
    Delete(usize, u8),
    Update(u8, u8, i64),
}

fn key(k: u8) -> Vec<u8> {
    format!("key-{k:03}").into_bytes()
}

impl Model {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Put(s, k, v) => {
                self.kv[*s].insert(key(*k), v.clone());
            }
            Op::Delete(s, k) => {
                self.kv[*s].remove(&key(*k));
            }
            Op::Update(k, v, w) => {
                let e = self.z.entry((key(*k), vec![*v])).or_insert(0);
                *e += w;
                if *e == 0 {
                    self.z.remove(&(key(*k), vec![*v]));
                }
            }
        }
    }
}

fn read(shard: &mut Shard) -> Model {
    let mut m = Model::default();
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        let id = shard.kv_spine(name).unwrap();
        for e in shard.cursor(id).unwrap() {
            let e = e.unwrap();
            m.kv[i].insert(e.key.to_vec(), e.value.to_vec());
        }
    }
    let z = shard.zset_spine("z").unwrap();
    for e in shard.cursor(z).unwrap() {
        let e = e.unwrap();
        let EntryKind::Weight(w) = e.kind else {
            panic!("a Z-set entry without a weight")
        };
        m.z.insert((e.key.to_vec(), e.value.to_vec()), w);
    }
    m
}

fn options(fs: &Arc<MemFs>) -> Options {
    Options::new("/db")
        .recovery_point(RecoveryPoint::Latest)
        .fs(fs.clone())
        .spine_options(
            SpineOptions::new(RunMode::KeyValue)
                .memtable_size_bytes(2 << 10)
                .memory_budget_bytes(16 << 10)
                .fan_in(2),
        )
        .changelog_capacity(4 << 10, 64)
        .wal_segment_size(8 << 10)
        .young_run_age(Duration::ZERO)
}

fn handles(shard: &mut Shard) -> ([KvSpine; 2], ZSetSpine) {
    let a = shard.create_kv("a").unwrap();
    let b = shard.create_kv("b").unwrap();
    let z = shard.create_zset("z").unwrap();
    ([a, b], z)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..40u8, prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(s, k, v)| Op::Put(s, k, v)),
        2 => (0..2usize, 0..40u8).prop_map(|(s, k)| Op::Delete(s, k)),
        3 => (0..10u8, 0..3u8, -3..4i64).prop_map(|(k, v, w)| Op::Update(k, v, w)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Batches of random writes over three spines read back as the model
    /// says, after every batch and after recovery (checkpoints between
    /// batches, small memtables: seals and merges in the middle of it all).
    #[test]
    fn batches_equal_the_model(batches in prop::collection::vec(prop::collection::vec(op(), 0..30), 1..30)) {
        let fs = Arc::new(MemFs::new());
        let mut store = options(&fs).open().unwrap();
        let mut shard = store.take_shards().remove(0);
        let (kv, z) = handles(&mut shard);
        let mut model = Model::default();
        for (i, ops) in batches.iter().enumerate() {
            let before = shard.last_lsn();
            let mut batch = shard.batch();
            for op in ops {
                match op {
                    Op::Put(s, k, v) => batch.put(kv[*s], &key(*k), v),
                    Op::Delete(s, k) => batch.delete(kv[*s], &key(*k)),
                    Op::Update(k, v, w) => batch.update(z, &key(*k), &[*v], *w),
                };
                model.apply(op);
            }
            let lsn = shard.write(batch).unwrap();
            // One LSN for the whole batch; none for an empty one.
            let logged = u64::from(!ops.is_empty());
            prop_assert_eq!(lsn.0, before.0 + logged);
            prop_assert_eq!(shard.last_lsn(), lsn);
            shard.poll().unwrap();
            prop_assert_eq!(&read(&mut shard), &model);
            if i % 7 == 6 {
                store.checkpoint_inline(&mut [&mut shard], i as u64, CheckpointRequest::default()).unwrap();
            }
        }
        shard.wait_durable(shard.last_lsn(), WAIT).unwrap();
        let image = Arc::new(fs.crash());
        drop((shard, store));
        let mut state = options(&image).recover().unwrap();
        let mut shard = state.store.take_shards().remove(0);
        prop_assert_eq!(&read(&mut shard), &model);
    }
}

type BadWrite<'a> = dyn Fn(&mut statespine::store::WriteBatch) + 'a;

/// A batch with one bad write is refused whole: nothing of it is applied
/// or logged, and the shard goes on as before.
#[test]
fn a_refused_batch_changes_nothing() {
    let fs = Arc::new(MemFs::new());
    let mut store = options(&fs).shards(2).open().unwrap();
    let mut shards = store.take_shards();
    let (kv, z) = handles(&mut shards[0]);
    let other = shards[1].create_kv("other").unwrap();
    let shard = &mut shards[0];
    shard.put(kv[0], &key(1), b"before").unwrap();
    let dropped = shard.create_kv("dropped").unwrap();
    shard.drop_spine(dropped).unwrap();
    let state = read(shard);
    let last = shard.last_lsn();
    let too_long = vec![0u8; MAX_KEY_BYTES + 1];
    let cases: [(&str, &BadWrite<'_>); 3] = [
        ("a key too long", &|b| {
            b.put(kv[1], &too_long, b"v");
        }),
        ("a handle of another shard", &|b| {
            b.put(other, b"k", b"v");
        }),
        ("a dropped spine", &|b| {
            b.delete(dropped, b"k");
        }),
    ];
    for (what, bad) in cases {
        let mut batch = shard.batch();
        batch.put(kv[0], &key(1), b"after").update(z, b"k", b"v", 1);
        bad(&mut batch);
        batch.put(kv[1], &key(2), b"after");
        let e = shard.write(batch).unwrap_err();
        match what {
            "a key too long" => assert!(matches!(e, Error::TooLarge { what: "key", .. }), "{e}"),
            "a handle of another shard" => assert!(matches!(e, Error::WrongShard { .. }), "{e}"),
            _ => assert!(matches!(e, Error::NoSuchSpine { .. }), "{e}"),
        }
        assert_eq!(shard.last_lsn(), last, "{what}: logged");
        assert_eq!(read(shard), state, "{what}: applied");
    }
    // Nothing reached the log either: recovery finds the state before.
    shard.wait_durable(last, WAIT).unwrap();
    let image = Arc::new(fs.crash());
    drop((shards, store));
    let mut state2 = options(&image).shards(2).recover().unwrap();
    let mut shards = state2.store.take_shards();
    assert_eq!(read(&mut shards[0]), state);
}

/// The `i`-th batch of the crash workload: the same three keys in both
/// key-value spines and a Z-set update, all with values naming the batch,
/// so that part of a batch matches no prefix of the batches.
fn crash_batch(i: u32) -> Vec<Op> {
    let v = vec![(i % 251) as u8; 24 + (i % 30) as usize];
    let k = (i * 7 % 50) as u8;
    vec![
        Op::Put(0, k, v.clone()),
        Op::Put(1, k, v.clone()),
        Op::Put(0, k + 50, v.clone()),
        Op::Update((i % 5) as u8, (i % 3) as u8, 1),
        Op::Delete(1, (i * 11 % 50) as u8 + 50),
        Op::Put(1, k + 100, v),
    ]
}

const CRASH_BATCHES: u32 = 120;

/// Writes the crash workload until it ends or fails; returns how many
/// batches were acknowledged durable.
fn crash_workload(fs: Arc<SimFs>) -> u32 {
    let Ok(mut store) = sim_store::small_store(fs, 1, false).open() else {
        return 0;
    };
    let mut shard = store.take_shards().remove(0);
    let (Ok(a), Ok(b), Ok(z)) = (shard.create_kv("a"), shard.create_kv("b"), shard.create_zset("z")) else {
        return 0;
    };
    let kv = [a, b];
    let mut acked = 0;
    for i in 0..CRASH_BATCHES {
        let mut batch = shard.batch();
        for op in crash_batch(i) {
            match op {
                Op::Put(s, k, v) => batch.put(kv[s], &key(k), &v),
                Op::Delete(s, k) => batch.delete(kv[s], &key(k)),
                Op::Update(k, v, w) => batch.update(z, &key(k), &[v], w),
            };
        }
        if shard.write(batch).is_err() || shard.poll().is_err() {
            return acked;
        }
        if i % 10 == 9 {
            if shard
                .wait_durable(shard.last_lsn(), Duration::from_secs(5))
                .is_err()
            {
                return acked;
            }
            acked = i + 1;
        }
        if i % 40 == 39 {
            match store.checkpoint_inline(&mut [&mut shard], u64::from(i), CheckpointRequest::default()) {
                Ok(_) => acked = i + 1,
                Err(_) => return acked,
            }
        }
    }
    acked
}

/// Crashes the workload at every file-system operation (a stride under
/// the other variants): the recovered state is always the batches of a
/// prefix at or past the acknowledged ones, each batch whole or absent.
#[test]
fn a_crash_leaves_every_batch_whole_or_absent() {
    let clean = Arc::new(SimFs::new());
    assert_eq!(crash_workload(Arc::clone(&clean)), CRASH_BATCHES);
    let total = clean.ops();
    let mut points = 0;
    for (variant, stride) in [
        (CrashVariant::DropUnsynced, 1),
        (CrashVariant::TornSector, 5),
        (CrashVariant::GarbageTail, 7),
    ] {
        let mut k = 1;
        while k <= total {
            let fs = Arc::new(SimFs::new());
            fs.crash_at(k);
            let acked = crash_workload(Arc::clone(&fs));
            let image = Arc::new(fs.image(variant, k));
            let what = format!("{variant:?} at op {k}/{total}");
            let mut state = sim_store::small_store(image, 1, false)
                .recover()
                .unwrap_or_else(|e| panic!("{what}: recovery failed: {e}"));
            let mut shard = state.store.take_shards().remove(0);
            let got = if shard.spine_id("z").is_some() {
                read(&mut shard)
            } else {
                Model::default()
            };
            let mut model = Model::default();
            let mut n = 0;
            loop {
                if n >= acked && model == got {
                    break;
                }
                assert!(
                    n < CRASH_BATCHES,
                    "{what}: the state is not the batches of a prefix at or past the {acked} acknowledged"
                );
                crash_batch(n).iter().for_each(|op| model.apply(op));
                n += 1;
            }
            points += 1;
            k += stride;
        }
    }
    assert!(points > 100, "{points} crash points");
}
