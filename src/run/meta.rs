//! [`RunMeta`]: what a sealed run is, in numbers.

use std::path::PathBuf;

use super::format::RunMode;

/// Metadata of a sealed run, returned by [`super::RunWriter::finish`] and
/// [`super::Run::meta`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMeta {
    /// Where the run lives.
    pub path: PathBuf,
    /// Key-value or Z-set.
    pub mode: RunMode,
    /// Number of entries.
    pub entry_count: u64,
    /// Number of data blocks.
    pub block_count: u64,
    /// Number of data blocks stored zstd-compressed.
    pub compressed_blocks: u64,
    /// Smallest and largest key, or `None` for an empty run.
    pub key_range: Option<(Vec<u8>, Vec<u8>)>,
    /// Length of the file in bytes.
    pub file_len: u64,
    /// Bytes of data block frames.
    pub data_len: u64,
    /// Bytes of the index frame.
    pub index_len: u64,
    /// Bytes of the filter frame.
    pub filter_len: u64,
    /// crc32c of every byte before the footer: the run's content checksum.
    pub body_crc32c: u32,
}
