//! Recovery: the newest valid checkpoint plus every shard's WAL replayed up
//! to the recovery point is the state: a checkpoint holds an epoch's runs
//! and each shard's cut, and the log holds every acknowledged write after
//! it.
//!
//! 1. Delete half-written checkpoint directories.
//! 2. Read every committed manifest, newest epoch first; take the first that
//!    validates at the configured depth and carries the expected
//!    fingerprint (for [`RecoveryPoint::Epoch`], the newest at or before
//!    that epoch). Damaged ones are set aside (`<uuid>.damaged`) and
//!    reported with the reason.
//! 3. Per shard, in parallel: replace the live run directories with links to
//!    the checkpoint's runs (so no half-written or unreferenced run survives),
//!    open them lazily (mapped; footer, index and filter checked, no data
//!    block read), and read the WAL after the checkpoint's cut for its
//!    epoch-commit records (read only).
//! 4. The recovery point: by default the newest epoch committed on **every**
//!    shard (the checkpoint's, or a later one whose commit record every
//!    shard's WAL holds). Newer checkpoints a recovery to an older epoch
//!    leaves behind are deleted now, durably.
//! 5. Per shard, in parallel: open the WAL (a torn tail is trimmed and
//!    synced) and replay it from the shard's least covered LSN up to the
//!    point's commit record; the records after it are discarded, durably,
//!    before the store takes a write (`WalOptions::end_at`). A record
//!    applies to a spine only past that spine's own covered LSN, so a record
//!    already in a run is never applied twice.
//!
//! Recovery to the latest state ([`RecoveryPoint::Latest`]) replays every
//! record in step 3 and discards nothing.
//!
//! The spine catalog (which spines exist) travels in the WAL as records of
//! the reserved spine [`CATALOG_SPINE`]: a put of `name → (id, mode)`
//! creates a spine, a delete of `name` drops it (`format/wal.md`). Epoch
//! commits are records of [`crate::checkpoint::COMMIT_SPINE`].

mod replay;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use uuid::Uuid;

// Their homes are the checkpoint and WAL layers; the old paths still work.
pub use crate::checkpoint::{Layout, checkpoint_run_name};
pub use crate::wal::{CATALOG_SPINE, decode_catalog_value, encode_catalog_value};

use crate::checkpoint::{
    CheckpointManifest, CheckpointStore, EpochMetadata, FileSystemCheckpointStore, OperatorCheckpoint,
    Progress, ProgressFn, ValidationDepth, decode_commit_value, read_file, validate_keeping_runs,
};
use crate::io::Fs;
use crate::spine::{Spine, SpineOptions};
use crate::wal::{RecoveryMode, WalOptions, WriteAheadLog};
use crate::{Error, Result};
use replay::{OpenedRuns, Scanned, ShardJob};

/// Where recovery brings the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryPoint {
    /// The newest epoch committed on every shard, by an epoch commit or a
    /// checkpoint (default): its state, exactly, with its source offsets and
    /// metadata. Writes after it (in no epoch yet, or in one not every shard
    /// committed) are discarded, durably, before the store takes a write:
    /// rewinding the sources to the returned offsets applies every input
    /// exactly once.
    #[default]
    LastCommittedEpoch,
    /// Every durable write, committed or not (at-least-once, or idempotent
    /// writers). The metadata returned is the newest epoch committed on
    /// every shard's, and the state may hold writes made after it.
    Latest,
    /// This epoch, if it is still recoverable: committed on every shard in
    /// the WAL (after the oldest retained checkpoint), or a retained
    /// checkpoint's. Newer checkpoints and later WAL records are deleted,
    /// durably, so later recoveries return this epoch too, with its offsets
    /// and metadata.
    Epoch(u64),
}

