//! The store end to end: writes, checkpoints, crashes (MemFs images holding
//! only synced bytes) and recovery, against a model of every spine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use statespine::checkpoint::{ConnectorCheckpoint, ValidationDepth, validate_checkpoint};
use statespine::io::{Fs, MemFs};
use statespine::run::{EntryKind, RunMode};
use statespine::spine::SpineOptions;
use statespine::store::{CheckpointRequest, KvSpine, Options, RecoveryPoint, Shard, Store, ZSetSpine};
use statespine::wal::SyncPolicy;

const ROOT: &str = "/db";
const WAIT: Duration = Duration::from_secs(10);

type Kv = BTreeMap<Vec<u8>, Vec<u8>>;
type Z = BTreeMap<(Vec<u8>, Vec<u8>), i64>;

/// Per shard: the key-value spine "kv" and the Z-set spine "z".
#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    kv: Vec<Kv>,
    z: Vec<Z>,
}

fn small_spines() -> SpineOptions {
    SpineOptions::new(RunMode::KeyValue)
        .memtable_size_bytes(4 << 10)
        .memory_budget_bytes(16 << 10)
        .fan_in(3)
}

fn options(fs: &Arc<MemFs>, shards: u32) -> Options {
    Options::new(ROOT)
        .recovery_point(RecoveryPoint::Latest)
        .fs(fs.clone())
        .shards(shards)
        .spine_options(small_spines())
        .wal_segment_size(16 << 10)
        .sync_policy(SyncPolicy::EveryRecords(64))
}

fn ids(shard: &mut Shard) -> (KvSpine, ZSetSpine) {
    (shard.create_kv("kv").unwrap(), shard.create_zset("z").unwrap())
}

fn read_back(shards: &mut [Shard]) -> Model {
    let mut m = Model::default();
    for s in shards.iter_mut() {
        let (kv, z) = (s.kv_spine("kv"), s.zset_spine("z"));
        let mut kvs = Kv::new();
        if let Some(kv) = kv {
            for e in s.cursor(kv).unwrap() {
                let e = e.unwrap();
                assert_eq!(e.kind, EntryKind::Put);
                kvs.insert(e.key.to_vec(), e.value.to_vec());
            }
        }
        let mut zs = Z::new();
        if let Some(z) = z {
            for e in s.cursor(z).unwrap() {
                let e = e.unwrap();
                let EntryKind::Weight(w) = e.kind else {
                    panic!("{e:?}")
                };
                zs.insert((e.key.to_vec(), e.value.to_vec()), w);
            }
        }
        m.kv.push(kvs);
        m.z.push(zs);
    }
    m
}

#[derive(Debug, Clone)]
enum Op {
    Put(u32, u16, u8),
    Delete(u32, u16),
    Update(u32, u16, u8, i8),
    Checkpoint,
    Poll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..2u32, 0..300u16, any::<u8>()).prop_map(|(s, k, v)| Op::Put(s, k, v)),
        2 => (0..2u32, 0..300u16).prop_map(|(s, k)| Op::Delete(s, k)),
        6 => (0..2u32, 0..100u16, 0..4u8, -2..3i8).prop_map(|(s, k, v, w)| Op::Update(s, k, v, w)),
        1 => Just(Op::Checkpoint),
        3 => Just(Op::Poll),
    ]
}

fn key(k: u16) -> Vec<u8> {
    format!("key-{k:05}").into_bytes()
}

fn value(v: u8, k: u16) -> Vec<u8> {
    vec![v; 20 + usize::from(k % 50)]
}

/// Applies `ops` to a fresh 2-shard store (checkpointing inline) and the
/// model; returns the store, its shards and the model.
fn run_ops(fs: &Arc<MemFs>, ops: &[Op], max_retained: usize) -> (Store, Vec<Shard>, Model, u64) {
    let mut store = options(fs, 2).max_retained(max_retained).open().unwrap();
    let mut shards = store.take_shards();
    let spines: Vec<_> = shards.iter_mut().map(ids).collect();
    let mut model = Model {
        kv: vec![Kv::new(); 2],
        z: vec![Z::new(); 2],
    };
    let mut epoch = 0;
    for op in ops {
        match *op {
            Op::Put(s, k, v) => {
                let sh = &mut shards[s as usize];
                sh.put(spines[s as usize].0, &key(k), &value(v, k)).unwrap();
                model.kv[s as usize].insert(key(k), value(v, k));
            }
            Op::Delete(s, k) => {
                shards[s as usize].delete(spines[s as usize].0, &key(k)).unwrap();
                model.kv[s as usize].remove(&key(k));
            }
            Op::Update(s, k, v, w) => {
                let val = value(v, k);
                shards[s as usize]
                    .update(spines[s as usize].1, &key(k), &val, i64::from(w))
                    .unwrap();
                let e = model.z[s as usize].entry((key(k), val)).or_default();
                *e += i64::from(w);
                if *e == 0 {
                    model.z[s as usize].remove(&(key(k), value(v, k)));
                }
            }
            Op::Checkpoint => {
                epoch += 1;
                let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
                store
                    .checkpoint_inline(&mut refs, epoch, CheckpointRequest::default())
                    .unwrap();
            }
            Op::Poll => {
                for s in &mut shards {
                    s.poll().unwrap();
                }
            }
        }
    }
    (store, shards, model, epoch)
}

