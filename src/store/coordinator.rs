//! [`CheckpointCoordinator`]: commits epochs and cuts global checkpoints
//! by message passing, then does the file work on its own (Ring-1) thread.
//!
//! An epoch commit asks every shard to append an epoch-commit record to its
//! WAL at its next `poll()` and waits until every record is durable (one
//! group commit per shard). A checkpoint is an epoch commit whose state is
//! also materialized:
//!
//! 1. Send every shard a cut request. Each shard answers at its next
//!    `poll()`: the runs of its spines (handles that keep the files alive),
//!    each spine's covered LSN, and the LSN of its last write of the epoch.
//!    Nothing is flushed: the WAL covers the memtables.
//! 2. Ask every shard's drainer to sync its WAL up to the cut.
//! 3. Commit the directory (`format/checkpoint.md`): sync the runs written
//!    since the last checkpoint side by side, link all, write the manifest,
//!    wait for step 2, rename into place.
//! 4. Retention: keep the newest `max_retained`.
//! 5. Only now ask each shard's drainer to truncate its WAL below the least
//!    LSN any retained checkpoint still replays from.
//! 6. A janitor job on the store's worker pool deletes retired directories and makes the next
//!    checkpoint's, off the next checkpoint's path.

use crate::io::Pending;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::shard::{CommitAnswer, CommitRequest, CutRequest, Lsn, MAX_VALUE_BYTES, ShardCut, ShardRequest};
use super::stats::CoordinatorCounters;
pub use crate::checkpoint::build::INLINE_OPERATOR_LIMIT;
use crate::checkpoint::retention::Retention;
use crate::checkpoint::{
    CheckpointStore, CommitReport, EpochMetadata, FileSystemCheckpointStore, TMP_DIR_SUFFIX,
};
use crate::spine::RunHandle;
use crate::wal::Watermark;
use crate::{Error, Result};

/// Source offsets by source name.
type SourceOffsets = BTreeMap<String, u64>;

/// How checkpoints are taken and kept: set through [`super::Options`]'s
/// setters, which document each field and refuse values out of range.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointConfig {
    pub(crate) interval: Option<Duration>,
    pub(crate) max_retained: usize,
    pub(crate) cut_timeout: Duration,
    pub(crate) flush_after: usize,
    pub(crate) young_run_age: Duration,
    pub(crate) eager_run_sync: bool,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval: None,
            max_retained: 3,
            cut_timeout: Duration::from_secs(60),
            flush_after: 4,
            young_run_age: Duration::from_secs(1),
            eager_run_sync: false,
        }
    }
}

/// What an epoch commit or a checkpoint records besides the state: source
/// offsets, connector checkpoints (with prepared transactions) and operator
/// states. Recovery returns exactly this for the epoch it recovers to.
pub type CheckpointRequest = EpochMetadata;

/// What one epoch commit did ([`crate::store::Store::commit_epoch`]).
#[derive(Debug, Clone)]
pub struct EpochCommitted {
    /// The epoch committed.
    pub epoch: u64,
    /// Each shard's position at the commit: the LSN of its commit record.
    /// Every write a shard made before its commit record belongs to this
    /// epoch or an earlier one.
    pub shard_lsns: Vec<Lsn>,
    /// The source offsets the epoch recorded: the request's, over those of
    /// the epoch before, under those the shards set themselves
    /// ([`crate::store::Shard::set_source_offset`]). Recovery to this epoch
    /// returns exactly these.
    pub source_offsets: BTreeMap<String, u64>,
    /// Each shard's pause on its own thread (appending one record).
    pub shard_pauses: Vec<Duration>,
    /// From the request to every shard's answer.
    pub answer_time: Duration,
    /// From the request until every shard's record was durable.
    pub total_time: Duration,
}

