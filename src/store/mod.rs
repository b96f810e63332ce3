//! [`Store`]: the public face — N shared-nothing shards, each owned by one
//! thread, a changelog drainer writing their WALs, and the checkpoint
//! coordinator.
//!
//! ```
//! use std::sync::Arc;
//! use statespine::io::MemFs;
//! use statespine::store::{CheckpointRequest, Options};
//!
//! let fs = Arc::new(MemFs::new());
//! let mut store = Options::new("/db").fs(fs.clone()).open()?;
//! let mut shard = store.take_shards().remove(0);
//! let counts = shard.create_kv("counts")?;
//! shard.put(counts, b"apple", b"3")?;
//! let ck = store.checkpoint_inline(&mut [&mut shard], 1, CheckpointRequest::default())?;
//! assert_eq!(ck.epoch, 1);
//! // Epoch 2: a write, then an epoch commit recording where the source is.
//! shard.put(counts, b"pear", b"1")?;
//! let mut request = CheckpointRequest::default();
//! request.source_offsets.insert("orders".into(), 42);
//! store.commit_epoch_inline(&mut [&mut shard], 2, &request)?;
//! // Epoch 3, never committed: a power loss now.
//! shard.put(counts, b"plum", b"7")?;
//! let disk = Arc::new(fs.crash());
//! drop((shard, store));
//!
//! let state = Options::new("/db").fs(disk).recover()?;
//! assert_eq!((state.epoch, state.source_offsets["orders"]), (2, 42));
//! let mut store = state.store;
//! let shard = store.take_shards().remove(0);
//! assert_eq!(shard.epoch(), 3);
//! let counts = shard.kv_spine("counts").unwrap();
//! assert_eq!(shard.get(counts, b"pear")?, Some(&b"1"[..]));
//! assert_eq!(shard.get(counts, b"plum")?, None); // epoch 3 was discarded
//! # Ok::<(), statespine::Error>(())
//! ```

mod batch;
mod coordinator;
mod manifest_build;
#[cfg(feature = "remote")]
mod remote;
mod shard;
mod stats;
mod typed;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use uuid::Uuid;

use crate::changelog::StateChangelogBuffer;
use crate::checkpoint::{ConnectorCheckpoint, FileSystemCheckpointStore, Progress};
use crate::io::{Fs, LockGuard, Pool, StdFs};
use crate::recovery::{Layout, RecoveryConfig, recover};
use crate::run::RunMode;
use crate::spine::{MergeMode, SpineOptions};
use crate::wal::{ChangelogDrainer, DrainerHandle, WalOptions, Watermark};
use crate::{Error, Result};
use coordinator::CheckpointConfig;

pub use crate::checkpoint::{EpochMetadata, ValidationDepth};
pub use crate::recovery::RecoveryPoint;
pub use crate::wal::{RecoveryMode, SyncPolicy};
pub use batch::{MAX_BATCH_BYTES, WriteBatch};
pub use coordinator::{
    CheckpointCoordinator, CheckpointRequest, EpochCommitted, INLINE_OPERATOR_LIMIT,
    IncrementalCheckpointMetadata, PendingCheckpoint, PendingCommit,
};
pub use shard::{
    Answered, KvSpine, Lsn, MAX_KEY_BYTES, MAX_SPINE_NAME_BYTES, MAX_VALUE_BYTES, Shard, SpineId, ZSetSpine,
};
pub use stats::{LatencyHistogram, PUBLISH_INTERVAL, RecoveryFigures, ShardStats, SpineReport, StoreStats};
pub use typed::{Key, TypedCursor, TypedSpine, Value, encode_key};

/// Default of [`Options::worker_threads`].
pub const DEFAULT_WORKER_THREADS: usize = 4;

pub use crate::spine::DEFAULT_MERGE_THREADS;

/// Smallest WAL segment [`Options::wal_segment_size`] accepts.
pub const MIN_WAL_SEGMENT_BYTES: u64 = 1 << 10;

