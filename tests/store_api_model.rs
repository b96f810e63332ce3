//! The store against a model, through the public API only, the way a
//! streaming engine uses it — with the careless calls too: refused writes
//! (a handle of another shard, a dropped spine, a key over the limit, a name
//! taken by the other mode), values larger than the changelog ring,
//! spines created and dropped, checkpoints, syncs and crashes under random
//! options. After every crash the store opens, and per shard it holds
//! exactly the model's state at some position at or past the last
//! acknowledged one (a prefix of the writes, nothing acknowledged lost).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use statespine::Error;
use statespine::io::MemFs;
use statespine::run::{EntryKind, RunMode};
use statespine::spine::SpineOptions;
use statespine::store::{
    CheckpointRequest, Lsn, MAX_KEY_BYTES, Options, RecoveryPoint, Shard, SpineId, Store,
};
use statespine::wal::SyncPolicy;

const SHARDS: usize = 2;
const WAIT: Duration = Duration::from_secs(20);
/// The changelog ring of these stores: records over half of it spill.
const RING_BYTES: usize = 16 << 10;
/// Spine names: two key-value, one Z-set.
const NAMES: [(&str, RunMode); 3] = [
    ("kv0", RunMode::KeyValue),
    ("kv1", RunMode::KeyValue),
    ("z", RunMode::ZSet),
];

/// What one spine holds: key -> value (key-value) or (key, value) -> weight.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    Kv(BTreeMap<Vec<u8>, Vec<u8>>),
    Z(BTreeMap<(Vec<u8>, Vec<u8>), i64>),
}

/// A logged change of one shard, as the model applies it.
#[derive(Debug, Clone)]
enum Change {
    Create(usize),
    Drop(usize),
    Put(usize, Vec<u8>, Vec<u8>),
    Delete(usize, Vec<u8>),
    Update(Vec<u8>, Vec<u8>, i64),
}

/// One shard's logged changes with their positions.
#[derive(Debug, Clone, Default)]
struct Log(Vec<(Lsn, Change)>);

impl Log {
    /// The spines' contents after every change up to `upto`.
    fn state(&self, upto: Lsn) -> BTreeMap<&'static str, Content> {
        let mut s = BTreeMap::new();
        for (lsn, c) in &self.0 {
            if *lsn > upto {
                break;
            }
            match c {
                Change::Create(n) => {
                    let (name, mode) = NAMES[*n];
                    s.entry(name).or_insert(match mode {
                        RunMode::KeyValue => Content::Kv(BTreeMap::new()),
                        RunMode::ZSet => Content::Z(BTreeMap::new()),
                    });
                }
                Change::Drop(n) => {
                    s.remove(NAMES[*n].0);
                }
                Change::Put(n, k, v) => {
                    if let Some(Content::Kv(m)) = s.get_mut(NAMES[*n].0) {
                        m.insert(k.clone(), v.clone());
                    }
                }
                Change::Delete(n, k) => {
                    if let Some(Content::Kv(m)) = s.get_mut(NAMES[*n].0) {
                        m.remove(k);
                    }
                }
                Change::Update(k, v, w) => {
                    if let Some(Content::Z(m)) = s.get_mut("z") {
                        let e = m.entry((k.clone(), v.clone())).or_insert(0);
                        *e += w;
                        if *e == 0 {
                            m.remove(&(k.clone(), v.clone()));
                        }
                    }
                }
            }
        }
        s
    }
}

/// What the store's shard holds, read through cursors.
fn read(shard: &mut Shard) -> BTreeMap<&'static str, Content> {
    let mut s = BTreeMap::new();
    for (name, mode) in NAMES {
        let Some(id) = shard.spine_id(name) else { continue };
        assert_eq!(id.mode(), mode);
        let mut kv = BTreeMap::new();
        let mut z = BTreeMap::new();
        for e in shard.cursor(id).unwrap() {
            let e = e.unwrap();
            match e.kind {
                EntryKind::Put => {
                    kv.insert(e.key.to_vec(), e.value.to_vec());
                }
                EntryKind::Weight(w) => {
                    z.insert((e.key.to_vec(), e.value.to_vec()), w);
                }
                EntryKind::Delete => panic!("a cursor shows no tombstone"),
            }
        }
        s.insert(
            name,
            match mode {
                RunMode::KeyValue => Content::Kv(kv),
                RunMode::ZSet => Content::Z(z),
            },
        );
    }
    s
}

#[derive(Debug, Clone)]
enum Refusal {
    /// A handle of the other shard.
    WrongShard(usize),
    /// A handle of a spine dropped just before.
    Dropped(usize),
    KeyTooLarge,
    /// A key-value spine's name asked for as a Z-set.
    WrongMode,
}

#[derive(Debug, Clone)]
enum Op {
    Put(usize, usize, u8, usize),
    Delete(usize, usize, u8),
    Update(usize, u8, u8, i8),
    Create(usize, usize),
    Drop(usize, usize),
    Refuse(usize, Refusal),
    Poll,
    Sync,
    Checkpoint,
    Crash(u8),
}

