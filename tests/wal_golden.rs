//! The committed golden WAL segments (`format/golden/wal-v1/`) are read
//! forever: the good one replays every record, the torn one is trimmed, the
//! damaged one is refused at the exact offset; the writer's bytes match.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../format/golden/wal_entries.rs"]
mod wal_entries;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use statespine::Error;
use statespine::io::{Fs, MemFs, StdFs};
use statespine::wal::{RecoveryMode, WalOptions, WriteAheadLog, decode_change, replay};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("format/golden/wal-v1")
        .join(name)
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(golden(name).join(wal_entries::SEGMENT_NAME)).unwrap()
}

/// A writable copy in memory, so tests never modify the committed files.
fn copy(name: &str) -> MemFs {
    let fs = MemFs::new();
    fs.create_dir_all(Path::new("/wal")).unwrap();
    fs.write(&Path::new("/wal").join(wal_entries::SEGMENT_NAME), &bytes(name))
        .unwrap();
    fs
}

#[test]
fn the_generator_still_writes_the_committed_bytes() {
    assert_eq!(bytes("good"), wal_entries::good());
    assert_eq!(bytes("torn"), wal_entries::torn());
    assert_eq!(bytes("corrupt"), wal_entries::corrupt());
}

#[test]
fn the_good_segment_replays_every_record() {
    let mut got = Vec::new();
    let report = replay(&StdFs::new(), &golden("good"), 1, RecoveryMode::Strict, |f| {
        let rec = decode_change(f.payload, f.epoch, Path::new("golden"), f.lsn).unwrap();
        got.push((
            f.lsn,
            f.epoch,
            rec.spine,
            rec.op,
            rec.key.to_vec(),
            rec.value.to_vec(),
        ));
        Ok(())
    })
    .unwrap();
    let want: Vec<_> = wal_entries::records()
        .into_iter()
        .enumerate()
        .map(|(i, (e, r))| (i as u64 + 1, e, r.spine, r.op, r.key.to_vec(), r.value.to_vec()))
        .collect();
    assert_eq!(got, want);
    assert_eq!((report.last_lsn, report.torn_tail), (5, false));
    let wal = WriteAheadLog::open(
        Arc::new(copy("good")),
        "/wal",
        WalOptions::new(wal_entries::SHARD_ID),
    )
    .unwrap();
    assert_eq!(wal.next_lsn(), 6);
}

#[test]
fn the_torn_segment_is_trimmed() {
    let report = replay(
        &StdFs::new(),
        &golden("torn"),
        1,
        RecoveryMode::Strict,
        |_| Ok(()),
    )
    .unwrap();
    assert_eq!((report.records, report.torn_tail), (5, true));
    let fs = copy("torn");
    let wal = WriteAheadLog::open(Arc::new(fs.clone()), "/wal", WalOptions::new(3)).unwrap();
    assert_eq!(wal.open_report().torn_bytes, 30);
    assert_eq!(wal.next_lsn(), 6);
    assert_eq!(
        fs.read(&Path::new("/wal").join(wal_entries::SEGMENT_NAME))
            .unwrap(),
        wal_entries::good()
    );
}

#[test]
fn the_damaged_segment_is_refused_at_the_exact_offset() {
    let at = wal_entries::third_record_offset() as u64;
    let err = replay(&StdFs::new(), &golden("corrupt"), 1, RecoveryMode::Strict, |_| {
        Ok(())
    })
    .unwrap_err();
    let Error::Corruption { offset, path, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        (*offset, path.file_name().unwrap()),
        (at, std::ffi::OsStr::new(wal_entries::SEGMENT_NAME))
    );
    let err = WriteAheadLog::open(Arc::new(copy("corrupt")), "/wal", WalOptions::new(3)).unwrap_err();
    let Error::Corruption { offset, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*offset, at, "{err}");
}
