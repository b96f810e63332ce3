//! Reading a log: the one read loop `open` (resume) and [`replay`] share,
//! and the rules it applies (`format/wal.md`, "Reading and recovery
//! rules"): segments in LSN order, each header checked and chained to the
//! records before it, a last segment cut short in its header holding no
//! record, a torn tail of the last segment ending the log, damage before it
//! an error unless tolerated, and a log that stops before an LSN known
//! durable refused.

use std::path::{Path, PathBuf};

use super::format::{Frame, HEADER_LEN, SegmentHeader, list_segments, parse_segment_name};
use super::log::RecoveryMode;
use super::segment::{Scan, Tail, scan_from};
use crate::io::{Fs, Mapping, ReadableFile};
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
    let mut log = Segments::list(fs, dir)?;
    // The last segment starting at or before `from_lsn` holds it.
    log.at = log
        .names
        .iter()
        .rposition(|(first, _)| *first <= from_lsn)
        .unwrap_or(0);
    let mut report = ReplayReport::default();
    let mut records = 0;
    let mut handed = |frame: Frame<'_>| f(frame).map(|()| records += 1);
    while let Some(read) = log.read_next(from_lsn, &mut handed)? {
        match read {
            Read::TornHeader { name, .. } => {
                if let Some(next_lsn) = log.next_lsn {
                    check_end(mode, 0, log.end.as_ref(), dir, next_lsn, Some(&name))?;
                }
                break;
            }
            Read::Records(r) => {
                let last = (r.header.first_lsn + r.scan.records).saturating_sub(1);
                report.last_lsn = report.last_lsn.max(last);
                if tail_cut(mode, &r.path, r.scan.tail, r.last)?.is_some() {
                    report.torn_tail = true;
                    break;
                }
            }
        }
    }
    report.records = records;
    Ok(report)
}

/// The segments of a log, read one after the other.
pub(crate) struct Segments<'a> {
    fs: &'a dyn Fs,
    dir: &'a Path,
    names: Vec<(u64, String)>,
    /// The next segment to read.
    at: usize,
    /// The LSN the next segment must start at (`None` before the first).
    pub(crate) next_lsn: Option<u64>,
    /// Where the records read so far stop: segment and offset.
    pub(crate) end: Option<(PathBuf, u64)>,
    /// The LSN of the last record handed over.
    handed: Option<u64>,
}

/// A segment whose records were read.
pub(crate) struct Records {
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
    /// It is the log's last segment.
    pub(crate) last: bool,
    pub(crate) header: SegmentHeader,
    pub(crate) scan: Scan,
    pub(crate) map: Mapping,
}

/// What [`Segments::read_next`] found.
pub(crate) enum Read {
    /// A segment, its records read.
    Records(Records),
    /// The last segment, cut short while its header was written: it never
    /// held a record (a segment's header is synced before any record is
    /// acknowledged). Its name says where the log before it had to end.
    TornHeader { name: String, len: u64 },
}

impl<'a> Segments<'a> {
    /// The segments in `dir`, none read yet.
    pub(crate) fn list(fs: &'a dyn Fs, dir: &'a Path) -> Result<Self> {
        Ok(Segments {
            fs,
            dir,
            names: list_segments(fs, dir)?,
            at: 0,
            next_lsn: None,
            end: None,
            handed: None,
        })
    }

    /// Every segment as `(first LSN, file name)`, oldest first.
    pub(crate) fn names(&self) -> &[(u64, String)] {
        &self.names
    }

    /// The index in [`Self::names`] of the next segment to read.
    pub(crate) fn index(&self) -> usize {
        self.at
    }

    /// The first LSN of the segment after the next one if it is at most
    /// `lsn`: the next segment's records then all lie below `lsn`.
    pub(crate) fn next_below(&self, lsn: u64) -> Option<u64> {
        self.names
            .get(self.at + 1)
            .map(|n| n.0)
            .filter(|&first| first <= lsn)
    }

    /// Reads the next segment by its header alone, for a reader that needs
    /// none of its records ([`Self::next_below`] said so): returns its
    /// path, length and how many records it holds.
    pub(crate) fn skip_by_header(&mut self) -> Result<(PathBuf, u64, u64)> {
        let Some(next_first) = self.names.get(self.at + 1).map(|n| n.0) else {
            unreachable!("skip_by_header of the last segment");
        };
        let (named, path) = (self.names[self.at].0, self.dir.join(&self.names[self.at].1));
        self.at += 1;
        let file = self.fs.open(&path)?;
        let len = file.size()?;
        let header = read_header(file.as_ref(), len, &path)?;
        let expected = self.next_lsn.unwrap_or(named);
        if header.first_lsn != named || header.first_lsn != expected || next_first < expected {
            return Err(first_lsn_mismatch(&path, expected, header.first_lsn));
        }
        self.next_lsn = Some(next_first);
        self.end = Some((path.clone(), len));
        Ok((path, len, next_first - expected))
    }