fn value_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0..64usize,
        3 => 100..4_000usize,
        // Larger than half the ring: the spill path.
        1 => RING_BYTES / 2..RING_BYTES * 4,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let shard = 0..SHARDS;
    prop_oneof![
        10 => (shard.clone(), 0..2usize, any::<u8>(), value_len()).prop_map(|(s, n, k, l)| Op::Put(s, n, k % 40, l)),
        2 => (shard.clone(), 0..2usize, any::<u8>()).prop_map(|(s, n, k)| Op::Delete(s, n, k % 40)),
        6 => (shard.clone(), any::<u8>(), any::<u8>(), -2..3i8).prop_map(|(s, k, v, w)| Op::Update(s, k % 20, v % 4, w)),
        1 => (shard.clone(), 0..3usize).prop_map(|(s, n)| Op::Create(s, n)),
        1 => (shard.clone(), 0..3usize).prop_map(|(s, n)| Op::Drop(s, n)),
        2 => (shard.clone(), prop_oneof![
            (0..3usize).prop_map(Refusal::WrongShard),
            (0..3usize).prop_map(Refusal::Dropped),
            Just(Refusal::KeyTooLarge),
            Just(Refusal::WrongMode),
        ]).prop_map(|(s, r)| Op::Refuse(s, r)),
        3 => Just(Op::Poll),
        2 => Just(Op::Sync),
        1 => Just(Op::Checkpoint),
        1 => any::<u8>().prop_map(Op::Crash),
    ]
}

fn options(fs: &Arc<MemFs>, seed: u8) -> Options {
    let spines = SpineOptions::new(RunMode::KeyValue)
        .memtable_size_bytes([4 << 10, 16 << 10, 64 << 10][usize::from(seed % 3)])
        .memory_budget_bytes(128 << 10)
        .fan_in(2 + usize::from(seed % 3));
    Options::new("/db")
        .recovery_point(RecoveryPoint::Latest)
        .fs(fs.clone())
        .shards(SHARDS as u32)
        .spine_options(spines)
        .changelog_capacity(RING_BYTES, 256)
        .wal_segment_size(32 << 10)
        .sync_policy(SyncPolicy::EveryRecords(32))
        .max_retained(1 + usize::from(seed % 3))
        // Runs deferred to the next cut (young ones) or not.
        .young_run_age(Duration::from_millis(if seed.is_multiple_of(2) { 0 } else { 50 }))
}

fn value(n: usize, len: usize) -> Vec<u8> {
    let mut v = vec![(n % 251) as u8; len];
    if len >= 8 {
        v[..8].copy_from_slice(&(n as u64).to_le_bytes());
    }
    v
}

struct Live {
    fs: Arc<MemFs>,
    store: Store,
    shards: Vec<Shard>,
    logs: Vec<Log>,
    /// Per shard: every change up to this is acknowledged durable.
    acked: Vec<Lsn>,
    epoch: u64,
}

impl Live {
    fn open(fs: Arc<MemFs>, seed: u8, logs: Vec<Log>, acked: Vec<Lsn>) -> Live {
        let mut state = options(&fs, seed).recover().expect("the store always opens");
        let mut shards = state.store.take_shards();
        let mut logs = logs;
        for (s, shard) in shards.iter_mut().enumerate() {
            // The shard recovered some prefix of its changes, at least every
            // acknowledged one; it goes on from there.
            let at = shard.last_lsn();
            assert!(
                at >= acked[s],
                "shard {s}: recovered up to {at}, {} acknowledged",
                acked[s]
            );
            let want = logs[s].state(at);
            assert_eq!(read(shard), want, "shard {s} recovered up to {at}");
            logs[s].0.retain(|(l, _)| *l <= at);
        }
        Live {
            fs,
            epoch: state.epoch,
            store: state.store,
            shards,
            logs,
            acked,
        }
    }

    fn handle(&self, s: usize, n: usize) -> Option<SpineId> {
        self.shards[s].spine_id(NAMES[n].0)
    }
}

