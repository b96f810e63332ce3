//! Recovery's progress reports, against a log written here.

use std::sync::{Arc, Mutex};

use super::*;
use crate::changelog::{ChangeRecord, StateOp};
use crate::checkpoint::Phase;
use crate::io::MemFs;
use crate::run::RunMode;
use crate::wal::encode_change;

/// Records written to the log, each with a value of [`VALUE_BYTES`]: about
/// 6 MiB in all, more than one progress step.
const RECORDS: usize = 6000;
const VALUE_BYTES: usize = 1024;

/// A store at `/db` whose one shard's log creates spine `kv` and puts
/// [`RECORDS`] keys into it, in 1 MiB segments; returns the log's bytes.
fn logged_store(fs: &Arc<dyn Fs>, layout: &Layout) -> u64 {
    let dir = layout.wal(0);
    let opts = WalOptions::new(0).segment_size_bytes(1 << 20);
    let mut wal = WriteAheadLog::open(Arc::clone(fs), &dir, opts).unwrap();
    let mut payload = Vec::new();
    let catalog = encode_catalog_value(0, RunMode::KeyValue);
    let create = ChangeRecord {
        spine: CATALOG_SPINE,
        epoch: 0,
        op: StateOp::Put,
        key: b"kv",
        value: &catalog,
    };
    encode_change(&mut payload, &create);
    wal.append(0, &payload).unwrap();
    let value = vec![7u8; VALUE_BYTES];
    for i in 0..RECORDS {
        let key = format!("key-{i:06}");
        let put = ChangeRecord {
            spine: 0,
            epoch: 0,
            op: StateOp::Put,
            key: key.as_bytes(),
            value: &value,
        };
        payload.clear();
        encode_change(&mut payload, &put);
        wal.append(0, &payload).unwrap();
    }
    wal.sync().unwrap();
    assert!(wal.segment_count() > 3, "the log spans several segments");
    drop(wal);
    let names = fs.list(&dir).unwrap();
    names
        .iter()
        .map(|n| fs.open(&dir.join(n)).unwrap().size().unwrap())
        .sum()
}

/// Recovers the store with a progress callback; returns what it reported.
fn recover_reporting(fs: &Arc<dyn Fs>, layout: &Layout, point: RecoveryPoint) -> (Recovery, Vec<Progress>) {
    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let cfg = RecoveryConfig {
        point,
        progress: Some(Arc::new(move |p| sink.lock().unwrap().push(p))),
        ..RecoveryConfig::default()
    };
    let spine_opts = SpineOptions::new(RunMode::KeyValue);
    let rec = recover(fs, layout, 1, &spine_opts, Some(WalOptions::new(0)), &cfg).unwrap();
    let seen = seen.lock().unwrap().clone();
    (rec, seen)
}

/// The reports of `phase`: from 0, never going back, ending at the total,
/// which stays what it was; returns the total.
fn check_phase(seen: &[Progress], phase: Phase) -> u64 {
    let reports: Vec<&Progress> = seen.iter().filter(|p| p.phase == phase).collect();
    assert!(
        reports.len() >= 3,
        "{phase:?}: a start, a step and an end: {reports:?}"
    );
    let total = reports[0].total;
    assert_eq!(reports[0].done, 0, "{phase:?} starts at 0");
    for w in reports.windows(2) {
        assert!(w[0].done <= w[1].done, "{phase:?} goes back: {w:?}");
    }
    for p in &reports {
        assert_eq!((p.shard, p.total), (Some(0), total), "{p:?}");
        assert!(p.done <= p.total, "{p:?}");
    }
    assert_eq!(
        reports.last().map(|p| p.done),
        Some(total),
        "{phase:?} ends at its total"
    );
    total
}

#[test]
fn replay_reports_its_progress_up_to_the_logs_bytes() {
    let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
    let layout = Layout { root: "/db".into() };
    let log_bytes = logged_store(&fs, &layout);
    let (rec, seen) = recover_reporting(&fs, &layout, RecoveryPoint::Latest);
    assert_eq!(rec.shards[0].replayed_records, RECORDS as u64 + 1);
    assert_eq!(check_phase(&seen, Phase::Replay), log_bytes);
    // With no checkpoint, nothing is validated; with the latest state asked
    // for, the log is read once, replaying.
    assert!(seen.iter().all(|p| p.phase == Phase::Replay), "{seen:?}");
}

#[test]
fn a_recovery_to_the_last_epoch_reports_its_scan_then_its_replay() {
    let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
    let layout = Layout { root: "/db".into() };
    let log_bytes = logged_store(&fs, &layout);
    let (rec, seen) = recover_reporting(&fs, &layout, RecoveryPoint::LastCommittedEpoch);
    // No epoch was committed: every record is read by the scan, and
    // discarded by the replay, which still ends at its total.
    assert_eq!(rec.shards[0].discarded_records, RECORDS as u64 + 1);
    assert_eq!(check_phase(&seen, Phase::Scan), log_bytes);
    let replay: Vec<&Progress> = seen.iter().filter(|p| p.phase == Phase::Replay).collect();
    let last = replay.last().expect("the replay reports");
    assert_eq!(last.done, last.total);
    let scan_end = seen.iter().rposition(|p| p.phase == Phase::Scan);
    let replay_start = seen.iter().position(|p| p.phase == Phase::Replay);
    assert!(scan_end < replay_start, "the scan comes first");
}
