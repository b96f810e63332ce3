//! Kill points exist only where the `kill-points` feature asks for them: a
//! default build given `STATESPINE_KILL_POINT=*` with certainty of aborting
//! runs a workload through every named point (merge publication, a
//! checkpoint's commit, retention, WAL truncation) and exits normally; a
//! build with the feature aborts at the first one. The workload runs in a
//! child process (this test binary, re-run with the variables set), since a
//! kill point that fires ends the whole process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use statespine::run::RunMode;
use statespine::spine::SpineOptions;
use statespine::store::{CheckpointRequest, Options, Shard};

const CHILD: &str = "child_workload_through_every_kill_point";

/// Runs the workload in a child with every kill point armed to fire.
fn run_child() -> std::process::ExitStatus {
    Command::new(std::env::current_exe().unwrap())
        .args([CHILD, "--exact", "--ignored", "--nocapture"])
        .env("STATESPINE_KILL_POINT", "*")
        .env("STATESPINE_KILL_PROB", "1")
        .status()
        .unwrap()
}

#[cfg(not(feature = "kill-points"))]
#[test]
fn default_build_with_the_kill_point_variable_set_does_not_abort() {
    let status = run_child();
    assert!(status.success(), "the child ended with {status:?}");
}

#[cfg(feature = "kill-points")]
#[test]
fn kill_points_build_aborts_at_an_armed_point() {
    use std::os::unix::process::ExitStatusExt;
    let status = run_child();
    assert_eq!(status.signal(), Some(6), "the child ended with {status:?}");
}

/// Merges, checkpoints, retention and WAL truncation on a small store: the
/// code paths of every named kill point (the build with the feature shows
/// the first of them armed; this build shows none is).
#[test]
#[ignore = "run by the tests above, in a child process"]
fn child_workload_through_every_kill_point() {
    assert_eq!(
        std::env::var("STATESPINE_KILL_POINT").as_deref(),
        Ok("*"),
        "run only as the child of the tests above"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut store = Options::new(dir.path())
        .spine_options(
            SpineOptions::new(RunMode::KeyValue)
                .memtable_size_bytes(4 << 10)
                .memory_budget_bytes(16 << 10)
                .fan_in(2),
        )
        .wal_segment_size(8 << 10)
        .max_retained(1)
        .open()
        .unwrap();
    let mut shard = store.take_shards().remove(0);
    let id = shard.create_kv("data").unwrap();
    for epoch in 1..=8u64 {
        for i in 0..500u64 {
            let k = (epoch * 1000 + i).to_be_bytes();
            shard.put(id, &k, &[7u8; 40]).unwrap();
            if i % 16 == 0 {
                shard.poll().unwrap();
            }
        }
        shard.settle().unwrap();
        let mut refs: Vec<&mut Shard> = vec![&mut shard];
        store
            .checkpoint_inline(&mut refs, epoch, CheckpointRequest::default())
            .unwrap();
        store.coordinator().wait_housekeeping().unwrap();
    }
    assert!(store.coordinator().retained().len() == 1);
}
