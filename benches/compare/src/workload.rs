//! The workloads, run inside one child process per (engine, group, run):
//! each prints `RESULT <metric> <value>` lines for the parent to collect.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::engine::{Config, Engine, Result, Worker, partition, partition_range};

/// Entries written per batch in fillrandom and fillseq.
const BATCH: usize = 1000;
/// fillsync's group commit: one sync per this many writes.
const SYNC_EVERY: u64 = 10_000;
/// Lookups per read pass, and how many of them are timed one by one.
const READS: u64 = 1_000_000;
const TIMED_READS: usize = 100_000;
/// Bytes of one entry: a 16-byte key and a 100-byte value.
pub const ENTRY_BYTES: u64 = 116;

/// splitmix64's finalizer (as `benches/common/keys.rs`).
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The `i`-th random key; `i >= n` names keys never written.
pub fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&mix(i).to_be_bytes());
    k[8..].copy_from_slice(&mix(i ^ 0x5555).to_be_bytes());
    k
}

/// Version `generation` of the value of key `i`: 50 pseudo-random bytes and
/// 50 repeated ones, so it compresses to about half (db_bench's default
/// compression ratio).
pub fn value(i: u64, generation: u64) -> [u8; 100] {
    let mut v = [0u8; 100];
    let seed = mix(i ^ (generation << 40));
    for (c, chunk) in v[..56].chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&mix(seed ^ c as u64).to_le_bytes());
    }
    v[50..].fill(seed as u8);
    v
}

fn emit(metric: &str, value: f64) {
    println!("RESULT {metric} {value}");
    if std::env::var_os("COMPARE_MARKS").is_some() {
        // For `perf record -k CLOCK_MONOTONIC` + `perf report --time`:
        // when each phase ended.
        eprintln!("MARK {metric} {:?}", Instant::now());
    }
}

/// Copies the engine's directory to the path in `var`, if set: the state a
/// reopen starts from, for profiling that reopen alone (main group only:
/// `COMPARE_SNAPSHOT` right after the crash, `COMPARE_SNAPSHOT_LIVE` right
/// after the clean close).
fn snapshot(var: &str, dir: &Path) -> Result<()> {
    if let Some(to) = std::env::var_os(var) {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(dir)
            .arg(&to)
            .status()?;
        if !status.success() {
            return Err(format!("copying {} to {to:?} failed: {status}", dir.display()).into());
        }
    }
    Ok(())
}

/// Runs `f` on every worker, each on its own thread; returns the workers.
fn parallel<W, R, F>(workers: Vec<W>, f: F) -> Result<(Vec<W>, Vec<R>)>
where
    W: Worker,
    R: Send,
    F: Fn(usize, &mut W) -> Result<R> + Sync,
{
    let n = workers.len();
    std::thread::scope(|s| {
        let handles: Vec<_> = workers
            .into_iter()
            .enumerate()
            .map(|(t, mut w)| {
                let f = &f;
                s.spawn(move || f(t, &mut w).map(|r| (w, r)))
            })
            .collect();
        let mut ws = Vec::with_capacity(n);
        let mut rs = Vec::with_capacity(n);
        for h in handles {
            let (w, r) = h.join().map_err(|_| "a worker panicked")??;
            ws.push(w);
            rs.push(r);
        }
        Ok((ws, rs))
    })
}

/// Writes key `i` for every `i` in `ids` whose key is in partition `t`, in
/// batches.
fn write_batches<W: Worker>(
    w: &mut W,
    ids: impl Iterator<Item = u64>,
    generation: u64,
    t: usize,
    threads: usize,
) -> Result<()> {
    let mut keys = Vec::with_capacity(BATCH);
    let mut values = Vec::with_capacity(BATCH);
    for i in ids {
        let k = key(i);
        if partition(&k, threads) != t {
            continue;
        }
        keys.push(k);
        values.push(value(i, generation));
        if keys.len() == BATCH {
            w.put_batch(&keys, &values)?;
            keys.clear();
            values.clear();
        }
    }
    if !keys.is_empty() {
        w.put_batch(&keys, &values)?;
    }
    Ok(())
}