/// How to recover.
#[derive(Clone)]
pub struct RecoveryConfig {
    /// How deep each candidate checkpoint is checked (default: footers).
    pub depth: ValidationDepth,
    /// The fingerprint the checkpoint must carry; `None` accepts any.
    pub fingerprint: Option<Vec<u8>>,
    /// Strict (default) or tolerant WAL replay.
    pub wal_mode: RecoveryMode,
    /// The state to recover ([`RecoveryPoint::LastCommittedEpoch`] unless
    /// set).
    pub point: RecoveryPoint,
    /// Threads that scan and replay the shards side by side (default 4).
    pub threads: usize,
    /// Told how far recovery has come (default none): each candidate
    /// checkpoint's validation ([`Validate`](crate::checkpoint::Phase::Validate)),
    /// then per shard the scan of its log for commit records
    /// ([`Scan`](crate::checkpoint::Phase::Scan)) and its replay
    /// ([`Replay`](crate::checkpoint::Phase::Replay)), in bytes; called from
    /// the recovery threads.
    pub progress: Option<ProgressFn>,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            depth: ValidationDepth::Footers,
            fingerprint: None,
            wal_mode: RecoveryMode::Strict,
            point: RecoveryPoint::LastCommittedEpoch,
            threads: 4,
            progress: None,
        }
    }
}

impl std::fmt::Debug for RecoveryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryConfig")
            .field("depth", &self.depth)
            .field("fingerprint", &self.fingerprint)
            .field("wal_mode", &self.wal_mode)
            .field("point", &self.point)
            .field("threads", &self.threads)
            .field("progress", &self.progress.as_ref().map(|_| "Fn(Progress)"))
            .finish()
    }
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
    /// The shard's position at the recovery point: the LSN of its commit
    /// record (the checkpoint's cut, for the checkpoint's epoch).
    pub end_lsn: u64,
    /// Records after the recovery point, discarded.
    pub discarded_records: u64,
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

