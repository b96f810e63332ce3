//! Replay: every record from a given LSN on, in order, under the same rules
//! `open` applies (a torn tail of the last segment ends the log; damage
//! before it is an error unless tolerated).

use std::path::Path;

use super::format::{Frame, SegmentHeader, list_segments};
use super::log::RecoveryMode;
use super::segment::{Tail, scan_from};
use crate::io::Fs;
use crate::{Error, Result};

/// What a replay saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records handed to the callback.
    pub records: u64,
    /// LSN of the last record in the log (handed over or not; 0 if none).
    pub last_lsn: u64,
    /// True if the last segment ended in a torn tail.
    pub torn_tail: bool,
}

/// Calls `f` on every record with LSN `>= from_lsn` in the log in `dir`, in
/// LSN order. The payload borrows the mapped segment for the call only.
pub fn replay(
    fs: &dyn Fs,
    dir: &Path,
    from_lsn: u64,
    mode: RecoveryMode,
    mut f: impl FnMut(Frame<'_>) -> Result<()>,
) -> Result<ReplayReport> {
    let names = list_segments(fs, dir)?;
    // The last segment starting at or before `from_lsn` holds it.
    let start = names
        .iter()
        .rposition(|(first, _)| *first <= from_lsn)
        .unwrap_or(0);
    let mut report = ReplayReport::default();
    let mut expect: Option<u64> = None;
    // Where the records of the previous segment stop.
    let mut end: Option<(std::path::PathBuf, u64)> = None;
    for (i, (first, name)) in names.iter().enumerate().skip(start) {
        let path = dir.join(name);
        let last = i + 1 == names.len();
        let file = fs.open(&path)?;
        let map = file.map(file.size()?)?;
        let header = match SegmentHeader::decode(&map, &path) {
            Ok(h) => h,
            // A last segment cut short while its header was written held no
            // record, but its name says where the log before it ends.
            Err(e) if last && e.is_corruption() && map.len() <= super::format::HEADER_LEN => {
                match expect.filter(|&x| x < *first && mode == RecoveryMode::Strict) {
                    Some(x) => {
                        let (at_path, at) = end.unwrap_or((path, 0));
                        return Err(Error::corrupt(
                            &at_path,
                            at,
                            "write-ahead log end",
                            format!(
                                "records up to LSN {} (the next segment, {name}, starts at LSN {first})",
                                first - 1
                            ),
                            format!("the log ends at LSN {}", x.saturating_sub(1)),
                        ));
                    }
                    None => break,
                }
            }
            Err(e) => return Err(e),
        };
        if header.first_lsn != *first || expect.is_some_and(|x| x != header.first_lsn) {
            return Err(Error::corrupt(
                &path,
                32,
                "segment header",
                format!("first LSN {}", expect.unwrap_or(*first)),
                format!("{}", header.first_lsn),
            ));
        }
        let mut failed = None;
        let s = scan_from(&map, &header, from_lsn, |frame| {
            if failed.is_none() {
                match f(frame) {
                    Ok(()) => report.records += 1,
                    Err(e) => failed = Some(e),
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        report.last_lsn = (header.first_lsn + s.records)
            .saturating_sub(1)
            .max(report.last_lsn);
        expect = Some(header.first_lsn + s.records);
        end = Some((path.clone(), s.end as u64));
        match s.tail {
            Tail::Clean => {}
            Tail::Torn { .. } if last => report.torn_tail = true,
            Tail::Torn { at } | Tail::Corrupt { at, .. } => {
                if mode == RecoveryMode::Strict {
                    return Err(Error::corrupt(
                        &path,
                        at as u64,
                        "wal record",
                        "a valid record or the end of the log",
                        format!("{:?}", s.tail),
                    ));
                }
                report.torn_tail = true;
                break;
            }
        }
    }
    Ok(report)
}