/// How to open a store: one builder for everything a store is opened with.
///
/// Setters take a value and return the builder; nothing is checked until
/// [`Options::open`] or [`Options::recover`], which refuse a value out of
/// range with [`Error::InvalidArgument`] naming the setter, before touching
/// the disk (nothing is clamped silently).
///
/// ```
/// use std::time::Duration;
/// use statespine::store::{Options, RecoveryPoint, SyncPolicy};
/// # let tmp = tempfile::tempdir().unwrap();
/// let store = Options::new(tmp.path().join("db"))
///     .shards(4)
///     .sync_policy(SyncPolicy::Interval(Duration::from_millis(2)))
///     .max_retained(2)
///     .fingerprint(b"job v3".to_vec())
///     .recovery_point(RecoveryPoint::LastCommittedEpoch)
///     .open()?;
/// # drop(store);
/// let refused = Options::new(tmp.path().join("other")).shards(0).open();
/// assert_eq!(refused.unwrap_err().kind(), statespine::ErrorKind::Misuse);
/// # Ok::<(), statespine::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    root: PathBuf,
    fs: Arc<dyn Fs>,
    shards: u32,
    wal: bool,
    sync_policy: SyncPolicy,
    segment_size: u64,
    ring_bytes: usize,
    ring_entries: usize,
    spine: SpineOptions,
    checkpoint: CheckpointConfig,
    recovery: RecoveryConfig,
    fingerprint: Vec<u8>,
    worker_threads: usize,
    merge_threads: usize,
    #[cfg(feature = "remote")]
    remote: remote::RemoteConfig,
}