/// What one checkpoint did (LaminarDB's `IncrementalCheckpointMetadata`).
#[derive(Debug, Clone)]
pub struct IncrementalCheckpointMetadata {
    /// Its id.
    pub id: Uuid,
    /// Its epoch.
    pub epoch: u64,
    /// Each shard's cut: the LSN of its epoch-commit record (of its last
    /// change, without a WAL).
    pub shard_lsns: Vec<Lsn>,
    /// The source offsets it recorded (as [`EpochCommitted::source_offsets`]).
    pub source_offsets: BTreeMap<String, u64>,
    /// Its directory.
    pub path: PathBuf,
    /// Runs it references.
    pub runs: usize,
    /// The commit's numbers (links, copies, new bytes).
    pub commit: CommitReport,
    /// Each shard's pause on its own thread.
    pub shard_pauses: Vec<Duration>,
    /// From the request to every shard's answer.
    pub cut_time: Duration,
    /// Waiting (inside the commit, before its commit point) for the WALs to
    /// be durable up to the cuts.
    pub wal_sync_time: Duration,
    /// Writing and committing the directory, the WAL wait included.
    pub commit_time: Duration,
    /// From the request to the end of retention.
    pub total_time: Duration,
    /// Checkpoints deleted by retention.
    pub removed: usize,
}

/// Cuts and commits checkpoints. See the module docs.
#[derive(Debug)]
pub struct CheckpointCoordinator {
    store: FileSystemCheckpointStore,
    config: CheckpointConfig,
    fingerprint: Vec<u8>,
    shards: Vec<Sender<ShardRequest>>,
    watermarks: Vec<Option<Arc<Watermark>>>,
    retention: Retention,
    /// The next cut includes every run as it is (no deferral): set for a
    /// shutdown's checkpoint.
    eager_next: bool,
    /// The newest epoch committed (by an epoch commit or a checkpoint).
    last_epoch: u64,
    /// The newest epoch asked of the shards: the next must be greater.
    last_begun: u64,
    last_time: Instant,
    /// Ring-1 housekeeping after a commit, off the next checkpoint's
    /// path: deletes retired directories and makes the next one's `.tmp`.
    janitor: Option<Pending<()>>,
    /// The id of the next checkpoint, whose directory the janitor makes.
    next_id: Uuid,
    /// Set by a failed sync inside a commit: checkpoints are refused.
    poisoned: Option<String>,
    /// Per shard, the cut LSNs of the last `flush_after` checkpoints, oldest
    /// first.
    recent_cuts: VecDeque<Vec<u64>>,
    /// The source offsets of the newest epoch committed: every commit
    /// records them again unless the request or a shard moves them, so a
    /// source no one touched since keeps its offset.
    carried: BTreeMap<String, u64>,
    /// Pushes each committed checkpoint (`Options::push_to`); dropped with
    /// the coordinator, after the push under way.
    #[cfg(feature = "remote")]
    pusher: Option<crate::remote::Pusher>,
    /// Commits and checkpoints completed, and their latencies.
    counters: CoordinatorCounters,
}

