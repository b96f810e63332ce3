//! Recovery: the newest checkpoint that validates, plus every shard's WAL
//! replayed from its cut, is the state (DESIGN invariant 1).
//!
//! 1. Delete half-written checkpoint directories.
//! 2. Read every committed manifest, newest epoch first; take the first that
//!    validates at the configured depth and carries the expected
//!    fingerprint. Damaged ones are set aside (`<uuid>.damaged`) and reported
//!    with the reason.
//! 3. Per shard, in parallel: replace the live run directories with links to
//!    the checkpoint's runs (so no half-written or unreferenced run survives),
//!    open them lazily (mapped; footer, index and filter checked, no data
//!    block read), open the WAL (a torn tail is trimmed and synced), and
//!    replay it from the shard's least covered LSN. A record applies to a
//!    spine only past that spine's own covered LSN, so a record already in a
//!    run is never applied twice.
//!
//! The spine catalog (which spines exist) travels in the WAL as records of
//! the reserved spine [`CATALOG_SPINE`]: a put of `name → (id, mode)`
//! creates a spine, a delete of `name` drops it (`format/wal.md`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::changelog::{ChangeRecord, StateOp};
use crate::checkpoint::{
    CheckpointManifest, CheckpointStore, FileSystemCheckpointStore, OperatorCheckpoint, ShardManifest,
    ValidationDepth, read_file, validate_keeping_runs,
};
use crate::io::Fs;
use crate::run::{Run, RunMode};
use crate::spine::{Spine, SpineOptions};
use crate::wal::{RecoveryMode, WalOptions, WriteAheadLog, decode_change};
use crate::{Error, Result};

/// The spine id of catalog records in a shard's WAL.
pub const CATALOG_SPINE: u32 = u32::MAX;

/// How to recover.
#[derive(Debug, Clone)]
pub struct RecoveryConfig {
    /// How deep each candidate checkpoint is checked (default: footers).
    pub depth: ValidationDepth,
    /// The fingerprint the checkpoint must carry; `None` accepts any.
    pub fingerprint: Option<Vec<u8>>,
    /// Strict (default) or tolerant WAL replay.
    pub wal_mode: RecoveryMode,
    /// Recover this epoch's checkpoint (and the WAL up to its cut) instead
    /// of the newest state.
    pub to_epoch: Option<u64>,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            depth: ValidationDepth::Footers,
            fingerprint: None,
            wal_mode: RecoveryMode::Strict,
            to_epoch: None,
        }
    }
}

/// The layout of one store directory (`format/checkpoint.md`, "Layout").
#[derive(Debug, Clone)]
pub struct Layout {
    /// The store's root directory.
    pub root: PathBuf,
}

impl Layout {
    /// `<root>/LOCK`: held by the one process that has the store open.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("LOCK")
    }
    /// `<root>/checkpoints`.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    /// `<root>/shards/<n>`.
    pub fn shard(&self, n: u32) -> PathBuf {
        self.root.join("shards").join(n.to_string())
    }
    /// `<root>/shards/<n>/wal`.
    pub fn wal(&self, n: u32) -> PathBuf {
        self.shard(n).join("wal")
    }
    /// `<root>/shards/<n>/runs`.
    pub fn runs(&self, n: u32) -> PathBuf {
        self.shard(n).join("runs")
    }
    /// `<root>/shards/<n>/runs/<spine id>`.
    pub fn spine(&self, n: u32, id: u32) -> PathBuf {
        self.runs(n).join(id.to_string())
    }
}

/// Name of a run's link in a checkpoint directory:
/// `<shard>-<spine id>-<run file name>`.
pub fn checkpoint_run_name(shard: u32, spine: u32, run_file: &str) -> String {
    format!("{shard}-{spine}-{run_file}")
}

/// One live spine after recovery.
#[derive(Debug)]
pub struct RecoveredSpine {
    /// Its id in the shard.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// The spine, ready for reads and writes.
    pub spine: Spine,
}

