//! Scanning one segment's records (`format/wal.md`, "Reading and recovery
//! rules"): where the valid records end, and whether what follows is a torn
//! tail or damage in the middle.

use super::format::{FRAME_HEADER_LEN, Frame, HEADER_LEN, SegmentHeader, parse_frame, skip_frame};

/// How a segment's records end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Every byte after the header is a valid record.
    Clean,
    /// The records end at `at`; nothing valid follows (a crash's torn write).
    Torn {
        /// Offset of the first invalid byte.
        at: usize,
    },
    /// The record at `at` is invalid, but a valid record with a higher LSN
    /// follows at `next_at`: damage in the middle.
    Corrupt {
        /// Offset of the first invalid record.
        at: usize,
        /// Offset of the valid record found after it.
        next_at: usize,
        /// Its LSN.
        next_lsn: u64,
    },
}

/// The outcome of a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Offset just past the last valid record.
    pub end: usize,
    /// Valid records in the segment.
    pub records: u64,
    /// How the records end.
    pub tail: Tail,
}

/// Calls `f` on each valid record of a segment (bytes including the header)
/// in order, and reports where and how they end.
pub fn scan<'a>(bytes: &'a [u8], header: &SegmentHeader, f: impl FnMut(Frame<'a>)) -> Scan {
    scan_from(bytes, header, 0, f)
}

/// [`scan`] for a reader that needs only the records from LSN `from` on:
/// those before it are walked by their headers alone ([`skip_frame`]), never
/// passed to `f`, their payloads and crcs unread. A checkpoint covers them, so
/// damage there loses nothing. The walk must land on a record that validates
/// (or, at the end of the bytes, its last step must): a header that does not
/// chain, or a damaged length that jumps to the end or past the records
/// after it, means damage the walk may have misread. The segment is then
/// scanned in full, so the error names the first invalid record and a damaged
/// length never hides the valid records after it.
pub fn scan_from<'a>(
    bytes: &'a [u8],
    header: &SegmentHeader,
    from: u64,
    mut f: impl FnMut(Frame<'a>),
) -> Scan {
    let (mut at, mut lsn) = walk(bytes, header, from).unwrap_or((HEADER_LEN, header.first_lsn));
    let mut records = lsn - header.first_lsn;
    while at < bytes.len() {
        let Some(frame) = parse_frame(bytes, at, header.segment_id, lsn..=lsn) else {
            let tail = match find_valid_after(bytes, at, header.segment_id, lsn) {
                Some((next_at, next_lsn)) => Tail::Corrupt {
                    at,
                    next_at,
                    next_lsn,
                },
                None => Tail::Torn { at },
            };
            return Scan {
                end: at,
                records,
                tail,
            };
        };
        at += FRAME_HEADER_LEN + frame.payload.len();
        lsn += 1;
        records += 1;
        if frame.lsn >= from {
            f(frame);
        }
    }
    Scan {
        end: at,
        records,
        tail: Tail::Clean,
    }
}

/// Walks the record headers below LSN `from` ([`skip_frame`]); returns the
/// offset and LSN where the walk stopped, or `None` if it cannot be trusted:
/// a header that does not chain, or a last step that is not confirmed by a
/// valid record, neither where it lands nor (at the end of the bytes) the
/// one it stepped over (`format/wal.md`, reading rule 5).
fn walk(bytes: &[u8], header: &SegmentHeader, from: u64) -> Option<(usize, u64)> {
    let (mut at, mut lsn) = (HEADER_LEN, header.first_lsn);
    let mut last = None;
    while lsn < from && at < bytes.len() {
        let next = skip_frame(bytes, at, lsn)?;
        last = Some(at);
        at = next;
        lsn += 1;
    }
    let Some(last) = last else {
        return Some((at, lsn));
    };
    let confirmed = if at < bytes.len() {
        parse_frame(bytes, at, header.segment_id, lsn..=lsn).is_some()
    } else {
        parse_frame(bytes, last, header.segment_id, lsn - 1..=lsn - 1).is_some()
    };
    confirmed.then_some((at, lsn))
}

/// A valid record at some offset after `bad` with an LSN at or above
/// `expected` (and no higher than the bytes left could hold): proof that the
/// invalid record at `bad` is not the end of what was written.
fn find_valid_after(bytes: &[u8], bad: usize, segment_id: u64, expected: u64) -> Option<(usize, u64)> {
    let room = (bytes.len() - bad) / FRAME_HEADER_LEN;
    let lsns = expected..=expected.saturating_add(room as u64);
    (bad + 1..bytes.len().saturating_sub(FRAME_HEADER_LEN - 1))
        .find_map(|p| parse_frame(bytes, p, segment_id, lsns.clone()).map(|f| (p, f.lsn)))
}
