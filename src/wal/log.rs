//! [`WriteAheadLog`]: the segmented log of one shard (`format/wal.md`).
//!
//! 1. `open` scans every segment (header, then records), trims a torn tail
//!    of the last one and syncs it, refuses damage in the middle, and syncs
//!    the last segment once so that everything it then holds is durable.
//! 2. `append` frames a record into a memory buffer and returns its LSN; the
//!    buffer goes to the file when it fills or on `sync`.
//! 3. `sync` writes the buffer and `fdatasync`s the segment: one sync for
//!    every record appended so far (group commit); returns the durable LSN.
//! 4. A segment that reaches its size is synced whole, and the next one is
//!    created, synced and its directory entry synced before any of its
//!    records can be acknowledged.
//! 5. Any failed write or sync poisons the log (fail-stop): later calls
//!    return [`Error::Poisoned`] and nothing is deleted.

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{
    Frame, HEADER_LEN, MAX_LSN, MAX_PAYLOAD_BYTES, SegmentHeader, encode_frame, frame_len, list_segments,
    parse_segment_name, segment_name,
};
use super::segment::{Tail, scan_from};
use crate::io::{Fs, WritableFile};
use crate::{Error, Result};

/// Default segment size: 64 MiB, so truncation after a checkpoint frees
/// space in steps that are large next to one checkpoint's worth of records
/// yet small next to the disk.
pub const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 64 << 20;
/// Frames buffered before a `write`: 256 KiB.
const WRITE_BUFFER_BYTES: usize = 256 << 10;

/// What to do about damage in the middle of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Damage before the tail is an error (default).
    #[default]
    Strict,
    /// Treat the first invalid record as the end of the log: it and
    /// everything after it (including later segments, which are deleted) are
    /// lost. Opt-in only, for salvaging a damaged log.
    TolerateCorruption,
}

/// Options of a [`WriteAheadLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    pub(crate) shard_id: u32,
    pub(crate) segment_size_bytes: u64,
    pub(crate) recovery: RecoveryMode,
    pub(crate) first_lsn: u64,
    pub(crate) scan_from: u64,
    pub(crate) known_durable: u64,
    pub(crate) end_at: u64,
}

impl WalOptions {
    /// Defaults for the log of shard `shard_id`.
    pub fn new(shard_id: u32) -> Self {
        WalOptions {
            shard_id,
            segment_size_bytes: DEFAULT_SEGMENT_SIZE_BYTES,
            recovery: RecoveryMode::Strict,
            first_lsn: 1,
            scan_from: 0,
            known_durable: 0,
            end_at: MAX_LSN,
        }
    }

    /// Size at which a segment is closed and the next one started (default 64 MiB).
    #[must_use]
    pub fn segment_size_bytes(mut self, bytes: u64) -> Self {
        self.segment_size_bytes = bytes.max(HEADER_LEN as u64 + 1);
        self
    }

    /// The LSN of the first record when the log has no segment yet (default
    /// 1). A store whose checkpoint covers LSNs up to `n` starts an emptied
    /// log at `n + 1`, so LSNs never go back.
    #[must_use]
    pub fn first_lsn(mut self, lsn: u64) -> Self {
        self.first_lsn = lsn.clamp(1, MAX_LSN);
        self
    }

    /// Open reads only the headers of segments whose records all lie below
    /// `lsn` (default 0: every segment is scanned). Recovery passes its
    /// replay point: older segments are kept for point-in-time recovery to an
    /// older checkpoint, which checks them when it replays them, and reading
    /// them at every open would make a restart cost the whole log.
    #[must_use]
    pub fn scan_from(mut self, lsn: u64) -> Self {
        self.scan_from = lsn;
        self
    }

    /// Every record up to `lsn` is known to have been durable (default 0:
    /// nothing is known). Recovery passes the checkpoint's cut, which
    /// committed only after the log was synced past it: a log that ends
    /// before `lsn` lost acknowledged records to damage, however clean its
    /// end looks (a truncation at a record boundary, zeros or a bad last
    /// record where a torn tail could be), and a strict open refuses it
    /// before trimming anything (`format/wal.md`, reading rule 6).
    #[must_use]
    pub fn known_durable(mut self, lsn: u64) -> Self {
        self.known_durable = lsn;
        self
    }

