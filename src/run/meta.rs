//! [`RunMeta`]: what a sealed run is, in numbers.

use std::path::PathBuf;

use super::format::{Footer, RunMode};

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

impl RunMeta {
    /// The metadata of a run with this footer.
    pub(crate) fn from_footer(
        path: PathBuf,
        footer: &Footer,
        compressed_blocks: u64,
        key_range: Option<(Vec<u8>, Vec<u8>)>,
    ) -> RunMeta {
        RunMeta {
            path,
            mode: footer.mode,
            entry_count: footer.entry_count,
            block_count: footer.block_count,
            compressed_blocks,
            key_range,
            file_len: footer.file_len,
            data_len: footer.index_offset,
            index_len: footer.index_len,
            filter_len: footer.filter_len,
            body_crc32c: footer.body_crc32c,
        }
    }
}