fn recover(fs: Arc<MemFs>) -> (statespine::store::RecoveredState, Vec<Shard>) {
    let mut state = options(&fs, 2).recover().unwrap();
    let shards = state.store.take_shards();
    (state, shards)
}

/// The checkpoint link names of a spine's live runs (shard 0).
fn live_run_names(shard: &Shard, id: KvSpine) -> Vec<String> {
    let runs = shard.spine(id).unwrap().runs();
    let name =
        |h: &statespine::spine::RunHandle| h.run().path().file_name().unwrap().to_string_lossy().into_owned();
    runs.iter()
        .map(|h| format!("0-{}-{}", id.id().index(), name(h)))
        .collect()
}

/// Names of the committed checkpoint directories (UUIDs, no suffix).
fn checkpoint_dirs(fs: &MemFs) -> Vec<String> {
    let mut names = fs.list(&Path::new(ROOT).join("checkpoints")).unwrap();
    names.retain(|n| !n.contains('.'));
    names
}

/// Every file under `dir`, recursively.
fn files(fs: &MemFs, dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(names) = fs.list(dir) else { return out };
    for n in names {
        let p = dir.join(&n);
        let sub = files(fs, &p);
        if sub.is_empty() && fs.list(&p).is_err() {
            out.push(p);
        } else {
            out.extend(sub);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// Write, checkpoint, write more, crash after the last write is durable:
    /// recovery equals the model, whatever the interleaving.
    #[test]
    fn recovery_equals_model(ops in prop::collection::vec(op(), 200..1500), retained in 1..4usize) {
        let fs = Arc::new(MemFs::new());
        let (store, mut shards, model, epoch) = run_ops(&fs, &ops, retained);
        prop_assert_eq!(&read_back(&mut shards), &model);
        for s in &shards {
            s.wait_durable(s.last_lsn(), WAIT).unwrap();
        }
        let image = Arc::new(fs.crash());
        drop((shards, store));
        let (state, mut shards) = recover(image);
        prop_assert_eq!(state.epoch, epoch);
        prop_assert_eq!(&read_back(&mut shards), &model);
    }
}

#[test]
fn acknowledged_writes_survive_a_crash_and_unacknowledged_ones_are_a_prefix() {
    let fs = Arc::new(MemFs::new());
    let mut store = options(&fs, 1).sync_policy(SyncPolicy::Manual).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let (kv, _) = ids(&mut shard);
    for k in 0..500u16 {
        shard.put(kv, &key(k), &value(1, k)).unwrap();
    }
    shard.wait_durable(shard.last_lsn(), WAIT).unwrap();
    for k in 500..800u16 {
        shard.put(kv, &key(k), &value(1, k)).unwrap();
    }
    let image = Arc::new(fs.crash());
    drop((shard, store));
    let mut state = options(&image, 1).recover().unwrap();
    let shard = state.store.take_shards().remove(0);
    let kv = shard.kv_spine("kv").unwrap();
    let got: Vec<Vec<u8>> = shard
        .cursor(kv)
        .unwrap()
        .map(|e| e.unwrap().key.to_vec())
        .collect();
    assert!(
        got.len() >= 500,
        "{} keys survived, 500 were acknowledged",
        got.len()
    );
    let expect: Vec<Vec<u8>> = (0..got.len() as u16).map(key).collect();
    assert_eq!(got, expect, "what survives is a prefix of the writes");
}

#[test]
fn recovery_falls_back_past_a_damaged_newest_checkpoint() {
    let fs = Arc::new(MemFs::new());
    let ops: Vec<Op> = (0..900u16)
        .map(|i| {
            if i % 300 == 299 {
                Op::Checkpoint
            } else {
                Op::Put(0, i % 200, (i % 7) as u8)
            }
        })
        .collect();
    let (mut store, shards, model, _) = run_ops(&fs, &ops, 3);
    let retained = store.coordinator().retained();
    assert_eq!(retained.len(), 3);
    drop((shards, store));
    let (newest, _) = retained[2];
    common::damage_manifest(&fs, ROOT, newest);

    let (state, mut shards) = recover(fs.clone());
    // The damaged checkpoint's epoch is still committed on every shard by
    // the commit record its cut appended to the WAL: the older checkpoint
    // plus the WAL up to that record recover it.
    assert_eq!(state.epoch, 3, "the damaged checkpoint's epoch, from the WAL");
    assert_eq!(
        state.checkpoint_id,
        Some(retained[1].0),
        "rebuilt from the one before"
    );
    assert_eq!(state.skipped.len(), 1);
    assert_eq!(state.skipped[0].0, newest);
    assert!(state.skipped[0].1.contains("checksum"), "{}", state.skipped[0].1);
    assert_eq!(
        read_back(&mut shards),
        model,
        "the WAL covers what the damaged checkpoint held"
    );
    let damaged = Path::new(ROOT)
        .join("checkpoints")
        .join(format!("{newest}.damaged"));
    assert!(fs.exists(&damaged).unwrap(), "set aside, not deleted");
}

#[test]
fn retention_keeps_the_newest_n_and_truncates_the_wal() {
    for retained in [1usize, 3] {
        let fs = Arc::new(MemFs::new());
        let mut ops = Vec::new();
        for round in 0..8u16 {
            ops.extend((0..400u16).map(|i| Op::Put(u32::from(round % 2 == 0), i, round as u8)));
            ops.push(Op::Poll);
            ops.push(Op::Checkpoint);
        }
        let (mut store, mut shards, model, _) = run_ops(&fs, &ops, retained);
        store.coordinator().wait_housekeeping().unwrap();
        let kept = store.coordinator().retained();
        assert_eq!(kept.len(), retained);
        assert_eq!(kept.last().unwrap().1, 8);
        let dirs = checkpoint_dirs(&fs);
        assert_eq!(dirs.len(), retained, "{dirs:?}");
        // Let the drainer act on the truncation requests.
        for s in &shards {
            s.wait_durable(s.last_lsn(), WAIT).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        let wal = fs.list(&Path::new(ROOT).join("shards/0/wal")).unwrap();
        assert!(wal.len() < 12, "{} WAL segments after 8 checkpoints", wal.len());
        assert_eq!(read_back(&mut shards), model);
        drop((shards, store));
        let (_, mut shards) = recover(fs.clone());
        assert_eq!(read_back(&mut shards), model);
    }
}

#[test]
fn no_orphan_files_and_open_removes_leftovers() {
    let fs = Arc::new(MemFs::new());
    let ops: Vec<Op> = (0..3000u16)
        .map(|i| match i % 500 {
            499 => Op::Checkpoint,
            n if n % 10 == 0 => Op::Poll,
            _ => Op::Update((i % 2).into(), i % 97, (i % 3) as u8, 1),
        })
        .collect();
    let (store, mut shards, model, _) = run_ops(&fs, &ops, 2);
    // Every live run file is one a spine holds.
    for s in &shards {
        let z = s.zset_spine("z").unwrap();
        let mut held: Vec<PathBuf> = s
            .spine(z)
            .unwrap()
            .runs()
            .iter()
            .map(|h| h.run().path().to_path_buf())
            .collect();
        let kv = s.kv_spine("kv").unwrap();
        held.extend(
            s.spine(kv)
                .unwrap()
                .runs()
                .iter()
                .map(|h| h.run().path().to_path_buf()),
        );
        held.sort();
        let mut on_disk = files(&fs, &Path::new(ROOT).join(format!("shards/{}/runs", s.id())));
        on_disk.sort();
        // Besides its runs, a spine keeps the merged-away runs that stand
        // in for outputs not yet durable (`Spine::cut`), and nothing else.
        let stand_ins = s.spine(z).unwrap().stand_ins() + s.spine(kv).unwrap().stand_ins();
        assert!(held.iter().all(|h| on_disk.contains(h)), "shard {}", s.id());
        assert_eq!(
            on_disk.len(),
            held.len() + stand_ins,
            "shard {}: {on_disk:?}",
            s.id()
        );
    }
    // Every checkpoint file is one its manifest names.
    let ck = Path::new(ROOT).join("checkpoints");
    for name in checkpoint_dirs(&fs) {
        let dir = ck.join(&name);
        let report = validate_checkpoint(fs.as_ref(), &dir, ValidationDepth::Blocks);
        assert!(report.is_valid(), "{report}");
        let m = report.manifest.unwrap();
        let mut named = Vec::new();
        for s in &m.shards {
            for sp in &s.spines {
                named.extend(sp.runs.iter().map(|r| dir.join(&r.file)));
            }
        }
        named.push(dir.join("MANIFEST"));
        named.sort();
        let mut present = files(&fs, &dir);
        present.sort();
        assert_eq!(present, named);
    }
    assert_eq!(read_back(&mut shards), model);
    drop((shards, store));
    // Leftovers of a crash: a half-written checkpoint and a half-written run.
    fs.create_dir_all(&ck.join("0b0e0c0a-0000-4000-8000-000000000000.tmp/0"))
        .unwrap();
    fs.write(
        &ck.join("0b0e0c0a-0000-4000-8000-000000000000.tmp/0/x.run"),
        b"junk",
    )
    .unwrap();
    fs.write(
        &Path::new(ROOT).join("shards/0/runs/0/000000099999.run.tmp"),
        b"half",
    )
    .unwrap();
    let (_, mut shards) = recover(fs.clone());
    assert_eq!(read_back(&mut shards), model);
    let leftovers: Vec<String> = fs
        .list(&ck)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(
        !fs.exists(&Path::new(ROOT).join("shards/0/runs/0/000000099999.run.tmp"))
            .unwrap()
    );
}

#[test]
fn point_in_time_recovery_rolls_back_and_stays_rolled_back() {
    let fs = Arc::new(MemFs::new());
    let mut store = options(&fs, 2).open().unwrap();
    let mut shards = store.take_shards();
    let spines: Vec<_> = shards.iter_mut().map(ids).collect();
    let mut at_epoch = Vec::new();
    for epoch in 1..=3u64 {
        for (s, sh) in shards.iter_mut().enumerate() {
            for k in 0..300u16 {
                sh.put(spines[s].0, &key(k), &value(epoch as u8, k)).unwrap();
            }
        }
        let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
        store
            .checkpoint_inline(&mut refs, epoch, CheckpointRequest::default())
            .unwrap();
        at_epoch.push(read_back(&mut shards));
    }
    for s in &shards {
        s.wait_durable(s.last_lsn(), WAIT).unwrap();
    }
    drop((shards, store));

    let mut state = options(&fs, 2)
        .recovery_point(RecoveryPoint::Epoch(2))
        .recover()
        .unwrap();
    assert_eq!(state.epoch, 2);
    let mut shards = state.store.take_shards();
    assert_eq!(read_back(&mut shards), at_epoch[1]);
    // Go on from epoch 2; the abandoned epoch 3 must never come back.
    let kv = shards[0].kv_spine("kv").unwrap();
    shards[0].put(kv, b"after", b"rollback").unwrap();
    let mut expect = at_epoch[1].clone();
    expect.kv[0].insert(b"after".to_vec(), b"rollback".to_vec());
    for s in &shards {
        s.wait_durable(s.last_lsn(), WAIT).unwrap();
    }
    let image = Arc::new(fs.crash());
    drop((shards, state.store));
    let (state, mut shards) = recover(image);
    assert_eq!(state.epoch, 2);
    assert_eq!(read_back(&mut shards), expect);
}

#[test]
fn validation_depths_see_what_they_read() {
    let fs = Arc::new(MemFs::new());
    let ops: Vec<Op> = (0..1200u16)
        .map(|i| {
            // Later checkpoints take the runs earlier ones saw.
            if i >= 1196 {
                Op::Checkpoint
            } else {
                Op::Put(0, i, 3)
            }
        })
        .collect();
    let (mut store, shards, _, _) = run_ops(&fs, &ops, 3);
    let (id, _) = *store.coordinator().retained().last().unwrap();
    drop((shards, store));
    let dir = Path::new(ROOT).join("checkpoints").join(id.to_string());
    let report = validate_checkpoint(fs.as_ref(), &dir, ValidationDepth::Blocks);
    assert!(report.is_valid(), "{report}");
    let m = report.manifest.unwrap();
    let run = m.shards[0].spines.iter().find(|s| !s.runs.is_empty()).unwrap();
    let path = dir.join(&run.runs[0].file);
    // Flip a byte of the first data block.
    let mut bytes = fs.read(&path).unwrap();
    bytes[40] ^= 1;
    fs.write(&path, &bytes).unwrap();
    assert!(validate_checkpoint(fs.as_ref(), &dir, ValidationDepth::Manifest).is_valid());
    assert!(validate_checkpoint(fs.as_ref(), &dir, ValidationDepth::Footers).is_valid());
    let deep = validate_checkpoint(fs.as_ref(), &dir, ValidationDepth::Blocks);
    assert_eq!(deep.problems.len(), 1, "{deep}");
    assert!(deep.to_string().contains(&run.runs[0].file), "{deep}");
    // A truncated run is caught by the cheapest depth.
    fs.write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let shallow = validate_checkpoint(fs.as_ref(), &dir, ValidationDepth::Manifest);
    assert!(!shallow.is_valid());
    assert!(shallow.to_string().contains("file length"), "{shallow}");
}

#[test]
fn a_checkpoint_of_another_program_is_refused() {
    let fs = Arc::new(MemFs::new());
    let mut store = options(&fs, 1)
        .fingerprint(b"pipeline-v1".to_vec())
        .open()
        .unwrap();
    let mut shard = store.take_shards().remove(0);
    ids(&mut shard);
    store
        .checkpoint_inline(&mut [&mut shard], 1, CheckpointRequest::default())
        .unwrap();
    drop((shard, store));
    let err = options(&fs, 1)
        .fingerprint(b"pipeline-v2".to_vec())
        .open()
        .unwrap_err();
    assert!(err.to_string().contains("fingerprint"), "{err}");
    options(&fs, 1)
        .fingerprint(b"pipeline-v1".to_vec())
        .open()
        .unwrap();
}

#[test]
fn metadata_round_trips_with_large_operator_states_in_side_files() {
    let fs = Arc::new(MemFs::new());
    let mut store = options(&fs, 1).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    ids(&mut shard);
    let mut req = CheckpointRequest::default();
    req.source_offsets.insert("orders/0".into(), 1234);
    req.connectors.insert(
        "sink".into(),
        ConnectorCheckpoint {
            state: b"cursor".to_vec(),
            prepared_transactions: vec!["txn-7".into(), "txn-8".into()],
        },
    );
    req.operators.insert("small".into(), b"tiny".to_vec());
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
    req.operators.insert("big".into(), big.clone());
    store.checkpoint_inline(&mut [&mut shard], 5, req).unwrap();
    drop((shard, store));
    let state = options(&fs, 1).recover().unwrap();
    assert_eq!(state.epoch, 5);
    assert_eq!(state.source_offsets["orders/0"], 1234);
    assert_eq!(state.connectors["sink"].state, b"cursor");
    assert_eq!(state.prepared_transactions["sink"], ["txn-7", "txn-8"]);
    assert_eq!(state.operators["small"], b"tiny");
    assert_eq!(state.operators["big"], big);
}

#[test]
fn without_a_wal_a_checkpoint_flushes_and_later_writes_are_not_durable() {
    let fs = Arc::new(MemFs::new());
    let mut store = options(&fs, 1).wal(false).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let (kv, _) = ids(&mut shard);
    shard.put(kv, b"a", b"1").unwrap();
    store
        .checkpoint_inline(&mut [&mut shard], 1, CheckpointRequest::default())
        .unwrap();
    shard.put(kv, b"b", b"2").unwrap();
    let image = Arc::new(fs.crash());
    drop((shard, store));
    let mut state = options(&image, 1).wal(false).recover().unwrap();
    let shard = state.store.take_shards().remove(0);
    let kv = shard.kv_spine("kv").unwrap();
    assert_eq!(shard.get(kv, b"a").unwrap(), Some(&b"1"[..]));
    assert_eq!(shard.get(kv, b"b").unwrap(), None);
    assert!(!fs.exists(Path::new("/db/shards/0/wal")).unwrap());
}

#[test]
fn dropped_spines_stay_dropped_and_ids_are_not_reused() {
    let fs = Arc::new(MemFs::new());
    let mut store = options(&fs, 1).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let a = shard.create_kv("a").unwrap();
    shard.put(a, b"k", b"old").unwrap();
    store
        .checkpoint_inline(&mut [&mut shard], 1, CheckpointRequest::default())
        .unwrap();
    shard.drop_spine(a).unwrap();
    let a2 = shard.create_kv("a").unwrap();
    assert_ne!(a, a2);
    shard.put(a2, b"k2", b"new").unwrap();
    assert!(shard.put(a, b"x", b"y").is_err(), "a dropped spine's id is dead");
    shard.wait_durable(shard.last_lsn(), WAIT).unwrap();
    drop((shard, store));
    let mut state = options(&fs, 1).recover().unwrap();
    let shard = state.store.take_shards().remove(0);
    let a = shard.kv_spine("a").unwrap();
    assert_eq!(a.id().index(), a2.id().index(), "the new spine's number");
    let all: Vec<_> = shard
        .cursor(a)
        .unwrap()
        .map(|e| e.unwrap().key.to_vec())
        .collect();
    assert_eq!(all, [b"k2".to_vec()]);
}

#[test]
fn shards_on_their_own_threads_answer_checkpoints_from_poll() {
    let fs = Arc::new(MemFs::new());
    let mut store = options(&fs, 2).open().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = store
        .take_shards()
        .into_iter()
        .map(|mut shard| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let (kv, _) = ids(&mut shard);
                let mut model = Kv::new();
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    let k = key((i % 1000) as u16);
                    let v = i.to_le_bytes().to_vec();
                    shard.put(kv, &k, &v).unwrap();
                    model.insert(k, v);
                    i += 1;
                    if i.is_multiple_of(16) {
                        shard.poll().unwrap();
                    }
                }
                // Answer any request still in flight, then make all durable.
                shard.poll().unwrap();
                shard.wait_durable(shard.last_lsn(), WAIT).unwrap();
                (shard.id(), model)
            })
        })
        .collect();
    let mut pauses = Vec::new();
    for epoch in 1..=5 {
        std::thread::sleep(Duration::from_millis(20));
        let ck = store.checkpoint(epoch, CheckpointRequest::default()).unwrap();
        pauses.extend(ck.shard_pauses);
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let mut model = Model {
        kv: vec![Kv::new(); 2],
        z: vec![Z::new(); 2],
    };
    for w in workers {
        let (id, m) = w.join().unwrap();
        model.kv[id as usize] = m;
    }
    assert_eq!(pauses.len(), 10);
    let image = Arc::new(fs.crash());
    drop(store);
    let (state, mut shards) = recover(image);
    assert_eq!(state.epoch, 5);
    assert_eq!(read_back(&mut shards), model);
}

