//! What merges consolidate away: the newest version wins, tombstones vanish at
//! the bottom of the spine, and Z-set weights that sum to zero vanish — so a
//! spine whose contents cancel out compacts to nothing on disk.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use statespine::io::{Fs, MemFs};
use statespine::run::RunMode;
use statespine::spine::{Spine, SpineOptions};

fn spine(mode: RunMode, fs: &MemFs) -> Spine {
    let opts = SpineOptions::new(mode).memtable_size_bytes(8 << 10).fan_in(2);
    Spine::create(Arc::new(fs.clone()), "/c", opts).unwrap()
}

#[test]
fn deleted_keys_leave_no_trace_after_compacting() {
    let fs = MemFs::new();
    let mut s = spine(RunMode::KeyValue, &fs);
    for round in 0..3u8 {
        for i in 0..2_000u32 {
            s.put(&i.to_be_bytes(), &[round; 20]).unwrap();
        }
    }
    for i in 0..2_000u32 {
        s.delete(&i.to_be_bytes()).unwrap();
    }
    s.seal().unwrap();
    s.settle().unwrap();
    assert_eq!(s.cursor().unwrap().count(), 0);
    s.compact().unwrap();
    assert_eq!(s.disk_size_bytes(), 0, "levels {:?}", s.levels());
    assert_eq!(s.batch_count(), 0);
    assert!(fs.list(s.dir()).unwrap().is_empty(), "retired runs were deleted");
}

#[test]
fn newest_version_wins_across_merges() {
    let fs = MemFs::new();
    let mut s = spine(RunMode::KeyValue, &fs);
    for round in 0..5u8 {
        for i in 0..1_000u32 {
            s.put(&i.to_be_bytes(), &[round; 40]).unwrap();
        }
        s.seal().unwrap();
        s.merge_step(50_000).unwrap();
    }
    s.settle().unwrap();
    for i in 0..1_000u32 {
        assert_eq!(s.get(&i.to_be_bytes()).unwrap(), Some(&[4; 40][..]));
    }
    s.compact().unwrap();
    assert_eq!(s.batch_count(), 1);
    let live = s.levels().iter().map(|l| l.entries).sum::<u64>();
    assert_eq!(live, 1_000, "old versions merged away");
    for i in 0..1_000u32 {
        assert_eq!(s.get(&i.to_be_bytes()).unwrap(), Some(&[4; 40][..]));
    }
}

#[test]
fn cancelling_weights_leave_no_trace_after_compacting() {
    let fs = MemFs::new();
    let mut s = spine(RunMode::ZSet, &fs);
    for i in 0..3_000u32 {
        s.update(&(i % 300).to_be_bytes(), &i.to_le_bytes(), 2).unwrap();
    }
    s.seal().unwrap();
    s.settle().unwrap();
    assert_eq!(s.key_weight(&7u32.to_be_bytes()).unwrap(), 20);
    for i in 0..3_000u32 {
        s.update(&(i % 300).to_be_bytes(), &i.to_le_bytes(), -2).unwrap();
    }
    s.seal().unwrap();
    s.settle().unwrap();
    assert_eq!(s.cursor().unwrap().count(), 0);
    assert_eq!(s.key_weight(&7u32.to_be_bytes()).unwrap(), 0);
    s.compact().unwrap();
    assert_eq!(s.disk_size_bytes(), 0, "levels {:?}", s.levels());
    assert!(fs.list(s.dir()).unwrap().is_empty());
}