impl Options {
    /// A store at `dir` on the real file system: one shard, WAL on with
    /// group commit every millisecond, 3 checkpoints kept.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let root = dir.into();
        Options {
            checkpoint: CheckpointConfig::default(),
            root,
            fs: Arc::new(StdFs::new()),
            shards: 1,
            wal: true,
            sync_policy: SyncPolicy::Interval(Duration::from_millis(1)),
            segment_size: crate::wal::DEFAULT_SEGMENT_SIZE_BYTES,
            ring_bytes: 8 << 20,
            ring_entries: 1 << 16,
            spine: SpineOptions::new(RunMode::KeyValue),
            recovery: RecoveryConfig::default(),
            fingerprint: Vec::new(),
            worker_threads: DEFAULT_WORKER_THREADS,
            merge_threads: DEFAULT_MERGE_THREADS,
            #[cfg(feature = "remote")]
            remote: remote::RemoteConfig::default(),
        }
    }

    /// The file system (tests use [`crate::io::MemFs`]).
    #[must_use]
    pub fn fs(mut self, fs: Arc<dyn Fs>) -> Self {
        self.fs = fs;
        self
    }

    /// Number of shards (default 1, at least 1); fixed for the store's life:
    /// reopening with another number is [`Error::Incompatible`].
    #[must_use]
    pub fn shards(mut self, n: u32) -> Self {
        self.shards = n;
        self
    }

    /// With the WAL off, a write is durable only once a checkpoint holding
    /// it commits, and each checkpoint flushes the memtables.
    #[must_use]
    pub fn wal(mut self, on: bool) -> Self {
        self.wal = on;
        self
    }

    /// When the drainer syncs the WALs (default: group commit every
    /// millisecond).
    #[must_use]
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.sync_policy = policy;
        self
    }

    /// Size at which a WAL segment is sealed and the next one started
    /// (default 64 MiB, at least [`MIN_WAL_SEGMENT_BYTES`]).
    #[must_use]
    pub fn wal_segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Each shard's changelog ring: bytes (rounded up to a power of two;
    /// default 8 MiB) and records in flight (default 65,536); both at
    /// least 1.
    #[must_use]
    pub fn changelog_capacity(mut self, bytes: usize, entries: usize) -> Self {
        self.ring_bytes = bytes;
        self.ring_entries = entries;
        self
    }

    /// Options of every spine (their mode is set per spine).
    #[must_use]
    pub fn spine_options(mut self, opts: SpineOptions) -> Self {
        self.spine = opts;
        self
    }

    /// Checkpoints kept (default 3, at least 1).
    #[must_use]
    pub fn max_retained(mut self, n: usize) -> Self {
        self.checkpoint.max_retained = n;
        self
    }

    /// The interval after which [`Store::should_checkpoint`] says yes
    /// (default: never).
    #[must_use]
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint.interval = Some(interval);
        self
    }

    /// Longest wait of a checkpoint or epoch commit for every shard to
    /// answer from its `poll()` (default 60 s; more than zero).
    #[must_use]
    pub fn cut_timeout(mut self, timeout: Duration) -> Self {
        self.checkpoint.cut_timeout = timeout;
        self
    }

    /// Runs younger than this at a checkpoint cut, and not seen by an
    /// earlier cut, wait for the next cut (default 1 s): most die in merges
    /// before then, and the durable runs they replaced or the WAL stand in
    /// for them (see [`crate::spine::Spine::cut`]). Bounds the extra replay.
    #[must_use]
    pub fn young_run_age(mut self, age: Duration) -> Self {
        self.checkpoint.young_run_age = age;
        self
    }

    /// Sync every run a cut finds (`true`), or (default `false`) defer the
    /// young ones ([`Options::young_run_age`]). Eager costs ingest when
    /// merges outpace the disk; deferring lets recovery replay a little
    /// more WAL.
    #[must_use]
    pub fn eager_run_sync(mut self, eager: bool) -> Self {
        self.checkpoint.eager_run_sync = eager;
        self
    }

    /// A spine whose memtable has pinned the WAL through this many
    /// checkpoints is asked to flush it (default 4, at least 1), which
    /// bounds the WAL.
    #[must_use]
    pub fn flush_after(mut self, checkpoints: usize) -> Self {
        self.checkpoint.flush_after = checkpoints;
        self
    }

    /// The program's fingerprint: written into every checkpoint, and a
    /// checkpoint with another one is refused at recovery
    /// ([`Error::Incompatible`]). Empty (the default) accepts any.
    #[must_use]
    pub fn fingerprint(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.fingerprint = bytes.into();
        self
    }

    /// How deep recovery checks each candidate checkpoint before using it
    /// (default [`ValidationDepth::Footers`]).
    #[must_use]
    pub fn validation_depth(mut self, depth: ValidationDepth) -> Self {
        self.recovery.depth = depth;
        self
    }

    /// Strict WAL replay (default), or [`RecoveryMode::TolerateCorruption`]
    /// to salvage a damaged log: the first bad record ends it.
    #[must_use]
    pub fn wal_recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.recovery.wal_mode = mode;
        self
    }

    /// The state to recover (default [`RecoveryPoint::LastCommittedEpoch`]:
    /// the newest epoch committed on every shard, and nothing after it).
    #[must_use]
    pub fn recovery_point(mut self, point: RecoveryPoint) -> Self {
        self.recovery.point = point;
        self
    }

    /// Tells `progress` how recovery at the open is getting on: each
    /// checkpoint it validates, then per shard the WAL it scans and replays,
    /// in bytes, every few MiB (`checkpoint::Progress`). Called from the
    /// recovery threads, shards side by side: keep it short. The tool's
    /// progress bars are drawn from it; a service may log it.
    #[must_use]
    pub fn on_progress(mut self, progress: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.recovery.progress = Some(Arc::new(progress));
        self
    }

    /// Threads of the store's worker pool (default
    /// [`DEFAULT_WORKER_THREADS`], at least 1): the WALs' `fdatasync` fan-out,
    /// a checkpoint's syncs, and the janitor after a checkpoint. Fixed for
    /// the store's life whatever the number of shards and spines.
    #[must_use]
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = n;
        self
    }

    /// Threads that run background merges (default
    /// [`DEFAULT_MERGE_THREADS`], at least 1), shared by every spine of every
    /// shard in [`crate::spine::MergeMode::Background`]; none are started in
    /// the default cooperative mode, where each shard's owner merges.
    #[must_use]
    pub fn merge_threads(mut self, n: usize) -> Self {
        self.merge_threads = n;
        self
    }

    /// Opens the store: recovers whatever is there (nothing, for a new one).
    pub fn open(self) -> Result<Store> {
        Ok(self.recover()?.store)
    }

    /// Opens the store and says what it recovered.
    pub fn recover(mut self) -> Result<RecoveredState> {
        self.validate()?;
        // One fingerprint, set here: what recovery requires is what the
        // store will write into its checkpoints.
        self.recovery.fingerprint = (!self.fingerprint.is_empty()).then(|| self.fingerprint.clone());
        self.recovery.threads = self.worker_threads;
        recover_store(self)
    }

    /// Refuses values out of range, naming the setter.
    fn validate(&self) -> Result<()> {
        let refuse = |what: &str| Err(Error::InvalidArgument(format!("Options::{what}")));
        if self.shards == 0 {
            return refuse("shards: at least 1");
        }
        if self.segment_size < MIN_WAL_SEGMENT_BYTES {
            return refuse("wal_segment_size: at least MIN_WAL_SEGMENT_BYTES (1 KiB)");
        }
        if self.ring_bytes == 0 || self.ring_entries == 0 {
            return refuse("changelog_capacity: bytes and entries at least 1");
        }
        if self.checkpoint.max_retained == 0 {
            return refuse("max_retained: at least 1");
        }
        if self.checkpoint.flush_after == 0 {
            return refuse("flush_after: at least 1");
        }
        if self.worker_threads == 0 {
            return refuse("worker_threads: at least 1");
        }
        if self.merge_threads == 0 {
            return refuse("merge_threads: at least 1");
        }
        if self.checkpoint.cut_timeout.is_zero() {
            return refuse("cut_timeout: more than zero");
        }
        Ok(())
    }
}

