//! Opens arbitrary bytes as a WAL segment and exercises every read path:
//! header decoding, the record scan (with torn-tail and corruption detection),
//! replay with change decoding, and the writer's open — which must leave a log
//! that takes a new record and replays it last.
//!
//! `cargo +nightly fuzz run wal_segment fuzz/corpus/wal_segment format/golden/wal-v1/good format/golden/wal-v1/torn format/golden/wal-v1/corrupt`
//! Any panic, hang or sanitizer report is a finding.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use statespine::io::{Fs, MemFs};
use statespine::wal::format::{SegmentHeader, segment_name};
use statespine::wal::segment::scan;
use statespine::wal::{RecoveryMode, WalOptions, WriteAheadLog, decode_change, replay};

fuzz_target!(|data: &[u8]| {
    let dir = Path::new("/wal");
    // Name the file after the first LSN the header claims, so the name check
    // does not stop every input at the door.
    let first_lsn = data.get(32..40).map_or(1, |b| u64::from_le_bytes(b.try_into().unwrap()));
    let path = dir.join(segment_name(first_lsn));
    if let Ok(h) = SegmentHeader::decode(data, &path) {
        scan(data, &h, |f| {
            let _ = decode_change(f.payload, f.epoch, &path, f.lsn);
        });
    }
    let fs = MemFs::new();
    fs.create_dir_all(dir).unwrap();
    fs.write(&path, data).unwrap();
    for mode in [RecoveryMode::Strict, RecoveryMode::TolerateCorruption] {
        let _ = replay(&fs, dir, 0, mode, |f| {
            let _ = decode_change(f.payload, f.epoch, &path, f.lsn);
            Ok(())
        });
    }
    let opts = WalOptions::new(0).recovery(RecoveryMode::TolerateCorruption);
    let Ok(mut wal) = WriteAheadLog::open(Arc::new(fs.clone()), dir, opts) else { return };
    let Ok(lsn) = wal.append(7, b"fuzz") else { return };
    wal.sync().unwrap();
    let mut last = None;
    replay(&fs, dir, 0, RecoveryMode::Strict, |f| {
        last = Some((f.lsn, f.payload.to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(last, Some((lsn, b"fuzz".to_vec())), "the new record replays last");
});
