//! [`Shard`]: the named spines one thread owns, and the shard's changelog.
//!
//! Every write is numbered with the LSN the WAL will give it (the drainer
//! appends one record per mutation, in order), pushed to the changelog, then
//! applied to the spine with that number, so each spine knows which part of
//! the log its runs already hold ([`Spine::covered_lsn`]).

use std::collections::BTreeMap;
use std::ops::RangeBounds;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use super::batch::{MAX_BATCH_BYTES, WriteBatch};
use super::stats::ShardCounters;
use super::typed::TypedScratch;
use crate::changelog::{ChangeRecord, ChangelogProducer, PushError, StateOp};
use crate::checkpoint::{COMMIT_SPINE, append_shard_offsets, commit_key};
use crate::io::{Fs, LockGuard, Pool};
use crate::recovery::{CATALOG_SPINE, Layout, RecoveredShard, encode_catalog_value};
use crate::run::RunMode;
use crate::spine::{Cursor, RunHandle, Spine, SpineOptions};
use crate::wal::Watermark;
use crate::{Error, Result};

/// Longest key a store takes: 64 KiB.
pub const MAX_KEY_BYTES: usize = 64 << 10;
/// Longest value a store takes: 128 MiB. A record larger than the
/// changelog ring takes its spill path (`changelog` module docs); the run
/// format and the WAL hold more (1 GiB), but one value costs a few copies of
/// itself in memory on its way to disk (ring spill, WAL buffer, memtable),
/// so the store promises what it has tested, not what the formats allow.
pub const MAX_VALUE_BYTES: usize = 128 << 20;
/// Longest spine name: a name is the key of its catalog record.
pub const MAX_SPINE_NAME_BYTES: usize = MAX_KEY_BYTES;

/// The position of a write in its shard's log: the write is durable once
/// the shard's WAL is durable up to it ([`Shard::wait_durable`]). Positions
/// increase by one per logged change of the shard (spine creations and
/// drops included), so only compare them, never count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LSN {}", self.0)
    }
}

/// A spine of one shard of one open store, as its writes and reads name it.
///
/// A handle carries its shard, the open store it came from and the spine's
/// mode, so a handle used on another shard (or after the store was opened
/// again) is refused with [`Error::WrongShard`] before anything is logged,
/// never written elsewhere. Writes take the typed forms, [`KvSpine`] and
/// [`ZSetSpine`], so a key-value write to a Z-set spine does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpineId {
    store: u32,
    shard: u32,
    index: u32,
    mode: RunMode,
}

impl SpineId {
    /// The shard the spine belongs to.
    pub fn shard(self) -> u32 {
        self.shard
    }

    /// The spine's number within its shard (never reused).
    pub fn index(self) -> u32 {
        self.index
    }

    /// Key-value or Z-set.
    pub fn mode(self) -> RunMode {
        self.mode
    }

    /// The key-value handle, if the spine is one.
    pub fn kv(self) -> Option<KvSpine> {
        (self.mode == RunMode::KeyValue).then_some(KvSpine(self))
    }

    /// The Z-set handle, if the spine is one.
    pub fn zset(self) -> Option<ZSetSpine> {
        (self.mode == RunMode::ZSet).then_some(ZSetSpine(self))
    }
}

/// A key-value spine: takes [`Shard::put`] and [`Shard::delete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KvSpine(SpineId);

/// A Z-set spine: takes [`Shard::update`]. A key-value write to one does
/// not compile:
///
/// ```compile_fail
/// # use std::sync::Arc;
/// # use statespine::io::MemFs;
/// # use statespine::store::Options;
/// let mut store = Options::new("/db").fs(Arc::new(MemFs::new())).open()?;
/// let mut shard = store.take_shards().remove(0);
/// let z = shard.create_zset("z")?;
/// shard.put(z, b"k", b"v")?; // expected `KvSpine`, found `ZSetSpine`
/// # Ok::<(), statespine::Error>(())
/// ```
///
/// while the same write to a key-value spine does:
///
/// ```
/// # use std::sync::Arc;
/// # use statespine::io::MemFs;
/// # use statespine::store::Options;
/// let mut store = Options::new("/db").fs(Arc::new(MemFs::new())).open()?;
/// let mut shard = store.take_shards().remove(0);
/// let kv = shard.create_kv("kv")?;
/// shard.put(kv, b"k", b"v")?;
/// # Ok::<(), statespine::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ZSetSpine(SpineId);

impl From<KvSpine> for SpineId {
    fn from(s: KvSpine) -> SpineId {
        s.0
    }
}

impl From<ZSetSpine> for SpineId {
    fn from(s: ZSetSpine) -> SpineId {
        s.0
    }
}

