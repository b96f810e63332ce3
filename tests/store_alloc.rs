//! A warm shard allocates nothing per mutation: single puts, and write
//! batches (whose buffers the shard keeps from one batch to the next).
//! Counted by a global allocator that tallies the test thread's allocations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use statespine::io::MemFs;
use statespine::run::RunMode;
use statespine::spine::SpineOptions;
use statespine::store::Options;

#[path = "common/alloc.rs"]
mod alloc;
use alloc::allocations;

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
