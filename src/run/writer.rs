//! [`RunWriter`]: streams sorted entries into a new run file.
//!
//! 1. Entries arrive in order; each is checked against the previous one
//!    (strictly greater key, or `(key, value)` for Z-sets) and appended to the
//!    columns of the open block. Its key's hash goes to the filter builder.
//! 2. When the block's payload reaches the target size, it is archived with rkyv,
//!    optionally compressed, framed (magic + crc32c over the stored bytes) and
//!    buffered for writing; a row is added to the index.
//! 3. `finish` writes the last block, the index frame, the filter frame and the
//!    footer to a temporary name, syncs (per [`Durability`]), renames the file
//!    into place and syncs the directory. Until the rename nobody can see it.
//!
//! On file systems that ask for it (`Fs::write_behind`: the real one), the
//! file's appends run on a helper thread and `finish` waits for them before
//! the rename.
//!
//! Allocation: the columns, the archive buffer and the output buffer are reused
//! across blocks; per entry the writer only copies bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use rkyv::util::AlignedVec;

use super::archive::{DataBlock, IndexBlock};
use super::bloom;
use super::entry::{EntryKind, KIND_DELETE, KIND_PUT, entry_cmp};
use super::format::{
    self, Codec, FOOTER_LEN, FORMAT_VERSION, Footer, INCOMPAT_ZSTD_BLOCKS, MIN_READER_VERSION, RunMode,
};
use super::meta::RunMeta;
use super::options::{Compression, Durability, MAX_ENTRY_BYTES, RunOptions};
use crate::io::{Fs, WritableFile, WriteBehind, parent_dir};
use crate::{Error, Result};

/// Bytes buffered before a write system call.
/// 64 KiB: one `write` of it costs tens of microseconds, short enough to sit
/// inside a bounded merge step (on a real file system a write-behind thread
/// makes it, `io::WriteBehind`, and the step only hands the buffer over).
const WRITE_BUFFER_BYTES: usize = 64 << 10;
/// Suffix of a run being written; such files are never read and are removed at
/// open by the layers above.
pub const TMP_SUFFIX: &str = ".tmp";

/// Writes one run file. See the module docs for the steps.
#[derive(Debug)]
pub struct RunWriter {
    fs: Arc<dyn Fs>,
    path: PathBuf,
    tmp_path: PathBuf,
    file: Box<dyn WritableFile>,
    opts: RunOptions,
    block: DataBlock,
    index: IndexBlock,
    filter: bloom::Builder,
    /// The first key pushed, for the check at `finish`.
    first_key: Vec<u8>,
    last_key: Vec<u8>,
    last_value: Vec<u8>,
    entry_count: u64,
    compressed_blocks: u64,
    /// Frames not yet handed to the file.
    out: Vec<u8>,
    /// Bytes handed to the file so far.
    written: u64,
    body_crc: u32,
    archive: AlignedVec<16>,
    compressed: Vec<u8>,
    compressor: Option<Zstd>,
    finished: bool,
}

/// A reusable zstd context (creating one per block would allocate per block).
struct Zstd(zstd::bulk::Compressor<'static>);

impl std::fmt::Debug for Zstd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Zstd")
    }
}

/// A frame's payload length as the `u32` its header stores.
fn frame_len(what: &'static str, len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| Error::TooLarge {
        what,
        len: len as u64,
        limit: u64::from(u32::MAX),
    })
}

