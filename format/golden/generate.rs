//! Writes the golden run files under `format/golden/v1/` and the golden WAL
//! segments under `format/golden/wal-v1/`, and the golden manifest under
//! `format/golden/manifest-v1/`.
//!
//! `cargo run --example golden` — run once when a format version is added, then
//! commit the files; they pin the format forever (`tests/golden.rs` reads them).
//! Re-running must reproduce the same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "entries.rs"]
mod entries;
#[path = "manifest_entries.rs"]
mod manifest_entries;
#[path = "wal_entries.rs"]
mod wal_entries;

use std::path::Path;
use std::sync::Arc;

use statespine::io::{Fs, StdFs};
use statespine::run::{Run, RunWriter};

fn main() {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("format/golden")
        .join(manifest_entries::DIR);
    std::fs::create_dir_all(&manifest_dir).unwrap();
    let bytes = manifest_entries::golden_v1().encode();
    std::fs::write(manifest_dir.join("MANIFEST"), &bytes).unwrap();
    println!("{}/MANIFEST: {} bytes", manifest_entries::DIR, bytes.len());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("format/golden/v1");
    std::fs::create_dir_all(&dir).unwrap();
    let fs: Arc<dyn Fs> = Arc::new(StdFs::new());
    for g in entries::goldens_v1() {
        let path = dir.join(g.name);
        let _ = std::fs::remove_file(&path);
        let mut w = RunWriter::create(fs.clone(), &path, g.options).unwrap();
        for (k, v, kind) in &g.entries {
            w.push(k, v, *kind).unwrap();
        }
        let meta = w.finish().unwrap();
        println!(
            "{}: {} entries, {} blocks, {} bytes",
            g.name, meta.entry_count, meta.block_count, meta.file_len
        );
    }
    // The damaged twin: the second data block of kv.run with one bit flipped.
    let kv = dir.join("kv.run");
    let run = Run::open(&StdFs::new(), &kv).unwrap();
    let second = second_block_offset(&run);
    let mut bytes = std::fs::read(&kv).unwrap();
    bytes[entries::damaged_offset(second) as usize] ^= 0x04;
    std::fs::write(dir.join(entries::DAMAGED_NAME), bytes).unwrap();
    println!(
        "{}: bit 2 of byte {} flipped",
        entries::DAMAGED_NAME,
        entries::damaged_offset(second)
    );
    // The WAL segments: good, torn tail, damaged in the middle; one directory
    // each, since a log is a directory.
    let wal = Path::new(env!("CARGO_MANIFEST_DIR")).join("format/golden/wal-v1");
    for (name, bytes) in [
        ("good", wal_entries::good()),
        ("torn", wal_entries::torn()),
        ("corrupt", wal_entries::corrupt()),
    ] {
        let d = wal.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(wal_entries::SEGMENT_NAME), &bytes).unwrap();
        println!(
            "wal-v1/{name}/{}: {} bytes",
            wal_entries::SEGMENT_NAME,
            bytes.len()
        );
    }
}

/// Offset of the second data block: the first block's frame length, read from
/// its header (format/run.md: frame = 32-byte header + payload padded to 16).
fn second_block_offset(run: &Run) -> u64 {
    let bytes = std::fs::read(run.path()).unwrap();
    let stored_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as u64;
    32 + stored_len.div_ceil(16) * 16
}
