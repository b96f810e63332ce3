//! The inputs of the golden run files: deterministic, small, and covering every
//! kind of entry. Shared by the generator (`generate.rs`) and `tests/golden.rs`,
//! so the test checks the committed bytes against the same input.
//! Changing anything here changes the golden bytes: don't, add a new version.

use statespine::run::{Compression, EntryKind, RunMode, RunOptions};

/// One golden file: its name, how it is written, and what it holds.
pub struct Golden {
    pub name: &'static str,
    pub options: RunOptions,
    pub entries: Vec<(Vec<u8>, Vec<u8>, EntryKind)>,
}

/// Key-value: puts and deletes, an empty key, empty values, 8 blocks or so.
fn key_value() -> Vec<(Vec<u8>, Vec<u8>, EntryKind)> {
    let mut v = vec![(Vec::new(), b"the empty key".to_vec(), EntryKind::Put)];
    for i in 0..200u32 {
        let key = format!("key-{i:05}").into_bytes();
        if i % 7 == 3 {
            v.push((key, Vec::new(), EntryKind::Delete));
        } else {
            let value = format!("value {i} {}", "x".repeat((i % 23) as usize)).into_bytes();
            v.push((key, value, EntryKind::Put));
        }
    }
    v
}

/// Z-set: several values per key, positive and negative weights, extremes.
fn zset() -> Vec<(Vec<u8>, Vec<u8>, EntryKind)> {
    let mut v = Vec::new();
    for k in 0..40u32 {
        for val in 0..(1 + k % 4) {
            let weight = match (k + val) % 5 {
                0 => i64::MAX,
                1 => -1,
                2 => i64::MIN,
                _ => i64::from(k * 10 + val + 1),
            };
            let key = format!("user/{k:03}").into_bytes();
            let value = format!("order {val} {}", "abc".repeat(10)).into_bytes();
            v.push((key, value, EntryKind::Weight(weight)));
        }
    }
    v
}

/// Every golden run of format version 1.
pub fn goldens_v1() -> Vec<Golden> {
    vec![
        Golden {
            name: "kv.run",
            options: RunOptions::new(RunMode::KeyValue).block_size_bytes(512),
            entries: key_value(),
        },
        Golden {
            name: "zset-zstd.run",
            options: RunOptions::new(RunMode::ZSet)
                .block_size_bytes(1024)
                .compression(Compression::Zstd { level: 3 })
                .value_align_bytes(16)
                .bloom_bits_per_key(12),
            entries: zset(),
        },
    ]
}

/// The damaged twin of `kv.run`: one bit flipped inside its second data block.
pub const DAMAGED_NAME: &str = "kv.damaged.run";
/// Byte flipped (xor 0x04) to make the twin: 40 bytes into the second block.
pub fn damaged_offset(second_block_offset: u64) -> u64 {
    second_block_offset + 40
}
