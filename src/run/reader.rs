//! [`Run`]: a sealed run file opened over mmap.
//!
//! Open (eager, O(index + filter)):
//! 1. Read the 128-byte footer with a positional read; check magic, crc32c,
//!    version, features, and that its `file_len` equals the file's length —
//!    before mapping, so a truncated file never gets mapped past its end.
//! 2. Map the file; verify the index frame (crc32c, rkyv structure, rows that
//!    tile the data region, ordered key ranges) and the filter frame.
//!
//! Data blocks (lazy, once each): the first touch verifies the frame's crc32c
//! against the header and the index, decompresses if needed, checks the rkyv
//! structure and the block's semantics (offsets, order, first/last keys), and
//! caches the resulting layout. Later touches only read the cache. The cache
//! slots are allocated a chunk at a time on first touch: opening a run of 60k
//! blocks writes a few KB, not megabytes of empty slots (reopen time).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rkyv::util::AlignedVec;

use super::archive::{BlockExpect, BlockLayout, BlockView, IndexExpect, IndexLayout, IndexView};
use super::bloom::{self, FilterView, LINE_BYTES};
use super::cursor::Cursor;
use super::entry::{EntryRef, key_cmp, key_prefix};
use super::format::{self, Codec, FOOTER_LEN, Footer, FrameSpec, RunMode};
use super::meta::RunMeta;
use crate::io::{Fs, Mapping};
use crate::{Error, Result};

/// Output chunk of block decompression: a typical block fits in one.
const DECOMPRESS_CHUNK_BYTES: usize = 64 << 10;
/// Bytes of a run's body checksummed between two reports of
/// [`Run::verify_with_progress`]: 4 MiB.
pub const VERIFY_STEP_BYTES: usize = 4 << 20;

/// A block after its first touch: where its columns are, and its bytes if they
/// had to be decompressed.
#[derive(Debug)]
struct LoadedBlock {
    layout: BlockLayout,
    decoded: Option<AlignedVec<16>>,
    /// Where the stored payload lies in the mapping (used when not decoded).
    stored: std::ops::Range<usize>,
}

/// An open, immutable run. `Send + Sync`: blocks are validated at most once
/// (racing first touches may both validate; one result is kept).
#[derive(Debug)]
pub struct Run {
    path: PathBuf,
    map: Mapping,
    footer: Footer,
    index_payload: std::ops::Range<usize>,
    index_layout: IndexLayout,
    filter_payload: std::ops::Range<usize>,
    blocks: BlockSlots,
    /// The first 8 bytes of each block's last key, big-endian, zero-padded:
    /// a compact array that narrows a block search to the few blocks whose
    /// fences tie before any mapped index byte is touched.
    fences: Box<[u64]>,
    /// Every `FENCE_GROUP`-th fence: small enough to stay in L1, so a search
    /// touches one group of `fences` (a few cache lines, prefetched together).
    fence_top: Box<[u64]>,
    meta: RunMeta,
}

/// Blocks per chunk of cache slots: ~9 KB of slots, allocated together.
const SLOT_CHUNK: usize = 64;

/// `SLOT_CHUNK` blocks' cache slots.
type SlotChunk = Box<[OnceLock<LoadedBlock>]>;

/// One cache slot per block, in chunks allocated on first touch.
#[derive(Debug)]
struct BlockSlots {
    chunks: Box<[OnceLock<SlotChunk>]>,
    len: usize,
}

