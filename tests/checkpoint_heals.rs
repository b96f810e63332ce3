//! A failed checkpoint heals: whatever made one fail (a spine dropped while
//! it was cut, no space for a link or the manifest) leaves nothing that
//! makes the next one fail, and the WAL is truncated again once one
//! commits. A failed fsync is the exception: it is fail-stop, and later
//! checkpoints are refused rather than pretend the lost pages durable.
//! Regression: `drop_spine` between a cut and its commit failed the
//! checkpoint (ENOENT on the link) and every later one (EEXIST on the reused
//! `.tmp` directory), so the WAL grew without bound.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/sim_store.rs"]
mod sim_store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sim_store::small_store;
use statespine::checkpoint::CheckpointStore;
use statespine::io::{CrashVariant, Errno, Fs, SimFs};
use statespine::store::{CheckpointRequest, KvSpine, Shard, Store};

const WAIT: Duration = Duration::from_secs(10);

fn write_some(shard: &mut Shard, id: KvSpine, from: u32, n: u32) {
    for i in from..from + n {
        let (k, v) = sim_store::write(i);
        shard.put(id, &k, &v).unwrap();
        if i % 8 == 0 {
            shard.poll().unwrap();
        }
    }
    shard.wait_durable(shard.last_lsn(), WAIT).unwrap();
}

fn checkpoint(store: &mut Store, shard: &mut Shard, epoch: u64) -> statespine::Result<()> {
    store
        .checkpoint_inline(&mut [shard], epoch, CheckpointRequest::default())
        .map(drop)
}

