//! Byte layout of a run file: block frames and the footer.
//!
//! This is the code half of `format/run.md`; names here match the field names
//! there, and the two change together. In short:
//!
//! ```text
//! [data frame 0] .. [data frame n-1] [index frame] [filter frame] [footer: 128 bytes]
//! frame  = header (32 bytes) ++ payload (stored_len bytes) ++ zero padding to 16
//! header = magic[4] codec u8 reserved[3] stored_len u32 raw_len u32 reserved[12] crc32c u32
//! ```
//! All integers are little-endian. A frame's crc32c covers its header bytes
//! `0..28`, its payload *as stored* (compressed, if it is) and its padding, so
//! every byte of a run file is covered by exactly one frame checksum or by the
//! footer checksum.

use std::path::Path;

use crate::{Error, Result};

/// Magic of a data block frame.
pub const DATA_MAGIC: [u8; 4] = *b"SSDB";
/// Magic of the index frame.
pub const INDEX_MAGIC: [u8; 4] = *b"SSIX";
/// Magic of the filter frame.
pub const FILTER_MAGIC: [u8; 4] = *b"SSBF";
/// Magic at the start of the footer.
pub const FOOTER_MAGIC: [u8; 8] = *b"SSPNRUN\0";

/// File name suffix of run files.
pub const RUN_SUFFIX: &str = ".run";

/// The file name of run number `id` in its spine's directory: zero-padded
/// to 12 digits so names sort by age, and free of `-`, which checkpoint link
/// names use as a separator.
pub fn run_file_name(id: u64) -> String {
    format!("{id:012}{RUN_SUFFIX}")
}

/// The format version this build writes.
pub const FORMAT_VERSION: u32 = 1;
/// The oldest reader version able to read what this build writes.
pub const MIN_READER_VERSION: u32 = 1;

/// Length of every frame header.
pub const FRAME_HEADER_LEN: usize = 32;
/// Frames start and end on multiples of this, so payloads are aligned for rkyv.
pub const FRAME_ALIGN: usize = 16;
/// Length of the footer at the end of every run file.
pub const FOOTER_LEN: usize = 128;
/// Offset of the frame checksum within the frame header.
const FRAME_CRC_AT: usize = 28;
/// Offset of the footer checksum within the footer.
const FOOTER_CRC_AT: usize = 124;

/// Incompatible feature: at least one data block is zstd-compressed. A reader
/// that cannot decompress must refuse the file.
pub const INCOMPAT_ZSTD_BLOCKS: u64 = 1 << 0;
/// Every incompatible feature bit this build understands.
pub const INCOMPAT_KNOWN: u64 = INCOMPAT_ZSTD_BLOCKS;
/// Compatible features this build writes (none yet; unknown ones are ignored).
pub const COMPAT_KNOWN: u64 = 0;

/// How a frame's payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    /// Stored as is.
    None = 0,
    /// One zstd frame.
    Zstd = 1,
}

impl Codec {
    pub(crate) fn from_u8(b: u8) -> Option<Codec> {
        match b {
            0 => Some(Codec::None),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// Rounds `n` up to the next multiple of `align` (a power of two).
pub const fn align_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

/// Framed length of a payload of `stored_len` bytes.
pub const fn frame_len(stored_len: usize) -> usize {
    FRAME_HEADER_LEN + align_up(stored_len, FRAME_ALIGN)
}

/// Appends a complete frame to `out` and returns its crc32c.
pub fn write_frame(out: &mut Vec<u8>, magic: [u8; 4], codec: Codec, payload: &[u8], raw_len: u32) -> u32 {
    let start = out.len();
    let stored_len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    debug_assert_eq!(stored_len as usize, payload.len(), "caller bounds payload size");
    out.extend_from_slice(&magic);
    out.push(codec as u8);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&stored_len.to_le_bytes());
    out.extend_from_slice(&raw_len.to_le_bytes());
    out.extend_from_slice(&[0; 12]);
    debug_assert_eq!(out.len() - start, FRAME_CRC_AT);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(payload);
    out.resize(start + frame_len(payload.len()), 0);
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&out[start..start + FRAME_CRC_AT]),
        &out[start + FRAME_HEADER_LEN..],
    );
    out[start + FRAME_CRC_AT..start + FRAME_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    crc
}

/// A frame whose header and checksum have been verified.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// How the payload is stored.
    pub codec: Codec,
    /// The payload as stored.
    pub payload: &'a [u8],
    /// The payload's length after decoding.
    pub raw_len: u32,
    /// The frame's crc32c.
    pub crc: u32,
}