/// Sum of the sizes on disk of every distinct file under `dir`.
fn disk_usage(dir: &Path) -> u64 {
    inodes(dir).into_iter().map(|(_, blocks)| blocks * 512).sum()
}

/// Every distinct inode under `dir` with its 512-byte block count.
fn inodes(dir: &Path) -> Vec<((u64, u64), u64)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if seen.insert((m.dev(), m.ino())) {
                out.push(((m.dev(), m.ino()), m.blocks()));
            }
        }
    }
    out
}

/// A checkpoint's duration and the bytes of files it created (inodes that
/// did not exist before it: a hard link adds none).
fn timed_checkpoint<E: Engine>(e: &mut E, epoch: u64, dir: &Path, name: &str) -> Result<Option<PathBuf>> {
    let before: HashSet<(u64, u64)> = inodes(dir).into_iter().map(|(id, _)| id).collect();
    let t = Instant::now();
    let Some(path) = e.checkpoint(epoch, &dir.join("ck"))? else {
        return Ok(None);
    };
    let d = t.elapsed();
    let new: u64 = inodes(dir)
        .into_iter()
        .filter(|(id, _)| !before.contains(id))
        .map(|(_, b)| b * 512)
        .sum();
    emit(&format!("{name}_ms"), ms(d));
    emit(&format!("{name}_bytes"), new as f64);
    Ok(Some(path))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// `count` ids in `0..n` (plus `offset`) whose keys fall in partition `t`.
fn lookup_keys(seed: u64, n: u64, offset: u64, count: u64, t: usize, threads: usize) -> Vec<[u8; 16]> {
    let mut out = Vec::with_capacity(count as usize);
    let mut j = 0u64;
    while (out.len() as u64) < count {
        let k = key(offset + mix(seed ^ j) % n);
        j += 1;
        if partition(&k, threads) == t {
            out.push(k);
        }
    }
    out
}

/// One read pass: throughput over every key, then per-op latency of the
/// first `TIMED_READS`. Returns (hits, elapsed, latencies in ns).
fn read_pass<W: Worker>(w: &mut W, keys: &[[u8; 16]]) -> Result<(u64, Duration, Vec<u64>)> {
    let t = Instant::now();
    let mut hits = 0u64;
    for k in keys {
        hits += u64::from(w.get(k)?.is_some());
    }
    let d = t.elapsed();
    let mut lat = Vec::with_capacity(TIMED_READS);
    for k in keys.iter().take(TIMED_READS) {
        let t = Instant::now();
        std::hint::black_box(w.get(k)?);
        lat.push(t.elapsed().as_nanos() as u64);
    }
    Ok((hits, d, lat))
}

fn reads<W: Worker>(workers: Vec<W>, n: u64, absent: bool, name: &str) -> Result<Vec<W>> {
    let threads = workers.len();
    let per = READS.min(n) / threads as u64;
    let offset = if absent { n } else { 0 };
    let key_sets: Vec<Vec<[u8; 16]>> = (0..threads)
        .map(|t| lookup_keys(0xABCD + offset, n, offset, per, t, threads))
        .collect();
    let start = Instant::now();
    let (workers, results) = parallel(workers, |t, w| read_pass(w, &key_sets[t]))?;
    let wall = start.elapsed();
    let hits: u64 = results.iter().map(|r| r.0).sum();
    let expect = if absent { 0 } else { per * threads as u64 };
    if hits != expect {
        return Err(format!("{name}: {hits} hits, expected {expect}").into());
    }
    // Throughput from the untimed passes only (the slowest thread's).
    let slowest = results.iter().map(|r| r.1).max().unwrap_or(wall);
    emit(&format!("{name}_ops"), rate(per * threads as u64, slowest));
    let mut lat: Vec<u64> = results.into_iter().flat_map(|r| r.2).collect();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize] as f64;
    emit(&format!("{name}_p50_ns"), pct(0.50));
    emit(&format!("{name}_p99_ns"), pct(0.99));
    Ok(workers)
}

