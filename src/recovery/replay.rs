//! One shard's part of recovery: its live run directories relinked from the
//! checkpoint, its WAL scanned for epoch-commit records, then replayed up to
//! the recovery point and cut there (module docs of `recovery`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{CATALOG_SPINE, Layout, RecoveredShard, RecoveredSpine, decode_catalog_value};
use crate::changelog::{ChangeRecord, StateOp};
use crate::checkpoint::{COMMIT_SPINE, Meter, Phase, ProgressFn, ShardManifest, decode_commit_key};
use crate::io::Fs;
use crate::run::{Run, RunMode};
use crate::spine::{Spine, SpineOptions};
use crate::wal::format::{frame_len, list_segments};
use crate::wal::{BatchEntries, RecoveryMode, WalOptions, WriteAheadLog, check_batch, decode_change};
use crate::{Error, Result};

/// Runs of the chosen checkpoint its validation opened, by file name.
pub(super) type OpenedRuns = BTreeMap<String, Run>;

/// What one shard's recovery works from.
pub(super) struct ShardJob<'a> {
    pub(super) fs: &'a Arc<dyn Fs>,
    pub(super) layout: &'a Layout,
    /// This shard's runs, opened by validation.
    pub(super) opened: OpenedRuns,
    pub(super) shard: u32,
    pub(super) cut: Option<&'a ShardManifest>,
    pub(super) ck_dir: Option<&'a Path>,
    pub(super) spine_opts: &'a SpineOptions,
    pub(super) wal: Option<WalOptions>,
    pub(super) mode: RecoveryMode,
    /// Told how far the scan and the replay of the log have come.
    pub(super) progress: Option<&'a ProgressFn>,
}

/// Counts the bytes of a shard's log a scan or a replay has read, from the
/// records it is handed and the segments they lie in, for its progress
/// reports (`RecoveryConfig::progress`).
struct LogMeter<'a> {
    meter: Meter<'a>,
    /// `(first LSN, bytes of the segments before it)` of each segment from
    /// the one holding the first LSN read.
    segments: Vec<(u64, u64)>,
    /// The segment of the last record.
    at: usize,
}

impl<'a> LogMeter<'a> {
    /// A meter of the log in `dir` from LSN `from` on, sized by its
    /// segments' lengths; `None` without a progress callback.
    fn start(job: &ShardJob<'a>, dir: &Path, from: u64, phase: Phase) -> Option<LogMeter<'a>> {
        let report = job.progress?;
        let (fs, mut segments, mut total) = (job.fs.as_ref(), Vec::new(), 0);
        // Best effort: a log that cannot be sized here is sized as it is read.
        if let Ok(names) = list_segments(fs, dir) {
            let first = names.iter().rposition(|(lsn, _)| *lsn <= from).unwrap_or(0);
            for (lsn, name) in &names[first..] {
                segments.push((*lsn, total));
                total += fs.open(&dir.join(name)).and_then(|f| f.size()).unwrap_or(0);
            }
        }
        Some(LogMeter {
            meter: Meter::start(report.as_ref(), phase, Some(job.shard), total),
            segments,
            at: 0,
        })
    }

    /// The record with LSN `lsn` and `payload` bytes was read.
    fn record(&mut self, lsn: u64, payload: usize) {
        while let Some(&(first, before)) = self.segments.get(self.at + 1)
            && first <= lsn
        {
            self.at += 1;
            self.meter.set(before);
        }
        self.meter.set(self.meter.done() + frame_len(payload) as u64);
    }
}

/// A spine being rebuilt, with the LSN its runs cover.
struct Live {
    id: u32,
    name: String,
    covered: u64,
    spine: Spine,
}

/// The epoch-commit records a shard's WAL holds after the checkpoint's cut.
#[derive(Debug, Default)]
pub(super) struct Commits {
    /// `(epoch, LSN)` of each, in log order (epochs increase).
    pub(super) positions: Vec<(u64, u64)>,
    /// The record values by epoch.
    pub(super) values: BTreeMap<u64, Vec<u8>>,
    /// The LSN of the log's last record (0 if none).
    pub(super) last_lsn: u64,
}

/// A shard between the scan and the replay (phase 1 and 2 of `recover`).
pub(super) struct Scanned<'a> {
    job: ShardJob<'a>,
    live: BTreeMap<u32, Live>,
    next_spine_id: u32,
    pub(super) commits: Commits,
    out: RecoveredShard,
    /// The replay is done (recovery to the latest state replays in the scan).
    replayed: bool,
}