/// A run written since the last cut is not synced by the next checkpoint:
/// the durable runs it replaced stand in for it (or the WAL, for data from
/// memory); a run that survives to its second cut is synced and included.
#[test]
fn checkpoints_defer_young_runs_and_use_what_they_replaced() {
    let fs = Arc::new(MemFs::new());
    let mut store = options(&fs, 1).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let (kv, _) = ids(&mut shard);
    let mut model = Kv::new();
    let mut put = |shard: &mut Shard, round: u8| {
        for k in 0..400u16 {
            shard.put(kv, &key(k), &value(round, k)).unwrap();
            model.insert(key(k), value(round, k));
        }
        shard.spine(kv).unwrap();
    };
    let names = |m: &statespine::checkpoint::CheckpointManifest| -> Vec<String> {
        m.shards[0]
            .spines
            .iter()
            .flat_map(|s| s.runs.iter().map(|r| r.file.clone()))
            .collect()
    };
    let load = |store: &mut Store, id| store.coordinator().store().load_manifest(id).unwrap();
    use statespine::checkpoint::CheckpointStore;

    put(&mut shard, 1);
    shard.flush_all().unwrap();
    let first = store
        .checkpoint_inline(&mut [&mut shard], 1, CheckpointRequest::default())
        .unwrap();
    assert_eq!(
        first.commit.synced_runs, 0,
        "young runs wait for their second cut"
    );
    assert!(names(&load(&mut store, first.id)).is_empty());
    let second = store
        .checkpoint_inline(&mut [&mut shard], 2, CheckpointRequest::default())
        .unwrap();
    assert!(
        second.commit.synced_runs > 0,
        "runs that survived a cut are synced"
    );
    let durable = names(&load(&mut store, second.id));
    assert!(!durable.is_empty());
    // Merge the durable runs (with new data) into young runs: the next cut
    // uses the durable inputs instead, syncing nothing.
    for round in 2..6 {
        put(&mut shard, round);
        shard.flush_all().unwrap();
    }
    let live: Vec<String> = live_run_names(&shard, kv);
    let merged_away: Vec<&String> = durable.iter().filter(|n| !live.contains(n)).collect();
    assert!(
        !merged_away.is_empty(),
        "a durable run was merged into a young one"
    );
    let third = store
        .checkpoint_inline(&mut [&mut shard], 3, CheckpointRequest::default())
        .unwrap();
    assert_eq!(third.commit.synced_runs, 0);
    assert_eq!(third.commit.new_bytes, 0);
    let m3 = load(&mut store, third.id);
    let stood_in = names(&m3);
    assert!(
        stood_in.iter().all(|n| durable.contains(n)),
        "{stood_in:?} vs {durable:?}"
    );
    assert!(
        merged_away.iter().any(|n| stood_in.contains(*n)),
        "a merged-away durable run stands in"
    );
    assert!(
        m3.shards[0].spines[0].covered_lsn < m3.shards[0].cut_lsn,
        "the WAL covers the rest"
    );
    shard.wait_durable(shard.last_lsn(), WAIT).unwrap();
    // Recovery from that checkpoint (the WAL fills in) equals the model.
    let image = Arc::new(fs.crash());
    drop((shard, store));
    let mut state = options(&image, 1).recover().unwrap();
    assert_eq!(state.epoch, 3);
    assert!(state.replayed_records >= 400);
    let mut shard = state.store.take_shards().remove(0);
    assert_eq!(read_back(std::slice::from_mut(&mut shard)).kv[0], model);
}

