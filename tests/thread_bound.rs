//! A store runs a fixed number of threads whatever its number of spines:
//! background merges share the store's merge pool, syncs and the janitor its
//! worker pool, and write-behind threads are bounded process-wide. One test
//! in this file, so no other test's threads are counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use statespine::run::RunMode;
use statespine::spine::{MergeMode, SpineOptions};
use statespine::{CheckpointRequest, Options};

/// Threads of this process now (Linux), by name: the store names every
/// thread it starts `statespine-*`.
fn store_threads() -> usize {
    let count = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("statespine"))
            .count()
    };
    // A thread that finished its work may linger a moment before the
    // kernel reaps it: count again once before calling it alive.
    let first = count();
    std::thread::sleep(std::time::Duration::from_millis(2));
    first.min(count())
}

/// Opens a store of 2 shards with `spines` spines each in background merge
/// mode, writes enough to keep merges running in every spine, checkpoints,
/// and returns the most store threads seen at once.
fn peak_threads(spines: usize) -> usize {
    let tmp = tempfile::tempdir().unwrap();
    let opts = SpineOptions::new(RunMode::KeyValue)
        .merge_mode(MergeMode::Background)
        .memtable_size_bytes(4 << 10)
        .fan_in(2);
    let mut store = Options::new(tmp.path().join("db"))
        .shards(2)
        .spine_options(opts)
        .worker_threads(3)
        .merge_threads(2)
        .open()
        .unwrap();
    let mut shards = store.take_shards();
    let mut peak = 0;
    let handles: Vec<Vec<_>> = shards
        .iter_mut()
        .map(|s| {
            (0..spines)
                .map(|i| s.create_kv(&format!("op{i}")).unwrap())
                .collect()
        })
        .collect();
    for round in 0..40u32 {
        for (shard, hs) in shards.iter_mut().zip(&handles) {
            for (i, h) in hs.iter().enumerate() {
                for k in 0..8u32 {
                    let key = format!("{i:03}-{round:03}-{k}");
                    shard.put(*h, key.as_bytes(), &[7u8; 120]).unwrap();
                }
            }
            shard.poll().unwrap();
        }
        peak = peak.max(store_threads());
    }
    let mut refs: Vec<_> = shards.iter_mut().collect();
    store
        .checkpoint_inline(&mut refs, 1, CheckpointRequest::default())
        .unwrap();
    peak = peak.max(store_threads());
    drop((shards, store));
    peak
}

#[test]
fn a_hundred_spines_run_no_more_threads_than_ten() {
    let ten = peak_threads(5);
    let hundred = peak_threads(50);
    // The drainer, 3 workers, 2 merge threads, at most 4 write-behind
    // threads: 10, whatever the spines.
    let bound = 1 + 3 + 2 + 4;
    assert!(ten <= bound, "10 spines: {ten} store threads");
    assert!(hundred <= bound, "100 spines: {hundred} store threads");
    assert!(hundred >= 1 + 3 + 2, "the store's pools are counted: {hundred}");
    println!("store threads: 10 spines {ten}, 100 spines {hundred}, bound {bound}");
}