/// Where one shard stands after recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardPosition {
    /// The shard.
    pub shard: u32,
    /// Its position at the epoch recovered: the LSN of its commit record
    /// (the checkpoint's cut, for the checkpoint's epoch). With
    /// [`RecoveryPoint::Latest`], the last record replayed.
    pub lsn: Lsn,
    /// Records after the epoch recovered, discarded (0 with
    /// [`RecoveryPoint::Latest`]).
    pub discarded_records: u64,
    /// WAL records replayed into its spines.
    pub replayed_records: u64,
}

/// What recovery brought back, and the store ready to continue (LaminarDB's
/// `RecoveredState`).
///
/// The state is that of `epoch` (module docs of [`crate::recovery`]), and
/// the metadata below is what that epoch's commit recorded: rewind each
/// source to `source_offsets`, commit or abort `prepared_transactions`,
/// restore `operators`, and run on; the next epoch is `epoch + 1` or later.
#[derive(Debug)]
pub struct RecoveredState {
    /// The recovery point used.
    pub point: RecoveryPoint,
    /// The epoch recovered (0: none was ever committed, the state is empty).
    pub epoch: u64,
    /// The checkpoint the state was rebuilt from (its epoch is `epoch` or
    /// earlier: the WAL's epoch commits did the rest), if any.
    pub checkpoint_id: Option<Uuid>,
    /// The epoch's source offsets.
    pub source_offsets: BTreeMap<String, u64>,
    /// The epoch's connector checkpoints.
    pub connectors: BTreeMap<String, ConnectorCheckpoint>,
    /// Transactions two-phase-commit sinks had prepared in the epoch, by
    /// connector: commit or abort each.
    pub prepared_transactions: BTreeMap<String, Vec<String>>,
    /// The epoch's operator states.
    pub operators: BTreeMap<String, Vec<u8>>,
    /// Each shard's position.
    pub shards: Vec<ShardPosition>,
    /// Records discarded after the epoch, over all shards.
    pub discarded_records: u64,
    /// Checkpoints passed over (damaged), newest first, with the reason.
    pub skipped: Vec<(Uuid, String)>,
    /// Checkpoints newer than the epoch recovered ([`RecoveryPoint::Epoch`]),
    /// deleted.
    pub removed_checkpoints: Vec<Uuid>,
    /// WAL records replayed, over all shards.
    pub replayed_records: u64,
    /// WAL records skipped because their spine refuses their kind of write:
    /// an earlier version logged such writes before refusing them (0 for
    /// logs this version wrote).
    pub refused_records: u64,
    /// WAL payload bytes replayed.
    pub replayed_bytes: u64,
    /// Time to choose and validate the checkpoint.
    pub select_time: Duration,
    /// Time to open runs, scan and replay the WALs.
    pub restore_time: Duration,
    /// Of which the slowest shard's WAL replay.
    pub replay_time: Duration,
    /// What a restore from a remote store brought down before recovery
    /// (`Options::restore_from`), if one ran.
    #[cfg(feature = "remote")]
    pub restored: Option<crate::remote::RestoreReport>,
    /// The open store.
    pub store: Store,
}

