//! Test-only: assemble run files from hand-made blocks, with valid checksums,
//! to prove that checks behind the checksums hold (a checksum proves the bytes
//! are what the writer wrote, not that the writer was right).

use rkyv::util::AlignedVec;

use super::archive::{DataBlock, IndexBlock};
use super::bloom;
use super::entry::{EntryKind, KIND_DELETE, KIND_PUT};
use super::format::{self, Codec, FOOTER_LEN, FORMAT_VERSION, Footer, MIN_READER_VERSION, RunMode};

/// A data block holding `entries` as given (no order checks), values 8-aligned.
pub(crate) fn block(entries: &[(&[u8], &[u8], EntryKind)]) -> DataBlock {
    let mut b = DataBlock::default();
    for (k, v, kind) in entries {
        b.keys.extend_from_slice(k);
        b.key_ends.push(b.keys.len() as u32);
        b.values.resize(format::align_up(b.values.len(), 8), 0);
        b.values.extend_from_slice(v);
        b.value_ends.push(b.values.len() as u32);
        match kind {
            EntryKind::Put => b.kinds.push(KIND_PUT),
            EntryKind::Delete => b.kinds.push(KIND_DELETE),
            EntryKind::Weight(w) => b.weights.push(*w),
        }
    }
    b
}

/// The bytes of a run made of `blocks`, every checksum valid.
pub(crate) fn assemble(mode: RunMode, blocks: &[DataBlock]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut index = IndexBlock::default();
    let (mut hashes, mut entries) = (Vec::new(), 0u64);
    for b in blocks {
        let archive =
            rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(b, AlignedVec::<16>::new()).unwrap();
        let offset = out.len();
        let crc = format::write_frame(
            &mut out,
            format::DATA_MAGIC,
            Codec::None,
            &archive,
            archive.len() as u32,
        );
        let n = b.len();
        index.keys.extend_from_slice(b.key(0));
        index.key_ends.push(index.keys.len() as u32);
        index.keys.extend_from_slice(b.key(n - 1));
        index.key_ends.push(index.keys.len() as u32);
        index.offsets.push(offset as u64);
        index.frame_lens.push((out.len() - offset) as u32);
        index.crcs.push(crc);
        index.entry_counts.push(n as u32);
        index.codecs.push(Codec::None as u8);
        hashes.extend((0..n).map(|i| bloom::key_hash(b.key(i))));
        entries += n as u64;
    }
    let index_offset = out.len() as u64;
    let ix = rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(&index, AlignedVec::<16>::new()).unwrap();
    format::write_frame(&mut out, format::INDEX_MAGIC, Codec::None, &ix, ix.len() as u32);
    let filter_offset = out.len() as u64;
    let filter = bloom::build(&hashes, 10, 7);
    format::write_frame(
        &mut out,
        format::FILTER_MAGIC,
        Codec::None,
        &filter,
        filter.len() as u32,
    );
    let body_len = out.len() as u64;
    let footer = Footer {
        format_version: FORMAT_VERSION,
        min_reader_version: MIN_READER_VERSION,
        compat_features: 0,
        incompat_features: 0,
        mode,
        value_align_log2: 3,
        filter_probes: 7,
        filter_bits_per_key: 10,
        entry_count: entries,
        block_count: blocks.len() as u64,
        index_offset,
        index_len: filter_offset - index_offset,
        filter_offset,
        filter_len: body_len - filter_offset,
        file_len: body_len + FOOTER_LEN as u64,
        body_crc32c: crc32c::crc32c(&out),
    };
    out.extend_from_slice(&footer.encode());
    out
}

mod tests {
    use std::path::Path;

    use super::*;
    use crate::io::MemFs;
    use crate::run::Run;

    fn open(mode: RunMode, blocks: &[DataBlock]) -> crate::Result<Run> {
        let fs = MemFs::new();
        fs.write(Path::new("/r.run"), &assemble(mode, blocks)).unwrap();
        Run::open(&fs, "/r.run")
    }

    #[test]
    fn assembled_runs_read_back() {
        let w = EntryKind::Weight(1);
        let run = open(
            RunMode::ZSet,
            &[
                block(&[(b"k", b"a", w)]),
                block(&[(b"k", b"b", w), (b"l", b"", w)]),
            ],
        )
        .unwrap();
        let got: Vec<_> = run.iter().map(|e| e.unwrap().value.to_vec()).collect();
        assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec(), Vec::new()]);
        run.verify().unwrap();
    }

    /// Regression: found by `cargo fuzz run run_file` (input kept as
    /// fuzz/regressions/run_file/zset-values-out-of-order-across-blocks). A key's
    /// values continue into the next block, where they restart lower: each block
    /// is valid alone and the index only orders keys, so iteration handed out
    /// `(k, "b")` before `(k, "a")`.
    #[test]
    fn zset_values_out_of_order_across_blocks_is_corruption() {
        let w = EntryKind::Weight(1);
        let run = open(
            RunMode::ZSet,
            &[block(&[(b"k", b"b", w)]), block(&[(b"k", b"a", w)])],
        )
        .unwrap();
        let mut it = run.iter();
        assert_eq!(it.next().unwrap().unwrap().value, b"b");
        let err = it.next().unwrap().unwrap_err();
        assert!(err.to_string().contains("out of order across blocks"), "{err}");
        assert!(it.next().is_none());
        assert!(run.verify().unwrap_err().is_corruption());
        // Equal (key, value) across blocks is a duplicate: refused too.
        let run = open(
            RunMode::ZSet,
            &[block(&[(b"k", b"a", w)]), block(&[(b"k", b"a", w)])],
        )
        .unwrap();
        assert!(run.iter().any(|e| e.is_err()));
    }

    #[test]
    fn key_value_duplicate_across_blocks_is_refused_at_open() {
        let put = EntryKind::Put;
        let err = open(
            RunMode::KeyValue,
            &[block(&[(b"k", b"1", put)]), block(&[(b"k", b"2", put)])],
        )
        .unwrap_err();
        assert!(err.is_corruption(), "{err}");
    }
}
