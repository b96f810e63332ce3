//! The small interface every engine is driven through. An engine is opened
//! on a directory and split into one `Worker` per writer thread; engine-wide
//! operations (checkpoint, close) run after the workers are handed back.

use std::path::{Path, PathBuf};

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// What the child process was asked to build.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Writer threads (statespine: shards).
    pub threads: usize,
    /// Z-set workload: (key, value) pairs carry i64 weights that add.
    pub zset: bool,
}

/// One writer thread's handle.
pub trait Worker: Send {
    /// Writes a batch (WAL on, not synced).
    fn put_batch(&mut self, keys: &[[u8; 16]], values: &[[u8; 100]]) -> Result<()>;
    /// One write, not synced.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()>;
    /// Makes every write so far durable (WAL fsync).
    fn sync(&mut self) -> Result<()>;
    /// Reads `key`; the value's length, after touching its first and last byte.
    fn get(&mut self, key: &[u8]) -> Result<Option<usize>>;
    /// Adds `weight` to `(key, value)`.
    fn zset_add(&mut self, key: &[u8], value: &[u8], weight: i64) -> Result<()>;
    /// The weight of `(key, value)` (0 when absent).
    fn zset_weight(&mut self, key: &[u8], value: &[u8]) -> Result<i64>;
    /// Entries with first key byte in `[lo, hi)` in key order (hi 256: to the
    /// end), reading every key and value byte's first and last byte.
    fn scan(&mut self, lo: u8, hi: u16) -> Result<u64>;
    /// Flushes memory and waits until background or pending merges are done.
    fn settle(&mut self) -> Result<()>;
}

pub trait Engine: Sized {
    type W: Worker + 'static;
    /// Every option set, for the report.
    fn describe(cfg: &Config) -> String;
    fn open(cfg: &Config, dir: &Path) -> Result<Self>;
    /// Opens the state as of checkpoint `ck` (made by `checkpoint`).
    fn open_checkpoint(cfg: &Config, dir: &Path, ck: &Path) -> Result<Self>;
    fn workers(&mut self) -> Vec<Self::W>;
    fn rejoin(&mut self, workers: Vec<Self::W>);
    /// A durable checkpoint; `None` when the engine has none.
    fn checkpoint(&mut self, epoch: u64, dir: &Path) -> Result<Option<PathBuf>>;
    /// A clean close (the engine's own shutdown path).
    fn close(self) -> Result<()>;
    /// Gone without the clean shutdown (a crash of the process, as far as
    /// the engine's own restart work goes); by default the same as `close`.
    fn abandon(self) -> Result<()> {
        self.close()
    }
}

/// The first byte range `[lo, hi)` of partition `t` of `n`.
pub fn partition_range(t: usize, n: usize) -> (u8, u16) {
    let lo = (256 * t).div_ceil(n);
    let hi = (256 * (t + 1)).div_ceil(n);
    (lo as u8, hi as u16)
}

/// The partition of a key: its first byte's share of 256.
#[inline]
pub fn partition(key: &[u8], n: usize) -> usize {
    usize::from(key[0]) * n / 256
}

/// Reads a value's first and last byte, so no engine is timed without
/// touching what it returned; its length.
#[inline]
pub fn touch(v: &[u8]) -> usize {
    std::hint::black_box((v.first(), v.last()));
    v.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_cover_every_first_byte_once() {
        for n in 1..=5 {
            let mut next = 0u16;
            for t in 0..n {
                let (lo, hi) = partition_range(t, n);
                assert_eq!(
                    u16::from(lo),
                    next,
                    "partition {t} of {n} starts where the last ended"
                );
                for b in u16::from(lo)..hi {
                    assert_eq!(partition(&[b as u8], n), t);
                }
                next = hi;
            }
            assert_eq!(next, 256);
        }
    }
}