/// The newest valid checkpoint plus the WAL (`recovery` module docs), and
/// the store assembled on it.
fn recover_store(opts: Options) -> Result<RecoveredState> {
    let layout = Layout {
        root: opts.root.clone(),
    };
    crate::io::create_dir_all_durable(opts.fs.as_ref(), &layout.root)?;
    // One owner at a time, from before recovery touches a file until
    // the store and its last shard are gone.
    let lock: Arc<dyn LockGuard> = Arc::from(
        opts.fs
            .lock(&layout.lock_file(), &crate::io::holder_description())?,
    );
    #[cfg(feature = "remote")]
    let restored = remote::restore(&opts, &layout)?;
    let wal_opts = opts
        .wal
        .then(|| WalOptions::new(0).segment_size_bytes(opts.segment_size));
    let rec = recover(
        &opts.fs,
        &layout,
        opts.shards,
        &opts.spine,
        wal_opts,
        &opts.recovery,
    )?;
    let point = opts.recovery.point;
    let positions: Vec<ShardPosition> = rec
        .shards
        .iter()
        .map(|s| ShardPosition {
            shard: s.shard,
            lsn: Lsn(s.end_lsn),
            discarded_records: s.discarded_records,
            replayed_records: s.replayed_records,
        })
        .collect();
    let replayed_records = rec.shards.iter().map(|s| s.replayed_records).sum();
    let replayed_bytes = rec.shards.iter().map(|s| s.replayed_bytes).sum();
    let refused_records = rec.shards.iter().map(|s| s.refused_records).sum();
    let replay_time = rec.shards.iter().map(|s| s.replay_time).max().unwrap_or_default();
    let meta = rec.metadata;
    #[allow(unused_mut)]
    let mut store = Store::assemble(
        opts,
        layout,
        rec.shards,
        rec.last_epoch,
        &meta.source_offsets,
        lock,
    )?;
    store.recovery = stats::RecoveryFigures {
        epoch: rec.epoch,
        skipped_checkpoints: rec.skipped.len() as u64,
        replayed_records,
        replayed_bytes,
        discarded_records: positions.iter().map(|p| p.discarded_records).sum(),
        select_time: rec.select_time,
        restore_time: rec.restore_time,
    };
    tracing::info!(
        dir = %store.layout.root.display(),
        epoch = rec.epoch,
        checkpoint = ?rec.manifest.as_ref().map(|m| m.id),
        skipped = rec.skipped.len(),
        replayed_records,
        replayed_bytes,
        select_ms = rec.select_time.as_millis() as u64,
        restore_ms = rec.restore_time.as_millis() as u64,
        "store opened"
    );
    #[cfg(feature = "remote")]
    remote::start(&mut store, restored.is_some())?;
    Ok(RecoveredState {
        point,
        epoch: rec.epoch,
        checkpoint_id: rec.manifest.as_ref().map(|m| m.id),
        prepared_transactions: meta.prepared_transactions(),
        source_offsets: meta.source_offsets,
        connectors: meta.connectors,
        operators: meta.operators,
        discarded_records: positions.iter().map(|p| p.discarded_records).sum(),
        shards: positions,
        skipped: rec.skipped,
        removed_checkpoints: rec.removed,
        replayed_records,
        replayed_bytes,
        refused_records,
        select_time: rec.select_time,
        restore_time: rec.restore_time,
        replay_time,
        #[cfg(feature = "remote")]
        restored,
        store,
    })
}

/// An open store. See the module docs.
#[derive(Debug)]
pub struct Store {
    opts: Options,
    layout: Layout,
    shards: Vec<Shard>,
    coordinator: CheckpointCoordinator,
    watermarks: Vec<Option<Arc<Watermark>>>,
    drainer: Option<DrainerHandle>,
    /// What the open's recovery did (`Store::stats`).
    recovery: stats::RecoveryFigures,
    /// The directory's lock, shared with every shard (`Fs::lock`).
    _lock: Arc<dyn LockGuard>,
}