/// One shard after recovery.
#[derive(Debug)]
pub struct RecoveredShard {
    /// The shard's number.
    pub shard: u32,
    /// Its live spines.
    pub spines: Vec<RecoveredSpine>,
    /// The id the next new spine gets.
    pub next_spine_id: u32,
    /// The opened WAL (`None` when the store runs without one).
    pub wal: Option<WriteAheadLog>,
    /// LSN of the next record.
    pub next_lsn: u64,
    /// The highest epoch of a replayed record (0 if none).
    pub wal_epoch: u64,
    /// Records replayed.
    pub replayed_records: u64,
    /// Records skipped because their spine refuses their kind of write
    /// (key-value against Z-set): only an earlier version logged such
    /// writes, before refusing them.
    pub refused_records: u64,
    /// Bytes of WAL payload replayed.
    pub replayed_bytes: u64,
    /// Time spent opening and replaying the WAL.
    pub replay_time: Duration,
}

/// What [`recover`] produced.
#[derive(Debug)]
pub struct Recovery {
    /// The checkpoint recovered from, if any.
    pub manifest: Option<CheckpointManifest>,
    /// Operator checkpoints, side files read back and checked.
    pub operators: BTreeMap<String, Vec<u8>>,
    /// Checkpoints passed over, newest first, with the reason.
    pub skipped: Vec<(Uuid, String)>,
    /// Every shard.
    pub shards: Vec<RecoveredShard>,
    /// Time to choose and validate the checkpoint.
    pub select_time: Duration,
    /// Time to open the runs and replay the WALs.
    pub restore_time: Duration,
}

/// The checkpoint chosen (if any) and those passed over, with the reason.
pub type Selected = (Option<CheckpointManifest>, Vec<(Uuid, String)>);

/// Finds the checkpoint to recover (module docs, steps 1–2).
pub fn select_checkpoint(store: &FileSystemCheckpointStore, cfg: &RecoveryConfig) -> Result<Selected> {
    select(store, cfg).map(|(selected, _)| selected)
}

/// Runs of the chosen checkpoint its validation opened, by file name.
type OpenedRuns = BTreeMap<String, Run>;

fn select(store: &FileSystemCheckpointStore, cfg: &RecoveryConfig) -> Result<(Selected, OpenedRuns)> {
    store.remove_temporaries()?;
    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    for id in store.list()? {
        match store.load_manifest(id) {
            Ok(m) => candidates.push(m),
            Err(e) => skipped.push((id, e.to_string())),
        }
    }
    candidates.sort_by_key(|m| std::cmp::Reverse((m.epoch, m.wall_time_ms)));
    for m in candidates {
        if cfg.to_epoch.is_some_and(|e| m.epoch != e) {
            continue;
        }
        let dir = store.checkpoint_dir(m.id);
        let (report, runs) = validate_keeping_runs(store.fs().as_ref(), &dir, cfg.depth);
        if !report.is_valid() {
            skipped.push((m.id, report.to_string()));
            continue;
        }
        if let Some(fp) = &cfg.fingerprint
            && *fp != m.fingerprint
        {
            return Err(Error::InvalidArgument(format!(
                "checkpoint {} was written by a program with another fingerprint ({:02x?}, expected {:02x?})",
                m.id, m.fingerprint, fp
            )));
        }
        return Ok(((Some(m), skipped), runs));
    }
    if let Some(e) = cfg.to_epoch {
        return Err(Error::InvalidArgument(format!(
            "no valid retained checkpoint of epoch {e}"
        )));
    }
    Ok(((None, skipped), OpenedRuns::new()))
}