/// Every young run is seen by a cut, even past a run the cut stops at, so
/// each is included (and synced) at its second cut.
#[test]
fn every_young_run_is_included_at_its_second_cut() {
    let fs = Arc::new(MemFs::new());
    let mut store = options(&fs, 1).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let (kv, _) = ids(&mut shard);
    for round in 0..2u16 {
        for k in 0..300u16 {
            shard.put(kv, &key(round * 1000 + k), &value(1, k)).unwrap();
        }
        shard.flush_all().unwrap();
    }
    let live: Vec<String> = live_run_names(&shard, kv);
    assert!(live.len() >= 2, "{live:?}");
    let first = store
        .checkpoint_inline(&mut [&mut shard], 1, CheckpointRequest::default())
        .unwrap();
    assert_eq!(first.runs, 0);
    let second = store
        .checkpoint_inline(&mut [&mut shard], 2, CheckpointRequest::default())
        .unwrap();
    assert_eq!(second.commit.synced_runs, live.len());
    let m = statespine::checkpoint::CheckpointStore::load_manifest(store.coordinator().store(), second.id)
        .unwrap();
    let mut names: Vec<String> = m.shards[0].spines[0]
        .runs
        .iter()
        .map(|r| r.file.clone())
        .collect();
    names.sort();
    let mut live = live;
    live.sort();
    assert_eq!(names, live);
    assert_eq!(
        (m.shards[0].spines[0].covered_lsn, m.shards[0].cut_lsn),
        (604, 604),
        "every write (LSNs 3..=602) is in the runs, and the spine was idle through both \
         checkpoints' commit records (603, 604)"
    );
}

