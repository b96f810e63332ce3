//! A warm shard allocates nothing per mutation: single puts, and write
//! batches (whose buffers the shard keeps from one batch to the next).
//! Counted by a global allocator that tallies the test thread's allocations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use statespine::io::MemFs;
use statespine::run::RunMode;
use statespine::spine::SpineOptions;
use statespine::store::Options;

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
fn warm_puts_and_batches_allocate_nothing() {
    let mut store = Options::new("/db")
        .fs(Arc::new(MemFs::new()))
        .spine_options(SpineOptions::new(RunMode::KeyValue).memtable_size_bytes(64 << 20))
        .open()
        .unwrap();
    let mut shard = store.take_shards().remove(0);
    let (a, b) = (shard.create_kv("a").unwrap(), shard.create_kv("b").unwrap());
    let z = shard.create_zset("z").unwrap();
    let value = [7u8; 100];
    let write_batch = |shard: &mut statespine::store::Shard| {
        let mut batch = shard.batch();
        batch
            .put(a, b"k1", &value)
            .put(b, b"k2", &value)
            .delete(a, b"k3")
            .update(z, b"k4", b"v", 1);
        shard.write(batch).unwrap();
    };
    // Warm: the keys exist, the batch buffers have grown.
    shard.put(a, b"k", &value).unwrap();
    for _ in 0..10 {
        write_batch(&mut shard);
    }
    let before = allocations();
    for _ in 0..1_000 {
        shard.put(a, b"k", &value).unwrap();
    }
    assert_eq!(allocations() - before, 0, "single puts allocated");
    let before = allocations();
    for _ in 0..1_000 {
        write_batch(&mut shard);
    }
    assert_eq!(allocations() - before, 0, "batches allocated");
}
