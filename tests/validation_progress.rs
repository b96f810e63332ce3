//! `validate_checkpoint_with_progress`: at every depth its reports start at
//! zero, never go back, and end with `done == total`, the bytes of the run
//! files the checkpoint names, whatever it finds wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use statespine::checkpoint::{
    PROGRESS_STEP_BYTES, Phase, Progress, ValidationDepth, validate_checkpoint,
    validate_checkpoint_with_progress,
};
use statespine::io::{Fs, MemFs};
use statespine::store::{CheckpointRequest, Options};

const ROOT: &str = "/db";

/// A checkpoint of two shards holding about `bytes` of values, all in
/// runs; returns its directory.
fn checkpoint(fs: &Arc<MemFs>, bytes: usize) -> PathBuf {
    let mut st = Options::new(ROOT)
        .fs(fs.clone())
        .shards(2)
        .young_run_age(Duration::ZERO)
        .recover()
        .unwrap();
    let mut shards = st.store.take_shards();
    let value = vec![5u8; 1024];
    for s in shards.iter_mut() {
        let kv = s.create_kv("kv").unwrap();
        let mut last = None;
        for i in 0..bytes / 2048 {
            last = Some(s.put(kv, format!("key-{i:08}").as_bytes(), &value).unwrap());
        }
        s.wait_durable(last.unwrap(), Duration::from_secs(10)).unwrap();
        s.flush_all().unwrap();
    }
    let mut refs: Vec<_> = shards.iter_mut().collect();
    st.store
        .checkpoint_inline(&mut refs, 1, CheckpointRequest::default())
        .unwrap();
    let (id, _) = st.store.coordinator().retained()[0];
    Path::new(ROOT).join("checkpoints").join(id.to_string())
}

/// The bytes of the run files the checkpoint's manifest names.
fn run_bytes(fs: &MemFs, dir: &Path) -> u64 {
    let m = validate_checkpoint(fs, dir, ValidationDepth::Manifest)
        .manifest
        .unwrap();
    let runs = m.shards.iter().flat_map(|s| &s.spines).flat_map(|sp| &sp.runs);
    runs.map(|r| r.size).sum()
}

fn reports(fs: &MemFs, dir: &Path, depth: ValidationDepth) -> (bool, Vec<Progress>) {
    let seen = Mutex::new(Vec::new());
    let report = validate_checkpoint_with_progress(fs, dir, depth, &|p| seen.lock().unwrap().push(p));
    (report.is_valid(), seen.into_inner().unwrap())
}

/// From 0 to `total`, never back, every report of the validation.
fn check(seen: &[Progress], total: u64) {
    assert!(seen.len() >= 2, "a start and an end: {seen:?}");
    assert_eq!(seen[0].done, 0);
    for p in seen {
        assert_eq!(
            (p.phase, p.shard, p.total),
            (Phase::Validate, None, total),
            "{p:?}"
        );
    }
    for w in seen.windows(2) {
        assert!(w[0].done <= w[1].done, "goes back: {w:?}");
    }
    assert_eq!(seen.last().unwrap().done, total);
}

#[test]
fn validation_reports_every_runs_bytes_at_every_depth() {
    let fs = Arc::new(MemFs::new());
    let dir = checkpoint(&fs, 64 << 10);
    let total = run_bytes(&fs, &dir);
    assert!(total > 0);
    for depth in [
        ValidationDepth::Manifest,
        ValidationDepth::Footers,
        ValidationDepth::Blocks,
    ] {
        let (valid, seen) = reports(&fs, &dir, depth);
        assert!(valid, "{depth:?}");
        check(&seen, total);
    }
}

#[test]
fn deep_validation_reports_within_a_large_run() {
    let fs = Arc::new(MemFs::new());
    let dir = checkpoint(&fs, 12 << 20);
    let total = run_bytes(&fs, &dir);
    assert!(total > 2 * PROGRESS_STEP_BYTES, "{total}");
    let (valid, seen) = reports(&fs, &dir, ValidationDepth::Blocks);
    assert!(valid);
    check(&seen, total);
    let between = seen.iter().filter(|p| p.done > 0 && p.done < total).count() as u64;
    assert!(
        between >= total / PROGRESS_STEP_BYTES - 1,
        "a report every step: {seen:?}"
    );
    // Never more often than a step apart, but for the start and the end.
    for w in seen[1..seen.len() - 1].windows(2) {
        assert!(w[1].done - w[0].done >= PROGRESS_STEP_BYTES, "{w:?}");
    }
}

#[test]
fn a_damaged_run_still_ends_at_the_total() {
    let fs = Arc::new(MemFs::new());
    let dir = checkpoint(&fs, 64 << 10);
    let total = run_bytes(&fs, &dir);
    let mut runs: Vec<String> = fs.list(&dir).unwrap();
    runs.retain(|n| n != "MANIFEST");
    let run = dir.join(&runs[0]);
    let mut bytes = fs.read(&run).unwrap();
    bytes[100] ^= 0xFF;
    fs.write(&run, &bytes).unwrap();
    let (valid, seen) = reports(&fs, &dir, ValidationDepth::Blocks);
    assert!(!valid, "the flipped byte is found");
    check(&seen, total);
}

/// `Options::on_progress`: an open after a crash reports validating the
/// checkpoint, then each shard's WAL scan and replay, each ending at its
/// total, never going back.
#[test]
fn an_open_reports_its_recovery_through_options() {
    let fs = Arc::new(MemFs::new());
    checkpoint(&fs, 64 << 10);
    // Writes after the checkpoint, committed: the next open replays them.
    let mut store = Options::new(ROOT).fs(fs.clone()).shards(2).open().unwrap();
    let mut shards = store.take_shards();
    for s in shards.iter_mut() {
        let kv = s.kv_spine("kv").unwrap();
        for i in 0..500u32 {
            s.put(kv, &i.to_be_bytes(), &[1; 200]).unwrap();
        }
    }
    let mut refs: Vec<_> = shards.iter_mut().collect();
    let epoch = store.next_epoch();
    store
        .commit_epoch_inline(&mut refs, epoch, &CheckpointRequest::default())
        .unwrap();
    drop((shards, store));
    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let sink = seen.clone();
    let state = Options::new(ROOT)
        .fs(fs.clone())
        .shards(2)
        .on_progress(move |p| sink.lock().unwrap().push(p))
        .recover()
        .unwrap();
    assert_eq!(state.epoch, epoch);
    let seen = seen.lock().unwrap();
    let validated = seen.iter().filter(|p| p.phase == Phase::Validate).count();
    assert!(validated >= 2, "a start and an end: {seen:?}");
    for shard in 0..2 {
        let replay: Vec<_> = seen
            .iter()
            .filter(|p| p.phase == Phase::Replay && p.shard == Some(shard))
            .collect();
        let last = replay.last().expect("replay reported");
        assert!(last.total > 500 * 200 && last.done == last.total, "{replay:?}");
        assert!(replay.windows(2).all(|w| w[0].done <= w[1].done), "{replay:?}");
    }
}