impl KvSpine {
    /// The untyped handle.
    pub fn id(self) -> SpineId {
        self.0
    }
}

impl ZSetSpine {
    /// The untyped handle.
    pub fn id(self) -> SpineId {
        self.0
    }
}

fn mode_name(mode: RunMode) -> &'static str {
    match mode {
        RunMode::KeyValue => "key-value",
        RunMode::ZSet => "Z-set",
    }
}

/// Refuses a key or value over its limit (nothing is logged then).
fn check_len(what: &'static str, len: usize, limit: usize) -> Result<()> {
    if len > limit {
        return Err(Error::TooLarge {
            what,
            len: len as u64,
            limit: limit as u64,
        });
    }
    Ok(())
}

#[derive(Debug)]
pub(crate) struct Named {
    pub(crate) name: String,
    pub(crate) spine: Spine,
}

/// What the coordinator asks of a shard, answered at its next `poll()`.
#[derive(Debug)]
pub(crate) enum ShardRequest {
    /// A checkpoint's cut (an epoch commit too).
    Cut(CutRequest),
    /// An epoch commit: append its record, answer with the record's LSN.
    Commit(CommitRequest),
}

/// An epoch commit's question to a shard.
#[derive(Debug)]
pub(crate) struct CommitRequest {
    pub(crate) epoch: u64,
    /// The commit record's value ([`crate::checkpoint::encode_commit_value`]).
    pub(crate) value: Arc<[u8]>,
    pub(crate) reply: Sender<CommitAnswer>,
}

/// A shard's answer to an epoch commit.
#[derive(Debug)]
pub(crate) struct CommitAnswer {
    pub(crate) shard: u32,
    /// The LSN of the shard's commit record.
    pub(crate) lsn: u64,
    /// The source offsets the shard recorded in it.
    pub(crate) offsets: BTreeMap<String, u64>,
    /// How long the shard's thread spent on it.
    pub(crate) pause: Duration,
}

/// What a [`Shard::poll`] answered: the last request it found, with the
/// shard's position at it (the LSN of its epoch-commit record, or of its
/// last change for a store without a WAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// An epoch commit of this epoch.
    EpochCommit {
        /// The epoch committed.
        epoch: u64,
        /// The shard's position at the commit.
        lsn: Lsn,
    },
    /// A checkpoint of this epoch (also an epoch commit).
    Checkpoint {
        /// The epoch of the checkpoint.
        epoch: u64,
        /// The shard's cut.
        lsn: Lsn,
    },
}

impl Answered {
    /// The epoch of the request answered.
    pub fn epoch(self) -> u64 {
        match self {
            Answered::EpochCommit { epoch, .. } | Answered::Checkpoint { epoch, .. } => epoch,
        }
    }

    /// The shard's position at it.
    pub fn lsn(self) -> Lsn {
        match self {
            Answered::EpochCommit { lsn, .. } | Answered::Checkpoint { lsn, .. } => lsn,
        }
    }
}

/// A checkpoint's question to a shard.
#[derive(Debug)]
pub(crate) struct CutRequest {
    pub(crate) epoch: u64,
    /// The epoch-commit record the cut starts with (stores with a WAL).
    pub(crate) value: Arc<[u8]>,
    /// Spines whose runs cover less than this LSN start flushing, so the
    /// WAL behind them can be truncated by a later checkpoint.
    pub(crate) flush_below: u64,
    pub(crate) reply: Sender<ShardCut>,
    /// Defer runs younger than this (`None`: include every run as it is;
    /// [`Spine::cut`]).
    pub(crate) young: Option<Duration>,
}

/// One spine at a cut.
#[derive(Debug)]
pub(crate) struct SpineCut {
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) mode: RunMode,
    pub(crate) covered_lsn: u64,
    pub(crate) runs: Vec<RunHandle>,
}

/// Retired runs a shard's cut released, dropped on the coordinator's thread.
pub(crate) type Released = Vec<RunHandle>;

/// A shard's answer: what its state at the epoch is made of.
#[derive(Debug)]
pub(crate) struct ShardCut {
    pub(crate) shard: u32,
    /// The LSN of the shard's last change before the cut: the WAL must be
    /// durable up to it before the checkpoint commits.
    pub(crate) cut_lsn: u64,
    pub(crate) next_spine_id: u32,
    pub(crate) spines: Vec<SpineCut>,
    /// The source offsets the shard recorded in its commit record.
    pub(crate) offsets: BTreeMap<String, u64>,
    /// How long the shard's thread spent on the cut.
    pub(crate) pause: Duration,
    pub(crate) released: Released,
}

