//! The model test with crashes: random puts, deletes, Z-set updates, range
//! reads, polls
//! (merges), WAL syncs, checkpoints and crashes (a power loss under a random
//! crash variant, then a reopen) against a `BTreeMap` that a crash rolls
//! back to what was acknowledged: the recovered state must be the
//! acknowledged one plus a gap-free prefix of what followed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/sim_store.rs"]
mod sim_store;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use statespine::io::{CrashVariant, SimFs};
use statespine::store::{CheckpointRequest, KvSpine, Shard, Store, ZSetSpine};

type Kv = BTreeMap<Vec<u8>, Vec<u8>>;
type Z = BTreeMap<(Vec<u8>, Vec<u8>), i64>;

/// Both spines' state.
#[derive(Debug, Clone, Default, PartialEq)]
struct State {
    kv: Kv,
    z: Z,
}

/// One write, as the model applies it.
#[derive(Debug, Clone)]
enum W {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Update(Vec<u8>, Vec<u8>, i64),
}

#[derive(Debug, Clone)]
enum Op {
    Put(u16, u8),
    Delete(u16),
    Update(u16, u8, i8),
    Range(u16, u16),
    Poll,
    Sync,
    Checkpoint,
    Crash(usize, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => (0..200u16, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        4 => (0..200u16).prop_map(Op::Delete),
        8 => (0..60u16, 0..3u8, -2..3i8).prop_map(|(k, v, w)| Op::Update(k, v, w)),
        2 => (0..200u16, 0..200u16).prop_map(|(a, b)| Op::Range(a.min(b), a.max(b))),
        4 => Just(Op::Poll),
        2 => Just(Op::Sync),
        1 => Just(Op::Checkpoint),
        1 => (0..CrashVariant::ALL.len(), any::<u64>()).prop_map(|(v, s)| Op::Crash(v, s)),
    ]
}

fn key(k: u16) -> Vec<u8> {
    format!("k{k:05}").into_bytes()
}

struct Live {
    fs: Arc<SimFs>,
    store: Store,
    shard: Shard,
    id: KvSpine,
    z: ZSetSpine,
    epoch: u64,
}

fn open(fs: Arc<SimFs>, defer: bool) -> (Live, State) {
    let mut state = sim_store::small_store(Arc::clone(&fs), 2, defer)
        .recover()
        .unwrap();
    let mut shard = state.store.take_shards().remove(0);
    let id = shard.create_kv("kv").unwrap();
    let z = shard.create_zset("z").unwrap();
    let kv = read(&mut shard, id, Bound::Unbounded, Bound::Unbounded);
    let zs: Z = shard
        .cursor(z)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let statespine::run::EntryKind::Weight(w) = e.kind else {
                panic!("{e:?}")
            };
            ((e.key.to_vec(), e.value.to_vec()), w)
        })
        .collect();
    let got = State { kv, z: zs };
    let epoch = state.epoch;
    (
        Live {
            fs,
            store: state.store,
            shard,
            id,
            z,
            epoch,
        },
        got,
    )
}

fn read(shard: &mut Shard, id: KvSpine, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Kv {
    shard
        .range(id, (lo, hi))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.key.to_vec(), e.value.to_vec())
        })
        .collect()
}

fn apply(m: &mut State, w: &W) {
    match w {
        W::Put(k, v) => {
            m.kv.insert(k.clone(), v.clone());
        }
        W::Delete(k) => {
            m.kv.remove(k);
        }
        W::Update(k, v, d) => {
            let e = m.z.entry((k.clone(), v.clone())).or_default();
            *e += d;
            if *e == 0 {
                m.z.remove(&(k.clone(), v.clone()));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn crashes_roll_back_to_a_prefix_covering_every_ack(ops in prop::collection::vec(op(), 100..900), defer in any::<bool>()) {
        let (mut live, _) = open(Arc::new(SimFs::new()), defer);
        let mut acked = State::default();
        let mut pending: Vec<W> = Vec::new();
        let mut crashes = 0;
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    let val = vec![v; 10 + usize::from(k % 30)];
                    live.shard.put(live.id, &key(k), &val).unwrap();
                    pending.push(W::Put(key(k), val));
                }
                Op::Delete(k) => {
                    live.shard.delete(live.id, &key(k)).unwrap();
                    pending.push(W::Delete(key(k)));
                }
                Op::Update(k, v, w) => {
                    live.shard.update(live.z, &key(k), &[v; 6], i64::from(w)).unwrap();
                    pending.push(W::Update(key(k), vec![v; 6], i64::from(w)));
                }
                Op::Range(a, b) => {
                    let mut model = acked.clone();
                    pending.iter().for_each(|w| apply(&mut model, w));
                    let (lo, hi) = (key(a), key(b));
                    let want: Kv = model.kv.range(lo.clone()..=hi.clone()).map(|(k, v)| (k.clone(), v.clone())).collect();
                    let got = read(&mut live.shard, live.id, Bound::Included(&lo), Bound::Included(&hi));
                    prop_assert_eq!(got, want);
                }
                Op::Poll => {
                    live.shard.poll().unwrap();
                }
                Op::Sync => {
                    live.shard
                        .wait_durable(live.shard.last_lsn(), Duration::from_secs(5))
                        .unwrap();
                    pending.drain(..).for_each(|w| apply(&mut acked, &w));
                }
                Op::Checkpoint => {
                    live.epoch += 1;
                    live.store.checkpoint_inline(&mut [&mut live.shard], live.epoch, CheckpointRequest::default()).unwrap();
                    pending.drain(..).for_each(|w| apply(&mut acked, &w));
                }
                Op::Crash(v, seed) => {
                    let image = Arc::new(live.fs.image(CrashVariant::ALL[v], seed));
                    drop(live);
                    let (reopened, got) = open(image, defer);
                    live = reopened;
                    // The acknowledged state plus a gap-free prefix of the rest.
                    let mut model = acked.clone();
                    let mut n = 0;
                    while model != got {
                        prop_assert!(n < pending.len(), "after crash {}: not a prefix ({} of {} unacknowledged applied)", crashes, n, pending.len());
                        apply(&mut model, &pending[n]);
                        n += 1;
                    }
                    acked = got;
                    pending.clear();
                    crashes += 1;
                }
            }
        }
    }
}
