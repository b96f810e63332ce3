//! Records of any size up to the documented limits go through the store:
//! keys up to `MAX_KEY_BYTES` (64 KiB), values up to `MAX_VALUE_BYTES`
//! (128 MiB), far past the changelog ring (default 8 MiB: a record over
//! half of it takes the ring's spill path), through the WAL, a checkpoint,
//! a crash and recovery, read back byte for byte. One byte more is refused
//! before anything is logged (`tests/refused_writes.rs`). Regression: values
//! of 4 MiB or more were refused (`changelog: TooLarge`), though the docs
//! spoke of 1 GiB.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use statespine::io::MemFs;
use statespine::store::{CheckpointRequest, MAX_KEY_BYTES, MAX_VALUE_BYTES, Options, RecoveryPoint};

const WAIT: Duration = Duration::from_secs(120);

/// `len` bytes that differ at every 8-byte word, so a misplaced block shows.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

#[test]
fn a_64_mib_value_and_the_largest_record_survive_checkpoint_crash_and_recovery() {
    let fs = Arc::new(MemFs::new());
    let mut store = Options::new("/db")
        .recovery_point(RecoveryPoint::Latest)
        .fs(fs.clone())
        .open()
        .unwrap();
    let mut shard = store.take_shards().remove(0);
    let kv = shard.create_kv("big").unwrap();
    let small = shard.create_kv("small").unwrap();
    let big_key = pattern(1, MAX_KEY_BYTES);
    let writes: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"64 MiB".to_vec(), pattern(2, 64 << 20)),
        (big_key.clone(), pattern(3, MAX_VALUE_BYTES)),
        (b"just past the ring".to_vec(), pattern(4, (4 << 20) + 1)),
    ];
    for (i, (k, v)) in writes.iter().enumerate() {
        shard.put(kv, k, v).unwrap();
        shard
            .put(small, &[i as u8], b"small, around the big ones")
            .unwrap();
        shard.poll().unwrap();
    }
    store
        .checkpoint_inline(&mut [&mut shard], 1, CheckpointRequest::default())
        .unwrap();
    // One more after the checkpoint: only the WAL holds it.
    let after = (b"after the checkpoint".to_vec(), pattern(5, 64 << 20));
    let lsn = shard.put(kv, &after.0, &after.1).unwrap();
    shard.wait_durable(lsn, WAIT).unwrap();
    let image = Arc::new(fs.crash());
    drop((shard, store, fs));

    let state = Options::new("/db")
        .recovery_point(RecoveryPoint::Latest)
        .fs(image)
        .recover()
        .unwrap();
    assert_eq!(state.epoch, 1);
    let mut store = state.store;
    let shard = store.take_shards().remove(0);
    let kv = shard.kv_spine("big").unwrap();
    for (k, v) in writes.iter().chain(std::iter::once(&after)) {
        let got = shard.get(kv, k).unwrap().expect("present");
        assert_eq!(got.len(), v.len());
        assert!(
            got == &v[..],
            "{} bytes under a {}-byte key differ",
            v.len(),
            k.len()
        );
    }
    let small = shard.kv_spine("small").unwrap();
    for i in 0..3u8 {
        assert_eq!(
            shard.get(small, &[i]).unwrap(),
            Some(&b"small, around the big ones"[..])
        );
    }
}