/// What `recover` produced.
#[derive(Debug)]
pub struct Recovery {
    /// The checkpoint recovered from, if any.
    pub manifest: Option<CheckpointManifest>,
    /// The epoch recovered (0: none was ever committed).
    pub epoch: u64,
    /// Its metadata (operator side files read back and checked).
    pub metadata: EpochMetadata,
    /// The newest epoch committed on any shard that the store still holds:
    /// the recovered one, except with [`RecoveryPoint::Latest`].
    pub last_epoch: u64,
    /// Checkpoints passed over, newest first, with the reason.
    pub skipped: Vec<(Uuid, String)>,
    /// Checkpoints newer than the epoch recovered, deleted.
    pub removed: Vec<Uuid>,
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

/// What [`select`] found besides the checkpoint chosen.
struct Found {
    /// The runs the chosen checkpoint's validation opened.
    runs: OpenedRuns,
    /// The checkpoints newer than a [`RecoveryPoint::Epoch`].
    newer: Vec<Uuid>,
    /// The epochs of every checkpoint whose manifest reads back.
    retained: Vec<u64>,
}

/// The chosen checkpoint and those passed over, and what else it found.
fn select(store: &FileSystemCheckpointStore, cfg: &RecoveryConfig) -> Result<(Selected, Found)> {
    store.remove_temporaries()?;
    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    for id in store.list()? {
        match store.load_manifest(id) {
            Ok(m) => candidates.push(m),
            Err(e) => {
                tracing::warn!(checkpoint = %id, reason = %e, "fallback past damaged checkpoint");
                skipped.push((id, e.to_string()));
            }
        }
    }
    candidates.sort_by_key(|m| std::cmp::Reverse((m.epoch, m.wall_time_ms)));
    let retained: Vec<u64> = candidates.iter().map(|m| m.epoch).collect();
    let mut newer = Vec::new();
    let no_progress = |_| {};
    let progress: &dyn Fn(Progress) = match cfg.progress.as_deref() {
        Some(f) => f,
        None => &no_progress,
    };
    for m in candidates {
        if let RecoveryPoint::Epoch(e) = cfg.point
            && m.epoch > e
        {
            tracing::debug!(checkpoint = %m.id, epoch = m.epoch, "checkpoint newer than the recovery point");
            newer.push(m.id);
            continue;
        }
        let dir = store.checkpoint_dir(m.id);
        let started = Instant::now();
        let (report, runs) = validate_keeping_runs(store.fs().as_ref(), &dir, cfg.depth, progress);
        if !report.is_valid() {
            tracing::warn!(
                checkpoint = %m.id,
                epoch = m.epoch,
                problems = report.problems.len(),
                reason = %report,
                "fallback past damaged checkpoint"
            );
            skipped.push((m.id, report.to_string()));
            continue;
        }
        if let Some(fp) = &cfg.fingerprint
            && *fp != m.fingerprint
        {
            return Err(Error::Incompatible {
                path: dir,
                reason: format!(
                    "checkpoint {} was written by a program with another fingerprint ({:02x?}, expected {:02x?})",
                    m.id, m.fingerprint, fp
                ),
            });
        }
        tracing::info!(
            checkpoint = %m.id,
            epoch = m.epoch,
            depth = ?cfg.depth,
            runs = report.runs_checked,
            validate_us = started.elapsed().as_micros() as u64,
            "checkpoint chosen"
        );
        return Ok((
            (Some(m), skipped),
            Found {
                runs,
                newer,
                retained,
            },
        ));
    }
    tracing::info!(
        passed_over = skipped.len(),
        "no checkpoint to recover from: replaying the logs alone"
    );
    let runs = OpenedRuns::new();
    Ok((
        (None, skipped),
        Found {
            runs,
            newer,
            retained,
        },
    ))
}

/// The recovery point: the epoch and each shard's LSN of it, from the
/// checkpoint's epoch (at its cuts) and the commit records after the cuts;
/// and the newest epoch any shard committed. `retained` are the epochs of
/// the checkpoints on disk, for the error naming what can be recovered.
fn choose_point(
    point: RecoveryPoint,
    manifest: Option<&CheckpointManifest>,
    scanned: &[Scanned<'_>],
    retained: &[u64],
) -> Result<(u64, Vec<u64>, u64)> {
    let base = manifest.map_or(0, |m| m.epoch);
    let cut = |n: usize| manifest.and_then(|m| m.shards.get(n)).map_or(0, |s| s.cut_lsn);
    let position = |n: usize, e: u64| -> Option<u64> {
        if e == base {
            return Some(cut(n));
        }
        let p = &scanned[n].commits.positions;
        p.binary_search_by_key(&e, |&(epoch, _)| epoch)
            .ok()
            .map(|i| p[i].1)
    };
    let newest = scanned
        .iter()
        .filter_map(|s| s.commits.positions.last().map(|&(e, _)| e))
        .max()
        .unwrap_or(base)
        .max(base);
    // Epochs every shard committed: those of the first shard all hold.
    let everywhere = |e: u64| (0..scanned.len()).all(|n| position(n, e).is_some());
    let candidates = std::iter::once(base).chain(
        scanned
            .first()
            .into_iter()
            .flat_map(|s| s.commits.positions.iter().map(|&(e, _)| e)),
    );
    let committed: Vec<u64> = candidates.filter(|&e| everywhere(e)).collect();
    let epoch = match point {
        RecoveryPoint::LastCommittedEpoch | RecoveryPoint::Latest => {
            committed.iter().copied().max().unwrap_or(base)
        }
        RecoveryPoint::Epoch(e) if committed.contains(&e) => e,
        RecoveryPoint::Epoch(e) => {
            // Epoch 0 is "nothing committed yet", not an epoch to offer.
            let mut recoverable: Vec<u64> = committed
                .iter()
                .chain(retained)
                .copied()
                .filter(|&e| e > 0)
                .collect();
            recoverable.sort_unstable();
            recoverable.dedup();
            return Err(Error::EpochNotRecoverable {
                epoch: e,
                recoverable,
            });
        }
    };
    let ends = (0..scanned.len())
        .map(|n| match point {
            RecoveryPoint::Latest => u64::MAX,
            _ => position(n, epoch).unwrap_or_else(|| unreachable!("epoch {epoch} is committed everywhere")),
        })
        .collect();
    let last = if point == RecoveryPoint::Latest {
        newest
    } else {
        epoch
    };
    Ok((epoch, ends, last))
}

/// The recovered epoch's metadata: the checkpoint's, or its commit
/// records': shard 0's request part, with every shard's own offsets over it.
fn epoch_metadata(
    fs: &dyn Fs,
    layout: &Layout,
    manifest: Option<&CheckpointManifest>,
    ck_dir: Option<&Path>,
    epoch: u64,
    scanned: &[Scanned<'_>],
) -> Result<EpochMetadata> {
    if let (Some(m), Some(dir)) = (manifest, ck_dir)
        && m.epoch == epoch
    {
        return Ok(EpochMetadata {
            source_offsets: m.source_offsets.clone(),
            connectors: m.connectors.clone(),
            operators: read_operators(fs, m, dir)?,
        });
    }
    let mut meta: Option<EpochMetadata> = None;
    let mut own = BTreeMap::new();
    for (n, s) in scanned.iter().enumerate() {
        let Some(value) = s.commits.values.get(&epoch) else {
            continue;
        };
        let lsn = s
            .commits
            .positions
            .iter()
            .find(|p| p.0 == epoch)
            .map_or(0, |p| p.1);
        let (m, mut offsets) = decode_commit_value(value, &layout.wal(n as u32), lsn)?;
        meta.get_or_insert(m);
        own.append(&mut offsets);
    }
    let mut meta = meta.unwrap_or_default();
    meta.source_offsets.append(&mut own);
    Ok(meta)
}

/// Recovers every shard of the store at `layout` (module docs), in a
/// `recovery` span: what it chose, passed over and replayed, and how long
/// each part took, as events.
pub(crate) fn recover(
    fs: &Arc<dyn Fs>,
    layout: &Layout,
    shards: u32,
    spine_opts: &SpineOptions,
    wal: Option<WalOptions>,
    cfg: &RecoveryConfig,
) -> Result<Recovery> {
    let span = tracing::info_span!("recovery", shards, root = %layout.root.display(), point = ?cfg.point);
    let _entered = span.enter();
    let recovered = recover_in_span(fs, layout, shards, spine_opts, wal, cfg, &span);
    match &recovered {
        Ok(r) => trace_recovered(r),
        Err(e) => tracing::error!(error = %e, "recovery failed"),
    }
    recovered
}

/// The events of a recovery that succeeded: each shard's replay, then the
/// whole.
fn trace_recovered(r: &Recovery) {
    for s in &r.shards {
        tracing::info!(
            shard = s.shard,
            records = s.replayed_records,
            bytes = s.replayed_bytes,
            discarded = s.discarded_records,
            refused = s.refused_records,
            end_lsn = s.end_lsn,
            elapsed_us = s.replay_time.as_micros() as u64,
            "shard replayed"
        );
    }
    tracing::info!(
        epoch = r.epoch,
        last_epoch = r.last_epoch,
        checkpoint = r.manifest.as_ref().map(|m| tracing::field::display(m.id)),
        passed_over = r.skipped.len(),
        removed = r.removed.len(),
        select_us = r.select_time.as_micros() as u64,
        restore_us = r.restore_time.as_micros() as u64,
        "recovered"
    );
}

/// Steps 1–2 (module docs): the checkpoint to recover, those passed over
/// (set aside now), and what else the choice found; refused if it holds
/// another number of shards.
fn open_checkpoint(
    store: &FileSystemCheckpointStore,
    shards: u32,
    cfg: &RecoveryConfig,
) -> Result<(Selected, Found)> {
    let ((manifest, skipped), found) = select(store, cfg)?;
    for (id, _) in &skipped {
        if store.fs().exists(&store.checkpoint_dir(*id))? {
            store.quarantine(*id)?;
            tracing::info!(checkpoint = %id, "damaged checkpoint set aside");
        }
    }
    if let Some(m) = &manifest
        && m.shards.len() != shards as usize
    {
        return Err(Error::Incompatible {
            path: store.checkpoint_dir(m.id),
            reason: format!(
                "checkpoint {} has {} shards, the store is opened with {shards}",
                m.id,
                m.shards.len()
            ),
        });
    }
    Ok(((manifest, skipped), found))
}

/// [`recover`]'s work, in `span`, which its threads enter too.
fn recover_in_span(
    fs: &Arc<dyn Fs>,
    layout: &Layout,
    shards: u32,
    spine_opts: &SpineOptions,
    wal: Option<WalOptions>,
    cfg: &RecoveryConfig,
    span: &tracing::Span,
) -> Result<Recovery> {
    let started = Instant::now();
    let store = FileSystemCheckpointStore::new(Arc::clone(fs), layout.checkpoints())?;
    let ((manifest, skipped), found) = open_checkpoint(&store, shards, cfg)?;
    let Found {
        runs: mut opened,
        newer,
        retained,
    } = found;
    let ck_dir = manifest.as_ref().map(|m| store.checkpoint_dir(m.id));
    let select_time = started.elapsed();
    let restored = Instant::now();
    let latest = cfg.point == RecoveryPoint::Latest;
    // Steps 3–5 (module docs): scan, choose, replay.
    let scanned = in_parallel(
        shards,
        (cfg.threads, span),
        |n| {
            let cut = manifest
                .as_ref()
                .and_then(|m| m.shards.iter().find(|s| s.shard == n));
            let runs: OpenedRuns = cut
                .iter()
                .flat_map(|c| c.spines.iter().flat_map(|s| s.runs.iter()))
                .filter_map(|r| opened.remove_entry(&r.file))
                .collect();
            ShardJob {
                fs,
                layout,
                opened: runs,
                shard: n,
                cut,
                ck_dir: ck_dir.as_deref(),
                spine_opts,
                wal,
                mode: cfg.wal_mode,
                progress: cfg.progress.as_ref(),
            }
        },
        |job| job.scan(latest),
    )?;
    let (epoch, ends, last_epoch) = choose_point(cfg.point, manifest.as_ref(), &scanned, &retained)?;
    let metadata = epoch_metadata(
        fs.as_ref(),
        layout,
        manifest.as_ref(),
        ck_dir.as_deref(),
        epoch,
        &scanned,
    )?;
    // Newer checkpoints go before any WAL record does: one left behind would
    // win the next open and need the records.
    for id in &newer {
        store.remove(*id)?;
        tracing::info!(checkpoint = %id, epoch, "checkpoint newer than the recovery point removed");
    }
    let mut ends = ends.into_iter();
    let mut scanned = scanned.into_iter();
    let shards = in_parallel(
        shards,
        (cfg.threads, span),
        |_| (scanned.next(), ends.next()),
        |(s, end)| match (s, end) {
            (Some(s), Some(end)) => s.finish(end),
            _ => unreachable!("one scan and one end per shard"),
        },
    )?;
    Ok(Recovery {
        manifest,
        epoch,
        metadata,
        last_epoch,
        skipped,
        removed: newer,
        shards,
        select_time,
        restore_time: restored.elapsed(),
    })
}

/// Runs `work` on what `make` gives for each shard, on at most `threads`
/// threads (each takes the next shard until none is left) that enter
/// `span` with the caller's subscriber; the results in shard order, or the
/// first error.
fn in_parallel<T: Send, R: Send>(
    shards: u32,
    (threads, span): (usize, &tracing::Span),
    mut make: impl FnMut(u32) -> T,
    work: impl Fn(T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let inputs: Vec<Mutex<Option<T>>> = (0..shards).map(|n| Mutex::new(Some(make(n)))).collect();
    let results: Vec<Mutex<Option<Result<R>>>> = (0..shards).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    // The caller's subscriber and span follow the work to these threads:
    // what the layers below report lands where recovery's own events do.
    let dispatch = crate::io::caller_subscriber();
    let worker = || {
        let _default = dispatch.as_ref().map(tracing::dispatcher::set_default);
        let _entered = span.enter();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(input) = inputs.get(i) else { return };
            let Some(t) = input.lock().unwrap_or_else(PoisonError::into_inner).take() else {
                unreachable!("each shard is taken once");
            };
            let r = catch_unwind(AssertUnwindSafe(|| work(t))).unwrap_or(Err(Error::Panicked {
                thread: "a recovery thread",
            }));
            *results[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, (shards as usize).max(1)) {
            scope.spawn(worker);
        }
    });
    results
        .into_iter()
        .map(|r| {
            r.into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .unwrap_or(Err(Error::Panicked {
                    thread: "a recovery thread",
                }))
        })
        .collect()
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

#[cfg(test)]
mod tests;
