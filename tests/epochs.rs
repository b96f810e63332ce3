//! Exactly-once at the level a streaming engine lives at: what recovery
//! returns (state, epoch, offsets, metadata) after a crash, for each
//! recovery point, and where each shard stands.
//!
//! The first test is the regression of issue 15: a checkpoint recorded
//! offset 100, 50 more durable updates followed, the process died; recovery
//! returned offset 100 with all 150 updates applied, so an engine rewinding
//! its source to 100 counted 101..=150 twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use statespine::checkpoint::ConnectorCheckpoint;
use statespine::io::MemFs;
use statespine::store::{
    Answered, CheckpointRequest, Options, RecoveredState, RecoveryPoint, Shard, ZSetSpine,
};

const WAIT: Duration = Duration::from_secs(10);

fn offsets(n: u64) -> CheckpointRequest {
    let mut r = CheckpointRequest::default();
    r.source_offsets.insert("src".into(), n);
    r
}

/// The Z-set weight of `(k, "")`, summed over shards.
fn weight(shards: &mut [Shard], k: &[u8]) -> i64 {
    let mut total = 0;
    for s in shards {
        let Some(z) = s.zset_spine("count") else { continue };
        total += s.spine(z).unwrap().key_weight(k).unwrap();
    }
    total
}

/// Applies source records `from+1..=to` (each +1 on key "k"), spread over
/// the shards round-robin; returns the last write's position per shard.
fn apply(shards: &mut [Shard], from: u64, to: u64) {
    let n = shards.len() as u64;
    for i in from + 1..=to {
        let s = &mut shards[(i % n) as usize];
        let z = s.create_zset("count").unwrap();
        let lsn = s.update(z, b"k", b"", 1).unwrap();
        s.wait_durable(lsn, WAIT).unwrap();
    }
}

fn open(fs: &Arc<MemFs>, shards: u32, point: RecoveryPoint) -> RecoveredState {
    Options::new("/db")
        .fs(fs.clone())
        .shards(shards)
        .recovery_point(point)
        .recover()
        .unwrap()
}

/// The scenario, for 1 and 2 shards: recovery returns the
/// checkpoint's epoch and offsets with exactly its state; the engine rewinds
/// and runs on; the count is exactly the number of source records.
#[test]
fn recovery_returns_state_and_offsets_of_one_instant_no_double_apply() {
    for n in [1u32, 2] {
        let fs = Arc::new(MemFs::new());
        let mut st = open(&fs, n, RecoveryPoint::default());
        let mut shards = st.store.take_shards();
        apply(&mut shards, 0, 100);
        let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
        st.store.checkpoint_inline(&mut refs, 1, offsets(100)).unwrap();
        apply(&mut shards, 100, 150);
        let image = Arc::new(fs.crash());
        drop((shards, st));

        let mut st = open(&image, n, RecoveryPoint::default());
        assert_eq!((st.epoch, st.source_offsets["src"]), (1, 100), "{n} shards");
        let mut shards = st.store.take_shards();
        assert_eq!(
            weight(&mut shards, b"k"),
            100,
            "{n} shards: the state of epoch 1, exactly"
        );
        assert_eq!(st.discarded_records, 50, "{n} shards: the 50 updates of epoch 2");
        assert!(
            shards.iter().all(|s| s.epoch() == 2),
            "{n} shards: writes go to epoch 2"
        );
        // The engine rewinds its source to 100 and runs on.
        apply(&mut shards, st.source_offsets["src"], 150);
        assert_eq!(weight(&mut shards, b"k"), 150, "{n} shards: exactly once");

        // A crash now, and the discarded records stay discarded: recovery to
        // the latest state sees 150, not 200.
        let image = Arc::new(image.crash());
        drop((shards, st));
        let mut st = open(&image, n, RecoveryPoint::Latest);
        let mut shards = st.store.take_shards();
        assert_eq!(
            weight(&mut shards, b"k"),
            150,
            "{n} shards: the discard was durable"
        );
    }
}

