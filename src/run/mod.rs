//! Immutable sorted runs: the files a spine is made of.
//!
//! A run is written once by a [`RunWriter`] from entries in sorted order and
//! then only read, through a [`Run`] over mmap. Its byte layout is specified in
//! `format/run.md` (code half: [`format`](mod@format)); every frame is checksummed as
//! stored, every block is validated once before any byte of it is handed out,
//! and damage is an [`crate::Error::Corruption`] naming the file and offset.
//!
//! | module | owns |
//! | --- | --- |
//! | `format` | frames, footer, magic numbers, versions, feature bits |
//! | `archive` | the rkyv data-block and index archives, their validation and views |
//! | `bloom` | the blocked bloom filter |
//! | `writer` | [`RunWriter`] |
//! | `reader` | [`Run`]: open, get, verify |
//! | `cursor` | [`Cursor`] and [`Iter`] |
//!
//! ```
//! use std::sync::Arc;
//! use statespine::io::{Fs, MemFs};
//! use statespine::run::{EntryKind, Run, RunMode, RunOptions, RunWriter};
//!
//! let fs = MemFs::new();
//! let mut w = RunWriter::create(Arc::new(fs.clone()), "/a.run", RunOptions::new(RunMode::KeyValue))?;
//! w.put(b"apple", b"red")?;
//! w.delete(b"banana")?;
//! w.put(b"cherry", b"dark red")?;
//! let meta = w.finish()?;
//! let run = Run::open(&fs, &meta.path)?;
//! assert_eq!(run.get(b"apple")?.map(|e| e.value), Some(&b"red"[..]));
//! let mut c = run.seek(b"b")?;
//! assert_eq!(c.current().map(|e| (e.key, e.kind)), Some((&b"banana"[..], EntryKind::Delete)));
//! c.advance()?;
//! assert_eq!(c.key(), Some(&b"cherry"[..]));
//! # Ok::<(), statespine::Error>(())
//! ```

mod archive;
pub mod bloom;
mod cursor;
mod entry;
pub mod format;
mod meta;
mod options;
pub(crate) use options::check_entry_size;
mod reader;
#[cfg(test)]
mod testing;
mod writer;

pub use cursor::{Cursor, Iter};
pub use entry::{EntryKind, EntryRef, entry_cmp, key_cmp, key_prefix};
pub use format::RunMode;
pub use meta::RunMeta;
pub use options::{
    Compression, DEFAULT_BLOCK_SIZE_BYTES, DEFAULT_BLOOM_BITS_PER_KEY, DEFAULT_VALUE_ALIGN_BYTES, Durability,
    MAX_ENTRY_BYTES, RunOptions,
};
pub use reader::{Run, VERIFY_STEP_BYTES};
pub use writer::{RunWriter, TMP_SUFFIX};
