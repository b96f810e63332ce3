//! The bytes of a WAL segment (`format/wal.md`): the 64-byte header and the
//! record frames. Field names match the spec.

use std::path::Path;

use crate::io::Fs;
use crate::io::header::{HeaderSpec, check_header, crc_matches, le_u32, le_u64};
use crate::{Error, Result};

/// `magic` of a segment header.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SSPNWAL\0";
/// Format version this build writes.
pub const FORMAT_VERSION: u32 = 1;
/// Oldest reader version that can read what this build writes.
pub const MIN_READER_VERSION: u32 = 1;
/// Bytes of the segment header.
pub const HEADER_LEN: usize = 64;
/// Bytes of a record frame before its payload.
pub const FRAME_HEADER_LEN: usize = 24;
/// Largest payload of one record.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 30;
/// Largest LSN: 2^63 - 1, so LSN arithmetic never overflows (a log that
/// wrote a billion records a second would take 292 years to get there).
pub const MAX_LSN: u64 = i64::MAX as u64;
/// Suffix of segment file names.
pub const SEGMENT_SUFFIX: &str = ".wal";

/// The header of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The shard the log belongs to.
    pub shard_id: u32,
    /// Random id of this segment, mixed into every record's crc.
    pub segment_id: u64,
    /// LSN of the segment's first record.
    pub first_lsn: u64,
}

/// The file name of the segment starting at `first_lsn`.
pub fn segment_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}{SEGMENT_SUFFIX}")
}

/// The segments in `dir` as `(first_lsn, file name)`, oldest first; other
/// files are not segments and are left alone.
pub fn list_segments(fs: &dyn Fs, dir: &Path) -> Result<Vec<(u64, String)>> {
    let mut names: Vec<(u64, String)> = fs
        .list(dir)?
        .into_iter()
        .filter_map(|n| Some((parse_segment_name(&n)?, n)))
        .collect();
    names.sort();
    Ok(names)
}

/// The first LSN a segment file name stands for.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
        .filter(|&lsn| lsn > 0 && lsn <= MAX_LSN)
}

impl SegmentHeader {
    /// The 64 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&MIN_READER_VERSION.to_le_bytes());
        b[16..20].copy_from_slice(&self.shard_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.segment_id.to_le_bytes());
        b[32..40].copy_from_slice(&self.first_lsn.to_le_bytes());
        let crc = crc32c::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks a header: magic, crc, versions
    /// (the shared file-header check of `io::header`), then the first LSN.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<SegmentHeader> {
        check_header(bytes, 0, path, &HEADER_SPEC)?;
        let b = &bytes[..HEADER_LEN];
        let first_lsn = le_u64(b, 32);
        if first_lsn == 0 || first_lsn > MAX_LSN {
            // LSN 0 means "nothing" and LSNs stop at MAX_LSN (format/wal.md,
            // "Files"); both found by fuzzing.
            return Err(Error::corrupt(
                path,
                32,
                HEADER_SPEC.region,
                format!("a first LSN in 1..={MAX_LSN}"),
                first_lsn.to_string(),
            ));
        }
        Ok(SegmentHeader {
            shard_id: le_u32(b, 16),
            segment_id: le_u64(b, 24),
            first_lsn,
        })
    }
}

/// The segment header as [`check_header`] reads it (`format/wal.md`).
const HEADER_SPEC: HeaderSpec = HeaderSpec {
    region: "segment header",
    magic: &SEGMENT_MAGIC,
    len: HEADER_LEN,
    crc_at: 60,
    version_at: 8,
    min_reader_at: Some(12),
    supported: FORMAT_VERSION,
    features: None,
};

/// A record as found in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Its LSN.
    pub lsn: u64,
    /// Its epoch.
    pub epoch: u64,
    /// Its payload, borrowed from the segment.
    pub payload: &'a [u8],
}

fn record_crc(segment_id: u64, len: u32, lsn: u64, epoch: u64, payload: &[u8]) -> u32 {
    let mut head = [0u8; 28];
    head[0..8].copy_from_slice(&segment_id.to_le_bytes());
    head[8..12].copy_from_slice(&len.to_le_bytes());
    head[12..20].copy_from_slice(&lsn.to_le_bytes());
    head[20..28].copy_from_slice(&epoch.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&head), payload)
}

/// Appends one record frame to `out`.
pub fn encode_frame(out: &mut Vec<u8>, segment_id: u64, lsn: u64, epoch: u64, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&record_crc(segment_id, len, lsn, epoch, payload).to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(payload);
}

/// The header of the frame at `at` if it is plausible: `len` within bounds,
/// the whole frame inside `bytes`, its LSN in `lsn`. Returns the header, the
/// LSN and the payload's range.
fn frame_header<'a>(
    bytes: &'a [u8],
    at: usize,
    lsn: &std::ops::RangeInclusive<u64>,
) -> Option<(&'a [u8], u64, std::ops::Range<usize>)> {
    let head = bytes.get(at..at.checked_add(FRAME_HEADER_LEN)?)?;
    let len = le_u32(head, 0) as usize;
    let found_lsn = le_u64(head, 8);
    if len > MAX_PAYLOAD_BYTES || !lsn.contains(&found_lsn) {
        return None;
    }
    let start = at + FRAME_HEADER_LEN;
    let end = start.checked_add(len).filter(|&e| e <= bytes.len())?;
    Some((head, found_lsn, start..end))
}

/// The record at `at` if it is valid (`format/wal.md`, "Reading and recovery
/// rules") with LSN `lsn`, or with any LSN in `lsn` when `lsn` is a range.
pub fn parse_frame(
    bytes: &[u8],
    at: usize,
    segment_id: u64,
    lsn: std::ops::RangeInclusive<u64>,
) -> Option<Frame<'_>> {
    let (head, found_lsn, range) = frame_header(bytes, at, &lsn)?;
    let payload = &bytes[range];
    let epoch = le_u64(head, 16);
    let crc = record_crc(segment_id, payload.len() as u32, found_lsn, epoch, payload);
    if !crc_matches(le_u32(head, 4), crc) {
        return None;
    }
    Some(Frame {
        lsn: found_lsn,
        epoch,
        payload,
    })
}

/// The offset just past the frame at `at` if its header alone is plausible
/// (`len` within bounds, the frame inside `bytes`, `lsn` the one expected).
/// The payload and crc are not read: for walking past records a checkpoint
/// already covers (`format/wal.md`, "Reading and recovery rules", rule 5).
pub fn skip_frame(bytes: &[u8], at: usize, lsn: u64) -> Option<usize> {
    frame_header(bytes, at, &(lsn..=lsn)).map(|(_, _, range)| range.end)
}

/// Bytes a frame with this payload takes.
pub fn frame_len(payload_len: usize) -> usize {
    FRAME_HEADER_LEN + payload_len
}