/// VmHWM of this process, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn probe<W: Worker>(w: &mut [W], i: u64, threads: usize) -> Result<()> {
    let k = key(i);
    match w[partition(&k, threads)].get(&k)? {
        Some(100) => Ok(()),
        other => Err(format!("key {i} reads back as {other:?} after reopen").into()),
    }
}

/// fillrandom alone (for profiling: `--child <engine> fillrandom`).
pub fn fillrandom<E: Engine>(n: u64, threads: usize, dir: &Path) -> Result<()> {
    let mut e = E::open(&Config { threads, zset: false }, dir)?;
    let ws = fill_random_timed(e.workers(), n, threads)?;
    e.rejoin(ws);
    e.close()
}

fn fill_random_timed<W: Worker>(workers: Vec<W>, n: u64, threads: usize) -> Result<Vec<W>> {
    let t = Instant::now();
    let (ws, _) = parallel(workers, |t, w| {
        write_batches(w, 0..n, 0, t, threads)?;
        w.sync()
    })?;
    emit("fillrandom_ops", rate(n, t.elapsed()));
    Ok(ws)
}

/// fillrandom, settle, reads, scan, checkpoints, reopen; the main state.
pub fn main_group<E: Engine>(n: u64, threads: usize, dir: &Path) -> Result<()> {
    let cfg = Config { threads, zset: false };
    let mut e = E::open(&cfg, dir)?;
    let ws = fill_random_timed(e.workers(), n, threads)?;

    let t = Instant::now();
    let (ws, _) = parallel(ws, |_, w| w.settle())?;
    emit("settle_ms", ms(t.elapsed()));
    let ws = reads(ws, n, false, "read_present")?;
    let ws = reads(ws, n, true, "read_absent")?;

    let t = Instant::now();
    let (ws, counts) = parallel(ws, |t, w| {
        let (lo, hi) = partition_range(t, threads);
        w.scan(lo, hi)
    })?;
    let d = t.elapsed();
    let total: u64 = counts.iter().sum();
    if total != n {
        return Err(format!("scan: {total} entries, expected {n}").into());
    }
    emit("scan_eps", rate(n, d));
    e.rejoin(ws);

    std::fs::create_dir_all(dir.join("ck"))?;
    let full = timed_checkpoint(&mut e, 1, dir, "ck_full")?;
    std::thread::sleep(Duration::from_millis(200));
    let disk = disk_usage(dir);
    emit("disk_bytes", disk as f64);
    emit("space_amp", disk as f64 / (n * ENTRY_BYTES) as f64);

    // Overwrite 1% of the keys, then the incremental checkpoint.
    let (ws, _) = parallel(e.workers(), |t, w| {
        write_batches(w, (0..n / 100).map(|j| mix(j ^ 0x77) % n), 1, t, threads)?;
        w.sync()
    })?;
    e.rejoin(ws);
    let incr = timed_checkpoint(&mut e, 2, dir, "ck_incr")?;
    // Restoring a checkpoint is what a crash leads to: no clean shutdown.
    e.abandon()?;
    snapshot("COMPARE_SNAPSHOT", dir)?;
    let probe_id = mix(0x77) % n; // overwritten, then checkpointed

    if let (Some(_), Some(ck)) = (full, incr) {
        let t = Instant::now();
        let mut c = E::open_checkpoint(&cfg, dir, &ck)?;
        let mut ws = c.workers();
        probe(&mut ws, probe_id, threads)?;
        emit("reopen_ck_ms", ms(t.elapsed()));
        c.rejoin(ws);
        c.close()?;
    }

    // Reopen from the live directory, after more writes the WAL alone holds.
    let mut e = E::open(&cfg, dir)?;
    let (ws, _) = parallel(e.workers(), |t, w| {
        write_batches(w, (0..n / 100).map(|j| mix(j ^ 0x99) % n), 2, t, threads)?;
        w.sync()
    })?;
    e.rejoin(ws);
    let t = Instant::now();
    e.close()?;
    emit("close_ms", ms(t.elapsed()));
    snapshot("COMPARE_SNAPSHOT_LIVE", dir)?;
    let t = Instant::now();
    let mut e = E::open(&cfg, dir)?;
    let mut ws = e.workers();
    probe(&mut ws, mix(0x99) % n, threads)?;
    emit("reopen_live_ms", ms(t.elapsed()));
    e.rejoin(ws);
    e.close()?;
    emit("rss_mib", peak_rss_mib());
    Ok(())
}