impl Store {
    fn assemble(
        opts: Options,
        layout: Layout,
        recovered: Vec<crate::recovery::RecoveredShard>,
        last_epoch: u64,
        offsets: &BTreeMap<String, u64>,
        lock: Arc<dyn LockGuard>,
    ) -> Result<Store> {
        // Tags this open's spine handles: a handle from another open store
        // (or an earlier open of this one) is refused, never misapplied.
        let store_tag = Uuid::new_v4().as_u128() as u32;
        // Every thread the store starts, whatever its number of spines: the
        // drainer, the worker pool, and in background mode the merge pool.
        let workers = Arc::new(Pool::new(opts.worker_threads, "statespine-worker")?);
        let merges = match opts.spine.merge_mode {
            MergeMode::Background => Some(Arc::new(Pool::new(opts.merge_threads, "statespine-merge")?)),
            MergeMode::Cooperative => None,
        };
        let mut drainer = opts
            .wal
            .then(|| ChangelogDrainer::new(opts.sync_policy).with_pool(Arc::clone(&workers)));
        let mut shards = Vec::with_capacity(recovered.len());
        let mut senders = Vec::with_capacity(recovered.len());
        let mut watermarks = Vec::with_capacity(recovered.len());
        for mut rec in recovered {
            let (tx, rx) = mpsc::channel();
            senders.push(tx);
            let (producer, watermark) = match (rec.wal.take(), drainer.as_mut()) {
                (Some(wal), Some(d)) => {
                    assert_eq!(
                        wal.next_lsn(),
                        rec.next_lsn,
                        "the shard and its WAL resume at different LSNs"
                    );
                    let (p, c) = StateChangelogBuffer::with_capacity(opts.ring_bytes, opts.ring_entries);
                    let w = d.add_shard(c, wal);
                    (Some(p), Some(w))
                }
                _ => (None, None),
            };
            watermarks.push(watermark.clone());
            shards.push(Shard::new(
                Arc::clone(&opts.fs),
                layout.clone(),
                opts.spine,
                rec,
                producer,
                watermark,
                last_epoch + 1,
                rx,
                store_tag,
                Arc::clone(&lock),
                merges.clone(),
            ));
        }
        let ck_store =
            FileSystemCheckpointStore::new(Arc::clone(&opts.fs), layout.checkpoints())?.with_pool(workers);
        let coordinator = CheckpointCoordinator::new(
            ck_store,
            opts.checkpoint.clone(),
            opts.fingerprint.clone(),
            senders,
            watermarks.clone(),
            last_epoch,
            offsets.clone(),
        )?;
        let drainer = drainer.map(ChangelogDrainer::spawn).transpose()?;
        Ok(Store {
            opts,
            layout,
            shards,
            coordinator,
            watermarks,
            drainer,
            recovery: stats::RecoveryFigures::default(),
            _lock: lock,
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.layout.root
    }

    /// The options it was opened with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Hands out the shards, one per worker thread (once; later calls get
    /// none).
    pub fn take_shards(&mut self) -> Vec<Shard> {
        std::mem::take(&mut self.shards)
    }

    /// The checkpoint coordinator, for callers that drive it themselves.
    pub fn coordinator(&mut self) -> &mut CheckpointCoordinator {
        &mut self.coordinator
    }

    pub(crate) fn coordinator_ref(&self) -> &CheckpointCoordinator {
        &self.coordinator
    }

    pub(crate) fn watermarks(&self) -> &[Option<Arc<Watermark>>] {
        &self.watermarks
    }

    pub(crate) fn recovery_figures(&self) -> stats::RecoveryFigures {
        self.recovery
    }

    /// The smallest epoch the next epoch commit or checkpoint may have. The
    /// caller chooses epochs (usually its own epoch counter); they must
    /// strictly increase over commits and checkpoints alike.
    pub fn next_epoch(&self) -> u64 {
        self.coordinator.next_epoch()
    }

    /// The newest epoch committed (the recovered one after an open).
    pub fn last_epoch(&self) -> u64 {
        self.coordinator.last_epoch()
    }

    /// Commits epoch `epoch`: every shard appends an epoch-commit record
    /// (the epoch and what `request` carries) to its own WAL at its next
    /// `poll()`, from its own thread, and this returns once every shard's
    /// record is durable: one group commit per shard, no run file, no
    /// manifest. Every write a shard made before answering belongs to this
    /// epoch (or an earlier one); recovery returns this epoch, with
    /// `request`, once it is the newest committed on every shard.
    ///
    /// `epoch` must be greater than every epoch asked for so far
    /// ([`Store::next_epoch`]); a store without a WAL commits epochs only by
    /// checkpoints.
    pub fn commit_epoch(&mut self, epoch: u64, request: &CheckpointRequest) -> Result<EpochCommitted> {
        let pending = self.coordinator.begin_commit(epoch, request)?;
        self.coordinator.finish_commit(pending)
    }

    /// [`Store::commit_epoch`] for shards the calling thread owns: it polls
    /// them itself.
    pub fn commit_epoch_inline(
        &mut self,
        shards: &mut [&mut Shard],
        epoch: u64,
        request: &CheckpointRequest,
    ) -> Result<EpochCommitted> {
        let pending = self.coordinator.begin_commit(epoch, request)?;
        for s in shards.iter_mut() {
            s.poll()?;
        }
        self.coordinator.finish_commit(pending)
    }

    /// Cuts and commits a checkpoint of epoch `epoch` (an epoch commit whose
    /// state is also materialized, so replay after it is short and the WAL
    /// below it can go), waiting for every shard to answer from its own
    /// thread's `poll()`.
    pub fn checkpoint(
        &mut self,
        epoch: u64,
        request: CheckpointRequest,
    ) -> Result<IncrementalCheckpointMetadata> {
        let pending = self.coordinator.begin(epoch, request)?;
        self.coordinator.finish(pending)
    }

    /// The same, for shards the calling thread owns (the single-thread
    /// case): it polls them itself.
    pub fn checkpoint_inline(
        &mut self,
        shards: &mut [&mut Shard],
        epoch: u64,
        request: CheckpointRequest,
    ) -> Result<IncrementalCheckpointMetadata> {
        let pending = self.coordinator.begin(epoch, request)?;
        for s in shards.iter_mut() {
            s.poll()?;
        }
        self.coordinator.finish(pending)
    }

    /// True when the configured checkpoint interval has passed.
    pub fn should_checkpoint(&self) -> bool {
        self.coordinator.should_checkpoint()
    }

    /// Bytes of every shard's WAL, as of the drainer's last round.
    pub fn wal_size(&self) -> u64 {
        self.watermarks.iter().flatten().map(|w| w.wal_size()).sum()
    }

    /// Stops the drainer after it has drained and synced what the rings hold
    /// (the shards must be dropped first, or it waits for them).
    pub fn close(mut self) -> Result<()> {
        self.stop_drainer()
    }

    /// A clean shutdown for a fast restart: takes every shard back, flushes
    /// their memtables to run files, commits a final checkpoint of `epoch`
    /// that syncs every run (no young-run deferral), then closes. The next
    /// open finds a checkpoint that covers every write: it replays nothing
    /// but the records after the least recently written spine's last write
    /// (read and skipped; a spine's replay point is its own last write). The
    /// memtables cost their write now instead of a replay then.
    /// `request` is what the final checkpoint records, as for any other:
    /// the sources' offsets as of the last write.
    pub fn shutdown(
        mut self,
        mut shards: Vec<Shard>,
        epoch: u64,
        request: CheckpointRequest,
    ) -> Result<IncrementalCheckpointMetadata> {
        for s in &mut shards {
            s.flush_all()?;
        }
        self.coordinator.eager_once();
        let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
        let meta = self.checkpoint_inline(&mut refs, epoch, request)?;
        drop(shards);
        self.stop_drainer()?;
        Ok(meta)
    }

    fn stop_drainer(&mut self) -> Result<()> {
        let housekeeping = self.coordinator.wait_housekeeping();
        match self.drainer.take() {
            Some(d) => d.stop().map(drop),
            None => Ok(()),
        }
        .and(housekeeping)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Errors here were already reported to the shards (failed
        // watermarks); dropping must not panic.
        let _ = self.stop_drainer();
    }
}