impl RunWriter {
    /// Starts a run that will appear at `path` when finished.
    pub fn create(fs: Arc<dyn Fs>, path: impl Into<PathBuf>, opts: RunOptions) -> Result<RunWriter> {
        let path = path.into();
        let mut tmp = path.clone().into_os_string();
        tmp.push(TMP_SUFFIX);
        let tmp_path = PathBuf::from(tmp);
        // A leftover from a crashed writer of the same run is ours to replace.
        if fs.exists(&tmp_path)? {
            fs.remove_file(&tmp_path)?;
        }
        let compressor = match opts.compression {
            Compression::None => None,
            Compression::Zstd { level } => Some(Zstd(
                zstd::bulk::Compressor::new(level).map_err(|e| Error::io("zstd init", &tmp_path, e))?,
            )),
        };
        let mut file = fs.create(&tmp_path)?;
        if fs.write_behind() {
            file = WriteBehind::bounded(file)?;
        }
        Ok(RunWriter {
            fs,
            path,
            tmp_path,
            file,
            opts,
            block: DataBlock::default(),
            index: IndexBlock::default(),
            filter: bloom::Builder::new(opts.bloom_bits_per_key, opts.expected_entries),
            first_key: Vec::new(),
            last_key: Vec::new(),
            last_value: Vec::new(),
            entry_count: 0,
            compressed_blocks: 0,
            out: Vec::with_capacity(WRITE_BUFFER_BYTES + 2 * opts.block_size_bytes),
            written: 0,
            body_crc: 0,
            archive: AlignedVec::new(),
            compressed: Vec::new(),
            compressor,
            finished: false,
        })
    }

