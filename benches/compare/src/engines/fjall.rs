//! fjall 3, close to its defaults; it has no checkpoint API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::engine::{Config, Engine, Result, Worker, touch};

pub struct Fjall {
    db: Database,
    ks: Keyspace,
    threads: usize,
}

pub struct FjallWorker {
    db: Database,
    ks: Keyspace,
    key: Vec<u8>,
}

const CACHE: u64 = 256 << 20;

fn pair_key(buf: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    buf.clear();
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
}

fn weight(b: &[u8]) -> i64 {
    b.try_into().map_or(0, i64::from_le_bytes)
}

impl Worker for FjallWorker {
    fn put_batch(&mut self, keys: &[[u8; 16]], values: &[[u8; 100]]) -> Result<()> {
        let mut batch = self.db.batch();
        for (k, v) in keys.iter().zip(values) {
            batch.insert(&self.ks, k.as_slice(), v.as_slice());
        }
        Ok(batch.commit()?)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.ks.insert(key, value)?)
    }

    fn sync(&mut self) -> Result<()> {
        Ok(self.db.persist(PersistMode::SyncData)?)
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.ks.get(key)?.map(|v| touch(&v)))
    }

    /// Read-modify-write: fjall has no merge operator.
    fn zset_add(&mut self, key: &[u8], value: &[u8], w: i64) -> Result<()> {
        pair_key(&mut self.key, key, value);
        let old = self.ks.get(&self.key)?.map_or(0, |v| weight(&v));
        let new = old.wrapping_add(w);
        if new == 0 {
            self.ks.remove(self.key.as_slice())?;
        } else {
            self.ks.insert(self.key.as_slice(), new.to_le_bytes())?;
        }
        Ok(())
    }

    fn zset_weight(&mut self, key: &[u8], value: &[u8]) -> Result<i64> {
        pair_key(&mut self.key, key, value);
        Ok(self.ks.get(&self.key)?.map_or(0, |v| weight(&v)))
    }

    fn scan(&mut self, lo: u8, hi: u16) -> Result<u64> {
        let lo_key = [lo];
        let iter = match u8::try_from(hi) {
            Ok(hi) => self.ks.range(lo_key.as_slice()..[hi].as_slice()),
            Err(_) => self.ks.range(lo_key.as_slice()..),
        };
        let mut n = 0u64;
        let mut sink = 0usize;
        for guard in iter {
            let (k, v) = guard.into_inner()?;
            sink = sink.wrapping_add(touch(&k)).wrapping_add(touch(&v));
            n += 1;
        }
        std::hint::black_box(sink);
        Ok(n)
    }

    fn settle(&mut self) -> Result<()> {
        self.ks.rotate_memtable_and_wait()?;
        // Compactions start on their own; wait until none runs for 100 ms.
        let mut quiet = 0;
        while quiet < 10 {
            std::thread::sleep(Duration::from_millis(10));
            if self.db.active_compactions() == 0 && self.db.outstanding_flushes() == 0 {
                quiet += 1;
            } else {
                quiet = 0;
            }
        }
        Ok(())
    }
}

impl Engine for Fjall {
    type W = FjallWorker;

    fn describe(cfg: &Config) -> String {
        format!(
            "fjall 3.1.13: Database::builder(dir).cache_size(256 MiB) (the same cache as RocksDB), \
             one keyspace with KeyspaceCreateOptions::default() (LZ4, bloom filters, leveled \
             compaction, default worker threads); batches = Database::batch, unsynced; \
             sync = persist(SyncData); {}no checkpoint API; {} writer thread(s) on one keyspace",
            if cfg.zset {
                "Z-set updates by read-modify-write (no merge operator); "
            } else {
                ""
            },
            cfg.threads
        )
    }

    fn open(cfg: &Config, dir: &Path) -> Result<Self> {
        let db = Database::builder(dir.join("db")).cache_size(CACHE).open()?;
        let ks = db.keyspace("bench", KeyspaceCreateOptions::default)?;
        Ok(Fjall {
            db,
            ks,
            threads: cfg.threads,
        })
    }

    fn open_checkpoint(_cfg: &Config, _dir: &Path, _ck: &Path) -> Result<Self> {
        Err("fjall has no checkpoint API".into())
    }

    fn workers(&mut self) -> Vec<FjallWorker> {
        (0..self.threads)
            .map(|_| FjallWorker {
                db: self.db.clone(),
                ks: self.ks.clone(),
                key: Vec::with_capacity(128),
            })
            .collect()
    }

    fn rejoin(&mut self, _workers: Vec<FjallWorker>) {}

    fn checkpoint(&mut self, _epoch: u64, _dir: &Path) -> Result<Option<PathBuf>> {
        Ok(None)
    }

    fn close(self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}
