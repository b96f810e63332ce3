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
/// damage there loses nothing. A header that does not chain means damage
/// the walk may have misread: the segment is then scanned in full, so the
/// error names the first invalid record.
pub fn scan_from<'a>(
    bytes: &'a [u8],
    header: &SegmentHeader,
    from: u64,
    mut f: impl FnMut(Frame<'a>),
) -> Scan {
    let mut at = HEADER_LEN;
    let mut lsn = header.first_lsn;
    while lsn < from && at < bytes.len() {
        match skip_frame(bytes, at, lsn) {
            Some(next) => {
                at = next;
                lsn += 1;
            }
            None => {
                at = HEADER_LEN;
                lsn = header.first_lsn;
                break;
            }
        }
    }
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

/// A valid record at some offset after `bad` with an LSN at or above
/// `expected` (and no higher than the bytes left could hold): proof that the
/// invalid record at `bad` is not the end of what was written.
fn find_valid_after(bytes: &[u8], bad: usize, segment_id: u64, expected: u64) -> Option<(usize, u64)> {
    let room = (bytes.len() - bad) / FRAME_HEADER_LEN;
    let lsns = expected..=expected.saturating_add(room as u64);
    (bad + 1..bytes.len().saturating_sub(FRAME_HEADER_LEN - 1))
        .find_map(|p| parse_frame(bytes, p, segment_id, lsns.clone()).map(|f| (p, f.lsn)))
}