fn run(ops: &[Op]) {
    let fs = Arc::new(MemFs::new());
    let mut live = Live::open(fs, 0, vec![Log::default(); SHARDS], vec![Lsn(0); SHARDS]);
    for (s, shard) in live.shards.iter_mut().enumerate() {
        for (n, (name, mode)) in NAMES.iter().enumerate() {
            shard.create_spine(name, *mode).unwrap();
            live.logs[s].0.push((shard.last_lsn(), Change::Create(n)));
        }
    }
    let mut applied = 0usize;
    for (i, op) in ops.iter().enumerate() {
        if matches!(op, Op::Put(..) | Op::Delete(..) | Op::Update(..)) {
            applied += 1;
        }
        match op {
            Op::Put(s, n, k, len) => {
                if let Some(id) = live.handle(*s, *n).and_then(SpineId::kv) {
                    let (k, v) = (vec![*k], value(i, *len));
                    let lsn = live.shards[*s].put(id, &k, &v).unwrap();
                    live.logs[*s].0.push((lsn, Change::Put(*n, k, v)));
                }
            }
            Op::Delete(s, n, k) => {
                if let Some(id) = live.handle(*s, *n).and_then(SpineId::kv) {
                    let lsn = live.shards[*s].delete(id, &[*k]).unwrap();
                    live.logs[*s].0.push((lsn, Change::Delete(*n, vec![*k])));
                }
            }
            Op::Update(s, k, v, w) => {
                if let Some(id) = live.handle(*s, 2).and_then(SpineId::zset) {
                    let (k, v) = (vec![*k], vec![*v; 3]);
                    let lsn = live.shards[*s].update(id, &k, &v, i64::from(*w)).unwrap();
                    live.logs[*s].0.push((lsn, Change::Update(k, v, i64::from(*w))));
                }
            }
            Op::Create(s, n) => {
                let shard = &mut live.shards[*s];
                let before = shard.last_lsn();
                let id = shard.create_spine(NAMES[*n].0, NAMES[*n].1).unwrap();
                assert_eq!(id.mode(), NAMES[*n].1);
                if shard.last_lsn() != before {
                    live.logs[*s].0.push((shard.last_lsn(), Change::Create(*n)));
                }
            }
            Op::Drop(s, n) => {
                if let Some(id) = live.handle(*s, *n) {
                    let lsn = live.shards[*s].drop_spine(id).unwrap();
                    live.logs[*s].0.push((lsn, Change::Drop(*n)));
                }
            }
            Op::Refuse(s, r) => {
                let other = (*s + 1) % SHARDS;
                let before = live.shards[*s].last_lsn();
                let outcome = match r {
                    Refusal::WrongShard(n) => match live.handle(other, *n) {
                        Some(id) => live.shards[*s].drop_spine(id).map(drop),
                        None => continue,
                    },
                    Refusal::Dropped(n) => {
                        let Some(id) = live.handle(*s, *n) else { continue };
                        let lsn = live.shards[*s].drop_spine(id).unwrap();
                        live.logs[*s].0.push((lsn, Change::Drop(*n)));
                        let after = live.shards[*s].last_lsn();
                        let r = match id.kv() {
                            Some(kv) => live.shards[*s].put(kv, b"k", b"v").map(drop),
                            None => live.shards[*s]
                                .update(id.zset().unwrap(), b"k", b"v", 1)
                                .map(drop),
                        };
                        assert!(matches!(r, Err(Error::NoSuchSpine { .. })), "{r:?}");
                        assert_eq!(live.shards[*s].last_lsn(), after);
                        continue;
                    }
                    Refusal::KeyTooLarge => match live.handle(*s, 0).and_then(SpineId::kv) {
                        Some(id) => live.shards[*s]
                            .put(id, &vec![0; MAX_KEY_BYTES + 1], b"v")
                            .map(drop),
                        None => continue,
                    },
                    Refusal::WrongMode => match live.handle(*s, 0) {
                        Some(_) => live.shards[*s].create_zset("kv0").map(drop),
                        None => continue,
                    },
                };
                assert!(outcome.is_err(), "{r:?} was accepted");
                assert_eq!(live.shards[*s].last_lsn(), before, "{r:?} logged something");
            }
            Op::Poll => {
                for sh in &mut live.shards {
                    sh.poll().unwrap();
                }
            }
            Op::Sync => {
                for (s, sh) in live.shards.iter().enumerate() {
                    sh.wait_durable(sh.last_lsn(), WAIT).unwrap();
                    live.acked[s] = sh.last_lsn();
                }
            }
            Op::Checkpoint => {
                live.epoch += 1;
                let cut: Vec<Lsn> = live.shards.iter().map(Shard::last_lsn).collect();
                let mut refs: Vec<&mut Shard> = live.shards.iter_mut().collect();
                live.store
                    .checkpoint_inline(&mut refs, live.epoch, CheckpointRequest::default())
                    .unwrap();
                live.acked = cut;
            }
            Op::Crash(seed) => {
                let image = Arc::new(live.fs.crash());
                let Live { logs, acked, .. } = live;
                live = Live::open(image, *seed, logs, acked);
            }
        }
    }
    // And a last crash, with everything acknowledged first.
    for (s, sh) in live.shards.iter().enumerate() {
        sh.wait_durable(sh.last_lsn(), WAIT).unwrap();
        live.acked[s] = sh.last_lsn();
    }
    let image = Arc::new(live.fs.crash());
    let Live { logs, acked, .. } = live;
    let back = Live::open(image, 1, logs, acked.clone());
    for (s, sh) in back.shards.iter().enumerate() {
        assert_eq!(sh.last_lsn(), acked[s], "shard {s}: everything was acknowledged");
    }
    let _ = applied;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_store_always_reopens_with_exactly_the_acknowledged_writes(ops in prop::collection::vec(op(), 1..400)) {
        run(&ops);
    }
}