/// Runs older than the young-run age, and every run in eager mode, are
/// synced and linked at the first cut that finds them.
#[test]
fn old_runs_and_eager_checkpoints_include_every_run_at_once() {
    for eager in [false, true] {
        let fs = Arc::new(MemFs::new());
        let opts = options(&fs, 1);
        let opts = if eager {
            opts.eager_run_sync(true)
        } else {
            opts.young_run_age(Duration::ZERO)
        };
        let mut store = opts.open().unwrap();
        let mut shard = store.take_shards().remove(0);
        let (kv, _) = ids(&mut shard);
        for k in 0..600u16 {
            shard.put(kv, &key(k), &value(1, k)).unwrap();
        }
        shard.flush_all().unwrap();
        let runs = shard.spine(kv).unwrap().runs().len();
        assert!(runs > 0);
        let ck = store
            .checkpoint_inline(&mut [&mut shard], 1, CheckpointRequest::default())
            .unwrap();
        assert_eq!(ck.commit.synced_runs, runs);
        assert_eq!(ck.runs, runs);
    }
}

/// Where the file system refuses hard links, checkpoints copy the runs, say
/// so in the manifest, and recover the same.
#[test]
fn without_hard_links_checkpoints_copy_and_say_so() {
    let fs = Arc::new(MemFs::new());
    fs.refuse_hard_links(true);
    let mut store = options(&fs, 1).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let (kv, _) = ids(&mut shard);
    let mut model = Kv::new();
    for k in 0..600u16 {
        shard.put(kv, &key(k), &value(2, k)).unwrap();
        model.insert(key(k), value(2, k));
    }
    shard.flush_all().unwrap();
    store
        .checkpoint_inline(&mut [&mut shard], 1, CheckpointRequest::default())
        .unwrap();
    let ck = store
        .checkpoint_inline(&mut [&mut shard], 2, CheckpointRequest::default())
        .unwrap();
    assert!(ck.commit.copied > 0 && ck.commit.linked == 0, "{:?}", ck.commit);
    let m =
        statespine::checkpoint::CheckpointStore::load_manifest(store.coordinator().store(), ck.id).unwrap();
    assert!(m.runs_copied);
    shard.wait_durable(shard.last_lsn(), WAIT).unwrap();
    let image = Arc::new(fs.crash());
    image.refuse_hard_links(true);
    drop((shard, store));
    let mut state = options(&image, 1).recover().unwrap();
    let mut shard = state.store.take_shards().remove(0);
    assert_eq!(read_back(std::slice::from_mut(&mut shard)).kv[0], model);
}

