//! [`Shard`]: the named spines one thread owns, and the shard's changelog.
//!
//! Every write is numbered with the LSN the WAL will give it (the drainer
//! appends one record per mutation, in order), pushed to the changelog, then
//! applied to the spine with that number, so each spine knows which part of
//! the log its runs already hold ([`Spine::covered_seq`]).

use std::ops::RangeBounds;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use crate::changelog::{ChangeRecord, ChangelogProducer, StateOp};
use crate::io::Fs;
use crate::recovery::{CATALOG_SPINE, Layout, RecoveredShard, encode_catalog_value};
use crate::run::RunMode;
use crate::spine::{Cursor, RunHandle, Spine, SpineOptions};
use crate::wal::Watermark;
use crate::{Error, Result};

/// A spine of a shard, as its writes and reads name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpineId(pub u32);

#[derive(Debug)]
pub(crate) struct Named {
    pub(crate) name: String,
    pub(crate) spine: Spine,
}

/// A checkpoint's question to a shard.
#[derive(Debug)]
pub(crate) struct CutRequest {
    pub(crate) epoch: u64,
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
    pub(crate) covered: u64,
    pub(crate) runs: Vec<RunHandle>,
}

/// Retired runs a shard's cut released, dropped on the coordinator's thread.
pub(crate) type Released = Vec<RunHandle>;

/// A shard's answer: what its state at the epoch is made of.
#[derive(Debug)]
pub(crate) struct ShardCut {
    pub(crate) shard: u32,
    pub(crate) cut_lsn: u64,
    /// Changelog records pushed up to the cut (what must be durable).
    pub(crate) records: u64,
    pub(crate) next_spine_id: u32,
    pub(crate) spines: Vec<SpineCut>,
    /// How long the shard's thread spent on the cut.
    pub(crate) pause: Duration,
    pub(crate) released: Released,
}