/// The error of a write the stopped drainer refused; the first one is
/// also logged (a caller retrying in a loop would flood the log).
#[cold]
fn drainer_stopped(logged: &mut bool, shard: u32, layout: &Layout) -> Error {
    if !std::mem::replace(logged, true) {
        tracing::error!(shard, "write refused: the changelog drainer has stopped");
    }
    Error::Poisoned {
        path: layout.wal(shard),
        cause: "the changelog drainer has stopped".into(),
    }
}

/// One shard: named spines owned by one thread (Send, not Sync). Writes go
/// to the spine and to the shard's changelog; [`Shard::poll`] from the
/// owner's loop advances merges and answers checkpoint requests.
///
/// Every write is checked first (handle, mode, limits), then logged, then
/// applied: a write the spine would refuse never reaches the log, so replay
/// never meets a record it cannot apply.
#[derive(Debug)]
pub struct Shard {
    id: u32,
    /// The open store's tag, carried by every [`SpineId`] it hands out.
    store_tag: u32,
    fs: Arc<dyn Fs>,
    layout: Layout,
    template: SpineOptions,
    spines: Vec<Option<Named>>,
    producer: Option<ChangelogProducer>,
    watermark: Option<Arc<Watermark>>,
    next_lsn: u64,
    epoch: u64,
    inbox: Receiver<ShardRequest>,
    next_poll_spine: usize,
    /// Spines a cut asked to flush: sealed at the next polls, outside the
    /// cut's pause (a seal sorts the memtable).
    flush_pending: Vec<u32>,
    /// Directories of dropped spines, removed once the runs in them are
    /// gone (a checkpoint cut may still hold some).
    dropped_dirs: Vec<PathBuf>,
    /// Where the shard's own sources stand ([`Shard::set_source_offset`]),
    /// written into each of its commit records.
    source_offsets: BTreeMap<String, u64>,
    /// A commit record's value being built (reused).
    commit_buf: Vec<u8>,
    /// The buffers of the last batch written, for the next
    /// [`Shard::batch`].
    spare_batch: Option<WriteBatch>,
    /// Buffers of typed writes and reads (`typed` module).
    typed: TypedScratch,
    /// The store's merge threads, for every spine's background merges
    /// (`None` in cooperative mode: the owner merges).
    merge_pool: Option<Arc<Pool>>,
    /// Writes, commits and cuts answered (`Shard::stats`).
    counters: ShardCounters,
    /// The store directory's lock: held while the store or any shard lives.
    _lock: Arc<dyn LockGuard>,
}