/// Waits until the drainer has truncated the WAL below `bytes`.
fn wal_shrinks_below(store: &Store, bytes: u64) {
    let start = Instant::now();
    while store.wal_size() >= bytes {
        assert!(
            start.elapsed() < WAIT,
            "the WAL holds {} bytes, expected truncation below {bytes}",
            store.wal_size()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Directories under `checkpoints/` that are not committed checkpoints.
fn leftovers(fs: &SimFs) -> Vec<String> {
    let names = fs.list(std::path::Path::new("/db/checkpoints")).unwrap();
    names.into_iter().filter(|n| n.ends_with(".tmp")).collect()
}

/// Ten good checkpoints after `epoch`, with writes between; the WAL is
/// truncated, and at most the janitor's next directory is left over.
fn ten_good_checkpoints(fs: &SimFs, store: &mut Store, shard: &mut Shard, id: KvSpine, epoch: u64) {
    for e in epoch + 1..=epoch + 10 {
        write_some(shard, id, (e * 100) as u32, 100);
        checkpoint(store, shard, e).unwrap_or_else(|err| panic!("checkpoint {e}: {err}"));
    }
    store.coordinator().wait_housekeeping().unwrap();
    // Ten checkpoints wrote ~70 KB of WAL; truncation keeps a few 4 KiB
    // segments (the memtables' records and the active segment).
    wal_shrinks_below(store, 24 << 10);
    assert!(
        leftovers(fs).len() <= 1,
        "half-built directories: {:?}",
        leftovers(fs)
    );
}

#[test]
fn drop_spine_between_cut_and_commit_is_ordered_after_the_checkpoint() {
    let fs = Arc::new(SimFs::new());
    let mut store = small_store(fs.clone(), 2, false).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let keep = shard.create_kv("keep").unwrap();
    let doomed = shard.create_kv("doomed").unwrap();
    write_some(&mut shard, keep, 0, 200);
    write_some(&mut shard, doomed, 0, 200);
    shard.settle().unwrap();

    let pending = store
        .coordinator()
        .begin(1, CheckpointRequest::default())
        .unwrap();
    assert!(shard.poll().unwrap().is_some(), "the cut is answered");
    shard.drop_spine(doomed).unwrap();
    shard.wait_durable(shard.last_lsn(), WAIT).unwrap();
    let meta = store.coordinator().finish(pending).unwrap();
    let manifest = store.coordinator().store().load_manifest(meta.id).unwrap();
    let names: Vec<&str> = manifest.shards[0]
        .spines
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["keep", "doomed"], "the checkpoint holds the spine as cut");

    // A crash now: the checkpoint of epoch 1 holds the spine, the WAL drops it.
    let image = Arc::new(fs.image(CrashVariant::DropUnsynced, 1));
    let mut back = small_store(image.clone(), 2, false).open().unwrap();
    let mut s = back.take_shards().remove(0);
    assert!(s.spine_id("doomed").is_none(), "the drop after the cut replays");
    assert_eq!(entries(&mut s, "keep"), 150);
    drop((s, back));
    let at_1 = small_store(image, 2, false)
        .recovery_point(statespine::store::RecoveryPoint::Epoch(1))
        .recover()
        .unwrap();
    let mut store1 = at_1.store;
    let mut s = store1.take_shards().remove(0);
    assert_eq!(entries(&mut s, "doomed"), 150, "epoch 1 still has the spine");
    drop((s, store1));

    ten_good_checkpoints(&fs, &mut store, &mut shard, keep, 1);
    assert!(
        !fs.exists(std::path::Path::new("/db/shards/0/runs/1")).unwrap(),
        "the dropped spine's directory goes once its runs are released"
    );
}

#[test]
fn drop_spine_before_the_cut_is_answered_is_ordered_before_the_checkpoint() {
    let fs = Arc::new(SimFs::new());
    let mut store = small_store(fs.clone(), 2, false).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let keep = shard.create_kv("keep").unwrap();
    let doomed = shard.create_kv("doomed").unwrap();
    write_some(&mut shard, doomed, 0, 200);
    let pending = store
        .coordinator()
        .begin(1, CheckpointRequest::default())
        .unwrap();
    shard.drop_spine(doomed).unwrap();
    assert!(shard.poll().unwrap().is_some());
    let meta = store.coordinator().finish(pending).unwrap();
    let manifest = store.coordinator().store().load_manifest(meta.id).unwrap();
    let names: Vec<&str> = manifest.shards[0]
        .spines
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["keep"]);
    ten_good_checkpoints(&fs, &mut store, &mut shard, keep, 1);
}

/// The `nth` `op` of checkpoint 3's commit fails (two kept, so the commit
/// also retires checkpoint 1 early), then ten good ones follow.
fn one_failed_step_heals(op: &'static str, nth: u32, errno: Errno) {
    let fs = Arc::new(SimFs::new());
    let mut store = small_store(fs.clone(), 2, false).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let id = shard.create_kv("kv").unwrap();
    // Three spines: the commit links at least three runs.
    for name in ["a", "b"] {
        let other = shard.create_kv(name).unwrap();
        write_some(&mut shard, other, 0, 300);
    }
    for epoch in 1..=2 {
        write_some(&mut shard, id, epoch * 300, 300);
        checkpoint(&mut store, &mut shard, u64::from(epoch)).unwrap();
    }
    write_some(&mut shard, id, 900, 300);
    // The cut on this thread, then the fault, aimed at the commit alone.
    let pending = store
        .coordinator()
        .begin(3, CheckpointRequest::default())
        .unwrap();
    assert!(shard.poll().unwrap().is_some());
    store.coordinator().wait_housekeeping().unwrap();
    fs.fail_named(op, nth, errno);
    let err = store
        .coordinator()
        .finish(pending)
        .expect_err("the injected failure fails it");
    assert!(
        matches!(&err, statespine::Error::Io { op: o, .. } if *o == op),
        "{err}"
    );
    fs.clear_faults();
    // At least one committed checkpoint is left, whatever the failure took.
    assert!(!store.coordinator().retained().is_empty());
    ten_good_checkpoints(&fs, &mut store, &mut shard, id, 3);
    // And the store recovers to the last of them with every write.
    let image = Arc::new(fs.image(CrashVariant::DropUnsynced, 7));
    let state = small_store(image, 2, false).recover().unwrap();
    assert_eq!(state.epoch, 13);
}

#[test]
fn no_space_for_a_link_heals_at_the_next_checkpoint() {
    one_failed_step_heals("hard link", 2, Errno::Enospc);
}

#[test]
fn an_io_error_on_a_link_heals_at_the_next_checkpoint() {
    one_failed_step_heals("hard link", 3, Errno::Eio);
}

#[test]
fn no_space_for_the_manifest_heals_at_the_next_checkpoint() {
    one_failed_step_heals("create", 1, Errno::Enospc);
}

#[test]
fn a_failed_early_retirement_heals_at_the_next_checkpoint() {
    // The first rename retires checkpoint 1 before the commit point.
    one_failed_step_heals("rename", 1, Errno::Eio);
}

#[test]
fn a_failed_commit_rename_after_an_early_retirement_heals_at_the_next_checkpoint() {
    // The second is the commit point itself, after checkpoint 1 went.
    one_failed_step_heals("rename", 2, Errno::Eio);
}

#[test]
fn a_failed_fsync_in_a_commit_refuses_every_later_checkpoint() {
    let fs = Arc::new(SimFs::new());
    let mut store = small_store(fs.clone(), 2, false).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let id = shard.create_kv("kv").unwrap();
    write_some(&mut shard, id, 0, 300);
    shard.settle().unwrap();
    fs.fail_named("fsync dir", 1, Errno::Eio);
    assert!(checkpoint(&mut store, &mut shard, 1).is_err());
    fs.clear_faults();
    for e in 2..4 {
        let err = checkpoint(&mut store, &mut shard, e).expect_err("fail-stop");
        // The coordinator refuses, not the WAL (which never failed).
        assert!(
            matches!(&err, statespine::Error::Poisoned { path, .. } if path.ends_with("checkpoints")),
            "{err}"
        );
    }
}

/// Live entries of the spine called `name`.
fn entries(shard: &mut Shard, name: &str) -> usize {
    let id = shard.spine_id(name).expect("spine");
    shard.cursor(id).unwrap().count()
}