/// An epoch commit makes an epoch durable without a checkpoint: recovery
/// returns it, with its offsets, connectors and operator state, and each
/// shard's position at its commit record.
#[test]
fn an_epoch_commit_is_a_recovery_point_with_its_metadata() {
    let fs = Arc::new(MemFs::new());
    let mut st = open(&fs, 2, RecoveryPoint::default());
    let mut shards = st.store.take_shards();
    apply(&mut shards, 0, 40);
    let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
    st.store.checkpoint_inline(&mut refs, 1, offsets(40)).unwrap();
    apply(&mut shards, 40, 70);
    let mut req = offsets(70);
    req.connectors.insert(
        "sink".into(),
        ConnectorCheckpoint {
            state: b"sink-state".to_vec(),
            prepared_transactions: vec!["tx-2".into()],
        },
    );
    req.operators.insert("window".into(), vec![7; 100]);
    let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
    let committed = st.store.commit_epoch_inline(&mut refs, 2, &req).unwrap();
    assert_eq!(committed.source_offsets["src"], 70);
    let lsns = committed.shard_lsns.clone();
    assert!(shards.iter().all(|s| s.epoch() == 3));
    apply(&mut shards, 70, 75);
    let image = Arc::new(fs.crash());
    drop((shards, st));

    let mut st = open(&image, 2, RecoveryPoint::default());
    assert_eq!((st.epoch, st.source_offsets["src"]), (2, 70));
    assert_eq!(st.prepared_transactions["sink"], vec!["tx-2".to_string()]);
    assert_eq!(st.connectors["sink"].state, b"sink-state");
    assert_eq!(st.operators["window"], vec![7; 100]);
    let at: Vec<_> = st.shards.iter().map(|p| p.lsn).collect();
    assert_eq!(at, lsns, "each shard stands at its commit record");
    assert_eq!(st.discarded_records, 5);
    let mut shards = st.store.take_shards();
    assert_eq!(weight(&mut shards, b"k"), 70);
    assert_eq!(st.store.next_epoch(), 3);
    assert!(shards.iter().all(|s| s.epoch() == 3));
}

/// An epoch only one shard committed is not a recovery point: both shards
/// go back to the epoch before, and the one that committed discards its
/// records after that epoch (its commit record too).
#[test]
fn an_epoch_not_committed_on_every_shard_is_not_recovered() {
    let fs = Arc::new(MemFs::new());
    let mut st = open(&fs, 2, RecoveryPoint::default());
    let mut shards = st.store.take_shards();
    apply(&mut shards, 0, 20);
    let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
    st.store.commit_epoch_inline(&mut refs, 1, &offsets(20)).unwrap();
    apply(&mut shards, 20, 30);
    // Epoch 2 reaches shard 0 only.
    let pending = st.store.coordinator().begin_commit(2, &offsets(30)).unwrap();
    let answered = shards[0].poll().unwrap().expect("the commit is answered");
    assert_eq!(
        answered,
        Answered::EpochCommit {
            epoch: 2,
            lsn: answered.lsn()
        }
    );
    shards[0].wait_durable(answered.lsn(), WAIT).unwrap();
    let image = Arc::new(fs.crash());
    drop((pending, shards, st));

    let mut st = open(&image, 2, RecoveryPoint::default());
    assert_eq!((st.epoch, st.source_offsets["src"]), (1, 20));
    assert_eq!(
        st.shards[0].discarded_records, 6,
        "5 updates and the commit record"
    );
    assert_eq!(st.shards[1].discarded_records, 5);
    let mut shards = st.store.take_shards();
    assert_eq!(weight(&mut shards, b"k"), 20);
    // Latest keeps every durable write, and says which epoch is committed.
    drop(shards);
    drop(st);
    let image = Arc::new(image.crash());
    let mut st = open(&image, 2, RecoveryPoint::Latest);
    assert_eq!(st.epoch, 1);
    assert_eq!(
        weight(&mut st.store.take_shards(), b"k"),
        20,
        "the discard was durable"
    );
}

/// Going back to an epoch keeps that epoch, with its offsets and metadata,
/// across every later crash (the rollback's own checkpoint used to carry
/// none); newer checkpoints are deleted.
#[test]
fn a_roll_back_keeps_its_epoch_and_metadata_across_later_crashes() {
    let fs = Arc::new(MemFs::new());
    let mut st = open(&fs, 2, RecoveryPoint::default());
    let mut shards = st.store.take_shards();
    let mut req = offsets(10);
    req.operators.insert("op".into(), b"at 10".to_vec());
    apply(&mut shards, 0, 10);
    let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
    st.store.checkpoint_inline(&mut refs, 1, req).unwrap();
    apply(&mut shards, 10, 20);
    let mut req = offsets(20);
    req.operators.insert("op".into(), b"at 20".to_vec());
    let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
    st.store.commit_epoch_inline(&mut refs, 2, &req).unwrap();
    apply(&mut shards, 20, 30);
    let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
    let newer = st.store.checkpoint_inline(&mut refs, 3, offsets(30)).unwrap();
    apply(&mut shards, 30, 35);
    drop((shards, st));

    let mut st = open(&fs, 2, RecoveryPoint::Epoch(2));
    assert_eq!((st.epoch, st.source_offsets["src"]), (2, 20));
    assert_eq!(st.operators["op"], b"at 20");
    assert_eq!(st.removed_checkpoints, vec![newer.id]);
    assert_eq!(weight(&mut st.store.take_shards(), b"k"), 20);
    let image = Arc::new(fs.crash());
    drop(st);

    for _ in 0..2 {
        let mut st = open(&image, 2, RecoveryPoint::default());
        assert_eq!((st.epoch, st.source_offsets["src"]), (2, 20));
        assert_eq!(st.operators["op"], b"at 20", "the epoch's metadata survives");
        assert_eq!(weight(&mut st.store.take_shards(), b"k"), 20);
    }
}