/// One shard: named spines owned by one thread (Send, not Sync). Writes go
/// to the spine and to the shard's changelog; [`Shard::poll`] from the
/// owner's loop advances merges and answers checkpoint requests.
#[derive(Debug)]
pub struct Shard {
    id: u32,
    fs: Arc<dyn Fs>,
    layout: Layout,
    template: SpineOptions,
    spines: Vec<Option<Named>>,
    producer: Option<ChangelogProducer>,
    watermark: Option<Arc<Watermark>>,
    next_lsn: u64,
    /// LSN the runs of every spine are known to cover (after a roll back).
    covered_floor: u64,
    epoch: u64,
    inbox: Receiver<CutRequest>,
    next_poll_spine: usize,
    /// Spines a cut asked to flush: sealed at the next polls, outside the
    /// cut's pause (a seal sorts the memtable).
    flush_pending: Vec<u32>,
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
        covered_floor: u64,
        inbox: Receiver<CutRequest>,
    ) -> Shard {
        let mut spines: Vec<Option<Named>> = (0..rec.next_spine_id).map(|_| None).collect();
        for s in rec.spines {
            spines[s.id as usize] = Some(Named {
                name: s.name,
                spine: s.spine,
            });
        }
        Shard {
            id: rec.shard,
            fs,
            layout,
            template,
            spines,
            producer,
            watermark,
            next_lsn: rec.next_lsn,
            covered_floor,
            epoch,
            inbox,
            next_poll_spine: 0,
            flush_pending: Vec::new(),
        }
    }

    /// The shard's number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The epoch new writes belong to (a checkpoint of epoch `e` moves the
    /// shard to `e + 1`).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// LSN the next write gets.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// The spine called `name`, if it exists.
    pub fn spine_id(&self, name: &str) -> Option<SpineId> {
        self.spines
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.as_ref().filter(|n| n.name == name).map(|_| SpineId(i as u32)))
    }

    /// Names and ids of the live spines.
    pub fn spine_names(&self) -> Vec<(String, SpineId)> {
        self.spines
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|n| (n.name.clone(), SpineId(i as u32))))
            .collect()
    }

    /// Creates a spine called `name` (or returns the existing one, which
    /// must be of the same mode). Cheap: a directory and a catalog record.
    pub fn create_spine(&mut self, name: &str, mode: RunMode) -> Result<SpineId> {
        if let Some(id) = self.spine_id(name) {
            let have = self.spine(id)?.mode();
            if have != mode {
                return Err(Error::InvalidArgument(format!(
                    "spine {name:?} exists as {have:?}"
                )));
            }
            return Ok(id);
        }
        let id = self.spines.len() as u32;
        if id == CATALOG_SPINE {
            return Err(Error::InvalidArgument(
                "a shard holds at most 2^32 - 2 spines".into(),
            ));
        }
        let lsn = self.log(
            CATALOG_SPINE,
            StateOp::Put,
            name.as_bytes(),
            &encode_catalog_value(id, mode),
        )?;
        let dir = self.layout.spine(self.id, id);
        if self.fs.exists(&dir)? {
            self.fs.remove_dir_all(&dir)?;
        }
        let opts = self.template.with_mode(mode);
        let spine = Spine::open(Arc::clone(&self.fs), dir, opts, &[], lsn)?;
        self.spines.push(Some(Named {
            name: name.to_owned(),
            spine,
        }));
        Ok(SpineId(id))
    }

    /// Drops a spine and its files (checkpoints keep their own links).
    pub fn drop_spine(&mut self, id: SpineId) -> Result<()> {
        let name = self.named(id)?.name.clone();
        self.log(CATALOG_SPINE, StateOp::Delete, name.as_bytes(), &[])?;
        self.spines[id.0 as usize] = None;
        let dir = self.layout.spine(self.id, id.0);
        if self.fs.exists(&dir)? {
            self.fs.remove_dir_all(&dir)?;
        }
        Ok(())
    }

    fn named(&self, id: SpineId) -> Result<&Named> {
        self.spines
            .get(id.0 as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| Error::InvalidArgument(format!("no spine {} in shard {}", id.0, self.id)))
    }

    /// The spine, for every read (`get`, cursors, typed reads).
    pub fn spine(&self, id: SpineId) -> Result<&Spine> {
        Ok(&self.named(id)?.spine)
    }

    /// Numbers a mutation, pushes it to the changelog; returns its LSN.
    #[inline]
    fn log(&mut self, spine: u32, op: StateOp, key: &[u8], value: &[u8]) -> Result<u64> {
        let lsn = self.next_lsn;
        if let Some(p) = &mut self.producer {
            let rec = ChangeRecord {
                spine,
                epoch: self.epoch,
                op,
                key,
                value,
            };
            p.push(&rec)
                .map_err(|e| Error::InvalidArgument(format!("shard {} changelog: {e:?}", self.id)))?;
        }
        self.next_lsn += 1;
        Ok(lsn)
    }

    #[inline]
    fn write(&mut self, id: SpineId, op: StateOp, key: &[u8], value: &[u8]) -> Result<()> {
        self.named(id)?;
        let lsn = self.log(id.0, op, key, value)?;
        let Some(Some(n)) = self.spines.get_mut(id.0 as usize) else {
            return Err(Error::InvalidArgument(format!("no spine {}", id.0)));
        };
        n.spine.set_seq(lsn);
        match op {
            StateOp::Put => n.spine.put(key, value),
            StateOp::Delete => n.spine.delete(key),
            StateOp::Update(w) => n.spine.update(key, value, w),
        }
    }

    /// Sets `key` to `value` in a key-value spine.
    pub fn put(&mut self, id: SpineId, key: &[u8], value: &[u8]) -> Result<()> {
        self.write(id, StateOp::Put, key, value)
    }

    /// Deletes `key` from a key-value spine.
    pub fn delete(&mut self, id: SpineId, key: &[u8]) -> Result<()> {
        self.write(id, StateOp::Delete, key, &[])
    }

    /// Adds `weight` to `(key, value)` in a Z-set spine.
    pub fn update(&mut self, id: SpineId, key: &[u8], value: &[u8], weight: i64) -> Result<()> {
        self.write(id, StateOp::Update(weight), key, value)
    }

    /// The value of `key` in a key-value spine.
    pub fn get(&self, id: SpineId, key: &[u8]) -> Result<Option<&[u8]>> {
        self.spine(id)?.get(key)
    }

    fn spine_mut(&mut self, id: SpineId) -> Result<&mut Spine> {
        let shard = self.id;
        self.spines
            .get_mut(id.0 as usize)
            .and_then(Option::as_mut)
            .map(|n| &mut n.spine)
            .ok_or_else(|| Error::InvalidArgument(format!("no spine {} in shard {shard}", id.0)))
    }

    /// A cursor over the whole spine, in key order.
    pub fn cursor(&mut self, id: SpineId) -> Result<Cursor<'_>> {
        self.spine_mut(id)?.cursor()
    }

    /// A cursor over the keys in `range`.
    pub fn range<R: RangeBounds<[u8]>>(&mut self, id: SpineId, range: R) -> Result<Cursor<'_>> {
        self.spine_mut(id)?.range(range)
    }

    /// A cursor over the keys starting with `prefix`.
    pub fn prefix(&mut self, id: SpineId, prefix: &[u8]) -> Result<Cursor<'_>> {
        self.spine_mut(id)?.prefix(prefix)
    }

    /// Changelog records pushed so far (compare with [`Shard::durable_records`]).
    pub fn pushed(&self) -> u64 {
        self.producer.as_ref().map_or(0, ChangelogProducer::pushed)
    }

    /// Records made durable by the WAL (all of them with no WAL: durability
    /// is then the checkpoint's).
    pub fn durable_records(&self) -> u64 {
        self.watermark.as_ref().map_or(0, |w| w.durable_records())
    }

    /// Waits until every write made so far is durable in the WAL; false on
    /// timeout or a failed log.
    pub fn wait_durable(&self, timeout: Duration) -> bool {
        match &self.watermark {
            Some(w) => {
                w.request_sync(self.pushed());
                w.wait_durable(self.pushed(), timeout)
            }
            None => false,
        }
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

    /// The owner's slice of housekeeping: answers a pending checkpoint
    /// request (a short pause: the memtables stay, the WAL covers them) and
    /// advances one spine's merges by its default budget. Returns true if a
    /// checkpoint was answered.
    pub fn poll(&mut self) -> Result<bool> {
        let answered = match self.inbox.try_recv() {
            Ok(req) => {
                self.answer(req)?;
                true
            }
            Err(_) => false,
        };
        if let Some(id) = self.flush_pending.pop() {
            if let Some(Some(n)) = self.spines.get_mut(id as usize) {
                n.spine.request_flush()?;
            }
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
        Ok(answered)
    }

    /// Records the cut (module docs of `store`): runs and covered LSNs of
    /// every spine, the LSN of the last write of the epoch.
    fn answer(&mut self, req: CutRequest) -> Result<()> {
        let start = Instant::now();
        let with_wal = self.producer.is_some();
        let mut spines = Vec::with_capacity(self.spines.len());
        let mut released = Vec::new();
        for (i, named) in self.spines.iter_mut().enumerate() {
            let Some(n) = named else { continue };
            if !with_wal {
                // Nothing else would bring the memtables back: flush.
                n.spine.flush()?;
            } else if n.spine.covered_seq().max(self.covered_floor) < req.flush_below {
                self.flush_pending.push(i as u32);
            }
            let cut = n.spine.cut(if with_wal { req.young } else { None });
            released.extend(cut.released);
            spines.push(SpineCut {
                id: i as u32,
                name: n.name.clone(),
                mode: n.spine.mode(),
                covered: cut.covered_seq.max(self.covered_floor),
                runs: cut.runs,
            });
        }
        let cut = ShardCut {
            shard: self.id,
            cut_lsn: self.next_lsn - 1,
            records: self.pushed(),
            next_spine_id: self.spines.len() as u32,
            spines,
            pause: Duration::ZERO,
            released,
        };
        self.epoch = self.epoch.max(req.epoch + 1);
        let cut = ShardCut {
            pause: start.elapsed(),
            ..cut
        };
        // A coordinator that gave up waiting is not this shard's failure.
        let _ = req.reply.send(cut);
        Ok(())
    }
}