/// What the caller knows about a frame before reading it.
#[derive(Debug, Clone, Copy)]
pub struct FrameSpec {
    /// The magic it must carry.
    pub magic: [u8; 4],
    /// Region name for error messages.
    pub region: &'static str,
    /// Its exact framed length, from the index or the footer.
    pub len: u64,
    /// The crc32c the index recorded for it, if any.
    pub crc: Option<u32>,
}

use crate::io::header::{FeatureBits, HeaderSpec, check_header};
pub(crate) use crate::io::header::{bstr, crc_matches, le_u32, le_u64};

/// Verifies the frame that starts at `offset` in `file` and returns its payload.
pub fn read_frame<'a>(file: &'a [u8], offset: u64, spec: FrameSpec, path: &Path) -> Result<Frame<'a>> {
    let region = spec.region;
    let bad = |at: u64, expected: String, found: String| Error::corrupt(path, at, region, expected, found);
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let len = usize::try_from(spec.len).unwrap_or(usize::MAX);
    let bytes = start
        .checked_add(len)
        .and_then(|end| file.get(start..end))
        .ok_or_else(|| {
            bad(
                offset,
                format!("{len} framed bytes inside the file"),
                format!("file of {} bytes", file.len()),
            )
        })?;
    if len < FRAME_HEADER_LEN || len % FRAME_ALIGN != 0 {
        return Err(bad(
            offset,
            "a framed length that is a multiple of 16 and >= 32".into(),
            format!("{len}"),
        ));
    }
    if bytes[0..4] != spec.magic {
        return Err(bad(
            offset,
            format!("magic {:?}", bstr(&spec.magic)),
            format!("{:?}", bstr(&bytes[0..4])),
        ));
    }
    let stored_crc = le_u32(bytes, FRAME_CRC_AT);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..FRAME_CRC_AT]), &bytes[FRAME_HEADER_LEN..]);
    if !crc_matches(stored_crc, crc) {
        // Expected: what the frame's bytes sum to; found: what it stores
        // (the convention of `crate::io::header`).
        return Err(bad(
            offset,
            format!("frame crc32c {crc:#010x}"),
            format!("frame crc32c {stored_crc:#010x}"),
        ));
    }
    if let Some(expected) = spec.crc
        && !crc_matches(expected, crc)
    {
        return Err(bad(
            offset,
            format!("crc32c {expected:#010x} recorded in the index"),
            format!("{crc:#010x}"),
        ));
    }
    let codec = Codec::from_u8(bytes[4])
        .ok_or_else(|| bad(offset + 4, "codec 0 or 1".into(), format!("{}", bytes[4])))?;
    if bytes[5..8] != [0; 3] || bytes[16..28] != [0; 12] {
        return Err(bad(
            offset,
            "zero reserved header bytes".into(),
            "non-zero bytes".into(),
        ));
    }
    let stored_len = le_u32(bytes, 8) as usize;
    let raw_len = le_u32(bytes, 12);
    if frame_len(stored_len) != len {
        return Err(bad(
            offset + 8,
            format!("stored_len filling a frame of {len} bytes"),
            format!("{stored_len}"),
        ));
    }
    if codec == Codec::None && raw_len as usize != stored_len {
        return Err(bad(
            offset + 12,
            format!("raw_len {stored_len} for an uncompressed frame"),
            format!("{raw_len}"),
        ));
    }
    let payload_end = FRAME_HEADER_LEN + stored_len;
    if bytes[payload_end..].iter().any(|&b| b != 0) {
        return Err(bad(
            offset + payload_end as u64,
            "zero padding".into(),
            "non-zero bytes".into(),
        ));
    }
    Ok(Frame {
        codec,
        payload: &bytes[FRAME_HEADER_LEN..payload_end],
        raw_len,
        crc,
    })
}

/// Whether a run holds key-value entries or Z-set entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RunMode {
    /// Each key at most once, with a put or a delete (tombstone).
    KeyValue = 1,
    /// Each `(key, value)` at most once, with a non-zero `i64` weight.
    ZSet = 2,
}

impl RunMode {
    /// The mode's byte in file formats.
    pub fn to_byte(self) -> u8 {
        self as u8
    }

    /// The mode of a format byte, if it names one.
    pub fn from_byte(b: u8) -> Option<RunMode> {
        match b {
            1 => Some(RunMode::KeyValue),
            2 => Some(RunMode::ZSet),
            _ => None,
        }
    }
}

