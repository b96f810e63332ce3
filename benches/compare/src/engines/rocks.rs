//! RocksDB through the `rocksdb` crate, close to its defaults.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{BlockBasedOptions, Cache, DB, MergeOperands, Options, WaitForCompactOptions, WriteBatch};

use crate::engine::{Config, Engine, Result, Worker, touch};

pub struct Rocks {
    db: Arc<DB>,
    threads: usize,
}

pub struct RocksWorker {
    db: Arc<DB>,
    key: Vec<u8>,
}

const CACHE: usize = 256 << 20;

fn add_weights(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut w = existing.map_or(0, weight);
    for op in operands {
        w = w.wrapping_add(weight(op));
    }
    Some(w.to_le_bytes().to_vec())
}

fn weight(b: &[u8]) -> i64 {
    b.try_into().map_or(0, i64::from_le_bytes)
}

fn options(cfg: &Config) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&Cache::new_lru_cache(CACHE));
    table.set_bloom_filter(10.0, false);
    opts.set_block_based_table_factory(&table);
    if cfg.zset {
        opts.set_merge_operator_associative("add_i64", add_weights);
    }
    opts
}

/// The Z-set pair as one RocksDB key: key then value.
fn pair_key(buf: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    buf.clear();
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
}

impl Worker for RocksWorker {
    fn put_batch(&mut self, keys: &[[u8; 16]], values: &[[u8; 100]]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (k, v) in keys.iter().zip(values) {
            batch.put(k, v);
        }
        Ok(self.db.write(batch)?)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.db.put(key, value)?)
    }

    fn sync(&mut self) -> Result<()> {
        Ok(self.db.flush_wal(true)?)
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.db.get_pinned(key)?.map(|v| touch(&v)))
    }

    fn zset_add(&mut self, key: &[u8], value: &[u8], weight: i64) -> Result<()> {
        pair_key(&mut self.key, key, value);
        Ok(self.db.merge(&self.key, weight.to_le_bytes())?)
    }

    fn zset_weight(&mut self, key: &[u8], value: &[u8]) -> Result<i64> {
        pair_key(&mut self.key, key, value);
        Ok(self.db.get_pinned(&self.key)?.map_or(0, |v| weight(&v)))
    }

    fn scan(&mut self, lo: u8, hi: u16) -> Result<u64> {
        let mut it = self.db.raw_iterator();
        it.seek([lo]);
        let mut n = 0u64;
        let mut sink = 0usize;
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if u16::from(k[0]) >= hi {
                break;
            }
            sink = sink.wrapping_add(touch(k)).wrapping_add(touch(v));
            n += 1;
            it.next();
        }
        it.status()?;
        std::hint::black_box(sink);
        Ok(n)
    }

    fn settle(&mut self) -> Result<()> {
        self.db.flush()?;
        let mut wait = WaitForCompactOptions::default();
        wait.set_flush(true);
        Ok(self.db.wait_for_compact(&wait)?)
    }
}

impl Engine for Rocks {
    type W = RocksWorker;

    fn describe(cfg: &Config) -> String {
        format!(
            "RocksDB 11.8.1 (rust-rocksdb 0.25): Options::default() plus create_if_missing, \
             a 256 MiB LRU block cache, a 10 bits/key bloom filter (full filter){}; \
             default compression (Snappy), 64 MiB write buffer, 2 background jobs, WAL on, \
             unsynced writes (WriteOptions::default()); sync = FlushWAL(true); \
             checkpoint = Checkpoint::create_checkpoint (flushes the memtable, hard-links SSTs); \
             {} writer thread(s) on one DB",
            if cfg.zset {
                ", an associative merge operator adding i64 weights"
            } else {
                ""
            },
            cfg.threads
        )
    }

    fn open(cfg: &Config, dir: &Path) -> Result<Self> {
        Ok(Rocks {
            db: Arc::new(DB::open(&options(cfg), dir.join("db"))?),
            threads: cfg.threads,
        })
    }

    fn open_checkpoint(cfg: &Config, _dir: &Path, ck: &Path) -> Result<Self> {
        Ok(Rocks {
            db: Arc::new(DB::open(&options(cfg), ck)?),
            threads: cfg.threads,
        })
    }

    fn workers(&mut self) -> Vec<RocksWorker> {
        (0..self.threads)
            .map(|_| RocksWorker {
                db: Arc::clone(&self.db),
                key: Vec::with_capacity(128),
            })
            .collect()
    }

    fn rejoin(&mut self, _workers: Vec<RocksWorker>) {}

    fn checkpoint(&mut self, epoch: u64, dir: &Path) -> Result<Option<PathBuf>> {
        let path = dir.join(format!("checkpoint-{epoch}"));
        Checkpoint::new(&self.db)?.create_checkpoint(&path)?;
        Ok(Some(path))
    }

    fn close(self) -> Result<()> {
        let db = Arc::into_inner(self.db).ok_or("rocksdb: a worker still holds the DB")?;
        drop(db);
        Ok(())
    }
}