impl Shard {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        fs: Arc<dyn Fs>,
        layout: Layout,
        template: SpineOptions,
        rec: RecoveredShard,
        producer: Option<ChangelogProducer>,
        watermark: Option<Arc<Watermark>>,
        epoch: u64,
        inbox: Receiver<ShardRequest>,
        store_tag: u32,
        lock: Arc<dyn LockGuard>,
        merge_pool: Option<Arc<Pool>>,
    ) -> Shard {
        let mut spines: Vec<Option<Named>> = (0..rec.next_spine_id).map(|_| None).collect();
        for mut s in rec.spines {
            if let Some(pool) = &merge_pool {
                s.spine.set_merge_pool(Arc::clone(pool));
            }
            spines[s.id as usize] = Some(Named {
                name: s.name,
                spine: s.spine,
            });
        }
        Shard {
            id: rec.shard,
            store_tag,
            fs,
            layout,
            template,
            spines,
            producer,
            watermark,
            next_lsn: rec.next_lsn,
            epoch,
            inbox,
            next_poll_spine: 0,
            flush_pending: Vec::new(),
            dropped_dirs: Vec::new(),
            source_offsets: BTreeMap::new(),
            commit_buf: Vec::new(),
            spare_batch: None,
            typed: TypedScratch::default(),
            merge_pool,
            counters: ShardCounters::default(),
            _lock: lock,
        }
    }

    pub(super) fn counters(&self) -> &ShardCounters {
        &self.counters
    }

    #[cfg(feature = "metrics")]
    pub(super) fn counters_mut(&mut self) -> &mut ShardCounters {
        &mut self.counters
    }

    pub(super) fn watermark(&self) -> Option<&Watermark> {
        self.watermark.as_deref()
    }

    /// Every live spine with its name, in id order.
    pub(super) fn spines_named(&self) -> impl Iterator<Item = (&str, &Spine)> {
        self.spines.iter().flatten().map(|n| (n.name.as_str(), &n.spine))
    }

    /// The shard's number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The epoch new writes belong to: one past the last epoch committed
    /// (an epoch commit or checkpoint of epoch `e` moves the shard to
    /// `e + 1`; after recovery, one past the epoch recovered).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Records where one of the shard's own sources stands: the offset
    /// after the last input whose writes this shard has made. Each epoch
    /// commit and checkpoint the shard answers records its offsets at that
    /// very point of its log, from its own thread, so an engine that feeds
    /// each shard from its own source partitions needs no barrier: write,
    /// then set the offset, and let the control thread commit whenever it
    /// likes. Recovery merges every shard's offsets into
    /// `RecoveredState::source_offsets` (name the sources per shard, say
    /// `"orders/3"`: an offset a shard records wins over the request's).
    /// No allocation once a source is known; nothing is logged.
    pub fn set_source_offset(&mut self, source: &str, offset: u64) {
        match self.source_offsets.get_mut(source) {
            Some(o) => *o = offset,
            None => {
                self.source_offsets.insert(source.to_owned(), offset);
            }
        }
    }

    /// The offsets recorded with [`Shard::set_source_offset`] since the
    /// store was opened.
    pub fn source_offsets(&self) -> &BTreeMap<String, u64> {
        &self.source_offsets
    }

    /// The position the next logged change gets.
    pub fn next_lsn(&self) -> Lsn {
        Lsn(self.next_lsn)
    }

    /// The position of the last logged change (`Lsn(0)` if none): waiting
    /// for it waits for every write made so far.
    pub fn last_lsn(&self) -> Lsn {
        Lsn(self.next_lsn - 1)
    }

    fn handle(&self, index: u32, mode: RunMode) -> SpineId {
        SpineId {
            store: self.store_tag,
            shard: self.id,
            index,
            mode,
        }
    }

    /// The spine called `name`, if it exists.
    pub fn spine_id(&self, name: &str) -> Option<SpineId> {
        self.spines.iter().enumerate().find_map(|(i, s)| {
            s.as_ref()
                .filter(|n| n.name == name)
                .map(|n| self.handle(i as u32, n.spine.mode()))
        })
    }

    /// The key-value spine called `name`, if it exists and is one.
    pub fn kv_spine(&self, name: &str) -> Option<KvSpine> {
        self.spine_id(name).and_then(SpineId::kv)
    }

    /// The Z-set spine called `name`, if it exists and is one.
    pub fn zset_spine(&self, name: &str) -> Option<ZSetSpine> {
        self.spine_id(name).and_then(SpineId::zset)
    }

    /// Names and handles of the live spines.
    pub fn spine_names(&self) -> Vec<(String, SpineId)> {
        self.spines
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref()
                    .map(|n| (n.name.clone(), self.handle(i as u32, n.spine.mode())))
            })
            .collect()
    }

    /// Creates a key-value spine called `name`, or returns the existing one.
    pub fn create_kv(&mut self, name: &str) -> Result<KvSpine> {
        Ok(KvSpine(self.create_spine(name, RunMode::KeyValue)?))
    }

    /// Creates a Z-set spine called `name`, or returns the existing one.
    pub fn create_zset(&mut self, name: &str) -> Result<ZSetSpine> {
        Ok(ZSetSpine(self.create_spine(name, RunMode::ZSet)?))
    }

    /// Creates a spine called `name` (or returns the existing one, which
    /// must be of the same mode: [`Error::WrongMode`] otherwise). Cheap: a
    /// directory and a catalog record.
    pub fn create_spine(&mut self, name: &str, mode: RunMode) -> Result<SpineId> {
        if let Some(id) = self.spine_id(name) {
            if id.mode != mode {
                return Err(Error::WrongMode {
                    name: name.to_owned(),
                    mode: mode_name(id.mode),
                });
            }
            return Ok(id);
        }
        check_len("spine name", name.len(), MAX_SPINE_NAME_BYTES)?;
        let id = self.spines.len() as u32;
        if id >= COMMIT_SPINE {
            // The two ids above are the catalog's and the commit records'.
            return Err(Error::LimitReached {
                what: "spines in a shard",
                limit: u64::from(COMMIT_SPINE),
            });
        }
        // The directory first: a failure here leaves nothing logged.
        let dir = self.layout.spine(self.id, id);
        if self.fs.exists(&dir)? {
            self.fs.remove_dir_all(&dir)?;
        }
        // Empty, it covers everything up to its creation record.
        let opts = self.template.with_mode(mode);
        let mut spine = Spine::open(Arc::clone(&self.fs), dir, opts, &[], self.next_lsn)?;
        if let Some(pool) = &self.merge_pool {
            spine.set_merge_pool(Arc::clone(pool));
        }
        let lsn = self.log(
            CATALOG_SPINE,
            StateOp::Put,
            name.as_bytes(),
            &encode_catalog_value(id, mode),
        )?;
        debug_assert_eq!(spine.covered_lsn(), lsn);
        self.spines.push(Some(Named {
            name: name.to_owned(),
            spine,
        }));
        Ok(self.handle(id, mode))
    }

    /// Drops a spine: its name is free again, its writes are gone, and its
    /// files go once nothing refers to them (a checkpoint being cut keeps
    /// what it took; retained checkpoints keep their own links). Returns
    /// the position of the drop's catalog record.
    pub fn drop_spine(&mut self, id: impl Into<SpineId>) -> Result<Lsn> {
        let id = id.into();
        let name = self.named(id)?.name.clone();
        let lsn = self.log(CATALOG_SPINE, StateOp::Delete, name.as_bytes(), &[])?;
        if let Some(n) = self.spines[id.index as usize].take() {
            let (gone, d) = (n.spine.stats(), &mut self.counters.dropped);
            d.bytes_put += gone.bytes_put;
            d.bytes_written += gone.bytes_written;
            d.bytes_merged += gone.bytes_merged;
            d.seals += gone.seals;
            d.merges += gone.merges;
            d.stalled_writes += gone.stalled_writes;
            n.spine.destroy();
        }
        self.flush_pending.retain(|&i| i != id.index);
        self.dropped_dirs.push(self.layout.spine(self.id, id.index));
        Ok(Lsn(lsn))
    }

    /// The live spine `id` names, if it is one of this shard of this
    /// store (the check every call that takes a handle starts with).
    fn named(&self, id: SpineId) -> Result<&Named> {
        if id.shard != self.id || id.store != self.store_tag {
            return Err(Error::WrongShard {
                spine: id.index,
                owner: id.shard,
                shard: self.id,
                same_store: id.store == self.store_tag,
            });
        }
        let Some(Some(n)) = self.spines.get(id.index as usize) else {
            return Err(Error::NoSuchSpine {
                shard: self.id,
                spine: id.index,
            });
        };
        // A handle is made from a live spine, and indices are never reused:
        // its mode is the spine's.
        assert_eq!(
            n.spine.mode(),
            id.mode,
            "shard {}: spine {} changed mode under its handle",
            self.id,
            id.index
        );
        Ok(n)
    }

    /// [`Shard::named`], for a write or a cursor.
    fn named_mut(&mut self, id: SpineId) -> Result<&mut Named> {
        self.named(id)?;
        match self.spines.get_mut(id.index as usize) {
            Some(Some(n)) => Ok(n),
            _ => unreachable!("spine {} checked live above", id.index),
        }
    }

    /// The spine, for every read (`get`, cursors, typed reads).
    pub fn spine(&self, id: impl Into<SpineId>) -> Result<&Spine> {
        Ok(&self.named(id.into())?.spine)
    }

    /// Numbers a mutation, pushes it to the changelog; returns its LSN. The
    /// caller has checked everything the spine could refuse.
    #[inline]
    fn log(&mut self, spine: u32, op: StateOp, key: &[u8], value: &[u8]) -> Result<u64> {
        self.log_in(self.epoch, spine, op, key, value)
    }

    /// [`Shard::log`] with the record's epoch given (a commit record carries
    /// the epoch it commits).
    #[inline]
    fn log_in(&mut self, epoch: u64, spine: u32, op: StateOp, key: &[u8], value: &[u8]) -> Result<u64> {
        let lsn = self.next_lsn;
        if let Some(p) = &mut self.producer {
            let rec = ChangeRecord {
                spine,
                epoch,
                op,
                key,
                value,
            };
            // The ring checks that `lsn` follows the last record it carried:
            // the shard's count and the log's cannot drift apart.
            p.push_at(lsn, &rec).map_err(|e| match e {
                PushError::Closed => {
                    drainer_stopped(&mut self.counters.drainer_stop_logged, self.id, &self.layout)
                }
                PushError::TooLarge | PushError::Full => {
                    // `push` waits while full, and the limits checked above
                    // are far below what the ring can carry.
                    unreachable!("shard {}: changelog refused a checked record: {e:?}", self.id)
                }
            })?;
        }
        self.next_lsn += 1;
        Ok(lsn)
    }

    /// Check, then log, then apply (type docs).
    #[inline]
    fn write_one(&mut self, id: SpineId, op: StateOp, key: &[u8], value: &[u8]) -> Result<Lsn> {
        self.named(id)?;
        check_len("key", key.len(), MAX_KEY_BYTES)?;
        check_len("value", value.len(), MAX_VALUE_BYTES)?;
        let lsn = self.log(id.index, op, key, value)?;
        self.counters.writes += 1;
        let n = self.named_mut(id)?;
        n.spine.set_lsn(lsn);
        // Logged: the record is the write now. A refusal here would be a
        // record replay cannot apply, which the checks above rule out; an
        // error is I/O from a merge the write started, and the write stands.
        match op {
            StateOp::Put => n.spine.put(key, value),
            StateOp::Delete => n.spine.delete(key),
            StateOp::Update(w) => n.spine.update(key, value, w),
            StateOp::Batch => unreachable!("a batch is written by Shard::write"),
        }?;
        Ok(Lsn(lsn))
    }

    /// Sets `key` to `value` in a key-value spine; returns the write's
    /// position in the log.
    pub fn put(&mut self, id: KvSpine, key: &[u8], value: &[u8]) -> Result<Lsn> {
        self.write_one(id.0, StateOp::Put, key, value)
    }

    /// Deletes `key` from a key-value spine.
    pub fn delete(&mut self, id: KvSpine, key: &[u8]) -> Result<Lsn> {
        self.write_one(id.0, StateOp::Delete, key, &[])
    }

    /// Adds `weight` to `(key, value)` in a Z-set spine.
    pub fn update(&mut self, id: ZSetSpine, key: &[u8], value: &[u8], weight: i64) -> Result<Lsn> {
        self.write_one(id.0, StateOp::Update(weight), key, value)
    }

    pub(super) fn typed_scratch(&mut self) -> &mut TypedScratch {
        &mut self.typed
    }

    pub(super) fn typed_scratch_ref(&self) -> &TypedScratch {
        &self.typed
    }

    /// An empty [`WriteBatch`] (reusing the buffers of the last one written).
    pub fn batch(&mut self) -> WriteBatch {
        let mut b = self.spare_batch.take().unwrap_or_default();
        b.clear();
        b
    }

    /// Writes `batch` as one change: checks all of it (handles, limits,
    /// the record's size), logs it as one record, then applies its writes
    /// in order, all numbered with the returned position. A refused batch
    /// changes nothing; recovery replays all of a logged batch or none. An
    /// empty batch logs nothing and returns [`Shard::last_lsn`].
    pub fn write(&mut self, batch: WriteBatch) -> Result<Lsn> {
        let done = self.write_batch(&batch);
        self.spare_batch = Some(batch);
        done
    }

    fn write_batch(&mut self, batch: &WriteBatch) -> Result<Lsn> {
        if batch.is_empty() {
            return Ok(self.last_lsn());
        }
        for op in &batch.ops {
            self.named(op.id)?;
            check_len("key", op.key.len(), MAX_KEY_BYTES)?;
            check_len("value", op.value.len(), MAX_VALUE_BYTES)?;
        }
        check_len("write batch", batch.record.len(), MAX_BATCH_BYTES)?;
        let lsn = self.log(0, StateOp::Batch, &[], &batch.record)?;
        self.counters.writes += batch.ops.len() as u64;
        self.counters.batches += 1;
        // Logged: the batch is written now (the single write's reasoning);
        // no seal between its writes, so no spine reports the LSN covered
        // with part of the batch still in memory.
        let mut applied = Ok(());
        for op in &batch.ops {
            let (key, value) = batch.bytes(op);
            let n = self.named_mut(op.id)?;
            n.spine.hold_seal(true)?;
            n.spine.set_lsn(lsn);
            applied = match op.op {
                StateOp::Put => n.spine.put(key, value),
                StateOp::Delete => n.spine.delete(key),
                StateOp::Update(w) => n.spine.update(key, value, w),
                StateOp::Batch => unreachable!("a batch holds single writes"),
            };
            if applied.is_err() {
                break;
            }
        }
        // Every spine is released, whatever fails: the first error wins.
        let mut released = Ok(());
        for op in &batch.ops {
            let r = self.named_mut(op.id).and_then(|n| n.spine.hold_seal(false));
            released = released.and(r);
        }
        applied.and(released).map(|()| Lsn(lsn))
    }

    /// The value of `key` in a key-value spine.
    pub fn get(&self, id: KvSpine, key: &[u8]) -> Result<Option<&[u8]>> {
        self.spine(id)?.get(key)
    }

    /// A cursor over the whole spine, in key order. Borrows the shard
    /// shared: cursors over several spines (or the same one) and point reads
    /// can be open at once, as in the inner loop of a join.
    pub fn cursor(&self, id: impl Into<SpineId>) -> Result<Cursor<'_>> {
        self.spine(id)?.cursor()
    }

    /// A cursor over the keys in `range` (shared borrow, as [`Shard::cursor`]).
    pub fn range<R: RangeBounds<[u8]>>(&self, id: impl Into<SpineId>, range: R) -> Result<Cursor<'_>> {
        self.spine(id)?.range(range)
    }

    /// A cursor over the keys starting with `prefix` (shared borrow, as
    /// [`Shard::cursor`]).
    pub fn prefix(&self, id: impl Into<SpineId>, prefix: &[u8]) -> Result<Cursor<'_>> {
        self.spine(id)?.prefix(prefix)
    }

    /// The position up to which the WAL is durable (with no WAL, durability
    /// is the checkpoint's: `Lsn(0)`).
    pub fn durable_lsn(&self) -> Lsn {
        Lsn(self.watermark.as_ref().map_or(0, |w| w.durable_lsn()))
    }

    /// Waits until the WAL is durable up to `lsn` (a position a write
    /// returned, or [`Shard::last_lsn`] for everything so far). Asks the
    /// drainer for a sync now rather than at its next interval.
    ///
    /// Durable means: recovery to [`crate::recovery::RecoveryPoint::Latest`]
    /// returns it after any crash; the default recovery point returns it
    /// once its epoch is committed ([`crate::store::Store::commit_epoch`]).
    ///
    /// `Ok` once durable; [`Error::TimedOut`] if `timeout` passed first
    /// (the write may still become durable); [`Error::Poisoned`] if the log
    /// failed (fail-stop: the write never will be, reopen to recover);
    /// [`Error::NotSupported`] for a store without a WAL, whose writes are
    /// durable only once a checkpoint holding them commits;
    /// [`Error::InvalidArgument`] for a position not written yet.
    pub fn wait_durable(&self, lsn: Lsn, timeout: Duration) -> Result<()> {
        let Some(w) = &self.watermark else {
            return Err(Error::NotSupported(
                "a store without a WAL makes writes durable only by checkpoints".into(),
            ));
        };
        if lsn.0 >= self.next_lsn {
            return Err(Error::InvalidArgument(format!(
                "shard {}: {lsn} is not written yet (the last is {})",
                self.id,
                self.last_lsn()
            )));
        }
        w.request_sync(lsn.0);
        w.wait_durable(lsn.0, timeout)
    }

    /// Flushes every spine's memtables to run files now (point-in-time
    /// recovery; a checkpoint without a WAL).
    pub fn flush_all(&mut self) -> Result<()> {
        self.spines.iter_mut().flatten().try_for_each(|n| n.spine.flush())
    }

    /// Runs every spine's pending merges to the end now, on this thread
    /// (before a read-heavy phase, or a benchmark's "settled" state; the
    /// owner's loop never needs it, `poll` does the same work in slices).
    pub fn settle(&mut self) -> Result<()> {
        self.spines
            .iter_mut()
            .flatten()
            .try_for_each(|n| n.spine.settle())
    }

    /// Merges each spine into a single run now, on this thread: its
    /// memtables flushed, every pending merge run to its end, then all its
    /// runs merged into one (the operator's `statespine compact`; a spine
    /// already one run is left alone). Reads are as fast as they get and
    /// overwritten or cancelled entries are gone; it rewrites every byte,
    /// so a service calls it rarely if ever.
    pub fn compact(&mut self) -> Result<()> {
        self.spines
            .iter_mut()
            .flatten()
            .try_for_each(|n| n.spine.compact())
    }

    /// The owner's slice of housekeeping: answers the epoch commits and
    /// checkpoint cuts the coordinator asked for (short pauses: a commit
    /// appends one record, a cut takes run handles; the memtables stay, the
    /// WAL covers them), then advances one spine's merges by its default
    /// budget. Returns the last request answered, if any.
    pub fn poll(&mut self) -> Result<Option<Answered>> {
        let mut answered = None;
        while let Ok(req) = self.inbox.try_recv() {
            answered = Some(match req {
                ShardRequest::Cut(req) => self.answer(req)?,
                ShardRequest::Commit(req) => self.commit(req)?,
            });
        }
        if let Some(id) = self.flush_pending.pop()
            && let Some(Some(n)) = self.spines.get_mut(id as usize)
        {
            n.spine.request_flush()?;
        }
        let n = self.spines.len();
        for k in 0..n {
            let i = (self.next_poll_spine + k) % n;
            if let Some(named) = &mut self.spines[i] {
                let budget = named.spine.options().merge_budget();
                let step = named.spine.merge_step(budget)?;
                if step.bytes > 0 || step.completed > 0 {
                    self.next_poll_spine = i + 1;
                    break;
                }
            }
        }
        #[cfg(feature = "metrics")]
        self.publish_if_due();
        Ok(answered)
    }

    /// Appends the epoch-commit record of `epoch` (stores with a WAL) and
    /// moves the shard to the next epoch; returns the record's LSN, or the
    /// last change's without a WAL.
    fn append_commit(&mut self, epoch: u64, value: &[u8]) -> Result<u64> {
        if self.watermark.is_none() {
            self.epoch = self.epoch.max(epoch + 1);
            return Ok(self.next_lsn - 1);
        }
        // Epochs strictly increase (the coordinator checks), so the WAL's
        // commit records do too: recovery relies on it.
        assert!(
            epoch >= self.epoch,
            "shard {}: commit of epoch {epoch} while at epoch {}",
            self.id,
            self.epoch
        );
        let mut buf = std::mem::take(&mut self.commit_buf);
        buf.clear();
        buf.extend_from_slice(value);
        append_shard_offsets(&mut buf, &self.source_offsets);
        let logged = self.log_in(epoch, COMMIT_SPINE, StateOp::Put, &commit_key(epoch), &buf);
        self.commit_buf = buf;
        let lsn = logged?;
        // The committer waits for it: no need to wait for the drainer's
        // interval.
        if let Some(w) = &self.watermark {
            w.request_sync(lsn);
        }
        self.epoch = epoch + 1;
        Ok(lsn)
    }

    fn commit(&mut self, req: CommitRequest) -> Result<Answered> {
        let start = Instant::now();
        let lsn = self.append_commit(req.epoch, &req.value)?;
        let pause = start.elapsed();
        self.counters.commits_answered += 1;
        self.counters.answer_pauses.record(pause);
        // A coordinator that gave up waiting is not this shard's failure.
        let _ = req.reply.send(CommitAnswer {
            shard: self.id,
            lsn,
            offsets: self.source_offsets.clone(),
            pause,
        });
        Ok(Answered::EpochCommit {
            epoch: req.epoch,
            lsn: Lsn(lsn),
        })
    }

    /// Records the cut (module docs of `store`): runs and covered LSNs of
    /// every spine, the LSN of the last write of the epoch.
    fn answer(&mut self, req: CutRequest) -> Result<Answered> {
        let start = Instant::now();
        let with_wal = self.producer.is_some();
        let cut_lsn = self.append_commit(req.epoch, &req.value)?;
        let mut spines = Vec::with_capacity(self.spines.len());
        let mut released = Vec::new();
        for (i, named) in self.spines.iter_mut().enumerate() {
            let Some(n) = named else { continue };
            if !with_wal {
                // Nothing else would bring the memtables back: flush.
                n.spine.flush()?;
            } else if n.spine.covered_lsn() < req.flush_below {
                self.flush_pending.push(i as u32);
            }
            // An idle spine's runs cover the log up to the cut: it does not
            // hold the WAL's truncation (or replay's start) back.
            n.spine.mark_quiet(cut_lsn);
            let cut = n.spine.cut(if with_wal { req.young } else { None });
            // Every write of the spine precedes the commit record at the cut.
            assert!(
                cut.covered_lsn <= cut_lsn,
                "spine {i} covers LSNs past its cut {cut_lsn}"
            );
            released.extend(cut.released);
            spines.push(SpineCut {
                id: i as u32,
                name: n.name.clone(),
                mode: n.spine.mode(),
                covered_lsn: cut.covered_lsn,
                runs: cut.runs,
            });
        }
        let pause = start.elapsed();
        self.counters.cuts_answered += 1;
        self.counters.answer_pauses.record(pause);
        let cut = ShardCut {
            shard: self.id,
            cut_lsn,
            next_spine_id: self.spines.len() as u32,
            spines,
            offsets: self.source_offsets.clone(),
            pause,
            released,
        };
        // A coordinator that gave up waiting is not this shard's failure.
        let _ = req.reply.send(cut);
        self.remove_dropped_dirs();
        Ok(Answered::Checkpoint {
            epoch: req.epoch,
            lsn: Lsn(cut_lsn),
        })
    }

    /// Removes the directories of dropped spines whose runs are all gone
    /// (the last cut holding one released it by now, or will by the next).
    /// Cleanup: a directory that fails to go is tried again at the next
    /// cut, and the next open removes it anyway.
    fn remove_dropped_dirs(&mut self) {
        let fs = &self.fs;
        self.dropped_dirs.retain(|dir| {
            let empty = match fs.list(dir) {
                Ok(names) => names.is_empty(),
                Err(_) => !fs.exists(dir).unwrap_or(true),
            };
            !(empty && (fs.remove_dir_all(dir).is_ok() || !fs.exists(dir).unwrap_or(true)))
        });
    }
}