impl<'a> ShardJob<'a> {
    fn cut_lsn(&self) -> u64 {
        self.cut.map_or(0, |c| c.cut_lsn)
    }

    /// Phase 1: relinks the runs and finds the WAL's commit records. With
    /// `replay_all` (recovery to the latest state) it also replays the whole
    /// log, in the same pass; otherwise the scan only reads.
    pub(super) fn scan(mut self, replay_all: bool) -> Result<Scanned<'a>> {
        let fs = self.fs;
        // The shard's directory must survive a crash, or its WAL goes with it.
        crate::io::create_dir_all_durable(fs.as_ref(), &self.layout.shard(self.shard))?;
        let runs_dir = self.layout.runs(self.shard);
        if fs.exists(&runs_dir)? {
            fs.remove_dir_all(&runs_dir)?;
        }
        fs.create_dir_all(&runs_dir)?;
        let live = self.relink()?;
        let cut_lsn = self.cut_lsn();
        let next_spine_id = self.cut.map_or(0, |c| c.next_spine_id);
        let out = RecoveredShard {
            shard: self.shard,
            spines: Vec::new(),
            next_spine_id: 0,
            wal: None,
            next_lsn: cut_lsn + 1,
            end_lsn: cut_lsn,
            replayed_records: 0,
            refused_records: 0,
            discarded_records: 0,
            replayed_bytes: 0,
            replay_time: Duration::ZERO,
        };
        let mut scanned = Scanned {
            job: self,
            live,
            next_spine_id,
            commits: Commits::default(),
            out,
            replayed: false,
        };
        if scanned.job.wal.is_none() {
            scanned.job.retire_unused_wal(cut_lsn)?;
            scanned.replayed = true;
        } else if replay_all {
            scanned.replay(u64::MAX, true)?;
            scanned.replayed = true;
        } else {
            scanned.find_commits()?;
        }
        Ok(scanned)
    }

    /// An open without a WAL over a store that had one: the log is either
    /// needed (it holds records from the checkpoint's replay point on:
    /// acknowledged writes only it has, so the open is refused), or stale
    /// (everything in it is in the checkpoint), and then it goes, so that a
    /// later open with a WAL starts a fresh one after the checkpoint instead
    /// of finding a log that ends before it.
    fn retire_unused_wal(&self, cut_lsn: u64) -> Result<()> {
        let dir = self.layout.wal(self.shard);
        if !self.fs.exists(&dir)? {
            return Ok(());
        }
        let from = self.cut.map_or(1, ShardManifest::replay_from);
        let opts = WalOptions::new(self.shard)
            .first_lsn(cut_lsn + 1)
            .recovery(self.mode)
            .scan_from(from);
        let next = WriteAheadLog::open(Arc::clone(self.fs), &dir, opts)?.next_lsn();
        if next > from {
            return Err(Error::Incompatible {
                path: dir,
                reason: format!(
                    "shard {}: the write-ahead log holds records {from}..{next} that the checkpoint does not: \
                     open the store with its WAL on to recover them (then a shutdown checkpoint makes it safe to open without)",
                    self.shard
                ),
            });
        }
        self.fs.remove_dir_all(&dir)?;
        self.fs.sync_dir(&self.layout.shard(self.shard))
    }

    /// Links the checkpoint's runs into fresh live directories and opens
    /// the spines over them.
    fn relink(&mut self) -> Result<BTreeMap<u32, Live>> {
        let fs = self.fs;
        let mut live = BTreeMap::new();
        if let (Some(cut), Some(ck)) = (self.cut, self.ck_dir) {
            for sp in &cut.spines {
                let dir = self.layout.spine(self.shard, sp.id);
                fs.create_dir_all(&dir)?;
                let mut runs = Vec::with_capacity(sp.runs.len());
                for r in &sp.runs {
                    let live_name = crate::checkpoint::live_run_name(&r.file);
                    let from = ck.join(&r.file);
                    let to = dir.join(live_name);
                    let linked = fs.hard_link(&from, &to).is_ok();
                    if !linked {
                        crate::checkpoint::copy_file(fs.as_ref(), &from, &to)?;
                        fs.sync_file(&to)?;
                    }
                    // A link is the file validation opened: serve that open.
                    let run = match self.opened.remove(&r.file).filter(|_| linked) {
                        Some(mut run) => {
                            run.relocate(to);
                            run
                        }
                        None => Run::open(fs.as_ref(), &to)?,
                    };
                    runs.push(run);
                }
                let opts = (*self.spine_opts).with_mode(sp.mode);
                let spine = Spine::open_runs(Arc::clone(fs), dir, opts, runs, sp.covered_lsn)?;
                live.insert(
                    sp.id,
                    Live {
                        id: sp.id,
                        name: sp.name.clone(),
                        covered: sp.covered_lsn,
                        spine,
                    },
                );
            }
        }
        Ok(live)
    }
}