impl CheckpointCoordinator {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: FileSystemCheckpointStore,
        config: CheckpointConfig,
        fingerprint: Vec<u8>,
        shards: Vec<Sender<ShardRequest>>,
        watermarks: Vec<Option<Arc<Watermark>>>,
        last_epoch: u64,
        carried: BTreeMap<String, u64>,
    ) -> Result<Self> {
        let retention = Retention::load(&store, config.max_retained, shards.len())?;
        Ok(CheckpointCoordinator {
            store,
            config,
            fingerprint,
            shards,
            watermarks,
            retention,
            eager_next: false,
            last_epoch,
            last_begun: last_epoch,
            last_time: Instant::now(),
            janitor: None,
            next_id: Uuid::new_v4(),
            poisoned: None,
            recent_cuts: VecDeque::new(),
            carried,
            #[cfg(feature = "remote")]
            pusher: None,
            counters: CoordinatorCounters::default(),
        })
    }

    /// The checkpoint store.
    pub fn store(&self) -> &FileSystemCheckpointStore {
        &self.store
    }

    /// The newest epoch committed, by an epoch commit or a checkpoint (the
    /// recovered one after an open; 0 if none).
    pub fn last_epoch(&self) -> u64 {
        self.last_epoch
    }

    /// The epoch of the newest checkpoint (0 if none).
    pub fn last_checkpoint_epoch(&self) -> u64 {
        self.retention.last_epoch()
    }

    /// The smallest epoch the next commit or checkpoint may have: one past
    /// every epoch asked for so far. The caller chooses epochs; they must
    /// strictly increase over commits and checkpoints alike.
    pub fn next_epoch(&self) -> u64 {
        self.last_begun + 1
    }

    /// Checks `epoch` against [`CheckpointCoordinator::next_epoch`] and
    /// encodes what the request records, over the offsets carried from the
    /// last epoch (nothing is sent if either fails). Returns the encoded
    /// record value and the offsets in it.
    fn start(&self, what: &str, epoch: u64, request: &EpochMetadata) -> Result<(Arc<[u8]>, SourceOffsets)> {
        // A store fenced from its push target commits nothing more.
        #[cfg(feature = "remote")]
        if let Some(p) = &self.pusher {
            p.check()?;
        }
        if let Some(cause) = &self.poisoned {
            return Err(Error::Poisoned {
                path: self.store.dir().to_path_buf(),
                cause: cause.clone(),
            });
        }
        if epoch <= self.last_begun {
            return Err(Error::InvalidArgument(format!(
                "{what} of epoch {epoch}: epochs must increase, and {} was already asked for",
                self.last_begun
            )));
        }
        let mut offsets = self.carried.clone();
        offsets.extend(request.source_offsets.iter().map(|(k, v)| (k.clone(), *v)));
        let value = crate::checkpoint::encode_commit_value(&offsets, &request.connectors, &request.operators);
        if value.len() > MAX_VALUE_BYTES {
            return Err(Error::TooLarge {
                what: "epoch metadata",
                len: value.len() as u64,
                limit: MAX_VALUE_BYTES as u64,
            });
        }
        Ok((value.into(), offsets))
    }

    /// Asks every shard to append the commit record of `epoch` at its next
    /// `poll()`; [`CheckpointCoordinator::finish_commit`] waits for them to
    /// be durable. Needs a WAL: without one, only checkpoints commit.
    pub fn begin_commit(&mut self, epoch: u64, request: &EpochMetadata) -> Result<PendingCommit> {
        if self.watermarks.iter().any(Option::is_none) {
            return Err(Error::NotSupported(
                "a store without a WAL commits epochs only by checkpoints".into(),
            ));
        }
        let (value, offsets) = self.start("epoch commit", epoch, request)?;
        // Asked from the first send on: a shard that got it moved past it.
        self.last_begun = epoch;
        let (tx, rx) = mpsc::channel();
        for (n, shard) in self.shards.iter().enumerate() {
            let req = CommitRequest {
                epoch,
                value: Arc::clone(&value),
                reply: tx.clone(),
            };
            shard
                .send(ShardRequest::Commit(req))
                .map_err(|_| Error::ShutDown {
                    what: format!("shard {n}"),
                })?;
        }
        Ok(PendingCommit {
            epoch,
            offsets,
            replies: rx,
            started: Instant::now(),
        })
    }

    /// Waits for every shard's commit record of a commit begun with
    /// [`CheckpointCoordinator::begin_commit`] to be durable (one group
    /// commit per shard). A commit that times out or fails may still become
    /// durable on every shard, and then recovery may return it: its state
    /// and metadata agree either way.
    pub fn finish_commit(&mut self, pending: PendingCommit) -> Result<EpochCommitted> {
        let deadline = pending.started + self.config.cut_timeout;
        let what = format!("epoch commit {}", pending.epoch);
        let mut answers = self.collect(&pending.replies, deadline, &what)?;
        let answer_time = pending.started.elapsed();
        for a in &answers {
            if let Some(w) = &self.watermarks[a.shard as usize] {
                w.wait_durable(a.lsn, deadline.saturating_duration_since(Instant::now()))?;
            }
        }
        let mut offsets = pending.offsets;
        for a in &mut answers {
            offsets.append(&mut a.offsets);
        }
        self.committed(pending.epoch, &offsets);
        let total_time = pending.started.elapsed();
        self.counters.commit_done(total_time);
        tracing::debug!(
            epoch = pending.epoch,
            answer_us = answer_time.as_micros() as u64,
            total_us = total_time.as_micros() as u64,
            "epoch committed"
        );
        Ok(EpochCommitted {
            epoch: pending.epoch,
            shard_lsns: answers.iter().map(|a| Lsn(a.lsn)).collect(),
            source_offsets: offsets,
            shard_pauses: answers.iter().map(|a| a.pause).collect(),
            answer_time,
            total_time,
        })
    }

    /// Ids and epochs of the retained checkpoints, oldest first.
    pub fn retained(&self) -> Vec<(Uuid, u64)> {
        self.retention.list()
    }

    /// True when the configured interval has passed since the last
    /// checkpoint (for interval-driven callers).
    pub fn should_checkpoint(&self) -> bool {
        self.config
            .interval
            .is_some_and(|i| self.last_time.elapsed() >= i)
    }

    /// Sends every shard its cut request (step 1); the answers come at the
    /// shards' next `poll()`.
    pub fn begin(&mut self, epoch: u64, request: CheckpointRequest) -> Result<PendingCheckpoint> {
        let (value, offsets) = self.start("checkpoint", epoch, &request)?;
        // Asked from the first send on: a shard that got it moved past it.
        self.last_begun = epoch;
        let mut request = request;
        request.source_offsets = offsets;
        let (tx, rx) = mpsc::channel();
        // A spine whose runs cover less than the cut `flush_after`
        // checkpoints back has pinned the WAL long enough (whatever the
        // retention: with fewer kept, an idle spine's memtable would pin
        // the WAL for good).
        let back = (self.recent_cuts.len() >= self.config.flush_after)
            .then(|| self.recent_cuts.front())
            .flatten();
        for (n, shard) in self.shards.iter().enumerate() {
            let flush_below = back.map_or(0, |cuts| cuts.get(n).copied().unwrap_or(0));
            shard
                .send(ShardRequest::Cut(CutRequest {
                    epoch,
                    value: Arc::clone(&value),
                    flush_below,
                    reply: tx.clone(),
                    young: (!self.eager_next && !self.config.eager_run_sync)
                        .then_some(self.config.young_run_age),
                }))
                .map_err(|_| Error::ShutDown {
                    what: format!("shard {n}"),
                })?;
        }
        Ok(PendingCheckpoint {
            epoch,
            request,
            replies: rx,
            started: Instant::now(),
        })
    }

    /// Steps 1–5 for a checkpoint begun with [`CheckpointCoordinator::begin`]:
    /// waits for every shard's answer, then commits.
    ///
    /// A checkpoint that fails leaves nothing that makes the next one fail:
    /// its half-built directory goes and the next one gets a new id, so once
    /// the cause is gone (space, a flaky link) the next commits and the WAL
    /// is truncated again. A failed `fsync` is the exception: its pages may
    /// be lost while a retry reports success, so the coordinator is then
    /// poisoned and refuses every later checkpoint (fail-stop; reopen).
    pub fn finish(&mut self, pending: PendingCheckpoint) -> Result<IncrementalCheckpointMetadata> {
        if let Some(cause) = self.poisoned.clone() {
            self.counters.checkpoint_failed();
            return Err(Error::Poisoned {
                path: self.store.dir().to_path_buf(),
                cause,
            });
        }
        // The janitor's work is cleanup: what it failed to remove the next
        // open removes, and the commit makes its own directory.
        let _ = self.wait_housekeeping();
        let epoch = pending.epoch;
        let result = self.commit_pending(pending);
        match &result {
            Ok(m) => {
                self.counters
                    .checkpoint_done(m.total_time, m.commit.new_bytes + m.commit.metadata_bytes);
                tracing::info!(
                    epoch,
                    id = %m.id,
                    runs = m.runs,
                    new_bytes = m.commit.new_bytes,
                    cut_us = m.cut_time.as_micros() as u64,
                    wal_sync_us = m.wal_sync_time.as_micros() as u64,
                    total_us = m.total_time.as_micros() as u64,
                    removed = m.removed,
                    "checkpoint committed"
                );
            }
            Err(e) => {
                self.counters.checkpoint_failed();
                tracing::warn!(epoch, error = %e, "checkpoint failed");
                self.abandon(e, epoch);
            }
        }
        result
    }

    pub(crate) fn counters(&self) -> &CoordinatorCounters {
        &self.counters
    }

    /// The store's pusher (`Options::push_to`).
    #[cfg(feature = "remote")]
    pub(crate) fn pusher(&self) -> Option<&crate::remote::Pusher> {
        self.pusher.as_ref()
    }

    #[cfg(feature = "remote")]
    pub(crate) fn set_pusher(&mut self, pusher: crate::remote::Pusher) {
        self.pusher = Some(pusher);
    }

    /// A failed attempt: forget its directory and id (module docs of
    /// `finish`); a failed sync poisons.
    fn abandon(&mut self, e: &Error, epoch: u64) {
        if e.is_sync_failure() {
            tracing::error!(epoch, error = %e, "checkpoint sync failed: checkpoints refused until the store reopens");
            self.poisoned = Some(format!("checkpoint {epoch}: {e}"));
        }
        let tmp = self.store.dir().join(format!("{}{TMP_DIR_SUFFIX}", self.next_id));
        if self.store.fs().exists(&tmp).unwrap_or(true) {
            // Best effort: the next open deletes what is left.
            let _ = self.store.fs().remove_dir_all(&tmp);
        }
        self.next_id = Uuid::new_v4();
    }

    /// Every shard's answer to a request, in shard order, or `TimedOut` at
    /// `deadline` (step 1 for a checkpoint).
    fn collect<T: Answer>(
        &self,
        replies: &mpsc::Receiver<T>,
        deadline: Instant,
        what: &str,
    ) -> Result<Vec<T>> {
        let n = self.shards.len();
        let mut answers: Vec<T> = Vec::with_capacity(n);
        while answers.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match replies.recv_timeout(left) {
                Ok(a) => answers.push(a),
                Err(_) => {
                    tracing::warn!(
                        what,
                        answered = answers.len(),
                        shards = n,
                        "shards did not answer in time"
                    );
                    return Err(Error::TimedOut {
                        what: format!(
                            "{what}: {} of {n} shards answered (do they call poll()?)",
                            answers.len()
                        ),
                        after: self.config.cut_timeout,
                    });
                }
            }
        }
        answers.sort_by_key(Answer::shard);
        Ok(answers)
    }

    fn commit_pending(&mut self, pending: PendingCheckpoint) -> Result<IncrementalCheckpointMetadata> {
        let deadline = pending.started + self.config.cut_timeout;
        let what = format!("checkpoint {}", pending.epoch);
        let mut cuts = self.collect(&pending.replies, deadline, &what)?;
        let cut_time = pending.started.elapsed();
        // Step 2 overlaps step 3: the drainers sync while runs are synced.
        for c in &cuts {
            if let Some(w) = &self.watermarks[c.shard as usize] {
                w.request_sync(c.cut_lsn);
            }
        }
        let committed = Instant::now();
        let (mut prepared, handles) = super::manifest_build::prepare(
            self.next_id,
            &self.fingerprint,
            pending.epoch,
            &pending.request,
            &cuts,
        );
        self.retention.check_replay_floor(&prepared.manifest);
        prepared.retire_before_commit = self.retention.retire_before_commit();
        let mut wal_sync_time = Duration::ZERO;
        let commit = self.store.commit(&prepared, &mut || {
            let t = Instant::now();
            let r = self.wait_wal(&cuts);
            wal_sync_time = t.elapsed();
            r
        });
        let gone = self
            .retention
            .forget_renamed(&self.store, &prepared.retire_before_commit, commit.is_ok());
        let retired_early = gone.len();
        let commit = commit?;
        let commit_time = committed.elapsed();
        let m = &prepared.manifest;
        self.retention.committed(m);
        // Committed: push it, if the store pushes (its files are opened now,
        // before a later commit can retire them).
        #[cfg(feature = "remote")]
        if let Some(p) = &self.pusher {
            p.offer(m);
        }
        self.recent_cuts
            .push_back(m.shards.iter().map(|s| s.cut_lsn).collect());
        while self.recent_cuts.len() > self.config.flush_after {
            self.recent_cuts.pop_front();
        }
        for h in &handles {
            h.mark_durable();
        }
        self.committed(pending.epoch, &prepared.manifest.source_offsets);
        self.last_time = Instant::now();
        self.eager_next = false;
        let removed = self.retention.retire(&self.store, &self.watermarks) + retired_early;
        let released: Vec<RunHandle> = cuts
            .iter_mut()
            .flat_map(|c| std::mem::take(&mut c.released))
            .collect();
        self.housekeep(gone, released);
        Ok(IncrementalCheckpointMetadata {
            id: m.id,
            epoch: m.epoch,
            shard_lsns: cuts.iter().map(|c| Lsn(c.cut_lsn)).collect(),
            source_offsets: m.source_offsets.clone(),
            path: self.store.checkpoint_dir(m.id),
            runs: prepared.runs.len(),
            commit,
            shard_pauses: cuts.iter().map(|c| c.pause).collect(),
            cut_time,
            wal_sync_time,
            commit_time,
            total_time: pending.started.elapsed(),
            removed,
        })
    }

    /// Step 2.
    fn wait_wal(&self, cuts: &[ShardCut]) -> Result<()> {
        for c in cuts {
            let Some(w) = &self.watermarks[c.shard as usize] else {
                continue;
            };
            w.wait_durable(c.cut_lsn, self.config.cut_timeout)?;
        }
        Ok(())
    }

    /// Epoch `epoch` committed, recording `offsets`.
    fn committed(&mut self, epoch: u64, offsets: &BTreeMap<String, u64>) {
        if epoch > self.last_epoch {
            self.last_epoch = epoch;
            self.carried = offsets.clone();
        }
    }

    /// The next checkpoint syncs every run its cut finds, young ones too.
    pub(crate) fn eager_once(&mut self) {
        self.eager_next = true;
    }

    /// Starts the janitor: deletes the directories `retired` (renamed to
    /// `.tmp` by the commit), drops the stand-in runs the shards released
    /// (deleting their files), and makes the next checkpoint's `.tmp`
    /// directory, so neither costs the next checkpoint time. A crash leaves
    /// only `.tmp` directories, which open deletes.
    fn housekeep(&mut self, retired: Vec<Uuid>, released: Vec<RunHandle>) {
        self.next_id = Uuid::new_v4();
        let store = self.store.clone();
        let next = self.next_id;
        let job = move || {
            // The last handle of a retired run deletes its file.
            drop(released);
            for id in retired {
                let dir = store.dir().join(format!("{id}{TMP_DIR_SUFFIX}"));
                store.fs().remove_dir_all(&dir)?;
            }
            store
                .fs()
                .create_dir_all(&store.dir().join(format!("{next}{TMP_DIR_SUFFIX}")))
        };
        // No pool: the next commit makes its directory itself, and the
        // retired ones go at the next open.
        self.janitor = self
            .store
            .pool()
            .ok()
            .map(|pool| pool.spawn("the janitor", Box::new(job)));
    }

    /// Waits for the janitor of the last commit (tests, shutdown).
    pub fn wait_housekeeping(&mut self) -> Result<()> {
        match self.janitor.take() {
            Some(h) => h.wait(),
            None => Ok(()),
        }
    }
}

/// A shard's answer to a request.
trait Answer {
    fn shard(&self) -> u32;
}

impl Answer for ShardCut {
    fn shard(&self) -> u32 {
        self.shard
    }
}

impl Answer for CommitAnswer {
    fn shard(&self) -> u32 {
        self.shard
    }
}

/// A checkpoint whose cut requests are out; see [`CheckpointCoordinator::finish`].
#[derive(Debug)]
pub struct PendingCheckpoint {
    epoch: u64,
    request: CheckpointRequest,
    replies: mpsc::Receiver<ShardCut>,
    started: Instant,
}

/// An epoch commit whose requests are out; see
/// [`CheckpointCoordinator::finish_commit`].
#[derive(Debug)]
pub struct PendingCommit {
    epoch: u64,
    /// The offsets its record carries before the shards add theirs.
    offsets: BTreeMap<String, u64>,
    replies: mpsc::Receiver<CommitAnswer>,
    started: Instant,
}

impl PendingCommit {
    /// The epoch being committed.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl PendingCheckpoint {
    /// The epoch being cut.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}
