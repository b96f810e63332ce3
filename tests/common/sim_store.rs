//! What the durability tests share: a small store on the crash-simulating
//! file system (2 KiB memtables, 4 KiB WAL segments, manual syncs), so that
//! a few hundred writes go through merges, WAL rotation, checkpoints,
//! retention and truncation; and the workloads' writes.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use statespine::io::SimFs;
use statespine::run::RunMode;
use statespine::spine::SpineOptions;
use statespine::store::{Options, RecoveryPoint};
use statespine::wal::SyncPolicy;

/// The store at `/db` on `fs`: `retained` checkpoints kept; `defer` keeps
/// runs younger than a second out of cuts (the default), else every run is
/// synced at its first cut.
pub fn small_store(fs: Arc<SimFs>, retained: usize, defer: bool) -> Options {
    Options::new("/db")
        .recovery_point(RecoveryPoint::Latest)
        .fs(fs)
        .spine_options(
            SpineOptions::new(RunMode::KeyValue)
                .memtable_size_bytes(2 << 10)
                .memory_budget_bytes(8 << 10)
                .fan_in(3),
        )
        .wal_segment_size(4 << 10)
        .sync_policy(SyncPolicy::Manual)
        .max_retained(retained)
        .young_run_age(if defer {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        })
}

/// The `i`-th write of the fault and damage workloads: 150 keys, values of
/// 20–49 bytes derived from `i`.
pub fn write(i: u32) -> (Vec<u8>, Vec<u8>) {
    (
        format!("key-{:04}", (i * 37) % 150).into_bytes(),
        vec![(i % 251) as u8; 20 + (i % 30) as usize],
    )
}