impl Commits {
    /// Notes a commit record (after the cut) found at `lsn`.
    fn note(&mut self, lsn: u64, rec: &ChangeRecord<'_>, wal_dir: &Path) -> Result<()> {
        let epoch = decode_commit_key(rec.key, wal_dir, lsn)?;
        if let Some(&(prev, _)) = self.positions.last()
            && epoch <= prev
        {
            return Err(Error::corrupt(
                wal_dir,
                lsn,
                "epoch-commit record",
                format!("an epoch after {prev}"),
                format!("epoch {epoch}"),
            ));
        }
        self.positions.push((epoch, lsn));
        self.values.insert(epoch, rec.value.to_vec());
        Ok(())
    }
}

impl Scanned<'_> {
    /// The read-only pass of phase 1: the commit records after the cut, and
    /// where the log ends.
    fn find_commits(&mut self) -> Result<()> {
        let wal_dir = self.job.layout.wal(self.job.shard);
        if !self.job.fs.exists(&wal_dir)? {
            return Ok(());
        }
        let from = self.job.cut_lsn() + 1;
        let commits = &mut self.commits;
        let mut meter = LogMeter::start(&self.job, &wal_dir, from, Phase::Scan);
        let report = crate::wal::replay(self.job.fs.as_ref(), &wal_dir, from, self.job.mode, |frame| {
            if let Some(m) = meter.as_mut() {
                m.record(frame.lsn, frame.payload.len());
            }
            let rec = decode_change(frame.payload, frame.epoch, &wal_dir, frame.lsn)?;
            if rec.spine == COMMIT_SPINE {
                commits.note(frame.lsn, &rec, &wal_dir)?;
            }
            Ok(())
        })?;
        self.commits.last_lsn = report.last_lsn;
        if let Some(m) = meter {
            m.meter.finish();
        }
        Ok(())
    }

    /// Phase 2: replays the WAL from the checkpoint's replay point up to
    /// `end` (the LSN of the recovery point's commit record) and discards
    /// the records after it, durably ([`WalOptions::end_at`]). Returns the
    /// shard.
    pub(super) fn finish(mut self, end: u64) -> Result<RecoveredShard> {
        if !self.replayed {
            self.out.discarded_records = self.commits.last_lsn.saturating_sub(end);
            self.replay(end, false)?;
        }
        let mut out = self.out;
        out.next_spine_id = self.next_spine_id;
        out.spines = self
            .live
            .into_values()
            .map(|l| RecoveredSpine {
                id: l.id,
                name: l.name,
                spine: l.spine,
            })
            .collect();
        Ok(out)
    }

    /// Opens the WAL, replaying every record from the checkpoint's replay
    /// point up to `end` as the open's scan checks it (one pass), and
    /// noting the commit records after the cut if `collect` (a replay
    /// without a scan before it).
    fn replay(&mut self, end: u64, collect: bool) -> Result<()> {
        let Some(wal_opts) = self.job.wal else {
            return Ok(());
        };
        let started = Instant::now();
        let (job, live, next_spine_id, out) =
            (&self.job, &mut self.live, &mut self.next_spine_id, &mut self.out);
        let commits = &mut self.commits;
        let wal_dir = job.layout.wal(job.shard);
        let cut_lsn = job.cut_lsn();
        let from = job.cut.map_or(1, ShardManifest::replay_from);
        let mut first_seen = None;
        let mut meter = LogMeter::start(job, &wal_dir, from, Phase::Replay);
        // The checkpoint committed only after the log was durable past its
        // cut: a log that ends before it is damaged, not torn.
        let opts = WalOptions {
            shard_id: job.shard,
            ..wal_opts
        }
        .first_lsn(cut_lsn + 1)
        .known_durable(cut_lsn)
        .recovery(job.mode)
        .scan_from(from)
        .end_at(end);
        let wal = WriteAheadLog::open_replaying(Arc::clone(job.fs), &wal_dir, opts, |frame| {
            first_seen.get_or_insert(frame.lsn);
            if let Some(m) = meter.as_mut() {
                m.record(frame.lsn, frame.payload.len());
            }
            let rec = decode_change(frame.payload, frame.epoch, &wal_dir, frame.lsn)?;
            if rec.op == StateOp::Batch {
                // Checked whole before any of it is applied: all or none.
                let entries = check_batch(rec.value, rec.epoch, &wal_dir, frame.lsn)?;
                out.refused_records += apply_batch(live, frame.lsn, entries)?;
                out.replayed_records += 1;
                out.replayed_bytes += frame.payload.len() as u64;
                return Ok(());
            }
            match rec.spine {
                COMMIT_SPINE => {
                    if collect && frame.lsn > cut_lsn {
                        commits.note(frame.lsn, &rec, &wal_dir)?;
                    }
                    return Ok(());
                }
                CATALOG_SPINE => {
                    if frame.lsn > cut_lsn {
                        job.apply_catalog(live, next_spine_id, frame.lsn, &rec)?;
                    }
                }
                _ => {
                    if !apply_write(live, frame.lsn, &rec)? {
                        out.refused_records += 1;
                    }
                }
            }
            out.replayed_records += 1;
            out.replayed_bytes += frame.payload.len() as u64;
            Ok(())
        })?;
        // The log must still hold the first record the cut needs: a log
        // that starts later lost records the checkpoint relies on.
        let starts = first_seen.unwrap_or(wal.next_lsn());
        if starts > from && from < wal.next_lsn() {
            return Err(Error::corrupt(
                &wal_dir,
                0,
                "write-ahead log start",
                format!("a record with LSN {from} (the checkpoint's replay point)"),
                format!("the first record at LSN {starts}"),
            ));
        }
        out.next_lsn = wal.next_lsn().max(cut_lsn + 1);
        // The scan found the point's commit record; the replay must reach it.
        if end != u64::MAX && wal.next_lsn() <= end {
            return Err(Error::corrupt(
                &wal_dir,
                0,
                "write-ahead log end",
                format!("records up to LSN {end} (the recovery point's commit record)"),
                format!("the log ends at LSN {}", wal.next_lsn() - 1),
            ));
        }
        out.end_lsn = end.min(out.next_lsn - 1);
        if collect {
            commits.last_lsn = out.next_lsn - 1;
        }
        out.replay_time = started.elapsed();
        out.wal = Some(wal);
        if let Some(m) = meter {
            m.meter.finish();
        }
        Ok(())
    }
}

