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
    Frame, HEADER_LEN, MAX_LSN, MAX_PAYLOAD_BYTES, SegmentHeader, encode_frame, frame_len, segment_name,
};
use super::reader::{Read, Segments, check_end, tail_cut};
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
        let mut log = Segments::list(fs.as_ref(), &dir)?;
        let mut handed = |frame: Frame<'_>| {
            if frame.lsn <= opts.end_at {
                f(frame)
            } else {
                Ok(())
            }
        };
        let read = read_log(fs.as_ref(), &dir, &opts, &mut log, &mut handed)?;
        let first_named = log.names().first().map(|n| n.0);
        let next_lsn = log.next_lsn.or(first_named).unwrap_or(opts.first_lsn);
        let torn_name = read.torn_header.as_ref().map(|(name, _)| name.as_str());
        check_end(
            opts.recovery,
            opts.known_durable,
            log.end.as_ref(),
            &dir,
            next_lsn,
            torn_name,
        )?;
        drop(log);
        let OpenRead {
            mut report,
            segments,
            current,
            trim,
            torn_header,
        } = read;
        if let Some((name, len)) = torn_header {
            let path = dir.join(name);
            tracing::warn!(file = %path.display(), bytes = len, "torn wal segment header removed");
            fs.remove_file(&path)?;
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
        tracing::debug!(
            dir = %wal.dir.display(),
            segments = report.segments,
            records = report.records,
            torn_bytes = report.torn_bytes,
            next_lsn,
            "wal opened"
        );
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
        step(self).inspect_err(|e| {
            tracing::error!(dir = %self.dir.display(), error = %e, "wal failed: it takes no more records");
            self.poisoned = Some(e.to_string());
        })
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
        // Paired with the read side's check (`reader::Segments`): every
        // record takes the LSN right after the one before it, in a segment
        // that starts at or before it.
        debug_assert!(
            lsn > self.durable_lsn && self.segments.last().is_some_and(|s| s.first_lsn <= lsn),
            "LSN {lsn} does not follow the log (durable up to {})",
            self.durable_lsn
        );
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
        assert!(
            self.segments.last().is_none_or(|s| s.first_lsn < self.next_lsn),
            "segment {} would start at or before the one it follows",
            self.next_lsn
        );
        tracing::debug!(
            segment = %path.display(),
            first_lsn = self.next_lsn,
            closed_bytes = self.segments.last().map_or(0, |s| s.len),
            "wal segment rotated"
        );
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
        if doomed > 0 {
            tracing::info!(
                dir = %self.dir.display(),
                segments = doomed,
                below_lsn = self.segments.first().map_or(lsn, |s| s.first_lsn),
                "wal truncated"
            );
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

/// What `open` read of the log.
struct OpenRead {
    report: OpenReport,
    segments: Vec<Segment>,
    /// The header of the last segment read, to resume (`None`: none was).
    current: Option<SegmentHeader>,
    /// Where the last segment must be cut.
    trim: Option<u64>,
    /// A last segment cut short while its header was written (name, size).
    torn_header: Option<(String, u64)>,
}

/// The read loop of `open` (module docs, step 1): segments below the scan
/// point by their headers, the others record by record, handing `f` the
/// records from `opts.scan_from` on; segments after `opts.end_at` or after
/// a tolerated damage are deleted. Nothing is trimmed yet.
fn read_log(
    fs: &dyn Fs,
    dir: &Path,
    opts: &WalOptions,
    log: &mut Segments<'_>,
    f: &mut dyn FnMut(Frame<'_>) -> Result<()>,
) -> Result<OpenRead> {
    let mut read = OpenRead {
        report: OpenReport::default(),
        segments: Vec::new(),
        current: None,
        trim: None,
        torn_header: None,
    };
    let (report, names) = (&mut read.report, log.names().to_vec());
    while log.index() < names.len() {
        let i = log.index();
        if log.next_below(opts.scan_from).is_some() {
            let (path, len, records) = log.skip_by_header()?;
            report.segments += 1;
            report.records += records;
            read.segments.push(Segment {
                first_lsn: names[i].0,
                path,
                len,
            });
            continue;
        }
        let r = match log.read_next(opts.scan_from, f)? {
            Some(Read::Records(r)) => r,
            Some(Read::TornHeader { name, len }) => {
                read.torn_header = Some((name, len));
                break;
            }
            None => break,
        };
        report.segments += 1;
        report.records += r.scan.records;
        read.segments.push(Segment {
            first_lsn: r.header.first_lsn,
            path: r.path.clone(),
            len: r.len,
        });
        read.current = Some(r.header);
        if r.header.first_lsn + r.scan.records > opts.end_at + 1 {
            // The log ends at `end_at`, in this segment; the rest goes.
            let at = offset_of(&r.map, &r.header, opts.end_at + 1);
            tracing::info!(
                file = %r.path.display(),
                offset = at,
                end_lsn = opts.end_at,
                later_segments = names.len() - i - 1,
                "wal cut at the recovery point"
            );
            discard_after(fs, dir, &names[i + 1..])?;
            log.end_before(opts.end_at + 1, at);
            read.trim = Some(at as u64);
            break;
        }
        let Some(cut) = tail_cut(opts.recovery, &r.path, r.scan.tail, r.last)? else {
            continue;
        };
        trace_cut(&r.path, cut, r.len, &r.scan.tail, names.len() - i - 1);
        report.torn_bytes += r.len - cut as u64;
        read.trim = Some(cut as u64);
        // Tolerant mode: what follows the damage is dropped.
        report.dropped_segments += names.len() - i - 1;
        discard_after(fs, dir, &names[i + 1..])?;
        break;
    }
    Ok(read)
}

/// Says where open cuts a segment whose records end early: a torn tail
/// (expected after a crash), or damage in tolerant mode, which loses what
/// follows it and the `later` segments.
fn trace_cut(path: &Path, cut: usize, len: u64, tail: &super::segment::Tail, later: usize) {
    if matches!(tail, super::segment::Tail::Torn { .. }) && later == 0 {
        tracing::warn!(file = %path.display(), offset = cut, bytes = len - cut as u64, "torn wal tail cut");
    } else {
        tracing::warn!(
            file = %path.display(),
            offset = cut,
            bytes = len - cut as u64,
            later_segments = later,
            "damaged wal cut (tolerated): the records after it are lost"
        );
    }
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