/// Recovers every shard of the store at `layout` (module docs).
pub fn recover(
    fs: &Arc<dyn Fs>,
    layout: &Layout,
    shards: u32,
    spine_opts: &SpineOptions,
    wal: Option<WalOptions>,
    cfg: &RecoveryConfig,
) -> Result<Recovery> {
    let started = Instant::now();
    let store = FileSystemCheckpointStore::new(Arc::clone(fs), layout.checkpoints())?;
    let ((manifest, skipped), mut opened) = select(&store, cfg)?;
    for (id, _) in &skipped {
        if fs.exists(&store.checkpoint_dir(*id))? {
            store.quarantine(*id)?;
        }
    }
    if let Some(m) = &manifest
        && m.shards.len() != shards as usize
    {
        return Err(Error::InvalidArgument(format!(
            "checkpoint {} has {} shards, the store is opened with {shards}",
            m.id,
            m.shards.len()
        )));
    }
    let ck_dir = manifest.as_ref().map(|m| store.checkpoint_dir(m.id));
    let operators = match (&manifest, &ck_dir) {
        (Some(m), Some(d)) => read_operators(fs.as_ref(), m, d)?,
        _ => BTreeMap::new(),
    };
    let select_time = started.elapsed();
    let restored = Instant::now();
    let results: Vec<Result<RecoveredShard>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..shards)
            .map(|n| {
                let cut = manifest
                    .as_ref()
                    .and_then(|m| m.shards.iter().find(|s| s.shard == n));
                let runs: OpenedRuns = cut
                    .iter()
                    .flat_map(|c| c.spines.iter().flat_map(|s| s.runs.iter()))
                    .filter_map(|r| opened.remove_entry(&r.file))
                    .collect();
                let ck_dir = ck_dir.clone();
                let to_cut = cfg.to_epoch.is_some();
                scope.spawn(move || {
                    let job = ShardJob {
                        fs,
                        layout,
                        opened: runs,
                        shard: n,
                        cut,
                        ck_dir: ck_dir.as_deref(),
                        spine_opts,
                        wal,
                        mode: cfg.wal_mode,
                        stop_at_cut: to_cut,
                    };
                    job.run()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::InvalidArgument("a recovery thread panicked".into())))
            })
            .collect()
    });
    let shards = results.into_iter().collect::<Result<Vec<_>>>()?;
    Ok(Recovery {
        manifest,
        operators,
        skipped,
        shards,
        select_time,
        restore_time: restored.elapsed(),
    })
}

fn read_operators(fs: &dyn Fs, m: &CheckpointManifest, dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for (name, op) in &m.operators {
        let bytes = match op {
            OperatorCheckpoint::Inline(b) => b.clone(),
            OperatorCheckpoint::File { file, len, crc32c } => {
                let path = dir.join(file);
                let b = read_file(fs, &path)?;
                if b.len() as u64 != *len || crc32c::crc32c(&b) != *crc32c {
                    return Err(Error::corrupt(
                        &path,
                        0,
                        "operator side file",
                        format!("{len} bytes with crc32c {crc32c:#010x}"),
                        format!("{} bytes with crc32c {:#010x}", b.len(), crc32c::crc32c(&b)),
                    ));
                }
                b
            }
        };
        out.insert(name.clone(), bytes);
    }
    Ok(out)
}

struct ShardJob<'a> {
    fs: &'a Arc<dyn Fs>,
    layout: &'a Layout,
    /// This shard's runs, opened by validation.
    opened: OpenedRuns,
    shard: u32,
    cut: Option<&'a ShardManifest>,
    ck_dir: Option<&'a Path>,
    spine_opts: &'a SpineOptions,
    wal: Option<WalOptions>,
    mode: RecoveryMode,
    stop_at_cut: bool,
}

/// A spine being rebuilt, with the LSN its runs cover.
struct Live {
    id: u32,
    name: String,
    covered: u64,
    spine: Spine,
}