/// Sequential keys in batches; thread `t` writes its own contiguous range.
pub fn fillseq<E: Engine>(n: u64, threads: usize, dir: &Path) -> Result<()> {
    let cfg = Config { threads, zset: false };
    let mut e = E::open(&cfg, dir)?;
    let t = Instant::now();
    let (ws, _) = parallel(e.workers(), |t, w| {
        let (lo, hi) = (n * t as u64 / threads as u64, n * (t as u64 + 1) / threads as u64);
        let mut keys = Vec::with_capacity(BATCH);
        let mut values = Vec::with_capacity(BATCH);
        for i in lo..hi {
            keys.push(u128::from(i).to_be_bytes());
            values.push(value(i, 0));
            if keys.len() == BATCH || i + 1 == hi {
                w.put_batch(&keys, &values)?;
                keys.clear();
                values.clear();
            }
        }
        w.sync()
    })?;
    emit("fillseq_ops", rate(n, t.elapsed()));
    e.rejoin(ws);
    e.close()
}

/// Single writes, a sync every `SYNC_EVERY` of them.
pub fn fillsync<E: Engine>(n: u64, threads: usize, dir: &Path) -> Result<()> {
    let cfg = Config { threads, zset: false };
    let mut e = E::open(&cfg, dir)?;
    let t = Instant::now();
    let (ws, _) = parallel(e.workers(), |t, w| {
        let mut written = 0u64;
        for i in 0..n {
            let k = key(i);
            if partition(&k, threads) != t {
                continue;
            }
            w.put(&k, &value(i, 0))?;
            written += 1;
            if written.is_multiple_of(SYNC_EVERY) {
                w.sync()?;
            }
        }
        w.sync()
    })?;
    emit("fillsync_ops", rate(n, t.elapsed()));
    e.rejoin(ws);
    e.close()
}

/// The `j`-th Z-set update over `keys` keys × 10 values, a quarter of them
/// retractions: (key id, value, weight).
fn zset_op(j: u64, keys: u64) -> (u64, [u8; 8], i64) {
    let x = mix(j);
    let w = if j % 4 == 3 { -1 } else { 1 };
    (x % keys, ((x >> 32) % 10).to_le_bytes(), w)
}

/// `n` weight updates over `n / 10` keys × 10 values, then a check of the
/// first 1,000 keys' weights against a model.
pub fn zset<E: Engine>(n: u64, threads: usize, dir: &Path) -> Result<()> {
    let cfg = Config { threads, zset: true };
    let keys = (n / 10).max(1);
    let mut e = E::open(&cfg, dir)?;
    let t = Instant::now();
    let (mut ws, _) = parallel(e.workers(), |t, w| {
        for j in 0..n {
            let (k, v, wt) = zset_op(j, keys);
            let k = key(k);
            if partition(&k, threads) == t {
                w.zset_add(&k, &v, wt)?;
            }
        }
        w.sync()
    })?;
    emit("zset_ops", rate(n, t.elapsed()));

    let checked = keys.min(1000);
    let mut model = vec![0i64; checked as usize * 10];
    for j in 0..n {
        let (k, v, wt) = zset_op(j, keys);
        if k < checked {
            model[k as usize * 10 + usize::from(v[0])] += wt;
        }
    }
    for k in 0..checked {
        let kb = key(k);
        for v in 0..10u64 {
            let got = ws[partition(&kb, threads)].zset_weight(&kb, &v.to_le_bytes())?;
            if got != model[k as usize * 10 + v as usize] {
                return Err(format!("Z-set weight of key {k} value {v}: {got}, model says otherwise").into());
            }
        }
    }
    emit("zset_checked", (checked * 10) as f64);
    emit("zset_rss_mib", peak_rss_mib());
    e.rejoin(std::mem::take(&mut ws));
    e.close()
}