    /// The log ends at `lsn`: open discards every record after it (default:
    /// none), durably before it returns. Recovery to an epoch passes the
    /// LSN of the epoch's commit record: records of later epochs go, so no
    /// crash can bring them back once new records reuse their LSNs
    /// (`format/wal.md`, writing rule 6). Later segments are deleted newest
    /// first, each deletion durable before the next, then the segment holding
    /// `lsn` is cut after it and synced: a crash in between leaves a shorter
    /// log that still holds `lsn`, and the next open discards the rest.
    #[must_use]
    pub fn end_at(mut self, lsn: u64) -> Self {
        self.end_at = lsn.min(MAX_LSN);
        self
    }

    /// Strict (default) or tolerant of damage in the middle.
    #[must_use]
    pub fn recovery(mut self, mode: RecoveryMode) -> Self {
        self.recovery = mode;
        self
    }
}

/// What `open` found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Segments found.
    pub segments: usize,
    /// Valid records found.
    pub records: u64,
    /// Bytes of torn tail trimmed from the last segment.
    pub torn_bytes: u64,
    /// Records lost to `RecoveryMode::TolerateCorruption` (0 when strict).
    pub dropped_segments: usize,
}

#[derive(Debug, Clone)]
struct Segment {
    first_lsn: u64,
    path: PathBuf,
    len: u64,
}

/// The write-ahead log of one shard. See the module docs.
#[derive(Debug)]
pub struct WriteAheadLog {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    opts: WalOptions,
    /// Oldest first; the last is the one being written.
    segments: Vec<Segment>,
    file: Box<dyn WritableFile>,
    segment_id: u64,
    next_lsn: u64,
    durable_lsn: u64,
    buf: Vec<u8>,
    poisoned: Option<String>,
    report: OpenReport,
}

