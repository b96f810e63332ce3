//! The spine's hot paths allocate nothing, counted by a global allocator
//! that tallies every allocation of the test thread:
//! - a put into the memtable, also right after a cursor made its sorted
//!   view (the view is set aside, not copied or freed);
//! - a cursor step, forward or back, turning around, or seeking, once the
//!   blocks it touches have been validated (their first touch caches them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use statespine::io::MemFs;
use statespine::run::RunMode;
use statespine::spine::{Spine, SpineOptions};

#[path = "common/alloc.rs"]
mod alloc;
use alloc::allocations;

fn key(i: u32) -> [u8; 8] {
    (u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes()
}

#[test]
fn puts_and_cursor_steps_allocate_nothing() {
    let opts = SpineOptions::new(RunMode::KeyValue)
        .memtable_size_bytes(1 << 20)
        .memory_budget_bytes(8 << 20);
    let mut s = Spine::create(Arc::new(MemFs::new()), "/s", opts).unwrap();
    for i in 0..20_000u32 {
        s.put(&key(i), &[1u8; 32]).unwrap();
        if i % 5000 == 2499 {
            s.flush().unwrap();
        }
    }
    assert!(s.memory_size_bytes() > 0, "the live memtable holds entries");
    // A cursor makes the live memtable's sorted view; the puts after it
    // set the view aside without allocating.
    assert!(s.cursor().unwrap().next().is_some());
    let before = allocations();
    for i in 20_000..21_000u32 {
        s.put(&key(i), &[2u8; 32]).unwrap();
        s.put(&key(i - 20_000), &[3u8; 32]).unwrap();
        s.delete(&key(i - 19_000)).unwrap();
    }
    assert_eq!(allocations() - before, 0, "puts allocated");

    let mut c = s.cursor().unwrap();
    // Warm: every block validated once (its first touch caches it).
    while c.current().is_some() {
        c.advance().unwrap();
    }
    c.seek_to_first().unwrap();
    let before = allocations();
    let mut seen = 0u32;
    for round in 0..200u32 {
        for _ in 0..20 {
            c.advance().unwrap();
        }
        for _ in 0..7 {
            c.prev().unwrap();
        }
        c.seek(&key(round)).unwrap();
        c.seek_back(&key(round + 1)).unwrap();
        seen += u32::from(c.current().is_some());
    }
    c.seek_to_last().unwrap();
    c.prev().unwrap();
    assert_eq!(allocations() - before, 0, "cursor steps allocated");
    assert!(seen > 0);
}