    /// Adds a put (key-value runs).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.push(key, value, EntryKind::Put)
    }

    /// Adds a tombstone (key-value runs).
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.push(key, &[], EntryKind::Delete)
    }

    /// Adds a weighted `(key, value)` (Z-set runs).
    pub fn update(&mut self, key: &[u8], value: &[u8], weight: i64) -> Result<()> {
        self.push(key, value, EntryKind::Weight(weight))
    }

    /// Adds an entry. Entries must come in strictly increasing key order
    /// (`(key, value)` order for Z-sets); anything else is [`Error::OutOfOrder`].
    pub fn push(&mut self, key: &[u8], value: &[u8], kind: EntryKind) -> Result<()> {
        self.check_entry(key, value, kind)?;
        let first = self.entry_count == 0;
        let new_key = first || key != self.last_key.as_slice();
        if !first {
            let order = entry_cmp(self.opts.mode, key, value, &self.last_key, &self.last_value);
            if order.is_le() {
                return Err(Error::OutOfOrder {
                    path: self.path.clone(),
                    index: self.entry_count,
                });
            }
        }
        let align = self.opts.value_align_bytes;
        let value_start = format::align_up(self.block.values.len(), align);
        let fits = self.block.keys.len() + key.len() <= MAX_ENTRY_BYTES
            && value_start + value.len() <= MAX_ENTRY_BYTES;
        if !fits {
            self.flush_block()?;
        }
        if first {
            self.first_key.extend_from_slice(key);
        }
        if new_key {
            self.filter.add(bloom::key_hash(key));
            self.last_key.clear();
            self.last_key.extend_from_slice(key);
        }
        if self.opts.mode == RunMode::ZSet {
            self.last_value.clear();
            self.last_value.extend_from_slice(value);
        }
        let b = &mut self.block;
        b.keys.extend_from_slice(key);
        b.key_ends.push(b.keys.len() as u32);
        b.values.resize(format::align_up(b.values.len(), align), 0);
        b.values.extend_from_slice(value);
        b.value_ends.push(b.values.len() as u32);
        match kind {
            EntryKind::Put => b.kinds.push(KIND_PUT),
            EntryKind::Delete => b.kinds.push(KIND_DELETE),
            EntryKind::Weight(w) => b.weights.push(w),
        }
        self.entry_count += 1;
        if self.block.estimated_size() >= self.opts.block_size_bytes {
            self.flush_block()?;
        }
        Ok(())
    }

    fn check_entry(&self, key: &[u8], value: &[u8], kind: EntryKind) -> Result<()> {
        super::options::check_entry_size(key, value)?;
        match (self.opts.mode, kind) {
            (RunMode::KeyValue, EntryKind::Put) | (RunMode::ZSet, EntryKind::Weight(_)) => {}
            (RunMode::KeyValue, EntryKind::Delete) if value.is_empty() => {}
            (mode, kind) => {
                return Err(Error::InvalidArgument(format!(
                    "a {mode:?} run cannot hold {kind:?} with a {}-byte value",
                    value.len()
                )));
            }
        }
        if kind == EntryKind::Weight(0) {
            return Err(Error::InvalidArgument("Z-set weights must be non-zero".into()));
        }
        if u32::try_from(self.index.keys.len() + 2 * key.len()).is_err() {
            return Err(Error::LimitReached {
                what: "run index key bytes",
                limit: u64::from(u32::MAX),
            });
        }
        Ok(())
    }

    fn flush_block(&mut self) -> Result<()> {
        let n = self.block.len();
        if n == 0 {
            return Ok(());
        }
        let mut archive = std::mem::take(&mut self.archive);
        archive.clear();
        // Archiving plain columns into a growable buffer fails only by a bug.
        let archive = rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(&self.block, archive)
            .unwrap_or_else(|e| unreachable!("archiving a data block into memory failed: {e}"));
        let raw_len = frame_len("data block", archive.len())?;
        let (codec, payload): (Codec, &[u8]) = match &mut self.compressor {
            None => (Codec::None, &archive),
            Some(Zstd(compressor)) => {
                self.compressed.clear();
                self.compressed
                    .reserve(zstd::zstd_safe::compress_bound(archive.len()));
                compressor
                    .compress_to_buffer(archive.as_slice(), &mut self.compressed)
                    .map_err(|e| Error::io("zstd compress", &self.tmp_path, e))?;
                if self.compressed.len() <= archive.len() - archive.len() / 8 {
                    self.compressed_blocks += 1;
                    (Codec::Zstd, &self.compressed)
                } else {
                    (Codec::None, &archive)
                }
            }
        };
        let offset = self.written + self.out.len() as u64;
        let start = self.out.len();
        let crc = format::write_frame(&mut self.out, format::DATA_MAGIC, codec, payload, raw_len);
        let frame_len = (self.out.len() - start) as u32;
        let idx = &mut self.index;
        idx.keys.extend_from_slice(self.block.key(0));
        idx.key_ends.push(idx.keys.len() as u32);
        idx.keys.extend_from_slice(self.block.key(n - 1));
        idx.key_ends.push(idx.keys.len() as u32);
        idx.offsets.push(offset);
        idx.frame_lens.push(frame_len);
        idx.crcs.push(crc);
        idx.entry_counts.push(n as u32);
        idx.codecs.push(codec as u8);
        self.archive = archive;
        self.block.clear();
        if self.out.len() >= WRITE_BUFFER_BYTES {
            self.drain_out()?;
        }
        Ok(())
    }

    fn drain_out(&mut self) -> Result<()> {
        self.body_crc = crc32c::crc32c_append(self.body_crc, &self.out);
        self.written += self.out.len() as u64;
        self.file.append_vec(&mut self.out)
    }

    /// Seals the run: writes index, filter and footer, makes it durable per the
    /// options, and publishes it under its final name.
    pub fn finish(self) -> Result<RunMeta> {
        self.finish_syncing_later().map(|(meta, _)| meta)
    }

    /// [`RunWriter::finish`]; an unsynced run on a write-behind file is also
    /// synced afterwards on the helper thread, and the flag says when that
    /// succeeded (`None`: no background sync; sync it yourself if needed).
    pub fn finish_syncing_later(mut self) -> Result<(RunMeta, Option<Arc<AtomicBool>>)> {
        self.flush_block()?;
        self.assert_index_agrees();
        let index_offset = self.written + self.out.len() as u64;
        let index =
            rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(&self.index, AlignedVec::<16>::new())
                .unwrap_or_else(|e| unreachable!("archiving the run index into memory failed: {e}"));
        let index_raw = frame_len("run index", index.len())?;
        format::write_frame(&mut self.out, format::INDEX_MAGIC, Codec::None, &index, index_raw);
        let filter_offset = self.written + self.out.len() as u64;
        let probes = self.filter.probes();
        let filter =
            std::mem::replace(&mut self.filter, bloom::Builder::new(1, None)).finish(self.entry_count);
        let filter_raw = frame_len("run filter", filter.len())?;
        format::write_frame(
            &mut self.out,
            format::FILTER_MAGIC,
            Codec::None,
            &filter,
            filter_raw,
        );
        let body_len = self.written + self.out.len() as u64;
        self.drain_out()?;
        let footer = Footer {
            format_version: FORMAT_VERSION,
            min_reader_version: MIN_READER_VERSION,
            compat_features: 0,
            incompat_features: if self.compressed_blocks > 0 {
                INCOMPAT_ZSTD_BLOCKS
            } else {
                0
            },
            mode: self.opts.mode,
            value_align_log2: self.opts.value_align_bytes.trailing_zeros() as u8,
            filter_probes: probes,
            filter_bits_per_key: self.opts.bloom_bits_per_key,
            entry_count: self.entry_count,
            block_count: self.index.offsets.len() as u64,
            index_offset,
            index_len: filter_offset - index_offset,
            filter_offset,
            filter_len: body_len - filter_offset,
            file_len: body_len + FOOTER_LEN as u64,
            body_crc32c: self.body_crc,
        };
        self.file.append(&footer.encode())?;
        if self.opts.durability == Durability::Synced {
            self.file.sync_data()?;
        } else {
            // Appends may be in flight on a write-behind thread.
            self.file.flush()?;
        }
        self.fs.rename(&self.tmp_path, &self.path)?;
        self.finished = true;
        let synced_later = if self.opts.durability == Durability::Synced {
            self.fs.sync_dir(&parent_dir(&self.path))?;
            None
        } else {
            self.file.sync_in_background()
        };
        let n = self.index.offsets.len();
        let key_range = (n > 0).then(|| {
            let ends = &self.index.key_ends;
            let last_start = ends[2 * n - 2] as usize;
            (
                self.index.keys[..ends[0] as usize].to_vec(),
                self.index.keys[last_start..ends[2 * n - 1] as usize].to_vec(),
            )
        });
        let path = std::mem::take(&mut self.path);
        let meta = RunMeta::from_footer(path, &footer, self.compressed_blocks, key_range);
        Ok((meta, synced_later))
    }

    /// The index about to be written records what was pushed: as many
    /// entries, the first key pushed first, the last key last. A reader
    /// checks the same rows against the footer and the blocks.
    fn assert_index_agrees(&self) {
        let idx = &self.index;
        let n = idx.offsets.len();
        let counted: u64 = idx.entry_counts.iter().map(|&c| u64::from(c)).sum();
        assert_eq!(
            counted,
            self.entry_count,
            "run {}: the index counts {counted} entries, {} were pushed",
            self.path.display(),
            self.entry_count
        );
        assert_eq!(
            n == 0,
            self.entry_count == 0,
            "run {}: blocks without entries",
            self.path.display()
        );
        if n > 0 {
            let ends = &idx.key_ends;
            let first = &idx.keys[..ends[0] as usize];
            let last = &idx.keys[ends[2 * n - 2] as usize..ends[2 * n - 1] as usize];
            assert!(
                first == self.first_key.as_slice() && last == self.last_key.as_slice(),
                "run {}: the index spans {first:?}..={last:?}, the entries pushed {:?}..={:?}",
                self.path.display(),
                self.first_key,
                self.last_key
            );
        }
    }

    /// The final path of the run.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries pushed so far.
    pub fn entry_count(&self) -> u64 {
        self.entry_count
    }
}

impl Drop for RunWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Abandoned: the temporary file is garbage. Failing to remove it is
            // harmless (nothing reads `.tmp` files; open-time cleanup removes them).
            let _ = self.fs.remove_file(&self.tmp_path);
        }
    }
}
