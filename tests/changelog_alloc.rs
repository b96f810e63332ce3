//! A push allocates nothing: counted by a global allocator that tallies every
//! allocation of the test thread. Pops reuse the consumer's scratch buffer, so
//! once it has grown to the largest record they allocate nothing either. A
//! record too large for the ring is the exception: it allocates its one spill
//! buffer, and the small records around it still allocate nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use statespine::changelog::{ChangeRecord, PushError, StateChangelogBuffer, StateOp};

#[path = "common/alloc.rs"]
mod alloc;
use alloc::allocations;

#[test]
fn pushes_and_warm_pops_allocate_nothing() {
    let (mut p, mut c) = StateChangelogBuffer::with_capacity(4 << 10, 16);
    let key = [1u8; 16];
    let value = [2u8; 100];
    // Warm the consumer's scratch to the largest record.
    p.try_push(&ChangeRecord {
        spine: 0,
        epoch: 0,
        op: StateOp::Put,
        key: &key,
        value: &value,
    })
    .unwrap();
    assert!(c.pop().is_some());

    let before = allocations();
    let (mut pushed, mut full, mut popped) = (0u64, 0u64, 0u64);
    for i in 0..100_000u64 {
        let len = (i % 101) as usize;
        let op = if i % 3 == 0 {
            StateOp::Update(i as i64)
        } else {
            StateOp::Put
        };
        let rec = ChangeRecord {
            spine: (i % 7) as u32,
            epoch: i,
            op,
            key: &key,
            value: &value[..len],
        };
        match p.try_push(&rec) {
            Ok(()) => pushed += 1,
            Err(PushError::Full) => full += 1,
            Err(e) => panic!("{e:?}"),
        }
        if i % 5 != 0 {
            // Pop a little slower than we push, so the ring fills and wraps.
            if c.pop().is_some() {
                popped += 1;
            }
        }
    }
    while c.pop().is_some() {
        popped += 1;
    }
    let after = allocations();
    assert_eq!(
        after - before,
        0,
        "{} allocations in {pushed} pushes and {popped} pops",
        after - before
    );
    assert_eq!(pushed, popped);
    assert!(full > 0, "the ring was full at times");
}

#[test]
fn a_spilled_record_allocates_its_buffer_once_and_small_ones_around_it_nothing() {
    let (mut p, mut c) = StateChangelogBuffer::with_capacity(4 << 10, 16);
    // 16 times the ring.
    let large = vec![3u8; 64 << 10];
    let rec = |epoch: u64, value: &'static [u8]| ChangeRecord {
        spine: 1,
        epoch,
        op: StateOp::Put,
        key: &[],
        value,
    };
    let small: &'static [u8] = Box::leak(Box::new([2u8; 100]));
    let large: &'static [u8] = large.leak();
    // Warm the consumer's scratch to the largest record kept in the ring.
    p.try_push(&rec(0, small)).unwrap();
    assert!(c.pop().is_some());

    for round in 0..100u64 {
        let before = allocations();
        p.try_push(&rec(round, small)).unwrap();
        let small_push = allocations() - before;
        p.try_push(&rec(round, large)).unwrap();
        let spilled_push = allocations() - before - small_push;
        p.try_push(&rec(round, small)).unwrap();
        let mut popped = [0usize; 3];
        for len in &mut popped {
            *len = c.pop().map_or(0, |r| r.value.len());
        }
        assert!(c.pop().is_none());
        let total = allocations() - before;
        assert_eq!(small_push, 0, "round {round}: a small push allocated");
        assert_eq!(spilled_push, 1, "round {round}: the spilled push's one buffer");
        assert_eq!(total, 1, "round {round}: the later push or the pops allocated");
        assert_eq!(popped, [100, 64 << 10, 100], "round {round}");
    }
    assert_eq!(p.spilled(), 100);
}
