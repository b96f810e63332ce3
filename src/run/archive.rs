//! The rkyv archives inside data and index frames, and their validation.
//!
//! Both are columnar: a block's keys sit next to each other, so a binary search
//! touches few cache lines, and the archive is a handful of flat vectors, so
//! rkyv's structural check (bytecheck) is cheap. After the structural check, a
//! semantic check (`validate_*`) proves every offset in range, every column the
//! right length and every key in order. What it returns is a layout of byte
//! ranges; views built from it read the mapping with ordinary bounds-checked
//! slicing, so no `unsafe` is needed on the read path (format/run.md, "Data
//! block payload").

use std::cmp::Ordering;
use std::ops::Range;
use std::path::Path;

use rkyv::{Archive, Serialize};

use super::entry::{EntryKind, EntryRef, KIND_DELETE, KIND_PUT, entry_cmp};
use super::format::{RunMode, align_up, le_u32, le_u64};
use crate::{Error, Result};

/// Columns of one data block, as written. `values` is the first field so that
/// rkyv places its bytes at offset 0 of the payload, which starts 16-aligned:
/// together with per-value padding that makes every value start aligned.
#[derive(Archive, Serialize, Debug, Default)]
pub(crate) struct DataBlock {
    /// Value bytes; value `i` starts at `align_up(value_ends[i-1])` (0 for i = 0).
    pub values: Vec<u8>,
    /// Key bytes; key `i` starts at `key_ends[i-1]` (0 for i = 0).
    pub keys: Vec<u8>,
    /// End offset of each key in `keys`.
    pub key_ends: Vec<u32>,
    /// End offset of each value in `values`.
    pub value_ends: Vec<u32>,
    /// Key-value runs: one kind byte per entry. Z-set runs: empty.
    pub kinds: Vec<u8>,
    /// Z-set runs: one weight per entry. Key-value runs: empty.
    pub weights: Vec<i64>,
}

impl DataBlock {
    pub(crate) fn len(&self) -> usize {
        self.key_ends.len()
    }

    pub(crate) fn clear(&mut self) {
        self.values.clear();
        self.keys.clear();
        self.key_ends.clear();
        self.value_ends.clear();
        self.kinds.clear();
        self.weights.clear();
    }

    /// Bytes the archive will take, give or take rkyv's padding and root.
    pub(crate) fn estimated_size(&self) -> usize {
        self.values.len()
            + self.keys.len()
            + 8 * self.key_ends.len()
            + self.kinds.len()
            + 8 * self.weights.len()
            + 64
    }

    pub(crate) fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.key_ends[i - 1] as usize };
        &self.keys[start..self.key_ends[i] as usize]
    }
}

/// The block index: one row per data block. Keys are stored first-then-last
/// per block: `keys[key_ends[2i-1]..key_ends[2i]]` is block `i`'s first key.
#[derive(Archive, Serialize, Debug, Default)]
pub(crate) struct IndexBlock {
    pub keys: Vec<u8>,
    pub key_ends: Vec<u32>,
    pub offsets: Vec<u64>,
    pub frame_lens: Vec<u32>,
    pub crcs: Vec<u32>,
    pub entry_counts: Vec<u32>,
    pub codecs: Vec<u8>,
}

/// Byte range (relative to the archive's start) of a validated column.
fn column<T>(base: &[u8], col: &[T]) -> Range<usize> {
    if col.is_empty() {
        return 0..0;
    }
    let start = col.as_ptr() as usize - base.as_ptr() as usize;
    start..start + std::mem::size_of_val(col)
}

fn rkyv_err(path: &Path, offset: u64, region: &'static str, e: rkyv::rancor::Error) -> Error {
    Error::corrupt(path, offset, region, "a valid rkyv archive", e.to_string())
}

/// Where the columns of a validated data block live in its payload.
#[derive(Debug, Clone)]
pub(crate) struct BlockLayout {
    values: Range<usize>,
    keys: Range<usize>,
    key_ends: Range<usize>,
    value_ends: Range<usize>,
    kinds: Range<usize>,
    weights: Range<usize>,
}

/// What the index says a block must hold.
pub(crate) struct BlockExpect<'a> {
    pub mode: RunMode,
    pub value_align: usize,
    pub entry_count: usize,
    pub first_key: &'a [u8],
    pub last_key: &'a [u8],
}