#[test]
fn a_shard_can_move_to_its_thread() {
    fn send<T: Send>() {}
    send::<Shard>();
    send::<Store>();
}

#[test]
fn a_shutdown_checkpoint_leaves_nothing_to_replay() {
    let fs = Arc::new(MemFs::new());
    let ops: Vec<Op> = (0..600u16)
        .map(|i| match i % 50 {
            0 => Op::Checkpoint,
            7 => Op::Poll,
            n if n % 3 == 0 => Op::Update(u32::from(i % 2), i % 40, (i % 3) as u8, 1),
            _ => Op::Put(u32::from(i % 2), i % 97, (i % 5) as u8),
        })
        .collect();
    let (store, mut shards, mut model, epoch) = run_ops(&fs, &ops, 2);
    // Every spine written last, then flushed: each covers the whole cut.
    for (s, shard) in shards.iter_mut().enumerate() {
        let (kv, z) = (shard.kv_spine("kv").unwrap(), shard.zset_spine("z").unwrap());
        shard.put(kv, b"last", b"kv").unwrap();
        shard.update(z, b"last", b"z", 1).unwrap();
        model.kv[s].insert(b"last".to_vec(), b"kv".to_vec());
        *model.z[s].entry((b"last".to_vec(), b"z".to_vec())).or_default() += 1;
    }
    let mut source = CheckpointRequest::default();
    source.source_offsets.insert("input".into(), 600);
    let meta = store.shutdown(shards, epoch + 1, source).unwrap();
    assert_eq!(meta.epoch, epoch + 1);
    // Only synced bytes: the shutdown is durable, not merely written.
    let first = Arc::new(fs.crash());
    let (state, mut shards) = recover(Arc::clone(&first));
    assert_eq!(state.epoch, epoch + 1);
    assert_eq!(state.source_offsets.get("input"), Some(&600));
    // A flushed spine covers the log up to the cut (`Spine::mark_quiet`):
    // recovery replays nothing.
    assert_eq!(
        state.replayed_records, 0,
        "every write is in the final checkpoint"
    );
    assert_eq!(read_back(&mut shards), model);
    // Writes after the restart go on from there and survive the next crash.
    let kv = shards[0].kv_spine("kv").unwrap();
    shards[0].put(kv, b"after", b"restart").unwrap();
    shards[0].wait_durable(shards[0].last_lsn(), WAIT).unwrap();
    let image = Arc::new(first.crash());
    drop((shards, state));
    let (state, shards) = recover(image);
    let kv = shards[0].kv_spine("kv").unwrap();
    assert_eq!(shards[0].get(kv, b"after").unwrap(), Some(&b"restart"[..]));
    assert!(state.replayed_records >= 1);
}

