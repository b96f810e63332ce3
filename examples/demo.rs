//! The demo: write a run of a million entries, read it back, print sizes and rates.
//!
//! `cargo run --release --example demo [entries] [dir]` — 16-byte random keys and
//! 100-byte values, written to a temporary directory (or `dir`) on the real file
//! system, then opened over mmap, checked entry by entry, and timed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use statespine::io::{Fs, StdFs};
use statespine::run::{Run, RunMode, RunOptions, RunWriter};

fn main() -> statespine::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|s| s.parse().expect("entries must be a number"))
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let fs: Arc<dyn Fs> = Arc::new(StdFs::new());
    fs.create_dir_all(&dir)?;
    let path = dir.join("demo.run");
    let _ = fs.remove_file(&path);

    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut keys: Vec<[u8; 16]> = (0..n)
        .map(|_| {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&next().to_le_bytes());
            k[8..].copy_from_slice(&next().to_le_bytes());
            k
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let value = |k: &[u8; 16]| -> [u8; 100] { std::array::from_fn(|i| k[i % 16] ^ i as u8) };

    let t = Instant::now();
    let mut w = RunWriter::create(fs.clone(), &path, RunOptions::new(RunMode::KeyValue))?;
    for k in &keys {
        w.put(k, &value(k))?;
    }
    let meta = w.finish()?;
    let write_s = t.elapsed().as_secs_f64();
    let user_mb = (keys.len() * 116) as f64 / 1e6;

    let t = Instant::now();
    let run = Run::open(&*fs, &path)?;
    let open_us = t.elapsed().as_secs_f64() * 1e6;

    let t = Instant::now();
    let mut count = 0usize;
    for (e, k) in run.iter().zip(&keys) {
        let e = e?;
        assert!(e.key == k && e.value == value(k), "entry {count} read back wrong");
        count += 1;
    }
    assert_eq!(count, keys.len(), "entries missing");
    let first_scan_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut sum = 0usize;
    for e in run.iter() {
        sum += e?.value[0] as usize;
    }
    let scan_s = t.elapsed().as_secs_f64();
    std::hint::black_box(sum);

    let probes = 1_000_000;
    let t = Instant::now();
    for i in 0..probes {
        let k = &keys[(i * 7_919) % keys.len()];
        assert!(run.get(k)?.is_some());
    }
    let get_ns = t.elapsed().as_secs_f64() * 1e9 / probes as f64;
    let t = Instant::now();
    let mut false_hits = 0;
    for _ in 0..probes {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&next().to_le_bytes());
        k[8..].copy_from_slice(&next().to_le_bytes());
        false_hits += usize::from(run.get(&k)?.is_some());
    }
    let absent_ns = t.elapsed().as_secs_f64() * 1e9 / probes as f64;

    let t = Instant::now();
    run.verify()?;
    let verify_s = t.elapsed().as_secs_f64();

    println!(
        "statespine demo: one run of {} entries (16-byte keys, 100-byte values)",
        keys.len()
    );
    println!("  file               {}", path.display());
    println!(
        "  file size          {:.1} MB ({:.1} bytes/entry; user data {:.1} MB)",
        meta.file_len as f64 / 1e6,
        meta.file_len as f64 / keys.len() as f64,
        user_mb
    );
    println!(
        "  data / index / filter  {:.1} MB / {:.1} KB / {:.1} KB in {} blocks",
        meta.data_len as f64 / 1e6,
        meta.index_len as f64 / 1e3,
        meta.filter_len as f64 / 1e3,
        meta.block_count
    );
    println!(
        "  write + fsync      {:.0} ms ({:.0} MB/s of user data)",
        write_s * 1e3,
        user_mb / write_s
    );
    println!("  open               {open_us:.0} us (footer, index and filter verified)");
    println!(
        "  first scan         {:.0} ms (every block verified, every entry checked)",
        first_scan_s * 1e3
    );
    println!(
        "  warm scan          {:.1} ms ({:.0} M entries/s)",
        scan_s * 1e3,
        keys.len() as f64 / scan_s / 1e6
    );
    println!("  get present        {get_ns:.0} ns/op");
    println!(
        "  get absent         {absent_ns:.0} ns/op ({false_hits} of {probes} random absent keys found: must be 0)"
    );
    println!(
        "  verify (deep)      {:.0} ms ({:.1} GB/s)",
        verify_s * 1e3,
        meta.file_len as f64 / verify_s / 1e9
    );
    assert_eq!(false_hits, 0);
    Ok(())
}