/// A recovery point that cannot be had is refused, and changes nothing.
#[test]
fn an_epoch_that_is_not_committed_is_refused_and_changes_nothing() {
    let fs = Arc::new(MemFs::new());
    let mut st = open(&fs, 2, RecoveryPoint::default());
    let mut shards = st.store.take_shards();
    apply(&mut shards, 0, 10);
    let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
    st.store.checkpoint_inline(&mut refs, 5, offsets(10)).unwrap();
    apply(&mut shards, 10, 20);
    let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
    st.store.commit_epoch_inline(&mut refs, 7, &offsets(20)).unwrap();
    // Epochs strictly increase, over commits and checkpoints alike.
    let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
    assert!(st.store.commit_epoch_inline(&mut refs, 7, &offsets(20)).is_err());
    assert!(st.store.checkpoint_inline(&mut refs, 6, offsets(20)).is_err());
    assert_eq!(st.store.next_epoch(), 8);
    drop((shards, st));

    for missing in [6, 9] {
        let e = Options::new("/db")
            .fs(fs.clone())
            .shards(2)
            .recovery_point(RecoveryPoint::Epoch(missing))
            .recover()
            .unwrap_err();
        assert!(e.to_string().contains("cannot be recovered"), "{e}");
    }
    let mut st = open(&fs, 2, RecoveryPoint::default());
    assert_eq!((st.epoch, st.source_offsets["src"]), (7, 20));
    assert_eq!(weight(&mut st.store.take_shards(), b"k"), 20);
}

/// A control thread commits epochs and checkpoints while two shard threads
/// ingest from their own source partitions and record their offsets with
/// `set_source_offset`: no barrier, and after a crash at any moment the
/// recovered state is exactly the inputs up to the recovered offsets.
#[test]
fn concurrent_commits_and_checkpoints_while_shards_ingest() {
    let fs = Arc::new(MemFs::new());
    let mut st = open(&fs, 2, RecoveryPoint::default());
    let shards = st.store.take_shards();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = shards
        .into_iter()
        .map(|mut shard| {
            let (stop, written) = (stop.clone(), written.clone());
            std::thread::spawn(move || {
                let name = format!("src/{}", shard.id());
                let z: ZSetSpine = shard.create_zset("count").unwrap();
                let mut offset = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Input `offset` of this partition: +1 on its key.
                    let key = format!("{}-{}", shard.id(), offset % 7);
                    shard.update(z, key.as_bytes(), b"", 1).unwrap();
                    offset += 1;
                    shard.set_source_offset(&name, offset);
                    written.fetch_add(1, Ordering::Relaxed);
                    if offset.is_multiple_of(16) {
                        shard.poll().unwrap();
                    }
                }
                shard
            })
        })
        .collect();
    let mut images = Vec::new();
    for e in 1..=12u64 {
        if e.is_multiple_of(4) {
            st.store.checkpoint(e, CheckpointRequest::default()).unwrap();
        } else {
            let c = st.store.commit_epoch(e, &CheckpointRequest::default()).unwrap();
            assert_eq!(c.source_offsets.len(), 2, "{:?}", c.source_offsets);
        }
        images.push(Arc::new(fs.crash()));
    }
    stop.store(true, Ordering::Relaxed);
    let shards: Vec<Shard> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(written.load(Ordering::Relaxed) > 0);
    drop((shards, st));

    for image in images {
        let mut st = open(&image, 2, RecoveryPoint::default());
        let expected: BTreeMap<String, u64> = st.source_offsets.clone();
        let mut shards = st.store.take_shards();
        for s in &mut shards {
            let upto = expected.get(&format!("src/{}", s.id())).copied().unwrap_or(0);
            for k in 0..7u64 {
                // Inputs 0..upto, +1 each on key offset % 7.
                let want = (upto / 7 + u64::from(k < upto % 7)) as i64;
                let key = format!("{}-{k}", s.id());
                assert_eq!(
                    weight(std::slice::from_mut(s), key.as_bytes()),
                    want,
                    "epoch {}: shard {} key {key}",
                    st.epoch,
                    s.id()
                );
            }
        }
    }
}