impl ShardJob<'_> {
    fn apply_catalog(
        &self,
        live: &mut BTreeMap<u32, Live>,
        next_spine_id: &mut u32,
        lsn: u64,
        rec: &ChangeRecord<'_>,
    ) -> Result<()> {
        let name = String::from_utf8_lossy(rec.key).into_owned();
        match rec.op {
            StateOp::Put => {
                let (id, mode) = decode_catalog_value(rec.value).ok_or_else(|| {
                    Error::corrupt(
                        &self.layout.wal(self.shard),
                        lsn,
                        "catalog record",
                        "spine id and mode",
                        format!("{:02x?}", rec.value),
                    )
                })?;
                let dir = self.layout.spine(self.shard, id);
                let opts = (*self.spine_opts).with_mode(mode);
                let spine = Spine::open(Arc::clone(self.fs), dir, opts, &[], lsn)?;
                *next_spine_id = (*next_spine_id).max(id + 1);
                live.insert(
                    id,
                    Live {
                        id,
                        name,
                        covered: lsn,
                        spine,
                    },
                );
            }
            StateOp::Delete | StateOp::Update(_) | StateOp::Batch => {
                let doomed: Vec<u32> = live.values().filter(|l| l.name == name).map(|l| l.id).collect();
                for id in doomed {
                    live.remove(&id);
                    let dir = self.layout.spine(self.shard, id);
                    if self.fs.exists(&dir)? {
                        self.fs.remove_dir_all(&dir)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Replays a write into its spine, unless the spine was dropped or its runs
/// hold it already. False for a record its spine refuses: an earlier
/// version logged writes before checking them, and refused them after, so
/// the write never happened and is skipped.
fn apply_write(live: &mut BTreeMap<u32, Live>, lsn: u64, rec: &ChangeRecord<'_>) -> Result<bool> {
    let Some(l) = live.get_mut(&rec.spine) else {
        return Ok(true); // a dropped spine's record
    };
    if lsn <= l.covered {
        return Ok(true);
    }
    if !op_fits(l.spine.mode(), rec.op) {
        return Ok(false);
    }
    l.spine.set_lsn(lsn);
    match rec.op {
        StateOp::Put => l.spine.put(rec.key, rec.value),
        StateOp::Delete => l.spine.delete(rec.key),
        StateOp::Update(w) => l.spine.update(rec.key, rec.value, w),
        StateOp::Batch => unreachable!("a batch entry is a single write (check_batch)"),
    }?;
    Ok(true)
}

/// Replays a batch's writes (as [`apply_write`] each, with no seal between
/// them: they share an LSN); returns how many its spines refused.
fn apply_batch(live: &mut BTreeMap<u32, Live>, lsn: u64, entries: BatchEntries<'_>) -> Result<u64> {
    for e in entries.clone() {
        if let Some(l) = live.get_mut(&e.spine) {
            l.spine.hold_seal(true)?;
        }
    }
    let mut refused = 0;
    let mut applied = Ok(());
    for e in entries.clone() {
        match apply_write(live, lsn, &e) {
            Ok(true) => {}
            Ok(false) => refused += 1,
            Err(err) => {
                applied = Err(err);
                break;
            }
        }
    }
    // Every spine is released, whatever fails: the first error wins.
    let mut released = Ok(());
    for e in entries {
        if let Some(l) = live.get_mut(&e.spine) {
            released = released.and(l.spine.hold_seal(false));
        }
    }
    applied.and(released).map(|()| refused)
}

/// True if a spine of `mode` takes `op`.
fn op_fits(mode: RunMode, op: StateOp) -> bool {
    matches!(
        (mode, op),
        (RunMode::KeyValue, StateOp::Put | StateOp::Delete) | (RunMode::ZSet, StateOp::Update(_))
    )
}