impl BlockSlots {
    fn new(len: usize) -> BlockSlots {
        BlockSlots {
            chunks: (0..len.div_ceil(SLOT_CHUNK)).map(|_| OnceLock::new()).collect(),
            len,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Block `i`'s slot (`i < len`), allocating its chunk if needed.
    #[inline]
    fn slot(&self, i: usize) -> &OnceLock<LoadedBlock> {
        let c = i / SLOT_CHUNK;
        let chunk = self.chunks[c].get_or_init(|| {
            let n = SLOT_CHUNK.min(self.len - c * SLOT_CHUNK);
            (0..n).map(|_| OnceLock::new()).collect()
        });
        &chunk[i % SLOT_CHUNK]
    }

    /// Block `i`'s slot if its chunk exists (no allocation).
    #[inline]
    fn peek(&self, i: usize) -> Option<&OnceLock<LoadedBlock>> {
        self.chunks[i / SLOT_CHUNK].get().map(|c| &c[i % SLOT_CHUNK])
    }
}

/// Fences per group of the two-level fence search: 64 × 8 bytes = 8 cache lines.
const FENCE_GROUP: usize = 64;

fn payload_range(frame: &format::Frame<'_>, file: &[u8]) -> std::ops::Range<usize> {
    let start = frame.payload.as_ptr() as usize - file.as_ptr() as usize;
    start..start + frame.payload.len()
}

impl Run {
    /// Opens and validates the run at `path` (see the module docs).
    pub fn open(fs: &dyn Fs, path: impl Into<PathBuf>) -> Result<Run> {
        let path = path.into();
        let file = fs.open(&path)?;
        let len = file.size()?;
        if len < FOOTER_LEN as u64 {
            return Err(Error::corrupt(
                &path,
                0,
                "file length",
                format!("at least {FOOTER_LEN} bytes"),
                format!("{len} bytes"),
            ));
        }
        let footer_at = len - FOOTER_LEN as u64;
        let mut fb = [0u8; FOOTER_LEN];
        file.read_exact_at(&mut fb, footer_at)?;
        let footer = Footer::decode(&fb, footer_at, len, &path)?;
        let map = file.map(len)?;
        Run::from_mapping(path, map, footer)
    }

    fn from_mapping(path: PathBuf, map: Mapping, footer: Footer) -> Result<Run> {
        let spec = FrameSpec {
            magic: format::INDEX_MAGIC,
            region: "index",
            len: footer.index_len,
            crc: None,
        };
        let index = format::read_frame(&map, footer.index_offset, spec, &path)?;
        let header = format::FRAME_HEADER_LEN as u64;
        if index.codec != Codec::None {
            return Err(Error::corrupt(
                &path,
                footer.index_offset + 4,
                "index",
                "codec 0",
                "a compressed index",
            ));
        }
        let block_count = usize::try_from(footer.block_count).unwrap_or(usize::MAX);
        let expect = IndexExpect {
            mode: footer.mode,
            block_count,
            entry_count: footer.entry_count,
            data_len: footer.index_offset,
        };
        // Rows take bytes of the payload: no forged count can make this large.
        let mut fences = Vec::with_capacity(block_count.min(index.payload.len()));
        let mut compressed_blocks = 0usize;
        let index_layout = super::archive::validate_index(
            index.payload,
            &expect,
            &path,
            footer.index_offset + header,
            |row| {
                fences.push(key_prefix(row.last_key));
                compressed_blocks += usize::from(row.codec == Codec::Zstd as u8);
            },
        )?;
        let index_payload = payload_range(&index, &map);

        let filter_payload = Run::filter_frame(&map, &footer, &path)?;

        let view = IndexView::new(&map[index_payload.clone()], &index_layout);
        let key_range = (block_count > 0).then(|| {
            (
                view.row(0).first_key.to_vec(),
                view.row(block_count - 1).last_key.to_vec(),
            )
        });
        if compressed_blocks > 0 && footer.incompat_features & format::INCOMPAT_ZSTD_BLOCKS == 0 {
            return Err(Error::corrupt(
                &path,
                footer.index_offset,
                "index",
                "no compressed blocks (feature bit unset)",
                format!("{compressed_blocks} compressed blocks"),
            ));
        }
        // The index was checked against the footer above (its rows' counts
        // sum to the footer's, every row holds entries): an empty run is
        // exactly one without blocks, so without a key range.
        assert_eq!(
            key_range.is_some(),
            footer.entry_count > 0,
            "run {}: {} blocks for {} entries passed validation",
            path.display(),
            block_count,
            footer.entry_count
        );
        let meta = RunMeta::from_footer(path.clone(), &footer, compressed_blocks as u64, key_range);
        let blocks = BlockSlots::new(block_count);
        let fences: Box<[u64]> = fences.into_boxed_slice();
        let fence_top = fences.iter().step_by(FENCE_GROUP).copied().collect();
        Ok(Run {
            path,
            map,
            footer,
            index_payload,
            index_layout,
            filter_payload,
            blocks,
            fences,
            fence_top,
            meta,
        })
    }

    /// Reads and checks the filter frame; returns where its payload lies.
    fn filter_frame(map: &Mapping, footer: &Footer, path: &Path) -> Result<std::ops::Range<usize>> {
        let spec = FrameSpec {
            magic: format::FILTER_MAGIC,
            region: "filter",
            len: footer.filter_len,
            crc: None,
        };
        let filter = format::read_frame(map, footer.filter_offset, spec, path)?;
        if filter.codec != Codec::None || filter.payload.len() % LINE_BYTES != 0 {
            return Err(Error::corrupt(
                path,
                footer.filter_offset,
                "filter",
                format!("an uncompressed filter of whole {LINE_BYTES}-byte lines"),
                format!("codec {:?}, {} bytes", filter.codec, filter.payload.len()),
            ));
        }
        if footer.entry_count > 0 && filter.payload.is_empty() {
            return Err(Error::corrupt(
                path,
                footer.filter_offset,
                "filter",
                "a non-empty filter",
                "0 lines",
            ));
        }
        Ok(payload_range(&filter, map))
    }

    /// What the run holds, in numbers.
    pub fn meta(&self) -> &RunMeta {
        &self.meta
    }

    /// Where the run lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The same file under another name: `path` must be a hard link of the
    /// one this run was opened from (recovery opens a checkpoint's run once,
    /// to validate it, and serves it from the live directory's link).
    pub(crate) fn relocate(&mut self, path: PathBuf) {
        self.meta.path = path.clone();
        self.path = path;
    }

    /// Key-value or Z-set.
    pub fn mode(&self) -> RunMode {
        self.footer.mode
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.footer.entry_count
    }

    /// True for a run with no entries.
    pub fn is_empty(&self) -> bool {
        self.footer.entry_count == 0
    }

    pub(crate) fn index(&self) -> IndexView<'_> {
        IndexView::new(&self.map[self.index_payload.clone()], &self.index_layout)
    }

    /// The first block whose last key is `>= key` (`block_count()` if none).
    #[inline]
    pub(crate) fn find_block(&self, key: &[u8]) -> usize {
        let f = key_prefix(key);
        // The first group whose first fence is >= f; the answer lies after
        // the previous group's first fence and at or before this one's.
        let t = self.fence_top.partition_point(|&x| x < f);
        let start = t.saturating_sub(1) * FENCE_GROUP;
        let end = (t * FENCE_GROUP + 1).min(self.fences.len());
        let window = &self.fences[start..end];
        crate::io::prefetch_slice(window);
        let lo = start + window.partition_point(|&x| x < f);
        if self.fences.get(lo) != Some(&f) {
            // No tie (the common case): the fence alone decides.
            return lo;
        }
        let hi = lo + self.fences[lo..].partition_point(|&x| x == f);
        // Blocks whose fence ties with the key's: decide on the full keys.
        let index = self.index();
        let (mut a, mut b) = (lo, hi);
        while a < b {
            let mid = a + (b - a) / 2;
            if super::entry::key_cmp(index.last_key(mid), key).is_lt() {
                a = mid + 1;
            } else {
                b = mid;
            }
        }
        a
    }

    pub(crate) fn block_count(&self) -> usize {
        self.blocks.len()
    }

    fn filter(&self) -> FilterView<'_> {
        FilterView::new(&self.map[self.filter_payload.clone()], self.footer.filter_probes)
    }