/// Validates a data block payload and returns its layout. `offset` is the
/// payload's offset in the file, for error messages.
pub(crate) fn validate_block(
    payload: &[u8],
    expect: &BlockExpect<'_>,
    path: &Path,
    offset: u64,
) -> Result<BlockLayout> {
    const REGION: &str = "data block";
    let bad = |expected: String, found: String| Error::corrupt(path, offset, REGION, expected, found);
    let archived = rkyv::access::<ArchivedDataBlock, rkyv::rancor::Error>(payload)
        .map_err(|e| rkyv_err(path, offset, REGION, e))?;
    let layout = BlockLayout {
        values: column(payload, archived.values.as_slice()),
        keys: column(payload, archived.keys.as_slice()),
        key_ends: column(payload, archived.key_ends.as_slice()),
        value_ends: column(payload, archived.value_ends.as_slice()),
        kinds: column(payload, archived.kinds.as_slice()),
        weights: column(payload, archived.weights.as_slice()),
    };
    let n = archived.key_ends.len();
    if n != expect.entry_count || n == 0 {
        return Err(bad(
            format!("{} entries (from the index)", expect.entry_count),
            format!("{n}"),
        ));
    }
    let (kinds_len, weights_len) = match expect.mode {
        RunMode::KeyValue => (n, 0),
        RunMode::ZSet => (0, n),
    };
    let lens = (
        archived.value_ends.len(),
        archived.kinds.len(),
        archived.weights.len(),
    );
    if lens != (n, kinds_len, weights_len) {
        return Err(bad(
            format!("columns of {n} value ends, {kinds_len} kinds, {weights_len} weights"),
            format!("{lens:?}"),
        ));
    }
    if !layout.values.start.is_multiple_of(expect.value_align) {
        return Err(bad(
            format!("values aligned to {}", expect.value_align),
            format!("values at payload offset {}", layout.values.start),
        ));
    }
    let view = BlockView::new(payload, &layout, expect.mode, expect.value_align);
    check_entries(&view, expect).map_err(|(expected, found)| bad(expected, found))?;
    Ok(layout)
}

/// The per-entry rules of format/run.md ("Data block payload"): offsets in
/// range and gap-free, kinds and weights valid, entries strictly ordered, first
/// and last keys as the index says. Returns (expected, found) on violation.
fn check_entries(
    view: &BlockView<'_>,
    expect: &BlockExpect<'_>,
) -> std::result::Result<(), (String, String)> {
    let n = view.len();
    let (mut key_start, mut value_end) = (0usize, 0usize);
    for i in 0..n {
        let key_end = le_u32(view.key_ends, 4 * i) as usize;
        let value_start = align_up(value_end, expect.value_align);
        let next_value_end = le_u32(view.value_ends, 4 * i) as usize;
        if key_end < key_start || key_end > view.keys.len() {
            return Err((
                format!("key {i} ending in {key_start}..={}", view.keys.len()),
                format!("{key_end}"),
            ));
        }
        if next_value_end < value_start || next_value_end > view.values.len() {
            return Err((
                format!("value {i} ending in {value_start}..={}", view.values.len()),
                format!("{next_value_end}"),
            ));
        }
        key_start = key_end;
        value_end = next_value_end;
        match expect.mode {
            RunMode::KeyValue => {
                let k = view.kinds[i];
                if k != KIND_PUT && !(k == KIND_DELETE && value_start == next_value_end) {
                    return Err((
                        format!("entry {i}: a put, or a delete with no value"),
                        format!("kind {k}"),
                    ));
                }
            }
            RunMode::ZSet => {
                if le_u64(view.weights, 8 * i) == 0 {
                    return Err((format!("entry {i}: a non-zero weight"), "0".into()));
                }
            }
        }
    }
    if key_start != view.keys.len() || value_end != view.values.len() {
        return Err((
            "columns with no trailing bytes".into(),
            "trailing key or value bytes".into(),
        ));
    }
    for i in 1..n {
        if view.cmp_entries(i - 1, i) != Ordering::Less {
            return Err((
                format!("entry {i} greater than entry {}", i - 1),
                "out of order".into(),
            ));
        }
    }
    if view.key(0) != expect.first_key || view.key(n - 1) != expect.last_key {
        return Err((
            "first and last keys equal to the index's".into(),
            "different keys".into(),
        ));
    }
    Ok(())
}

/// A validated data block, borrowed from the mapping (or the decompressed copy).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockView<'a> {
    values: &'a [u8],
    keys: &'a [u8],
    key_ends: &'a [u8],
    value_ends: &'a [u8],
    kinds: &'a [u8],
    weights: &'a [u8],
    mode: RunMode,
    value_align: usize,
}