impl ShardJob<'_> {
    fn run(mut self) -> Result<RecoveredShard> {
        let fs = self.fs;
        // The shard's directory must survive a crash, or its WAL goes with it.
        crate::io::create_dir_all_durable(fs.as_ref(), &self.layout.shard(self.shard))?;
        let runs_dir = self.layout.runs(self.shard);
        if fs.exists(&runs_dir)? {
            fs.remove_dir_all(&runs_dir)?;
        }
        fs.create_dir_all(&runs_dir)?;
        let mut live = self.relink()?;
        let (cut_lsn, mut next_spine_id) = self.cut.map_or((0, 0), |c| (c.cut_lsn, c.next_spine_id));
        let mut out = RecoveredShard {
            shard: self.shard,
            spines: Vec::new(),
            next_spine_id: 0,
            wal: None,
            next_lsn: cut_lsn + 1,
            wal_epoch: 0,
            replayed_records: 0,
            refused_records: 0,
            replayed_bytes: 0,
            replay_time: Duration::ZERO,
        };
        if let Some(wal_opts) = self.wal {
            let replay_started = Instant::now();
            let wal_dir = self.layout.wal(self.shard);
            let wal_opts = WalOptions {
                shard_id: self.shard,
                ..wal_opts
            };
            let from = self.cut.map_or(1, ShardManifest::replay_from);
            let stop = if self.stop_at_cut { cut_lsn } else { u64::MAX };
            let mut first_seen = None;
            // The checkpoint committed only after the log was durable past
            // its cut: a log that ends before it is damaged, not torn.
            let opts = wal_opts
                .first_lsn(cut_lsn + 1)
                .known_durable(cut_lsn)
                .recovery(self.mode)
                .scan_from(from);
            // One pass: the open's scan checks each record and hands it over.
            let wal = WriteAheadLog::open_replaying(Arc::clone(fs), &wal_dir, opts, |frame| {
                first_seen.get_or_insert(frame.lsn);
                if frame.lsn > stop {
                    return Ok(());
                }
                let rec = decode_change(frame.payload, frame.epoch, &wal_dir, frame.lsn)?;
                out.replayed_records += 1;
                out.replayed_bytes += frame.payload.len() as u64;
                out.wal_epoch = out.wal_epoch.max(frame.epoch);
                if rec.spine == CATALOG_SPINE {
                    if frame.lsn > cut_lsn {
                        self.apply_catalog(&mut live, &mut next_spine_id, frame.lsn, &rec)?;
                    }
                    return Ok(());
                }
                if !apply_write(&mut live, frame.lsn, &rec)? {
                    out.refused_records += 1;
                }
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
            out.replay_time = replay_started.elapsed();
            out.wal = Some(wal);
        } else {
            self.retire_unused_wal(cut_lsn)?;
        }
        out.next_spine_id = next_spine_id;
        out.spines = live
            .into_values()
            .map(|l| RecoveredSpine {
                id: l.id,
                name: l.name,
                spine: l.spine,
            })
            .collect();
        Ok(out)
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
            return Err(Error::InvalidArgument(format!(
                "shard {}: the write-ahead log holds records {from}..{next} that the checkpoint does not: \
                 open the store with its WAL on to recover them (then a shutdown checkpoint makes it safe to open without)",
                self.shard
            )));
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
                    let live_name = r.file.rsplit_once('-').map_or(r.file.as_str(), |(_, n)| n);
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
            StateOp::Delete | StateOp::Update(_) => {
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
    l.spine.set_seq(lsn);
    match rec.op {
        StateOp::Put => l.spine.put(rec.key, rec.value),
        StateOp::Delete => l.spine.delete(rec.key),
        StateOp::Update(w) => l.spine.update(rec.key, rec.value, w),
    }?;
    Ok(true)
}

/// True if a spine of `mode` takes `op`.
fn op_fits(mode: RunMode, op: StateOp) -> bool {
    matches!(
        (mode, op),
        (RunMode::KeyValue, StateOp::Put | StateOp::Delete) | (RunMode::ZSet, StateOp::Update(_))
    )
}

/// The value of a catalog put: spine id (u32 LE) and mode byte.
pub fn encode_catalog_value(id: u32, mode: RunMode) -> [u8; 5] {
    let b = id.to_le_bytes();
    [b[0], b[1], b[2], b[3], mode.to_byte()]
}

/// Parses [`encode_catalog_value`]'s bytes.
pub fn decode_catalog_value(v: &[u8]) -> Option<(u32, RunMode)> {
    let [a, b, c, d, m] = *v else { return None };
    Some((u32::from_le_bytes([a, b, c, d]), RunMode::from_byte(m)?))
}