/// A roll back commits an eager checkpoint; merges published in the poll
/// that answered its cut took inputs that commit made durable a moment
/// later. Regression: eager cuts did not mark their runs seen, so those
/// merges' lineages let go of the inputs, and the next (deferring)
/// checkpoint stood in with nothing while the roll back's covered floor
/// claimed every write: the whole epoch was lost at the next open.
#[test]
fn a_roll_back_then_a_checkpoint_keeps_the_epoch_when_merges_cross_the_eager_cut() {
    // Sizes at which a merge spans the roll back's eager cut (found by a
    // sweep; each lost every write before the fix).
    for (n1, n2) in [(1067u32, 260u32), (1261, 70), (1455, 30), (1552, 130)] {
        let fs = Arc::new(MemFs::new());
        let opts = || {
            Options::new(ROOT)
                .recovery_point(RecoveryPoint::Latest)
                .fs(fs.clone())
                .spine_options(
                    SpineOptions::new(RunMode::KeyValue)
                        .memtable_size_bytes(64 << 10)
                        .memory_budget_bytes(256 << 10)
                        .fan_in(3)
                        .merge_budget_bytes(768 << 10),
                )
                .wal_segment_size(16 << 10)
                .sync_policy(SyncPolicy::EveryRecords(64))
        };
        let key = |i: u32| format!("key{i:08}").into_bytes();
        let mut store = opts().open().unwrap();
        let mut shard = store.take_shards().remove(0);
        let kv = shard.create_kv("kv").unwrap();
        for i in 0..n1 {
            shard.put(kv, &key(i), &[7u8; 1000]).unwrap();
        }
        shard.settle().unwrap();
        for i in n1..n1 + n2 {
            shard.put(kv, &key(i), &[9u8; 1000]).unwrap();
        }
        store
            .checkpoint_inline(&mut [&mut shard], 1, CheckpointRequest::default())
            .unwrap();
        for i in 0..50 {
            shard.put(kv, &key(1_000_000 + i), b"abandoned").unwrap();
        }
        store
            .checkpoint_inline(&mut [&mut shard], 2, CheckpointRequest::default())
            .unwrap();
        drop((shard, store));
        let mut state = opts().recovery_point(RecoveryPoint::Epoch(1)).recover().unwrap();
        let mut shard = state.store.take_shards().remove(0);
        state
            .store
            .checkpoint_inline(&mut [&mut shard], 2, CheckpointRequest::default())
            .unwrap();
        drop((shard, state));
        let mut store = opts().open().unwrap();
        let shard = store.take_shards().remove(0);
        let kv = shard.kv_spine("kv").unwrap();
        let lost = (0..n1 + n2)
            .filter(|&i| shard.get(kv, &key(i)).unwrap().is_none())
            .count();
        assert_eq!(lost, 0, "n1 = {n1}, n2 = {n2}: writes of epoch 1 lost");
        assert_eq!(
            shard.get(kv, &key(1_000_000)).unwrap(),
            None,
            "the abandoned epoch stays gone"
        );
    }
}

