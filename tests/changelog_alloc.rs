//! A push allocates nothing: counted by a global allocator that tallies every
//! allocation of the test thread. Pops reuse the consumer's scratch buffer, so
//! once it has grown to the largest record they allocate nothing either.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use statespine::changelog::{ChangeRecord, PushError, StateChangelogBuffer, StateOp};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        // SAFETY: the caller's contract is passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed through.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        // SAFETY: the caller's contract is passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

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