    /// Reads the next segment: its header, then its records, handing `f`
    /// those from LSN `from` on, in order. An error from `f` ends the read
    /// with it. `None` once every segment is read.
    pub(crate) fn read_next(
        &mut self,
        from: u64,
        f: &mut dyn FnMut(Frame<'_>) -> Result<()>,
    ) -> Result<Option<Read>> {
        let Some((named, name)) = self.names.get(self.at).cloned() else {
            return Ok(None);
        };
        self.at += 1;
        let last = self.at == self.names.len();
        let path = self.dir.join(&name);
        let file = self.fs.open(&path)?;
        let len = file.size()?;
        let map = file.map(len)?;
        let header = match SegmentHeader::decode(&map, &path) {
            Ok(h) => h,
            // With bytes past the header, a bad header is damage instead.
            Err(e) if last && e.is_corruption() && len <= HEADER_LEN as u64 => {
                return Ok(Some(Read::TornHeader { name, len }));
            }
            Err(e) => return Err(e),
        };
        let expected = self.next_lsn.unwrap_or(named);
        if header.first_lsn != named || header.first_lsn != expected {
            return Err(first_lsn_mismatch(&path, expected, header.first_lsn));
        }
        let mut failed = None;
        let previous = &mut self.handed;
        let scan = scan_from(&map, &header, from, |frame| {
            // Paired with `append`'s: the scan accepts a record only with the
            // LSN after the last, and segments chain, so records come in
            // strictly increasing LSN order across the whole log.
            assert!(
                previous.is_none_or(|p| frame.lsn > p),
                "WAL records handed over out of LSN order: {previous:?} then {}",
                frame.lsn
            );
            *previous = Some(frame.lsn);
            if failed.is_none() {
                failed = f(frame).err();
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        self.next_lsn = Some(header.first_lsn + scan.records);
        self.end = Some((path.clone(), scan.end as u64));
        let records = Records {
            path,
            len,
            last,
            header,
            scan,
            map,
        };
        Ok(Some(Read::Records(records)))
    }

    /// The log now ends before `lsn`, at `offset` of the segment read last.
    pub(crate) fn end_before(&mut self, lsn: u64, offset: usize) {
        self.next_lsn = Some(lsn);
        if let Some(end) = &mut self.end {
            end.1 = offset as u64;
        }
    }
}

/// The header of a segment read by its header alone.
fn read_header(file: &dyn ReadableFile, len: u64, path: &Path) -> Result<SegmentHeader> {
    // A short file is refused by the header check, which names it.
    let mut buf = [0u8; HEADER_LEN];
    let n = len.min(HEADER_LEN as u64) as usize;
    file.read_exact_at(&mut buf[..n], 0)?;
    SegmentHeader::decode(&buf[..n], path)
}

fn first_lsn_mismatch(path: &Path, expected: u64, found: u64) -> Error {
    Error::corrupt(
        path,
        32,
        "segment header",
        format!("first LSN {expected} (from the name and the previous segment)"),
        format!("{found}"),
    )
}

/// Where a scanned segment's records must be cut: nowhere for a clean end,
/// at a torn tail of the last segment, and at damage only when tolerated.
pub(crate) fn tail_cut(mode: RecoveryMode, path: &Path, tail: Tail, last: bool) -> Result<Option<usize>> {
    match tail {
        Tail::Clean => Ok(None),
        Tail::Torn { at } if last => Ok(Some(at)),
        Tail::Torn { at } | Tail::Corrupt { at, .. } => {
            if mode == RecoveryMode::Strict {
                return Err(corruption(path, tail, last));
            }
            Ok(Some(at))
        }
    }
}

fn corruption(path: &Path, tail: Tail, last: bool) -> Error {
    let found = match tail {
        Tail::Corrupt {
            next_at, next_lsn, ..
        } => {
            format!("an invalid record followed by a valid one (LSN {next_lsn} at offset {next_at})")
        }
        _ if !last => "an invalid record in a segment that is not the last".into(),
        _ => "an invalid record".into(),
    };
    let at = match tail {
        Tail::Torn { at } | Tail::Corrupt { at, .. } => at as u64,
        Tail::Clean => 0,
    };
    Error::corrupt(
        path,
        at,
        "wal record",
        "a valid record or the end of the log",
        found,
    )
}

/// The log's records stop before `next_lsn`, in the segment and at the
/// offset `end` names: they must reach every LSN known durable
/// (`format/wal.md`, reading rule 6): `known_durable`, and the LSN before
/// the name of a last segment whose header was torn (`torn_header`), as the
/// segment before it was synced whole before it was created. Not checked in
/// `RecoveryMode::TolerateCorruption`.
pub(crate) fn check_end(
    mode: RecoveryMode,
    known_durable: u64,
    end: Option<&(PathBuf, u64)>,
    dir: &Path,
    next_lsn: u64,
    torn_header: Option<&str>,
) -> Result<()> {
    if mode != RecoveryMode::Strict {
        return Ok(());
    }
    let named = torn_header.and_then(|name| Some((parse_segment_name(name)? - 1, name)));
    let (durable, why) = match named {
        Some((lsn, name)) if lsn >= known_durable => (
            lsn,
            format!("the next segment, {name}, starts at LSN {}", lsn + 1),
        ),
        _ => (known_durable, "known durable: the checkpoint's cut".to_owned()),
    };
    if next_lsn > durable {
        return Ok(());
    }
    let (path, at) = end.map_or((dir, 0), |(p, at)| (p.as_path(), *at));
    let found = match next_lsn.checked_sub(1).filter(|&l| l > 0) {
        Some(last) => format!("the log ends at LSN {last}"),
        None => "a log without records".to_owned(),
    };
    Err(Error::corrupt(
        path,
        at,
        "write-ahead log end",
        format!("records up to LSN {durable} ({why})"),
        found,
    ))
}