    /// False means no entry of the run has this key (the bloom filter's answer).
    #[inline]
    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.filter().may_contain_hash(bloom::key_hash(key))
    }

    /// [`Run::may_contain`] for a key whose `run::bloom::key_hash` is `hash`.
    #[inline]
    pub fn may_contain_hash(&self, hash: u64) -> bool {
        self.filter().may_contain_hash(hash)
    }

    /// Starts loading the filter line of a key with hash `hash`, so a caller
    /// probing many runs overlaps their cache misses.
    #[inline]
    pub fn prefetch_filter(&self, hash: u64) {
        self.filter().prefetch(hash);
    }

    /// The validated view of block `i`, validating it on first touch.
    pub(crate) fn block(&self, i: usize) -> Result<BlockView<'_>> {
        let value_align = 1usize << self.footer.value_align_log2;
        let slot = self.blocks.slot(i);
        let loaded = match slot.get() {
            Some(loaded) => loaded,
            None => {
                let loaded = self.load_block(i)?;
                // A racing thread may have set it first; its layout is identical.
                let _ = slot.set(loaded);
                match slot.get() {
                    Some(loaded) => loaded,
                    None => unreachable!("a block cache slot is empty right after it was set"),
                }
            }
        };
        let payload = match &loaded.decoded {
            Some(buf) => buf.as_slice(),
            None => &self.map[loaded.stored.clone()],
        };
        Ok(BlockView::new(
            payload,
            &loaded.layout,
            self.footer.mode,
            value_align,
        ))
    }

    /// Checks that block `b` (`next`) starts strictly after block `b - 1`
    /// (`prev`) ends; see [`BlockView::precedes`].
    pub(crate) fn check_boundary(&self, b: usize, prev: &BlockView<'_>, next: &BlockView<'_>) -> Result<()> {
        if prev.precedes(next) {
            return Ok(());
        }
        Err(Error::corrupt(
            &self.path,
            self.index().row(b).offset,
            "data block",
            format!("a first entry greater than block {}'s last entry", b - 1),
            "entries out of order across blocks",
        ))
    }

    /// Starts pulling block `i`'s bytes into the CPU cache (no validation, no
    /// effect on results; a no-op past the last block).
    #[inline]
    pub(crate) fn prefetch_block(&self, i: usize) {
        if i < self.blocks.len() {
            let row = self.index().row(i);
            let start = row.offset as usize;
            crate::io::prefetch(&self.map[start..start + row.frame_len as usize]);
        }
    }

    #[cold]
    fn load_block(&self, i: usize) -> Result<LoadedBlock> {
        let row = self.index().row(i);
        let spec = FrameSpec {
            magic: format::DATA_MAGIC,
            region: "data block",
            len: u64::from(row.frame_len),
            crc: Some(row.crc),
        };
        let frame = format::read_frame(&self.map, row.offset, spec, &self.path)?;
        let payload_at = row.offset + format::FRAME_HEADER_LEN as u64;
        if frame.codec as u8 != row.codec {
            return Err(Error::corrupt(
                &self.path,
                row.offset + 4,
                "data block",
                format!("codec {} (from the index)", row.codec),
                format!("{}", frame.codec as u8),
            ));
        }
        let decoded = match frame.codec {
            Codec::None => None,
            Codec::Zstd => Some(self.decompress(&frame, payload_at)?),
        };
        let expect = BlockExpect {
            mode: self.footer.mode,
            value_align: 1 << self.footer.value_align_log2,
            entry_count: row.entry_count as usize,
            first_key: row.first_key,
            last_key: row.last_key,
        };
        let payload = decoded.as_ref().map_or(frame.payload, |d| d.as_slice());
        let layout = super::archive::validate_block(payload, &expect, &self.path, payload_at)?;
        let stored = payload_range(&frame, &self.map);
        Ok(LoadedBlock {
            layout,
            decoded,
            stored,
        })
    }

    /// Decompresses a block into an aligned buffer. The buffer grows with the
    /// bytes zstd actually produces, so a damaged or forged `raw_len` cannot
    /// make us allocate gigabytes up front.
    fn decompress(&self, frame: &format::Frame<'_>, at: u64) -> Result<AlignedVec<16>> {
        use std::io::Read;
        let raw_len = frame.raw_len as usize;
        let bad = |found: String| {
            Error::corrupt(
                &self.path,
                at,
                "data block",
                format!("a zstd frame of {raw_len} bytes"),
                found,
            )
        };
        let mut decoder =
            zstd::stream::read::Decoder::with_buffer(frame.payload).map_err(|e| bad(e.to_string()))?;
        let mut out = AlignedVec::<16>::with_capacity(raw_len.min(DECOMPRESS_CHUNK_BYTES));
        let mut chunk = vec![0u8; DECOMPRESS_CHUNK_BYTES.min(raw_len + 1)];
        loop {
            let n = decoder.read(&mut chunk).map_err(|e| bad(e.to_string()))?;
            if n == 0 {
                break;
            }
            if out.len() + n > raw_len {
                return Err(bad(format!("more than {raw_len} bytes")));
            }
            out.extend_from_slice(&chunk[..n]);
        }
        if out.len() != raw_len {
            return Err(bad(format!("{} bytes", out.len())));
        }
        Ok(out)
    }

    /// The entry for `key`, if the run has one (a put or a tombstone for
    /// key-value runs; for Z-sets, the first `(key, value)` — use [`Run::seek`]
    /// to iterate all values of a key).
    #[inline]
    pub fn get(&self, key: &[u8]) -> Result<Option<EntryRef<'_>>> {
        self.get_hashed(key, bloom::key_hash(key))
    }

    /// [`Run::get`] with the key's hash already computed
    /// (`run::bloom::key_hash(key)`), so a caller probing many runs hashes once.
    #[inline]
    pub fn get_hashed(&self, key: &[u8], hash: u64) -> Result<Option<EntryRef<'_>>> {
        if !self.filter().may_contain_hash(hash) {
            return Ok(None);
        }
        let index = self.index();
        let b = self.find_block(key);
        if b == index.len() {
            return Ok(None);
        }
        // Both of these miss the cache for a cold block; start them together.
        if let Some(slot) = self.blocks.peek(b) {
            crate::io::prefetch_value(slot);
        }
        if key_cmp(index.first_key(b), key).is_gt() {
            return Ok(None);
        }
        let block = self.block(b)?;
        block.prefetch_keys();
        let i = block.lower_bound(key);
        Ok((i < block.len() && block.key(i) == key).then(|| block.entry(i)))
    }

    /// A cursor at the first entry whose key is `>= key`.
    pub fn seek(&self, key: &[u8]) -> Result<Cursor<'_>> {
        Cursor::seek(self, key)
    }

    /// A cursor at the first entry.
    pub fn cursor(&self) -> Result<Cursor<'_>> {
        Cursor::first(self)
    }

    /// A cursor at the last entry (for walking back with [`Cursor::prev`]).
    pub fn cursor_last(&self) -> Result<Cursor<'_>> {
        Cursor::last(self)
    }

    /// A cursor at the last entry whose key is `<= key` (before the start
    /// if there is none).
    pub fn seek_back(&self, key: &[u8]) -> Result<Cursor<'_>> {
        let mut c = Cursor::seek_past(self, key)?;
        c.prev()?;
        Ok(c)
    }

    /// A cursor at the first entry whose key is `> key`.
    pub(crate) fn seek_past(&self, key: &[u8]) -> Result<Cursor<'_>> {
        Cursor::seek_past(self, key)
    }

    /// Iterates every entry in order. Each item is a `Result` because a data
    /// block is verified when first reached.
    pub fn iter(&self) -> super::cursor::Iter<'_> {
        super::cursor::Iter::new(self)
    }

    /// Deep check: the crc32c of the whole body against the footer, then every
    /// data block. Reads the whole file; for scrubbing and checkpoint
    /// validation, not for the read path.
    pub fn verify(&self) -> Result<()> {
        self.verify_with_progress(&mut |_| {})
    }

    /// [`Run::verify`], telling `progress` how many of the file's bytes are
    /// checked: every [`VERIFY_STEP_BYTES`] of the body's checksum, then the
    /// file's length once every block is checked too.
    pub fn verify_with_progress(&self, progress: &mut dyn FnMut(u64)) -> Result<()> {
        let body_len = self.footer.file_len as usize - FOOTER_LEN;
        let mut crc = 0;
        let mut checked = 0u64;
        for piece in self.map[..body_len].chunks(VERIFY_STEP_BYTES) {
            crc = crc32c::crc32c_append(crc, piece);
            checked += piece.len() as u64;
            progress(checked);
        }
        let body_ok = format::crc_matches(self.footer.body_crc32c, crc);
        // Each block carries its own checksum: a damaged body is reported at
        // the damaged block's offset when one is, so the operator sees where.
        let mut prev: Option<BlockView<'_>> = None;
        for b in 0..self.blocks.len() {
            let view = self.block(b)?;
            if let Some(prev) = prev {
                self.check_boundary(b, &prev, &view)?;
            }
            prev = Some(view);
        }
        if !body_ok {
            return Err(Error::corrupt(
                &self.path,
                0,
                "body",
                format!("body crc32c {:#010x} (from the footer)", self.footer.body_crc32c),
                format!("{crc:#010x}"),
            ));
        }
        progress(self.footer.file_len);
        Ok(())
    }
}
