//! A/B: N puts of 16-byte keys and 100-byte values through one shard of a
//! store (WAL on, group commit every 1 ms), polling every 64, then a wait
//! for durability; the whole process is what an A/B times.
//!
//! `cargo run --release --example store_put_bench [puts]` (default 2,000,000).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use statespine::store::Options;
fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(2_000_000, |s| s.parse().expect("puts must be a number"));
    let dir = tempfile::tempdir().unwrap();
    let mut store = Options::new(dir.path().join("db")).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let kv = shard.create_kv("kv").unwrap();
    let v = [7u8; 100];
    let t = std::time::Instant::now();
    for i in 0..n {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes());
        shard.put(kv, &k, &v).unwrap();
        if i % 64 == 0 {
            shard.poll().unwrap();
        }
    }
    shard
        .wait_durable(shard.last_lsn(), std::time::Duration::from_secs(120))
        .unwrap();
    eprintln!("{:.0} puts/s", n as f64 / t.elapsed().as_secs_f64());
}
