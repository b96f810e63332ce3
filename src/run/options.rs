//! [`RunOptions`]: how a run is written.

use super::format::RunMode;

/// Default target size of a data block's payload. 4 KiB, as RocksDB: one page
/// per block keeps a point lookup to one page of data touched.
pub const DEFAULT_BLOCK_SIZE_BYTES: usize = 4096;
/// Default filter bits per key: about 1% false positives with 7 probes.
pub const DEFAULT_BLOOM_BITS_PER_KEY: u8 = 10;
/// Default value alignment: 8 bytes, enough for any rkyv archive made of
/// primitives up to `u64`/`f64` (the common case), at ~4 bytes of padding per entry.
pub const DEFAULT_VALUE_ALIGN_BYTES: usize = 8;
/// The largest key or value a run accepts. Offsets inside a block are `u32`;
/// a 1 GiB bound leaves room for both plus the archive's own bytes.
pub const MAX_ENTRY_BYTES: usize = 1 << 30;

/// Refuses a key or value over `MAX_ENTRY_BYTES` (`TooLarge`): the one
/// size rule of the memtable and the run writer.
pub(crate) fn check_entry_size(key: &[u8], value: &[u8]) -> crate::Result<()> {
    for (what, len) in [("key", key.len()), ("value", value.len())] {
        if len > MAX_ENTRY_BYTES {
            return Err(crate::Error::TooLarge {
                what,
                len: len as u64,
                limit: MAX_ENTRY_BYTES as u64,
            });
        }
    }
    Ok(())
}

/// How data blocks are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Blocks are stored as is (the default: fastest reads, zero-copy values).
    #[default]
    None,
    /// Each block is compressed with zstd at `level`, and kept compressed only
    /// when that saves at least 1/8 of its bytes.
    Zstd {
        /// zstd level (1..=22; 3 is zstd's default).
        level: i32,
    },
}

/// What sealing a run does for durability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `finish` fdatasyncs the file before the rename and fsyncs the directory
    /// after it: the run is durable when `finish` returns.
    #[default]
    Synced,
    /// `finish` renames without syncing. The caller must make the file and its
    /// directory durable (e.g. once for a whole checkpoint) before anything
    /// durable refers to it.
    Deferred,
}

/// Options of a [`super::RunWriter`]. Build with [`RunOptions::new`] and setters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    pub(crate) mode: RunMode,
    pub(crate) block_size_bytes: usize,
    pub(crate) bloom_bits_per_key: u8,
    pub(crate) compression: Compression,
    pub(crate) value_align_bytes: usize,
    pub(crate) durability: Durability,
    pub(crate) expected_entries: Option<u64>,
}

impl RunOptions {
    /// Defaults for a run of the given mode.
    pub fn new(mode: RunMode) -> Self {
        RunOptions {
            mode,
            block_size_bytes: DEFAULT_BLOCK_SIZE_BYTES,
            bloom_bits_per_key: DEFAULT_BLOOM_BITS_PER_KEY,
            compression: Compression::None,
            value_align_bytes: DEFAULT_VALUE_ALIGN_BYTES,
            durability: Durability::Synced,
            expected_entries: None,
        }
    }

    /// Target payload size of a data block (default 4096). A block closes once
    /// it reaches this; a single larger entry gets a block of its own size.
    #[must_use]
    pub fn block_size_bytes(mut self, bytes: usize) -> Self {
        self.block_size_bytes = bytes.max(1);
        self
    }

    /// Bloom filter bits per distinct key (default 10, ~1% false positives).
    /// Probes per key follow as `round(bits * ln 2)`, at least 1.
    #[must_use]
    pub fn bloom_bits_per_key(mut self, bits: u8) -> Self {
        self.bloom_bits_per_key = bits.max(1);
        self
    }

    /// Block compression (default none).
    #[must_use]
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Alignment of every value inside its block: 1, 2, 4, 8 (default) or 16.
    /// rkyv values read with `get_archived` need their archive's alignment.
    /// Other values are rounded up to the next of these.
    #[must_use]
    pub fn value_align_bytes(mut self, align: usize) -> Self {
        self.value_align_bytes = align.clamp(1, 16).next_power_of_two();
        self
    }

    /// Durability on seal (default [`Durability::Synced`]).
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// An upper bound on the entries the run will hold (default: unknown). When
    /// given, the bloom filter is built as entries arrive instead of at
    /// `finish`, which keeps `finish` short; more entries than this still work,
    /// with a higher false-positive rate.
    #[must_use]
    pub fn expected_entries(mut self, entries: u64) -> Self {
        self.expected_entries = Some(entries);
        self
    }

    /// The mode runs written with these options have.
    pub fn mode(&self) -> RunMode {
        self.mode
    }
}