impl<'a> BlockView<'a> {
    pub(crate) fn new(payload: &'a [u8], layout: &BlockLayout, mode: RunMode, value_align: usize) -> Self {
        BlockView {
            values: &payload[layout.values.clone()],
            keys: &payload[layout.keys.clone()],
            key_ends: &payload[layout.key_ends.clone()],
            value_ends: &payload[layout.value_ends.clone()],
            kinds: &payload[layout.kinds.clone()],
            weights: &payload[layout.weights.clone()],
            mode,
            value_align,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.key_ends.len() / 4
    }

    /// Starts loading the key columns into cache, so the cache misses of a
    /// binary search overlap instead of following one another.
    #[inline]
    pub(crate) fn prefetch_keys(&self) {
        crate::io::prefetch(self.key_ends);
        crate::io::prefetch(self.keys);
    }

    #[inline]
    pub(crate) fn key(&self, i: usize) -> &'a [u8] {
        let start = if i == 0 {
            0
        } else {
            le_u32(self.key_ends, 4 * (i - 1)) as usize
        };
        let end = le_u32(self.key_ends, 4 * i) as usize;
        &self.keys[start..end]
    }

    #[inline]
    pub(crate) fn value(&self, i: usize) -> &'a [u8] {
        let prev = if i == 0 {
            0
        } else {
            le_u32(self.value_ends, 4 * (i - 1)) as usize
        };
        let start = align_up(prev, self.value_align);
        let end = le_u32(self.value_ends, 4 * i) as usize;
        &self.values[start..end]
    }

    #[inline]
    pub(crate) fn kind(&self, i: usize) -> EntryKind {
        match self.mode {
            RunMode::KeyValue if self.kinds[i] == KIND_DELETE => EntryKind::Delete,
            RunMode::KeyValue => EntryKind::Put,
            RunMode::ZSet => EntryKind::Weight(le_u64(self.weights, 8 * i) as i64),
        }
    }

    #[inline]
    pub(crate) fn entry(&self, i: usize) -> EntryRef<'a> {
        EntryRef {
            key: self.key(i),
            value: self.value(i),
            kind: self.kind(i),
        }
    }

    fn cmp_entries(&self, a: usize, b: usize) -> Ordering {
        entry_cmp(self.mode, self.key(a), self.value(a), self.key(b), self.value(b))
    }

    /// Whether this block's last entry sorts strictly before `next`'s first.
    /// Blocks are validated one at a time, and in Z-set runs one key's values
    /// may span blocks, so order across a boundary is checked when crossed.
    pub(crate) fn precedes(&self, next: &BlockView<'_>) -> bool {
        let last = self.len() - 1;
        entry_cmp(
            self.mode,
            self.key(last),
            self.value(last),
            next.key(0),
            next.value(0),
        )
        .is_lt()
    }

    /// Index of the first entry whose key is `>= key` (`len()` if none).
    #[inline]
    pub(crate) fn lower_bound(&self, key: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if super::entry::key_cmp(self.key(mid), key).is_lt() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// A validated block index, borrowed from the mapping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexView<'a> {
    keys: &'a [u8],
    key_ends: &'a [u8],
    offsets: &'a [u8],
    frame_lens: &'a [u8],
    crcs: &'a [u8],
    entry_counts: &'a [u8],
    codecs: &'a [u8],
}

/// One row of the index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexRow<'a> {
    pub first_key: &'a [u8],
    pub last_key: &'a [u8],
    pub offset: u64,
    pub frame_len: u32,
    pub crc: u32,
    pub entry_count: u32,
    pub codec: u8,
}

/// Byte ranges of a validated index's columns within its payload.
#[derive(Debug, Clone)]
pub(crate) struct IndexLayout {
    cols: [Range<usize>; 7],
}

/// What the footer says the index must describe.
pub(crate) struct IndexExpect {
    pub mode: RunMode,
    pub block_count: usize,
    pub entry_count: u64,
    pub data_len: u64,
}