/// The fixed-size footer at the end of a run file (format/run.md, "Footer").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// Version of the format the writer used.
    pub format_version: u32,
    /// Oldest reader version able to read the file.
    pub min_reader_version: u32,
    /// Features a reader may ignore.
    pub compat_features: u64,
    /// Features a reader must understand.
    pub incompat_features: u64,
    /// Key-value or Z-set.
    pub mode: RunMode,
    /// Every value starts at a multiple of `1 << value_align_log2` in its block.
    pub value_align_log2: u8,
    /// Bits set per key in the bloom filter.
    pub filter_probes: u8,
    /// Filter bits per key the writer was configured with (informational).
    pub filter_bits_per_key: u8,
    /// Number of entries.
    pub entry_count: u64,
    /// Number of data blocks.
    pub block_count: u64,
    /// Offset of the index frame (= length of the data region).
    pub index_offset: u64,
    /// Framed length of the index.
    pub index_len: u64,
    /// Offset of the filter frame.
    pub filter_offset: u64,
    /// Framed length of the filter.
    pub filter_len: u64,
    /// Length of the whole file, footer included.
    pub file_len: u64,
    /// crc32c of every byte before the footer.
    pub body_crc32c: u32,
}

impl Footer {
    /// Encodes the footer, checksum included.
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut b = [0u8; FOOTER_LEN];
        b[0..8].copy_from_slice(&FOOTER_MAGIC);
        b[8..12].copy_from_slice(&self.format_version.to_le_bytes());
        b[12..16].copy_from_slice(&self.min_reader_version.to_le_bytes());
        b[16..24].copy_from_slice(&self.compat_features.to_le_bytes());
        b[24..32].copy_from_slice(&self.incompat_features.to_le_bytes());
        b[32] = self.mode as u8;
        b[33] = self.value_align_log2;
        b[34] = self.filter_probes;
        b[35] = self.filter_bits_per_key;
        // 36..40 reserved
        b[40..48].copy_from_slice(&self.entry_count.to_le_bytes());
        b[48..56].copy_from_slice(&self.block_count.to_le_bytes());
        b[56..64].copy_from_slice(&self.index_offset.to_le_bytes());
        b[64..72].copy_from_slice(&self.index_len.to_le_bytes());
        b[72..80].copy_from_slice(&self.filter_offset.to_le_bytes());
        b[80..88].copy_from_slice(&self.filter_len.to_le_bytes());
        b[88..96].copy_from_slice(&self.file_len.to_le_bytes());
        b[96..100].copy_from_slice(&self.body_crc32c.to_le_bytes());
        // 100..124 reserved
        let crc = crc32c::crc32c(&b[..FOOTER_CRC_AT]);
        b[FOOTER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a footer read from offset `at` of a file of
    /// `actual_len` bytes. Checks, in order: magic, checksum, version, features,
    /// field ranges, and that the regions tile the file exactly.
    pub fn decode(b: &[u8; FOOTER_LEN], at: u64, actual_len: u64, path: &Path) -> Result<Footer> {
        let bad = |off: u64, expected: String, found: String| {
            Error::corrupt(path, at + off, "footer", expected, found)
        };
        let checked = check_header(b, at, path, &FOOTER_SPEC)?;
        let (format_version, min_reader_version) = (checked.version, checked.min_reader);
        let incompat_features = checked.features;
        let mode = match b[32] {
            1 => RunMode::KeyValue,
            2 => RunMode::ZSet,
            m => return Err(bad(32, "mode 1 (key-value) or 2 (Z-set)".into(), format!("{m}"))),
        };
        let f = Footer {
            format_version,
            min_reader_version,
            compat_features: le_u64(b, 16),
            incompat_features,
            mode,
            value_align_log2: b[33],
            filter_probes: b[34],
            filter_bits_per_key: b[35],
            entry_count: le_u64(b, 40),
            block_count: le_u64(b, 48),
            index_offset: le_u64(b, 56),
            index_len: le_u64(b, 64),
            filter_offset: le_u64(b, 72),
            filter_len: le_u64(b, 80),
            file_len: le_u64(b, 88),
            body_crc32c: le_u32(b, 96),
        };
        if f.value_align_log2 > 4 {
            return Err(bad(
                33,
                "value_align_log2 <= 4".into(),
                format!("{}", f.value_align_log2),
            ));
        }
        if !(1..=MAX_FILTER_PROBES).contains(&f.filter_probes) {
            return Err(bad(
                34,
                format!("filter_probes in 1..={MAX_FILTER_PROBES}"),
                format!("{}", f.filter_probes),
            ));
        }
        f.check_layout(actual_len)
            .map_err(|(off, expected, found)| bad(off, expected, found))?;
        Ok(f)
    }

    /// The size and region rules: `file_len` is the real length, and data,
    /// index, filter and footer tile the file. Returns (field offset, expected,
    /// found) on violation.
    fn check_layout(&self, actual_len: u64) -> std::result::Result<(), (u64, String, String)> {
        let f = self;
        if f.file_len != actual_len {
            return Err((
                88,
                format!("file_len equal to the file's length {actual_len}"),
                format!("{}", f.file_len),
            ));
        }
        let index_end = f.index_offset.checked_add(f.index_len);
        let filter_end = f.filter_offset.checked_add(f.filter_len);
        let tiles = f.index_offset.is_multiple_of(FRAME_ALIGN as u64)
            && index_end == Some(f.filter_offset)
            && filter_end.and_then(|e| e.checked_add(FOOTER_LEN as u64)) == Some(f.file_len);
        if !tiles {
            return Err((
                56,
                "data, index and filter regions that tile the file".into(),
                format!(
                    "index {}+{}, filter {}+{}, file {}",
                    f.index_offset, f.index_len, f.filter_offset, f.filter_len, f.file_len
                ),
            ));
        }
        if f.block_count > f.entry_count || (f.entry_count > 0 && f.block_count == 0) {
            return Err((
                40,
                "1 <= block_count <= entry_count, or both 0".into(),
                format!("{} blocks, {} entries", f.block_count, f.entry_count),
            ));
        }
        Ok(())
    }
}

/// The footer as [`check_header`] reads it (`format/run.md`, "Footer").
const FOOTER_SPEC: HeaderSpec = HeaderSpec {
    region: "footer",
    magic: &FOOTER_MAGIC,
    len: FOOTER_LEN,
    crc_at: FOOTER_CRC_AT,
    version_at: 8,
    min_reader_at: Some(12),
    supported: FORMAT_VERSION,
    features: Some(FeatureBits {
        at: 24,
        width: 8,
        known: INCOMPAT_KNOWN,
    }),
};

/// Upper bound on bloom probes per key: beyond it, lookups get slower and the
/// false-positive rate stops improving for any sane bits-per-key.
pub const MAX_FILTER_PROBES: u8 = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn footer() -> Footer {
        Footer {
            format_version: FORMAT_VERSION,
            min_reader_version: MIN_READER_VERSION,
            compat_features: 0,
            incompat_features: 0,
            mode: RunMode::KeyValue,
            value_align_log2: 3,
            filter_probes: 7,
            filter_bits_per_key: 10,
            entry_count: 10,
            block_count: 2,
            index_offset: 160,
            index_len: 64,
            filter_offset: 224,
            filter_len: 96,
            file_len: 224 + 96 + 128,
            body_crc32c: 0xdead_beef,
        }
    }

