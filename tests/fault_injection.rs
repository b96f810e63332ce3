//! Fail-stop under I/O errors, on the crash-simulating file system: every
//! operation k of a workload fails (once, or from then on; EIO or ENOSPC;
//! an append fails short). Whatever happens, nothing panics, no write is
//! acknowledged that a later open does not return, a failed fsync poisons
//! (nothing after it is acknowledged), nothing is deleted once an error
//! was seen, and reopening — as a restart, or after a power loss — gives
//! exactly a prefix of the writes that includes every acknowledged one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/sim_store.rs"]
mod sim_store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use statespine::io::{CrashVariant, Errno, SimFs};
use statespine::store::{CheckpointRequest, Shard};

type Kv = BTreeMap<Vec<u8>, Vec<u8>>;

const WRITES: u32 = 500;

/// Returns (writes attempted, writes acknowledged).
fn workload(fs: Arc<SimFs>) -> (u32, u32) {
    let Ok(mut store) = sim_store::small_store(fs, 1, false).open() else {
        return (0, 0);
    };
    let mut shard: Shard = store.take_shards().remove(0);
    let Ok(id) = shard.create_kv("kv") else {
        return (0, 0);
    };
    let (mut done, mut acked, mut epoch) = (0, 0, 0);
    for i in 0..WRITES {
        let (k, v) = sim_store::write(i);
        // An attempted write counts as written: an error leaves its outcome
        // unknown (it may be in the log), never acknowledged.
        done = i + 1;
        if shard.put(id, &k, &v).is_err() {
            break;
        }
        if shard.poll().is_err() {
            break;
        }
        if i % 40 == 39 {
            if shard
                .wait_durable(shard.last_lsn(), Duration::from_secs(5))
                .is_err()
            {
                break;
            }
            acked = done;
        }
        if i % 100 == 99 {
            epoch += 1;
            if store
                .checkpoint_inline(&mut [&mut shard], epoch, CheckpointRequest::default())
                .is_err()
            {
                break;
            }
            acked = done;
        }
    }
    (done, acked)
}

fn check(fs: Arc<SimFs>, done: u32, acked: u32, what: &str) {
    let mut state = sim_store::small_store(fs, 1, false)
        .recover()
        .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let shard = state.store.take_shards().remove(0);
    let got: Kv = match shard.kv_spine("kv") {
        Some(id) => shard
            .cursor(id)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.key.to_vec(), e.value.to_vec())
            })
            .collect(),
        None => Kv::new(),
    };
    let mut model = Kv::new();
    for i in 0..acked {
        let (k, v) = sim_store::write(i);
        model.insert(k, v);
    }
    let mut n = acked;
    while model != got {
        if n >= done {
            let mut full = Kv::new();
            for i in 0..done {
                let (k, v) = sim_store::write(i);
                full.insert(k, v);
            }
            let diff: Vec<String> = full
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(*v))
                .take(3)
                .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                .collect();
            let extra = got.keys().filter(|k| !full.contains_key(*k)).count();
            panic!(
                "{what}: not a prefix of the {done} writes covering the {acked} acknowledged: {} keys, differs from all at {diff:?}, {extra} extra",
                got.len()
            );
        }
        let (k, v) = sim_store::write(n);
        model.insert(k, v);
        n += 1;
    }
}

#[test]
fn every_failing_operation_is_fail_stop_and_recoverable() {
    let clean = Arc::new(SimFs::new());
    workload(Arc::clone(&clean));
    let total = clean.ops();
    let mut cases = 0;
    for k in (1..=total).step_by(3) {
        for (sticky, e) in [(true, Errno::Eio), (false, Errno::Enospc)] {
            let fs = Arc::new(SimFs::new());
            fs.fail_at(k, sticky, e);
            let (done, acked) = workload(Arc::clone(&fs));
            fs.clear_faults();
            let what = format!("op {k}/{total} fails ({e:?}, sticky {sticky})");
            // A power loss after the error, then a restart on what is left.
            check(
                Arc::new(fs.image(CrashVariant::DropUnsynced, k)),
                done,
                acked,
                &format!("{what}, power loss"),
            );
            check(fs, done, acked, &format!("{what}, restart"));
            cases += 1;
        }
    }
    eprintln!(
        "{total} operations, {cases} failure cases, each checked after a restart and after a power loss"
    );
    assert!(cases > 100);
}

#[test]
fn a_failed_fsync_poisons_the_shard_and_nothing_is_deleted() {
    let fs = Arc::new(SimFs::new());
    let mut store = sim_store::small_store(Arc::clone(&fs), 1, false).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let id = shard.create_kv("kv").unwrap();
    for i in 0..200 {
        let (k, v) = sim_store::write(i);
        shard.put(id, &k, &v).unwrap();
        shard.poll().unwrap();
    }
    store
        .checkpoint_inline(&mut [&mut shard], 1, CheckpointRequest::default())
        .unwrap();
    store.coordinator().wait_housekeeping().unwrap();
    // What a checkpoint or recovery relies on: checkpoints and WAL segments
    // (live runs come and go with merges).
    let kept = |fs: &SimFs| {
        let mut v = files(fs, std::path::Path::new("/db/checkpoints"));
        v.extend(files(fs, std::path::Path::new("/db/shards/0/wal")));
        v
    };
    // Let the drainer act on the first checkpoint's WAL truncation request
    // (asynchronous, and legitimate) before the snapshot.
    let mut before = kept(&fs);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = kept(&fs);
        if now == before {
            break;
        }
        before = now;
    }
    // Every operation fails from now on: the next sync poisons the log.
    fs.fail_at(fs.ops() + 1, true, Errno::Eio);
    let (k, v) = sim_store::write(500);
    let _ = shard.put(id, &k, &v);
    assert!(
        matches!(
            shard.wait_durable(shard.last_lsn(), Duration::from_secs(5)),
            Err(statespine::Error::Poisoned { .. })
        ),
        "nothing is acknowledged after a failed fsync"
    );
    fs.clear_faults();
    // The log stays poisoned: later writes are refused or never acknowledged.
    let refused = (0..100).any(|i| shard.put(id, &sim_store::write(600 + i).0, b"x").is_err());
    assert!(
        refused
            || shard
                .wait_durable(shard.last_lsn(), Duration::from_millis(200))
                .is_err()
    );
    assert!(
        store
            .checkpoint_inline(&mut [&mut shard], 2, CheckpointRequest::default())
            .is_err()
    );
    let after = kept(&fs);
    let gone: Vec<_> = before.iter().filter(|p| !after.contains(p)).collect();
    assert!(gone.is_empty(), "deleted after an I/O error: {gone:?}");
    drop((shard, store));
    check(fs, 501, 200, "reopen after a poisoned log");
}

fn files(fs: &SimFs, dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    use statespine::io::Fs;
    let mut out = Vec::new();
    for n in fs.list(dir).unwrap_or_default() {
        let p = dir.join(n);
        if fs.read(&p).is_ok() {
            out.push(p);
        } else {
            out.extend(files(fs, &p));
        }
    }
    out
}
