//! The write-ahead log: segmented, checksummed, synced in groups, per shard.
//! Byte layout and recovery rules: `format/wal.md`.
//!
//! | module | owns |
//! | --- | --- |
//! | `format` | segment header and record frames, as bytes |
//! | `segment` | scanning a segment: valid records, torn tail or corruption |
//! | `log` | [`WriteAheadLog`]: open, append, sync, rotate, truncate, fail-stop |
//! | `reader` | reading the log: one read loop for `open` and [`replay`] |
//! | `catalog` | the spine catalog's records: which spines exist |
//! | `change` | the WAL payload of a changelog record |
//! | `drainer` | [`ChangelogDrainer`]: rings into logs, sync policy, watermarks |

mod catalog;
mod change;
mod drainer;
pub mod format;
mod log;
mod reader;
pub mod segment;

pub use catalog::{CATALOG_SPINE, decode_catalog_value, encode_catalog_value};
pub use change::{
    BATCH_ENTRY_HEADER_LEN, BATCH_HEADER_LEN, BatchEntries, CHANGE_HEADER_LEN, begin_batch, check_batch,
    decode_change, encode_change, push_batch_entry,
};
pub use drainer::{
    ChangelogDrainer, DEFAULT_BATCH_RECORDS, DrainStats, DrainerHandle, SyncPolicy, Watermark,
};
pub use log::{DEFAULT_SEGMENT_SIZE_BYTES, OpenReport, RecoveryMode, WalOptions, WriteAheadLog};
pub use reader::{ReplayReport, replay};