fn random_u64() -> u64 {
    // std's RandomState is seeded from the OS's randomness per process and
    // varied per instance: enough for an id that only has to differ.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A segment open knows by its header alone (`WalOptions::scan_from`): its
/// records all lie below the next segment's first LSN. `lsns` are the first
/// LSN its name says, the one the previous segment ends before, and the next
/// segment's first LSN.
fn unscanned(file: &dyn crate::io::ReadableFile, len: u64, path: PathBuf, lsns: [u64; 3]) -> Result<Segment> {
    let [named, expected, next_first] = lsns;
    let header = unscanned_header(file, len, &path)?;
    if header.first_lsn != named || header.first_lsn != expected || next_first < expected {
        return Err(first_lsn_mismatch(&path, expected, header.first_lsn));
    }
    Ok(Segment {
        first_lsn: header.first_lsn,
        path,
        len,
    })
}

/// The header of a segment open does not scan (`WalOptions::scan_from`).
fn unscanned_header(file: &dyn crate::io::ReadableFile, len: u64, path: &Path) -> Result<SegmentHeader> {
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

impl WriteAheadLog {
    /// Opens (or creates) the log in `dir`; see the module docs, step 1.
    pub fn open(fs: Arc<dyn Fs>, dir: impl Into<PathBuf>, opts: WalOptions) -> Result<WriteAheadLog> {
        Self::open_replaying(fs, dir, opts, |_| Ok(()))
    }

    /// [`WriteAheadLog::open`] that also hands `f` every valid record from
    /// LSN `opts.scan_from` on, in order, as its scan checks them: recovery
    /// reads and checks the log once instead of twice (open, then
    /// [`super::replay`]). Records past damage or a torn tail are never
    /// handed over; an error from `f` ends the open with that error.
    pub fn open_replaying(
        fs: Arc<dyn Fs>,
        dir: impl Into<PathBuf>,
        opts: WalOptions,
        mut f: impl FnMut(Frame<'_>) -> Result<()>,
    ) -> Result<WriteAheadLog> {
        let dir = dir.into();
        crate::io::create_dir_all_durable(fs.as_ref(), &dir)?;
        let names = list_segments(fs.as_ref(), &dir)?;
        let mut report = OpenReport::default();
        let mut segments = Vec::new();
        let mut next_lsn = names.first().map_or(opts.first_lsn, |n| n.0);
        let (mut trim, mut current): (Option<u64>, Option<SegmentHeader>) = (None, None);
        // Where the valid records stop (segment, offset); a last segment cut
        // short while its header was written (name, size).
        let (mut end, mut torn_header) = (None, None);
        for (i, (first_lsn, name)) in names.iter().enumerate() {
            let path = dir.join(name);
            let last = i + 1 == names.len();
            let file = fs.open(&path)?;
            let len = file.size()?;
            if let Some(&(next_first, _)) = names.get(i + 1).filter(|n| n.0 <= opts.scan_from) {
                let segment = unscanned(file.as_ref(), len, path, [*first_lsn, next_lsn, next_first])?;
                report.segments += 1;
                report.records += next_first - next_lsn;
                next_lsn = next_first;
                end = Some((segment.path.clone(), len));
                segments.push(segment);
                continue;
            }
            let map = file.map(len)?;
            let header = match SegmentHeader::decode(&map, &path) {
                Ok(h) => h,
                // A last segment cut short while its header was written
                // never held an acknowledged record (step 4): it goes, below.
                // With bytes past the header, a bad header is damage instead.
                Err(e) if last && e.is_corruption() && len <= HEADER_LEN as u64 => {
                    torn_header = Some((name.as_str(), len));
                    break;
                }
                Err(e) => return Err(e),
            };
            if header.first_lsn != *first_lsn || header.first_lsn != next_lsn {
                return Err(first_lsn_mismatch(&path, next_lsn, header.first_lsn));
            }
            let mut failed = None;
            let s = scan_from(&map, &header, opts.scan_from, |frame| {
                if failed.is_none() && frame.lsn <= opts.end_at {
                    failed = f(frame).err();
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
            report.segments += 1;
            report.records += s.records;
            next_lsn = header.first_lsn + s.records;
            let first_lsn = header.first_lsn;
            segments.push(Segment {
                first_lsn,
                path: path.clone(),
                len,
            });
            current = Some(header);
            end = Some((path.clone(), s.end as u64));
            if next_lsn > opts.end_at + 1 {
                // The log ends at `end_at`, in this segment; the rest goes.
                let at = offset_of(&map, &header, opts.end_at + 1);
                discard_after(fs.as_ref(), &dir, &names[i + 1..])?;
                next_lsn = opts.end_at + 1;
                end = Some((path.clone(), at as u64));
                trim = Some(at as u64);
                break;
            }
            let Some(cut) = tail_cut(opts.recovery, &path, s.tail, last)? else {
                continue;
            };
            report.torn_bytes += len - cut as u64;
            trim = Some(cut as u64);
            // Tolerant mode: what follows the damage is dropped.
            report.dropped_segments += names.len() - i - 1;
            discard_after(fs.as_ref(), &dir, &names[i + 1..])?;
            break;
        }
        check_end(&opts, end.as_ref(), &dir, next_lsn, torn_header)?;
        if let Some((name, len)) = torn_header {
            fs.remove_file(&dir.join(name))?;
            fs.sync_dir(&dir)?;
            report.torn_bytes += len;
        }
        let mut wal = match current {
            Some(header) => Self::resume(fs, dir, opts, segments, header, trim)?,
            None => Self::create_first(fs, dir, opts, segments, next_lsn)?,
        };
        wal.next_lsn = next_lsn;
        wal.durable_lsn = next_lsn.saturating_sub(1);
        wal.report = report;
        Ok(wal)
    }

    /// Continues the last segment: trims a torn tail and syncs it once.
    fn resume(
        fs: Arc<dyn Fs>,
        dir: PathBuf,
        opts: WalOptions,
        mut segments: Vec<Segment>,
        header: SegmentHeader,
        trim: Option<u64>,
    ) -> Result<WriteAheadLog> {
        // `open` resumes only after it scanned a segment and pushed it.
        let Some(last) = segments.last_mut() else {
            unreachable!("resume with a scanned header but no segment");
        };
        let mut file = fs.open_append(&last.path)?;
        if let Some(cut) = trim {
            file.set_len(cut)?;
            last.len = cut;
        }
        // Whatever the segment holds now is what recovery will see: make it
        // durable before acknowledging anything after it, and its name too: a
        // crash between a rotation's header sync and its directory sync
        // leaves a segment whose entry may not survive a power loss.
        file.sync_data()?;
        fs.sync_dir(&dir)?;
        Ok(WriteAheadLog {
            fs,
            dir,
            opts,
            segments,
            file,
            segment_id: header.segment_id,
            next_lsn: 0,
            durable_lsn: 0,
            buf: Vec::with_capacity(WRITE_BUFFER_BYTES),
            poisoned: None,
            report: OpenReport::default(),
        })
    }

    /// Starts a new segment at `first_lsn` after `segments` (none, for a
    /// new log; the unscanned ones below the replay point when the last
    /// segment was a torn header, so that truncation still finds them).
    fn create_first(
        fs: Arc<dyn Fs>,
        dir: PathBuf,
        opts: WalOptions,
        mut segments: Vec<Segment>,
        first_lsn: u64,
    ) -> Result<WriteAheadLog> {
        let (file, segment) = create_segment(fs.as_ref(), &dir, opts.shard_id, first_lsn)?;
        segments.push(Segment {
            first_lsn,
            path: segment.0,
            len: HEADER_LEN as u64,
        });
        Ok(WriteAheadLog {
            fs,
            dir,
            opts,
            segments,
            file,
            segment_id: segment.1,
            next_lsn: first_lsn,
            durable_lsn: first_lsn - 1,
            buf: Vec::with_capacity(WRITE_BUFFER_BYTES),
            poisoned: None,
            report: OpenReport::default(),
        })
    }

    /// Starts a new, empty segment if the current one holds records (after
    /// syncing it). A clean stop does this: the next open reads only the
    /// headers of segments below its replay point (`WalOptions::scan_from`),
    /// and after a shutdown checkpoint that is every segment but the empty
    /// one, so a restart reads no record at all.
    pub fn seal(&mut self) -> Result<()> {
        self.check()?;
        let has_records = self.segments.last().is_some_and(|s| s.first_lsn < self.next_lsn);
        if has_records {
            self.guard(|w| w.rotate())?;
        }
        Ok(())
    }

    /// What `open` found.
    pub fn open_report(&self) -> OpenReport {
        self.report
    }

    /// The LSN the next record will get.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// The highest LSN known durable (0 if none).
    pub fn durable_lsn(&self) -> u64 {
        self.durable_lsn
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check(&self) -> Result<()> {
        match &self.poisoned {
            None => Ok(()),
            Some(cause) => Err(Error::Poisoned {
                path: self.dir.clone(),
                cause: cause.clone(),
            }),
        }
    }

    /// Runs an I/O step; a failure poisons the log.
    fn guard<T>(&mut self, step: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        step(self).inspect_err(|e| self.poisoned = Some(e.to_string()))
    }

    /// Appends one record; returns its LSN. Durable only after [`Self::sync`].
    pub fn append(&mut self, epoch: u64, payload: &[u8]) -> Result<u64> {
        self.check()?;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::TooLarge {
                what: "WAL record payload",
                len: payload.len() as u64,
                limit: MAX_PAYLOAD_BYTES as u64,
            });
        }
        if self.next_lsn >= MAX_LSN {
            return Err(Error::LimitReached {
                what: "LSNs",
                limit: MAX_LSN,
            });
        }
        let current = self.segments.last().map_or(0, |s| s.len) + self.buf.len() as u64;
        let has_records = self.segments.last().is_some_and(|s| s.first_lsn < self.next_lsn);
        if has_records && current + frame_len(payload.len()) as u64 > self.opts.segment_size_bytes {
            self.guard(Self::rotate)?;
        }
        let lsn = self.next_lsn;
        encode_frame(&mut self.buf, self.segment_id, lsn, epoch, payload);
        self.next_lsn += 1;
        if self.buf.len() >= WRITE_BUFFER_BYTES {
            self.guard(Self::flush)?;
        }
        Ok(lsn)
    }

    /// Appends records in order; returns the LSN of the last (or of the last
    /// record before, for an empty batch).
    pub fn append_batch<'a>(&mut self, records: impl IntoIterator<Item = (u64, &'a [u8])>) -> Result<u64> {
        let mut last = self.next_lsn - 1;
        for (epoch, payload) in records {
            last = self.append(epoch, payload)?;
        }
        Ok(last)
    }

    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.append(&self.buf)?;
        if let Some(s) = self.segments.last_mut() {
            s.len += self.buf.len() as u64;
        }
        self.buf.clear();
        // A record larger than the buffer grew it: give that memory back.
        if self.buf.capacity() > 2 * WRITE_BUFFER_BYTES {
            self.buf.shrink_to(WRITE_BUFFER_BYTES);
        }
        Ok(())
    }

    /// Makes every record appended so far durable with one `fdatasync`;
    /// returns the durable LSN.
    pub fn sync(&mut self) -> Result<u64> {
        self.check()?;
        if self.durable_lsn + 1 == self.next_lsn {
            return Ok(self.durable_lsn);
        }
        self.guard(|w| {
            w.flush()?;
            w.file.sync_data()
        })?;
        self.durable_lsn = self.next_lsn - 1;
        Ok(self.durable_lsn)
    }

    /// Closes the current segment (synced whole) and starts the next.
    fn rotate(&mut self) -> Result<()> {
        self.flush()?;
        self.file.sync_data()?;
        self.durable_lsn = self.next_lsn - 1;
        let (file, (path, id)) =
            create_segment(self.fs.as_ref(), &self.dir, self.opts.shard_id, self.next_lsn)?;
        self.file = file;
        self.segment_id = id;
        self.segments.push(Segment {
            first_lsn: self.next_lsn,
            path,
            len: HEADER_LEN as u64,
        });
        Ok(())
    }

    /// Deletes every segment whose records are all below `lsn` (never the
    /// current one), oldest first, each deletion durable before the next;
    /// returns how many went.
    pub fn truncate_below(&mut self, lsn: u64) -> Result<usize> {
        self.check()?;
        let doomed = self
            .segments
            .windows(2)
            .take_while(|w| w[1].first_lsn <= lsn)
            .count();
        // Oldest first, each unlink durable before the next: unsynced unlinks
        // may persist in any order, and a log missing a middle segment is
        // damaged, where one missing its oldest is only truncated.
        for s in self.segments.drain(..doomed).collect::<Vec<_>>() {
            crate::io::kill_point("wal-truncate");
            self.guard(|w| w.fs.remove_file(&s.path))?;
            self.guard(|w| w.fs.sync_dir(&w.dir))?;
        }
        Ok(doomed)
    }

    /// Bytes of the log: every segment plus what is buffered.
    pub fn wal_size(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum::<u64>() + self.buf.len() as u64
    }

    /// Segments on disk.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

/// The offset of the record with LSN `lsn` in a segment whose records up to
/// it were just validated by a scan.
fn offset_of(bytes: &[u8], header: &SegmentHeader, lsn: u64) -> usize {
    let mut at = HEADER_LEN;
    for l in header.first_lsn..lsn {
        at = super::format::skip_frame(bytes, at, l)
            .unwrap_or_else(|| unreachable!("record {l} was validated by the scan"));
    }
    at
}

/// Deletes `later` (the segments after the one the log now ends in), newest
/// first, each deletion durable before the next, so a crash leaves a log
/// that is a prefix of the old one (`WalOptions::end_at`).
fn discard_after(fs: &dyn Fs, dir: &Path, later: &[(u64, String)]) -> Result<()> {
    for (_, name) in later.iter().rev() {
        crate::io::kill_point("wal-discard");
        fs.remove_file(&dir.join(name))?;
        fs.sync_dir(dir)?;
    }
    Ok(())
}

/// Where a scanned segment's records must be cut: nowhere for a clean end,
/// at a torn tail of the last segment, and at damage only when tolerated.
fn tail_cut(mode: RecoveryMode, path: &Path, tail: Tail, last: bool) -> Result<Option<usize>> {
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
/// segment before it was synced whole before it was created. Checked before
/// anything is trimmed or removed; not in `RecoveryMode::TolerateCorruption`.
fn check_end(
    opts: &WalOptions,
    end: Option<&(PathBuf, u64)>,
    dir: &Path,
    next_lsn: u64,
    torn_header: Option<(&str, u64)>,
) -> Result<()> {
    if opts.recovery != RecoveryMode::Strict {
        return Ok(());
    }
    let known_durable = opts.known_durable;
    let named = torn_header.and_then(|(name, _)| Some((parse_segment_name(name)? - 1, name)));
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

/// Creates segment `<first_lsn>.wal`: header written, file synced, directory
/// synced (format/wal.md, writing rule 1).
fn create_segment(
    fs: &dyn Fs,
    dir: &Path,
    shard_id: u32,
    first_lsn: u64,
) -> Result<(Box<dyn WritableFile>, (PathBuf, u64))> {
    let path = dir.join(segment_name(first_lsn));
    let segment_id = random_u64();
    let header = SegmentHeader {
        shard_id,
        segment_id,
        first_lsn,
    };
    let mut file = fs.create(&path)?;
    file.append(&header.encode())?;
    file.sync_data()?;
    fs.sync_dir(dir)?;
    Ok((file, (path, segment_id)))
}