    #[test]
    fn footer_round_trips() {
        let f = footer();
        let b = f.encode();
        let p = PathBuf::from("x.run");
        assert_eq!(Footer::decode(&b, 0, f.file_len, &p).unwrap(), f);
    }

    #[test]
    fn footer_rejects_every_single_bit_flip() {
        let f = footer();
        let b = f.encode();
        let p = PathBuf::from("x.run");
        for byte in 0..FOOTER_LEN {
            for bit in 0..8 {
                let mut d = b;
                d[byte] ^= 1 << bit;
                assert!(
                    Footer::decode(&d, 0, f.file_len, &p).is_err(),
                    "byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn newer_incompatible_version_is_refused_by_name() {
        let mut f = footer();
        f.format_version = 9;
        f.min_reader_version = 9;
        let err = Footer::decode(&f.encode(), 0, f.file_len, Path::new("x")).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { found: 9, .. }), "{err}");
        let mut g = footer();
        g.incompat_features = 1 << 40;
        let err = Footer::decode(&g.encode(), 0, g.file_len, Path::new("x")).unwrap_err();
        assert!(matches!(err, Error::UnsupportedFeatures { .. }), "{err}");
    }

    #[test]
    fn newer_compatible_version_is_read() {
        let mut f = footer();
        f.format_version = 2;
        f.compat_features = 1 << 5;
        assert_eq!(
            Footer::decode(&f.encode(), 0, f.file_len, Path::new("x")).unwrap(),
            f
        );
    }

    #[test]
    fn frame_round_trips_and_detects_damage() {
        let mut out = vec![0xAA; 16];
        let payload = b"hello frames";
        let crc = write_frame(&mut out, DATA_MAGIC, Codec::None, payload, payload.len() as u32);
        assert_eq!(out.len(), 16 + frame_len(payload.len()));
        let spec = FrameSpec {
            magic: DATA_MAGIC,
            region: "data block",
            len: frame_len(payload.len()) as u64,
            crc: Some(crc),
        };
        let p = Path::new("x");
        let fr = read_frame(&out, 16, spec, p).unwrap();
        assert_eq!(fr.payload, payload);
        for i in 16..out.len() {
            let mut d = out.clone();
            d[i] ^= 0x10;
            let err = read_frame(&d, 16, spec, p).unwrap_err();
            assert!(err.is_corruption(), "{err}");
        }
    }
}