/// A Z-set merge whose weights all cancel leaves no run: the writes it
/// consumed need none, so what came before it covers them. Regression:
/// only a bottom merge recorded that, so after a non-bottom one the next
/// cut covered less than the committed one and its replay point fell below
/// the truncated WAL (the coordinator's assert fired: with it off, an
/// unrecoverable checkpoint).
#[test]
fn a_z_set_merge_that_cancels_out_keeps_the_replay_point() {
    let fs = Arc::new(MemFs::new());
    let mut store = Options::new(ROOT)
        .recovery_point(RecoveryPoint::Latest)
        .fs(fs.clone())
        .spine_options(
            SpineOptions::new(RunMode::ZSet)
                .memtable_size_bytes(4 << 10)
                .memory_budget_bytes(64 << 10)
                .fan_in(2),
        )
        .young_run_age(Duration::ZERO)
        .max_retained(1)
        .sync_policy(SyncPolicy::EveryRecords(64))
        .open()
        .unwrap();
    let mut shard = store.take_shards().remove(0);
    let z = shard.create_zset("z").unwrap();
    for i in 0..1250u32 {
        shard
            .update(z, format!("a{i:06}").as_bytes(), &[1u8; 100], 1)
            .unwrap();
    }
    shard.flush_all().unwrap();
    shard.settle().unwrap();
    for i in 0..10u32 {
        shard.update(z, format!("b{i:06}").as_bytes(), b"v", 1).unwrap();
    }
    shard.flush_all().unwrap();
    shard.settle().unwrap();
    for epoch in 1..=2 {
        store
            .checkpoint_inline(&mut [&mut shard], epoch, CheckpointRequest::default())
            .unwrap();
    }
    // The retraction cancels the "b" run in a merge above the bottom.
    for i in 0..10u32 {
        shard.update(z, format!("b{i:06}").as_bytes(), b"v", -1).unwrap();
    }
    shard.flush_all().unwrap();
    shard.settle().unwrap();
    shard.update(z, b"c", b"v", 1).unwrap();
    store
        .checkpoint_inline(&mut [&mut shard], 3, CheckpointRequest::default())
        .unwrap();
    shard.wait_durable(shard.last_lsn(), WAIT).unwrap();
    let image = Arc::new(fs.crash());
    drop((shard, store));
    let mut store = Options::new(ROOT)
        .recovery_point(RecoveryPoint::Latest)
        .fs(image)
        .open()
        .unwrap();
    let shard = store.take_shards().remove(0);
    let z = shard.zset_spine("z").unwrap();
    let spine = shard.spine(z).unwrap();
    assert_eq!(spine.key_weight(b"a000000").unwrap(), 1);
    assert_eq!(spine.key_weight(b"b000000").unwrap(), 0);
    assert_eq!(spine.key_weight(b"c").unwrap(), 1);
}

/// Opening a store without its WAL: refused while the log holds writes the
/// checkpoint does not (they would be lost), and once it holds none the
/// stale log goes, so turning the WAL back on later starts a fresh one.
/// Regression: a `wal(false)` open ignored the log, silently dropping its
/// acknowledged writes; a later `wal(true)` open found a log that ended
/// before the checkpoint.
#[test]
fn switching_the_wal_off_and_on_keeps_every_write() {
    let fs = Arc::new(MemFs::new());
    let opts = |wal: bool| {
        Options::new(ROOT)
            .recovery_point(RecoveryPoint::Latest)
            .fs(fs.clone())
            .wal(wal)
    };
    let mut store = opts(true).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let kv = shard.create_kv("kv").unwrap();
    shard.put(kv, b"a", b"checkpointed").unwrap();
    store
        .checkpoint_inline(&mut [&mut shard], 1, CheckpointRequest::default())
        .unwrap();
    let lsn = shard.put(kv, b"b", b"only in the WAL").unwrap();
    shard.wait_durable(lsn, WAIT).unwrap();
    drop((shard, store));
    // The log holds "b": without it, the open would lose it.
    assert!(matches!(
        opts(false).open(),
        Err(statespine::Error::Incompatible { .. })
    ));
    // With it, then a shutdown checkpoint: nothing is left only in the log.
    let mut store = opts(true).open().unwrap();
    let shards = store.take_shards();
    store.shutdown(shards, 2, CheckpointRequest::default()).unwrap();
    let mut store = opts(false).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let kv = shard.kv_spine("kv").unwrap();
    shard.put(kv, b"c", b"no WAL").unwrap();
    store
        .checkpoint_inline(&mut [&mut shard], 3, CheckpointRequest::default())
        .unwrap();
    drop((shard, store));
    let mut store = opts(true).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let kv = shard.kv_spine("kv").unwrap();
    let lsn = shard.put(kv, b"d", b"WAL again").unwrap();
    shard.wait_durable(lsn, WAIT).unwrap();
    let image = Arc::new(fs.crash());
    drop((shard, store));
    let mut store = Options::new(ROOT)
        .recovery_point(RecoveryPoint::Latest)
        .fs(image)
        .open()
        .unwrap();
    let shard = store.take_shards().remove(0);
    let kv = shard.kv_spine("kv").unwrap();
    for (k, v) in [
        (&b"a"[..], &b"checkpointed"[..]),
        (b"b", b"only in the WAL"),
        (b"c", b"no WAL"),
        (b"d", b"WAL again"),
    ] {
        assert_eq!(
            shard.get(kv, k).unwrap(),
            Some(v),
            "{:?}",
            String::from_utf8_lossy(k)
        );
    }
}
