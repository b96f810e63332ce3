//! `merge_step` honours its budget: each call merges at most its budget of
//! input bytes plus one entry group, and repeated calls finish every merge.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use statespine::io::MemFs;
use statespine::run::RunMode;
use statespine::spine::{Spine, SpineOptions};

#[test]
fn each_step_stays_within_its_budget() {
    let opts = SpineOptions::new(RunMode::KeyValue)
        .memtable_size_bytes(16 << 10)
        .max_runs(1 << 20)
        .memory_budget_bytes(1 << 30);
    let mut s = Spine::create(Arc::new(MemFs::new()), "/m", opts).unwrap();
    for i in 0..40_000u32 {
        s.put(&i.wrapping_mul(2_654_435_761).to_be_bytes(), &[3; 60])
            .unwrap();
    }
    s.seal().unwrap();
    let before = s.batch_count();
    assert!(before > 8, "a backlog to merge: {before} batches");
    // One entry here costs 4 + 60 + 16 bytes of budget; a step may finish the
    // group it is in (at most one entry per input batch in a key-value spine).
    let entry = 80;
    let budget = 1000;
    let mut steps = 0;
    loop {
        let step = s.merge_step(budget).unwrap();
        assert!(step.bytes < budget + entry * s.batch_count().max(1), "{step:?}");
        steps += 1;
        if step.is_idle() {
            break;
        }
        assert!(steps < 1_000_000, "merging never finishes");
    }
    assert!(s.batch_count() < before);
    assert!(steps > 100, "a small budget takes many steps: {steps}");
    assert_eq!(s.cursor().unwrap().count(), 40_000);
}

#[test]
fn a_zero_budget_does_nothing() {
    let opts = SpineOptions::new(RunMode::KeyValue)
        .memtable_size_bytes(4 << 10)
        .max_runs(1 << 20);
    let mut s = Spine::create(Arc::new(MemFs::new()), "/z", opts).unwrap();
    for i in 0..5_000u32 {
        s.put(&i.to_be_bytes(), &[1; 30]).unwrap();
    }
    let shape = s.levels();
    let step = s.merge_step(0).unwrap();
    assert_eq!(step.bytes, 0);
    assert_eq!(s.levels(), shape);
}