/// Validates an index payload: structure, then that its rows tile the data
/// region exactly, that entry counts add up, and that key ranges are ordered.
/// `visit` sees each row once as it is checked (the reader derives its fences
/// in the same pass: one walk over the index at open, not three).
pub(crate) fn validate_index(
    payload: &[u8],
    expect: &IndexExpect,
    path: &Path,
    offset: u64,
    visit: impl FnMut(&IndexRow<'_>),
) -> Result<IndexLayout> {
    const REGION: &str = "index";
    let bad = |expected: String, found: String| Error::corrupt(path, offset, REGION, expected, found);
    let a = rkyv::access::<ArchivedIndexBlock, rkyv::rancor::Error>(payload)
        .map_err(|e| rkyv_err(path, offset, REGION, e))?;
    let n = expect.block_count;
    let lens = [
        a.key_ends.len() / 2,
        a.offsets.len(),
        a.frame_lens.len(),
        a.crcs.len(),
        a.entry_counts.len(),
        a.codecs.len(),
    ];
    if a.key_ends.len() != 2 * n || lens.iter().any(|&l| l != n) {
        return Err(bad(format!("{n} rows in every column"), format!("{lens:?}")));
    }
    let layout = IndexLayout {
        cols: [
            column(payload, a.keys.as_slice()),
            column(payload, a.key_ends.as_slice()),
            column(payload, a.offsets.as_slice()),
            column(payload, a.frame_lens.as_slice()),
            column(payload, a.crcs.as_slice()),
            column(payload, a.entry_counts.as_slice()),
            column(payload, a.codecs.as_slice()),
        ],
    };
    let view = IndexView::new(payload, &layout);
    let mut key_start = 0usize;
    for j in 0..2 * n {
        let end = le_u32(view.key_ends, 4 * j) as usize;
        if end < key_start || end > view.keys.len() {
            return Err(bad(
                format!("key end {j} in {key_start}..={}", view.keys.len()),
                format!("{end}"),
            ));
        }
        key_start = end;
    }
    if key_start != view.keys.len() {
        return Err(bad(
            "no trailing key bytes".into(),
            format!("{} trailing", view.keys.len() - key_start),
        ));
    }
    check_rows(&view, expect, path, offset, visit)?;
    Ok(layout)
}

/// The per-row half of [`validate_index`]: rows tile the data region, counts
/// add up, key ranges are ordered; `visit` sees each checked row.
fn check_rows(
    view: &IndexView<'_>,
    expect: &IndexExpect,
    path: &Path,
    offset: u64,
    mut visit: impl FnMut(&IndexRow<'_>),
) -> Result<()> {
    let bad = |expected: String, found: String| Error::corrupt(path, offset, "index", expected, found);
    let (mut next_offset, mut entries) = (0u64, 0u64);
    let mut prev_last: &[u8] = &[];
    for i in 0..expect.block_count {
        let row = view.row(i);
        if row.offset != next_offset {
            return Err(bad(
                format!("block {i} at offset {next_offset}"),
                format!("{}", row.offset),
            ));
        }
        if row.entry_count == 0 || row.codec > 1 {
            return Err(bad(
                format!("block {i}: entries > 0, codec 0 or 1"),
                format!("{} entries, codec {}", row.entry_count, row.codec),
            ));
        }
        if row.first_key > row.last_key {
            return Err(bad(
                format!("block {i}: first key <= last key"),
                "first key > last key".into(),
            ));
        }
        if i > 0 {
            let ordered = match expect.mode {
                RunMode::KeyValue => prev_last < row.first_key,
                // A key with many values may continue into the next block.
                RunMode::ZSet => prev_last <= row.first_key,
            };
            if !ordered {
                return Err(bad(
                    format!("block {i} starting after block {}'s last key", i - 1),
                    "overlapping key ranges".into(),
                ));
            }
        }
        next_offset += u64::from(row.frame_len);
        entries += u64::from(row.entry_count);
        visit(&row);
        prev_last = row.last_key;
    }
    if next_offset != expect.data_len || entries != expect.entry_count {
        return Err(bad(
            format!(
                "blocks covering {} bytes and {} entries",
                expect.data_len, expect.entry_count
            ),
            format!("{next_offset} bytes and {entries} entries"),
        ));
    }
    Ok(())
}

impl<'a> IndexView<'a> {
    pub(crate) fn new(payload: &'a [u8], layout: &IndexLayout) -> Self {
        let c = &layout.cols;
        IndexView {
            keys: &payload[c[0].clone()],
            key_ends: &payload[c[1].clone()],
            offsets: &payload[c[2].clone()],
            frame_lens: &payload[c[3].clone()],
            crcs: &payload[c[4].clone()],
            entry_counts: &payload[c[5].clone()],
            codecs: &payload[c[6].clone()],
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.offsets.len() / 8
    }

    #[inline]
    fn key_at(&self, j: usize) -> &'a [u8] {
        let start = if j == 0 {
            0
        } else {
            le_u32(self.key_ends, 4 * (j - 1)) as usize
        };
        &self.keys[start..le_u32(self.key_ends, 4 * j) as usize]
    }

    /// Block `i`'s first key (reads only the key columns, unlike [`Self::row`]).
    #[inline]
    pub(crate) fn first_key(&self, i: usize) -> &'a [u8] {
        self.key_at(2 * i)
    }

    #[inline]
    pub(crate) fn last_key(&self, i: usize) -> &'a [u8] {
        self.key_at(2 * i + 1)
    }

    pub(crate) fn row(&self, i: usize) -> IndexRow<'a> {
        IndexRow {
            first_key: self.key_at(2 * i),
            last_key: self.key_at(2 * i + 1),
            offset: le_u64(self.offsets, 8 * i),
            frame_len: le_u32(self.frame_lens, 4 * i),
            crc: le_u32(self.crcs, 4 * i),
            entry_count: le_u32(self.entry_counts, 4 * i),
            codec: self.codecs[i],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block of puts.
    fn block(keys: &[&[u8]], values: &[&[u8]]) -> DataBlock {
        let entries: Vec<_> = keys
            .iter()
            .zip(values)
            .map(|(k, v)| (*k, *v, EntryKind::Put))
            .collect();
        crate::run::testing::block(&entries)
    }

    fn archive(b: &DataBlock) -> rkyv::util::AlignedVec<16> {
        rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(b, rkyv::util::AlignedVec::<16>::new())
            .unwrap()
    }

    fn expect<'a>(n: usize, first: &'a [u8], last: &'a [u8]) -> BlockExpect<'a> {
        BlockExpect {
            mode: RunMode::KeyValue,
            value_align: 8,
            entry_count: n,
            first_key: first,
            last_key: last,
        }
    }

    fn check(b: &DataBlock, e: &BlockExpect<'_>) -> Result<BlockLayout> {
        validate_block(&archive(b), e, Path::new("t.run"), 100)
    }

    #[test]
    fn well_formed_block_validates() {
        let b = block(&[b"a", b"b", b"c"], &[b"1", b"", b"333"]);
        let layout = check(&b, &expect(3, b"a", b"c")).unwrap();
        let bytes = archive(&b);
        let v = BlockView::new(&bytes, &layout, RunMode::KeyValue, 8);
        assert_eq!((v.key(2), v.value(2)), (&b"c"[..], &b"333"[..]));
        assert_eq!(v.lower_bound(b"bb"), 2);
    }

    #[test]
    fn checksummed_but_wrong_blocks_are_refused() {
        // Out-of-order keys: a writer bug or a forged block, not a bit flip.
        let b = block(&[b"b", b"a"], &[b"", b""]);
        let err = check(&b, &expect(2, b"b", b"a")).unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
        // Entry count disagreeing with the index.
        let b = block(&[b"a", b"b"], &[b"", b""]);
        assert!(check(&b, &expect(3, b"a", b"b")).unwrap_err().is_corruption());
        // Keys disagreeing with the index's first/last key.
        assert!(check(&b, &expect(2, b"a", b"c")).unwrap_err().is_corruption());
        // A key end past the key bytes.
        let mut b = block(&[b"a", b"b"], &[b"", b""]);
        b.key_ends[1] = 99;
        assert!(check(&b, &expect(2, b"a", b"b")).unwrap_err().is_corruption());
        // A value end before its (aligned) start.
        let mut b = block(&[b"a", b"b"], &[b"12345", b"x"]);
        b.value_ends[1] = 6;
        assert!(check(&b, &expect(2, b"a", b"b")).unwrap_err().is_corruption());
        // An unknown kind byte, and a delete that carries a value.
        let mut b = block(&[b"a", b"b"], &[b"v", b""]);
        b.kinds[1] = 0;
        assert!(check(&b, &expect(2, b"a", b"b")).unwrap_err().is_corruption());
        b.kinds[0] = KIND_DELETE;
        b.kinds[1] = KIND_PUT;
        assert!(check(&b, &expect(2, b"a", b"b")).unwrap_err().is_corruption());
        // Z-set columns in a key-value run.
        let mut b = block(&[b"a"], &[b""]);
        b.weights.push(1);
        assert!(check(&b, &expect(1, b"a", b"a")).unwrap_err().is_corruption());
    }

    #[test]
    fn truncated_archive_is_refused() {
        let b = block(&[b"a", b"b"], &[b"1", b"2"]);
        let bytes = archive(&b);
        for cut in 0..bytes.len() {
            let mut short = rkyv::util::AlignedVec::<16>::new();
            short.extend_from_slice(&bytes[..cut]);
            let r = validate_block(&short, &expect(2, b"a", b"b"), Path::new("t"), 0);
            assert!(r.is_err(), "cut at {cut}");
        }
    }
}
