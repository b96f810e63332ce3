//! statespine: one shard per writer thread, one spine in each.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::Duration;

use statespine::run::RunMode;
use statespine::store::{CheckpointRequest, Options, Shard, SpineId, Store};

use crate::engine::{Config, Engine, Result, Worker, touch};

pub struct Statespine {
    store: Store,
    shards: Vec<Shard>,
    mode: RunMode,
    /// The last checkpoint's epoch (the shutdown checkpoint takes the next).
    epoch: u64,
}

pub struct StatespineWorker {
    shard: Shard,
    id: SpineId,
    writes: u64,
}

/// Writes between `poll()` calls: the owner's loop slice of merge work.
const POLL_EVERY: u64 = 64;

fn options(cfg: &Config, dir: &Path) -> Options {
    Options::new(dir).shards(cfg.threads as u32)
}

fn mode(cfg: &Config) -> RunMode {
    if cfg.zset {
        RunMode::ZSet
    } else {
        RunMode::KeyValue
    }
}

impl Statespine {
    fn assemble(mut store: Store, cfg: &Config, epoch: u64) -> Self {
        let shards = store.take_shards();
        Statespine {
            store,
            shards,
            mode: mode(cfg),
            epoch,
        }
    }
}

impl StatespineWorker {
    #[inline]
    fn tick(&mut self) -> Result<()> {
        self.writes += 1;
        if self.writes.is_multiple_of(POLL_EVERY) {
            self.shard.poll()?;
        }
        Ok(())
    }
}

impl Worker for StatespineWorker {
    fn put_batch(&mut self, keys: &[[u8; 16]], values: &[[u8; 100]]) -> Result<()> {
        for (k, v) in keys.iter().zip(values) {
            self.shard.put(self.id, k, v)?;
            self.tick()?;
        }
        Ok(())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.shard.put(self.id, key, value)?;
        self.tick()
    }

    fn sync(&mut self) -> Result<()> {
        if self
            .shard
            .wait_durable(self.shard.last_lsn(), Duration::from_secs(600))
            .is_ok()
        {
            Ok(())
        } else {
            Err("statespine: WAL sync failed or timed out".into())
        }
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.shard.get(self.id, key)?.map(touch))
    }

    fn zset_add(&mut self, key: &[u8], value: &[u8], weight: i64) -> Result<()> {
        self.shard.update(self.id, key, value, weight)?;
        self.tick()
    }

    fn zset_weight(&mut self, key: &[u8], value: &[u8]) -> Result<i64> {
        let values = self.shard.spine(self.id)?.values(key)?;
        Ok(values.iter().find(|(v, _)| *v == value).map_or(0, |(_, w)| *w))
    }

    fn scan(&mut self, lo: u8, hi: u16) -> Result<u64> {
        let lo_key = [lo];
        let hi_key = u8::try_from(hi).map(|h| [h]);
        let end = match &hi_key {
            Ok(h) => Bound::Excluded(&h[..]),
            Err(_) => Bound::Unbounded,
        };
        let mut cursor = self.shard.range(self.id, (Bound::Included(&lo_key[..]), end))?;
        let mut n = 0u64;
        let mut sink = 0usize;
        while let Some(e) = cursor.current() {
            sink = sink.wrapping_add(touch(e.key)).wrapping_add(touch(e.value));
            n += 1;
            cursor.advance()?;
        }
        std::hint::black_box(sink);
        Ok(n)
    }

    fn settle(&mut self) -> Result<()> {
        Ok(self.shard.settle()?)
    }
}

impl Engine for Statespine {
    type W = StatespineWorker;

    fn describe(cfg: &Config) -> String {
        format!(
            "statespine: {} shard(s), one spine each ({:?}); defaults otherwise: 8 MiB memtable, \
             64 MiB memory budget, fan-in 4, 8 KiB merge budget per poll (every {POLL_EVERY} writes), \
             4 KiB blocks, 10 bloom bits/key, no compression, WAL on with group commit, \
             checkpoints defer runs younger than 1 s (the WAL covers them), 3 retained; \
             close = Store::shutdown (flush memtables, a final checkpoint syncing every run)",
            cfg.threads,
            mode(cfg)
        )
    }

    fn open(cfg: &Config, dir: &Path) -> Result<Self> {
        if dir.join("checkpoints").exists() {
            let state = options(cfg, dir).recover()?;
            if std::env::var_os("COMPARE_MARKS").is_some() {
                eprintln!(
                    "RECOVER: select {:?} restore {:?} replay {:?} ({} records, {} bytes)",
                    state.select_time,
                    state.restore_time,
                    state.replay_time,
                    state.replayed_records,
                    state.replayed_bytes
                );
            }
            let epoch = state.epoch;
            Ok(Statespine::assemble(state.store, cfg, epoch))
        } else {
            Ok(Statespine::assemble(options(cfg, dir).open()?, cfg, 0))
        }
    }

    fn open_checkpoint(cfg: &Config, dir: &Path, _ck: &Path) -> Result<Self> {
        // Recovery always starts from the newest checkpoint; right after one
        // the WAL holds nothing past its cut but the deferred young runs.
        Self::open(cfg, dir)
    }

    fn workers(&mut self) -> Vec<StatespineWorker> {
        let mode = self.mode;
        std::mem::take(&mut self.shards)
            .into_iter()
            .map(|mut shard| {
                let id = match shard.kv_spine("bench") {
                    Some(id) => id,
                    None => shard.create_spine("bench", mode).expect("create the spine"),
                };
                StatespineWorker { shard, id, writes: 0 }
            })
            .collect()
    }

    fn rejoin(&mut self, workers: Vec<StatespineWorker>) {
        self.shards = workers.into_iter().map(|w| w.shard).collect();
    }

    fn checkpoint(&mut self, epoch: u64, _dir: &Path) -> Result<Option<PathBuf>> {
        let mut shards = std::mem::take(&mut self.shards);
        let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
        let meta = self
            .store
            .checkpoint_inline(&mut refs, epoch, CheckpointRequest::default());
        self.shards = shards;
        let meta = meta?;
        if std::env::var_os("COMPARE_MARKS").is_some() {
            eprintln!(
                "CK epoch {epoch}: cut {:?} wal {:?} commit {:?} total {:?} {:?}",
                meta.cut_time, meta.wal_sync_time, meta.commit_time, meta.total_time, meta.commit
            );
        }
        self.epoch = epoch;
        Ok(Some(
            self.store.dir().join("checkpoints").join(meta.id.to_string()),
        ))
    }

    /// No final checkpoint: the next open starts from the last one and
    /// replays the WAL past it.
    fn abandon(self) -> Result<()> {
        let Statespine { store, shards, .. } = self;
        drop(shards);
        Ok(store.close()?)
    }

    /// The clean shutdown: flush, a final checkpoint, close.
    fn close(self) -> Result<()> {
        let Statespine {
            store, shards, epoch, ..
        } = self;
        store.shutdown(shards, epoch + 1, CheckpointRequest::default())?;
        Ok(())
    }
}
