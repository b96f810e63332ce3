//! The demo: ingest a million entries into a spine from an owner loop that
//! merges cooperatively, then read them back; print rates and the level shape.
//!
//! `cargo run --release --example demo [entries] [dir]` — 16-byte random keys
//! and 100-byte values, on the real file system in a temporary directory (or
//! `dir`), default options.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/common/keys.rs"]
mod keys;

use keys::{key, mix};
use std::sync::Arc;
use std::time::Instant;

use statespine::io::{Fs, StdFs};
use statespine::run::RunMode;
use statespine::spine::{Spine, SpineOptions};

fn value(i: u64) -> [u8; 100] {
    let mut v = [b'v'; 100];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

fn rate(n: u64, secs: f64) -> String {
    format!("{:.2} M/s", n as f64 / secs / 1e6)
}

fn main() -> statespine::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|s| s.parse().expect("entries must be a number"))
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("spine"));
    let fs: Arc<dyn Fs> = Arc::new(StdFs::new());
    let _ = fs.remove_dir_all(&dir);
    let opts = SpineOptions::new(RunMode::KeyValue);
    let budget = opts.merge_budget();
    let mut spine = Spine::create(fs, &dir, opts)?;
    println!(
        "statespine demo: {n} puts (16-byte keys, 100-byte values) into one spine at {}",
        dir.display()
    );

    // The owner's loop: write, and every 64 writes give merging one short step.
    let t = Instant::now();
    let mut steps = 0u64;
    for i in 0..n {
        spine.put(&key(i), &value(i))?;
        if i % 64 == 63 {
            spine.merge_step(budget)?;
            steps += 1;
        }
    }
    let ingest = t.elapsed().as_secs_f64();
    let t = Instant::now();
    spine.settle()?;
    let settle = t.elapsed().as_secs_f64();
    let stats = spine.stats();
    println!(
        "  ingest             {} ({ingest:.2} s, {steps} merge steps of {budget} bytes)",
        rate(n, ingest)
    );
    println!("  settle merges      {:.0} ms", settle * 1e3);
    println!(
        "  write amplification {:.2} ({} MB of runs for {} MB put; {} seals, {} merges, {} stalled writes)",
        stats.bytes_written as f64 / stats.bytes_put as f64,
        stats.bytes_written / 1_000_000,
        stats.bytes_put / 1_000_000,
        stats.seals,
        stats.merges,
        stats.stalled_writes
    );
    println!("  level shape:");
    for l in spine.levels() {
        let kind = if l.level == 0 {
            "sealed memtables"
        } else {
            "run files"
        };
        println!(
            "    L{}: {} {kind}, {} entries, {:.1} MB",
            l.level,
            l.batches,
            l.entries,
            l.bytes as f64 / 1e6
        );
    }

    let probes = n.min(1_000_000);
    let t = Instant::now();
    for j in 0..probes {
        let i = mix(j) % n;
        let v = spine.get(&key(i))?.expect("every written key is present");
        assert_eq!(v[..8], i.to_le_bytes(), "value of key {i}");
    }
    println!("  get, present       {}", rate(probes, t.elapsed().as_secs_f64()));
    let t = Instant::now();
    for j in 0..probes {
        assert!(spine.get(&key(n + mix(j) % n))?.is_none());
    }
    println!("  get, absent        {}", rate(probes, t.elapsed().as_secs_f64()));
    let t = Instant::now();
    let mut count = 0u64;
    let mut prev = Vec::new();
    let mut c = spine.cursor()?;
    while let Some(e) = c.current() {
        assert!(e.key > prev.as_slice(), "scan in key order");
        prev.clear();
        prev.extend_from_slice(e.key);
        count += 1;
        c.advance()?;
    }
    assert_eq!(count, n);
    println!(
        "  full scan          {} entries, {}",
        count,
        rate(count, t.elapsed().as_secs_f64())
    );
    Ok(())
}
