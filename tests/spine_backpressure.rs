//! A spine whose owner never calls `merge_step` still keeps its run count
//! bounded: past `max_runs`, writes do the merge work themselves (cooperative)
//! or wait for the helper (background), and reads stay correct.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use statespine::io::MemFs;
use statespine::run::RunMode;
use statespine::spine::{MergeMode, Spine, SpineOptions};

fn never_stepped(mode: MergeMode) {
    let max_runs = 6;
    let opts = SpineOptions::new(RunMode::KeyValue)
        .memtable_size_bytes(4 << 10)
        .memory_budget_bytes(1 << 30)
        .fan_in(3)
        .max_runs(max_runs)
        .merge_mode(mode);
    let mut s = Spine::create(Arc::new(MemFs::new()), "/bp", opts).unwrap();
    let mut most = 0;
    for i in 0..30_000u32 {
        s.put(&i.to_be_bytes(), &[7; 24]).unwrap();
        most = most.max(s.batch_count());
    }
    // Past the limit each write does a step; with one merge per level, a level
    // can gather up to another fan-in of batches while its merge runs.
    let fan_in = 3;
    assert!(
        most <= max_runs + 2 * fan_in,
        "{most} batches, levels {:?}",
        s.levels()
    );
    let stats = s.stats();
    assert!(stats.stalled_writes > 0, "{stats:?}");
    assert!(stats.merges > 0, "{stats:?}");
    for i in (0..30_000u32).step_by(101) {
        assert_eq!(s.get(&i.to_be_bytes()).unwrap(), Some(&[7; 24][..]));
    }
}

#[test]
fn cooperative_writes_merge_when_runs_pile_up() {
    never_stepped(MergeMode::Cooperative);
}

#[test]
fn background_writes_wait_for_the_helper_when_runs_pile_up() {
    never_stepped(MergeMode::Background);
}

#[test]
fn memory_budget_makes_memtables_spill() {
    let opts = SpineOptions::new(RunMode::KeyValue)
        .memtable_size_bytes(16 << 10)
        .memory_budget_bytes(64 << 10);
    let mut s = Spine::create(Arc::new(MemFs::new()), "/mem", opts).unwrap();
    let mut most = 0;
    for i in 0..50_000u32 {
        s.put(&i.to_le_bytes(), &[1; 32]).unwrap();
        most = most.max(s.memory_size_bytes());
    }
    // The budget plus the memtable that fills while a flush is under way.
    assert!(most <= (64 << 10) + 2 * (16 << 10), "{most} bytes in memory");
    assert!(s.disk_size_bytes() > 50_000 * 36, "state spilled to run files");
}
