//! Remote tier figures (`docs/benchmarks.md`, "Remote tier (object
//! storage)"): a store on the real disk pushing its checkpoints to an object
//! store, each figure against a baseline measured in the same run through
//! the same object store client:
//!
//! 1. push throughput of a full checkpoint (checkpoint return to
//!    `wait_pushed`) against plain `put`s of the checkpoint directory's
//!    files with the same concurrency;
//! 2. incremental pushes after 1% of the keys changed, flushed to runs and
//!    left in memtables (WAL slices), against the changed bytes;
//! 3. restore (`Options::restore_from(..).recover()`) against downloading
//!    every object of the same remote checkpoint into files (synced, as a
//!    restore syncs them) with the same concurrency, and the first read;
//! 4. a standby (`statespine::remote::Standby`) that pulls after each push:
//!    its pull of the full checkpoint and of each incremental one, against
//!    the bytes the push uploaded;
//! 5. a lost node to reads served on the standby: `restore_from(..)
//!    .restore_cache(cache).recover()` + the first read into a fresh store
//!    directory, against the restore without a cache (+ first read) of 3,
//!    measured in the same round. The three restore-side measurements (full
//!    restore, download floor, standby restore) run in an order rotated each
//!    round.
//!
//! `cargo run --release --features remote --example remote_bench -- [--url
//! file:///tmp/x | s3://bucket/prefix] [--mb 256] [--rounds 3]`. Without
//! `--url`, the bucket is a `LocalFileSystem` under a fresh temporary
//! directory in /tmp; the store directories are always fresh temporary
//! directories in /tmp.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use statespine::remote::object_store::local::LocalFileSystem;
use statespine::remote::object_store::path::Path as ObjectPath;
use statespine::remote::object_store::{ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload};
use statespine::remote::{Operation, PullReport, Remote, Standby, newest_manifest};
use statespine::store::{CheckpointRequest, KvSpine, Options, Shard, Store};

const SHARDS: u32 = 2;
const KEY: usize = 16;
const VALUE: usize = 1000;
const CONCURRENCY: usize = 8;
const WAIT: Duration = Duration::from_secs(1800);
const MB: f64 = 1_048_576.0;
/// Past the default `Options::young_run_age`.
const AGE: Duration = Duration::from_millis(1100);

fn key(i: u64) -> [u8; KEY] {
    // A multiplicative hash first, so writes land at random places.
    let mut k = [0u8; KEY];
    k[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

/// Incompressible bytes (xorshift), so no run block compresses them away.
fn value(i: u64, round: u64, out: &mut [u8; VALUE]) {
    let mut x = i.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Where the rounds' buckets live: one object store client and a base path.
struct Bucket {
    store: Arc<dyn ObjectStore>,
    base: ObjectPath,
    url: Option<String>,
}

impl Bucket {
    fn new(url: Option<&str>, tmp: &Path) -> Bucket {
        match url {
            None => {
                let dir = tmp.join("bucket");
                std::fs::create_dir_all(&dir).unwrap();
                Bucket {
                    store: Arc::new(LocalFileSystem::new_with_prefix(&dir).unwrap()),
                    base: ObjectPath::from("bench"),
                    url: None,
                }
            }
            Some(url) => {
                // A prefix of its own under the URL's, so that runs never
                // share objects with anything already there.
                let run = format!("remote-bench-{}", uuid::Uuid::new_v4());
                let url = format!("{}/{run}", url.trim_end_matches('/'));
                let remote = Remote::from_url(&url).unwrap();
                let parsed = url::Url::parse(&url).unwrap();
                let (_, base) = ObjectStoreScheme::parse(&parsed).unwrap();
                Bucket {
                    store: remote.object_store().clone(),
                    base,
                    url: Some(url),
                }
            }
        }
    }

    /// Round `r`'s remote store: the same client, a prefix of its own.
    fn remote(&self, r: usize) -> Remote {
        match &self.url {
            None => Remote::from_store(self.store.clone(), &format!("{}/r{r}", self.base)).unwrap(),
            Some(url) => Remote::from_url(&format!("{url}/r{r}")).unwrap(),
        }
        .concurrency(CONCURRENCY)
    }

    fn path(&self, rel: &str) -> ObjectPath {
        rel.split('/').fold(self.base.clone(), |p, part| p.join(part))
    }
}

struct Round {
    load: Duration,
    entries: u64,
    /// Full push: checkpoint return to `wait_pushed`, and the report's.
    push_wall: Duration,
    push_report: Duration,
    push_bytes: u64,
    push_objects: usize,
    /// A crc32c pass over the same bytes (the push computes one per object).
    crc: Duration,
    /// Plain puts of the checkpoint directory's files.
    put_wall: Duration,
    put_bytes: u64,
    put_files: usize,
    /// Incremental pushes: changed bytes, then (uploaded, objects, wall)
    /// with a flush and without.
    changed: u64,
    changed_wal: u64,
    inc_flushed: (u64, usize, Duration),
    inc_wal: (u64, usize, Duration),
    manifest_bytes: u64,
    /// Restore: the whole `recover()`, the report's part, bytes, objects.
    recover: Duration,
    restore_report: Duration,
    restore_bytes: u64,
    restore_objects: usize,
    first_get: Duration,
    /// Downloading the same objects into synced files.
    download: Duration,
    download_bytes: u64,
    /// The standby's pulls after the full push and the two incremental
    /// ones, and the bytes its progress callback last saw for a pull.
    pull_full: PullReport,
    pull_flushed: PullReport,
    pull_wal: PullReport,
    pull_progress_bytes: u64,
    /// Restore from the standby's cache: `recover()`, the report, the
    /// first read.
    standby_recover: Duration,
    standby_report: Duration,
    standby_from_cache: usize,
    standby_objects: usize,
    standby_first_get: Duration,
}

/// Writes keys `i` below `n` with `i % SHARDS == shard` and
/// `(i / SHARDS) % stride == phase` (every shard's `1/stride`-th); polls as
/// an owner thread would.
fn write(shard: &mut Shard, kv: KvSpine, n: u64, stride: u64, phase: u64, round: u64) -> u64 {
    let mut v = [0u8; VALUE];
    let mut count = 0;
    let mut i = u64::from(shard.id());
    while i < n {
        if (i / u64::from(SHARDS)) % stride == phase {
            value(i, round, &mut v);
            shard.put(kv, &key(i), &v).unwrap();
            count += 1;
            if count % 256 == 0 {
                shard.poll().unwrap();
            }
        }
        i += u64::from(SHARDS);
    }
    count
}

fn checkpoint(store: &mut Store, shards: &mut [Shard], epoch: u64) {
    let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
    let mut req = CheckpointRequest::default();
    req.source_offsets.insert("src".into(), epoch);
    store.checkpoint_inline(&mut refs, epoch, req).unwrap();
}

/// Puts `files` (name, bytes) under `prefix`, `CONCURRENCY` at a time.
fn put_all(bucket: &Bucket, prefix: &str, files: Vec<(String, Bytes)>) -> Duration {
    let rt = runtime();
    let t = Instant::now();
    rt.block_on(
        futures::stream::iter(files)
            .map(|(name, bytes)| {
                let path = bucket.path(&format!("{prefix}/{name}"));
                async move { bucket.store.put(&path, PutPayload::from(bytes)).await }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<_>>(),
    )
    .unwrap();
    t.elapsed()
}

/// Gets every object of the newest checkpoint of `remote` into synced
/// files under `dir`, `CONCURRENCY` at a time: (time, bytes).
fn download_all(bucket: &Bucket, remote: &Remote, round: usize, dir: &Path) -> (Duration, u64) {
    let rt = runtime();
    let (m, _) = rt.block_on(newest_manifest(remote)).unwrap();
    let m = m.unwrap();
    let c = m.newest().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let t = Instant::now();
    let sizes: Vec<u64> = rt
        .block_on(
            futures::stream::iter(&c.objects)
                .map(|o| {
                    let path = bucket.path(&format!("r{round}/{}", o.key));
                    let to = dir.join(o.key.replace('/', "_"));
                    async move {
                        use std::io::Write;
                        let mut stream = bucket.store.get(&path).await?.into_stream();
                        let mut f = std::fs::File::create(&to).unwrap();
                        let mut n = 0u64;
                        while let Some(chunk) = stream.try_next().await? {
                            f.write_all(&chunk).unwrap();
                            n += chunk.len() as u64;
                        }
                        f.sync_data().unwrap();
                        Ok::<u64, statespine::remote::object_store::Error>(n)
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .try_collect(),
        )
        .unwrap();
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
    (t.elapsed(), sizes.iter().sum())
}

fn round(bucket: &Bucket, tmp: &Path, r: usize, mb: u64) -> Round {
    let seed = r as u64 + 1;
    let n = mb * (1 << 20) / (KEY + VALUE) as u64;
    let remote = bucket.remote(r);
    let dir = tmp.join(format!("store{r}"));
    let mut store = Options::new(&dir)
        .shards(SHARDS)
        .push_to(remote.clone())
        .open()
        .unwrap();
    let mut shards = store.take_shards();
    // The standby: its own client (the same bucket and prefix), a cache on
    // the file system of the store directories (so a restore hard-links).
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let standby_remote = {
        let seen = seen.clone();
        bucket.remote(r).on_progress(move |p| {
            if p.operation == Operation::Pull {
                seen.store(p.bytes_done, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let cache = tmp.join(format!("standby-cache{r}"));
    let mut standby = Standby::new(standby_remote, &cache).unwrap();
    let mut pull = |epoch: u64| {
        let p = standby.pull().unwrap().expect("a remote checkpoint to pull");
        assert_eq!(p.epoch, epoch, "the standby pulled the newest checkpoint");
        p
    };
    let kvs: Vec<KvSpine> = shards.iter_mut().map(|s| s.create_kv("state").unwrap()).collect();

    // 1. The full push.
    let t = Instant::now();
    for (s, kv) in shards.iter_mut().zip(&kvs) {
        write(s, *kv, n, 1, 0, seed);
        s.flush_all().unwrap();
        s.settle().unwrap();
    }
    let load = t.elapsed();
    // A cut leaves out runs younger than `young_run_age` (default 1 s) and
    // pushes their WAL instead: let the flushed runs age past it.
    std::thread::sleep(AGE);
    checkpoint(&mut store, &mut shards, 1);
    let t = Instant::now();
    let full = store.wait_pushed(WAIT).unwrap().unwrap();
    let push_wall = t.elapsed();

    // Its baseline: the checkpoint directory's files, read first, put plainly.
    let ck = dir.join("checkpoints").join(full.checkpoint.to_string());
    let mut files = Vec::new();
    for e in std::fs::read_dir(&ck).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        files.push((name, Bytes::from(std::fs::read(e.path()).unwrap())));
    }
    let put_bytes: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    let put_files = files.len();
    let t = Instant::now();
    let mut crc = 0u32;
    for (_, b) in &files {
        crc ^= crc32c::crc32c(b);
    }
    let crc_time = t.elapsed();
    std::hint::black_box(crc);
    let put_wall = put_all(bucket, &format!("baseline-r{r}"), files);
    // The standby's pull, after the baseline so that push and put run back
    // to back as before.
    let pull_full = pull(1);

    // 2. 1% of the keys changed, flushed to runs; then another 1%, left in
    // the memtables (the WAL carries it).
    let mut changed = 0;
    for (s, kv) in shards.iter_mut().zip(&kvs) {
        changed += write(s, *kv, n, 100, 0, seed + 100);
        s.flush_all().unwrap();
    }
    std::thread::sleep(AGE);
    checkpoint(&mut store, &mut shards, 2);
    let t = Instant::now();
    let flushed = store.wait_pushed(WAIT).unwrap().unwrap();
    let inc_flushed = (flushed.uploaded_bytes, flushed.uploaded_objects, t.elapsed());
    let pull_flushed = pull(2);
    let mut changed_wal = 0;
    for (s, kv) in shards.iter_mut().zip(&kvs) {
        changed_wal += write(s, *kv, n, 100, 50, seed + 200);
    }
    checkpoint(&mut store, &mut shards, 3);
    let t = Instant::now();
    let wal = store.wait_pushed(WAIT).unwrap().unwrap();
    let inc_wal = (wal.uploaded_bytes, wal.uploaded_objects, t.elapsed());
    let pull_wal = pull(3);
    let pull_progress_bytes = seen.load(std::sync::atomic::Ordering::Relaxed);
    let manifest_bytes = {
        let (m, _) = runtime().block_on(newest_manifest(&remote)).unwrap();
        m.unwrap().encode().len() as u64
    };
    drop(shards);
    store.close().unwrap();

    // 3. and 5. Restore, from the remote alone and with the standby's cache,
    // against the download floor, in an order rotated each round.
    let restore = |to: &str, cache: Option<&Path>| {
        let t = Instant::now();
        let mut opts = Options::new(tmp.join(format!("{to}{r}")))
            .shards(SHARDS)
            .restore_from(remote.clone());
        if let Some(cache) = cache {
            opts = opts.restore_cache(cache);
        }
        let mut state = opts.recover().unwrap();
        let recover = t.elapsed();
        assert_eq!(state.epoch, 3);
        let report = state.restored.clone().expect("a restore ran");
        let shards = state.store.take_shards();
        let g = Instant::now();
        let kv = shards[0].kv_spine("state").unwrap();
        let got = shards[0].get(kv, &key(0)).unwrap().map(<[u8]>::to_vec);
        let first_get = g.elapsed();
        let mut want = [0u8; VALUE];
        value(0, seed + 100, &mut want);
        assert_eq!(got.as_deref(), Some(&want[..]), "key 0 after the restore");
        drop(shards);
        state.store.close().unwrap();
        (recover, report, first_get)
    };
    let floor_dir = tmp.join(format!("download{r}"));
    let (mut full_restore, mut floor, mut on_standby) = (None, None, None);
    for step in 0..3 {
        match (step + r) % 3 {
            0 => full_restore = Some(restore("restore", None)),
            1 => floor = Some(download_all(bucket, &remote, r, &floor_dir)),
            _ => on_standby = Some(restore("standby-restore", Some(&cache))),
        }
    }
    let (recover, report, first_get) = full_restore.unwrap();
    let (download, download_bytes) = floor.unwrap();
    let (standby_recover, standby, standby_first_get) = on_standby.unwrap();
    Round {
        load,
        entries: n,
        push_wall,
        push_report: full.duration,
        push_bytes: full.uploaded_bytes,
        push_objects: full.uploaded_objects,
        crc: crc_time,
        put_wall,
        put_bytes,
        put_files,
        changed: changed * (KEY + VALUE) as u64,
        changed_wal: changed_wal * (KEY + VALUE) as u64,
        inc_flushed,
        inc_wal,
        manifest_bytes,
        recover,
        restore_report: report.duration,
        restore_bytes: report.bytes,
        restore_objects: report.objects,
        first_get,
        download,
        download_bytes,
        pull_full,
        pull_flushed,
        pull_wal,
        pull_progress_bytes,
        standby_recover,
        standby_report: standby.duration,
        standby_from_cache: standby.from_cache,
        standby_objects: standby.objects,
        standby_first_get,
    }
}

fn main() {
    let mut url = None;
    let mut mb = 256u64;
    let mut rounds = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--url" => url = args.next(),
            "--mb" => mb = args.next().and_then(|v| v.parse().ok()).expect("--mb <MB>"),
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).expect("--rounds <n>"),
            other => {
                eprintln!(
                    "unknown argument {other:?}; usage: remote_bench [--url URL] [--mb MB] [--rounds N]"
                );
                std::process::exit(2);
            }
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix("remote-bench-")
        .tempdir_in("/tmp")
        .unwrap();
    let bucket = Bucket::new(url.as_deref(), tmp.path());
    let backend = url
        .clone()
        .unwrap_or_else(|| format!("file://{} (LocalFileSystem)", tmp.path().join("bucket").display()));
    eprintln!(
        "remote_bench: {mb} MB of state ({KEY}-byte keys, {VALUE}-byte values), {SHARDS} shards, \
         concurrency {CONCURRENCY}, {rounds} rounds; bucket {backend}"
    );
    let mut all = Vec::new();
    for r in 0..rounds {
        let x = round(&bucket, tmp.path(), r, mb);
        let mbs = |b: u64, d: Duration| b as f64 / MB / d.as_secs_f64();
        eprintln!(
            "round {r}: load {:.1} s ({} entries); push {:.0} MB in {:.2} s ({:.0} MB/s; report {:.2} s) \
             vs put {:.0} MB in {:.2} s ({:.0} MB/s); crc32c pass {:.3} s; inc flushed {} B / wal {} B \
             for {} B changed; recover {:.2} s (restore {:.2} s, {} objects, {:.0} MB) vs download {:.2} s; \
             first get {:?}; pulls {} / {} / {} B ({:.2} / {:.3} / {:.3} s); standby recover {:.3} s \
             ({} of {} objects cached) + first get {:?}",
            x.load.as_secs_f64(),
            x.entries,
            x.push_bytes as f64 / MB,
            x.push_wall.as_secs_f64(),
            mbs(x.push_bytes, x.push_wall),
            x.push_report.as_secs_f64(),
            x.put_bytes as f64 / MB,
            x.put_wall.as_secs_f64(),
            mbs(x.put_bytes, x.put_wall),
            x.crc.as_secs_f64(),
            x.inc_flushed.0,
            x.inc_wal.0,
            x.changed,
            x.recover.as_secs_f64(),
            x.restore_report.as_secs_f64(),
            x.restore_objects,
            x.restore_bytes as f64 / MB,
            x.download.as_secs_f64(),
            x.first_get,
            x.pull_full.downloaded_bytes,
            x.pull_flushed.downloaded_bytes,
            x.pull_wal.downloaded_bytes,
            x.pull_full.duration.as_secs_f64(),
            x.pull_flushed.duration.as_secs_f64(),
            x.pull_wal.duration.as_secs_f64(),
            x.standby_recover.as_secs_f64(),
            x.standby_from_cache,
            x.standby_objects,
            x.standby_first_get,
        );
        all.push(x);
    }
    print_table(&all, mb, &backend);
    if std::env::var_os("REMOTE_BENCH_KEEP").is_some() {
        eprintln!("kept {}", tmp.keep().display());
    }
}

fn print_table(all: &[Round], mb: u64, backend: &str) {
    let med = |f: &dyn Fn(&Round) -> f64| median(&all.iter().map(f).collect::<Vec<_>>());
    let secs = |d: Duration| d.as_secs_f64();
    let push_mbs = med(&|x| x.push_bytes as f64 / MB / secs(x.push_wall));
    let put_mbs = med(&|x| x.put_bytes as f64 / MB / secs(x.put_wall));
    let ratio_push =
        med(&|x| (x.push_bytes as f64 / secs(x.push_wall)) / (x.put_bytes as f64 / secs(x.put_wall)));
    let changed = med(&|x| x.changed as f64);
    let changed_wal = med(&|x| x.changed_wal as f64);
    let manifest = med(&|x| x.manifest_bytes as f64);
    let inc_f = med(&|x| x.inc_flushed.0 as f64);
    let inc_w = med(&|x| x.inc_wal.0 as f64);
    let recover = med(&|x| secs(x.recover));
    let restore = med(&|x| secs(x.restore_report));
    let download = med(&|x| secs(x.download));
    let ratio_restore = med(&|x| secs(x.recover) / secs(x.download));
    let ratio_download_only = med(&|x| secs(x.restore_report) / secs(x.download));
    let get_us = med(&|x| secs(x.first_get) * 1e6);
    let cold = med(&|x| secs(x.recover) + secs(x.first_get));
    let warm = med(&|x| secs(x.standby_recover) + secs(x.standby_first_get));
    let ratio_standby = med(&|x| {
        (secs(x.standby_recover) + secs(x.standby_first_get)) / (secs(x.recover) + secs(x.first_get))
    });
    let met = |ok: bool| if ok { "met" } else { "missed" };
    println!();
    println!(
        "{mb} MB of state, {SHARDS} shards, concurrency {CONCURRENCY}, bucket {backend}; medians of {} rounds",
        all.len()
    );
    println!();
    println!("| figure | statespine | baseline (same run, same client) | ratio | target |");
    println!("| --- | ---: | ---: | ---: | --- |");
    println!(
        "| full push, checkpoint return → `wait_pushed` | {:.2} s, {:.0} MB in {:.0} objects: **{push_mbs:.0} MB/s** (report's own duration {:.2} s) | plain `put` of the checkpoint dir's {:.0} files, {:.0} MB: {:.2} s, **{put_mbs:.0} MB/s** | {ratio_push:.2} | ≥ 0.80: {} |",
        med(&|x| secs(x.push_wall)),
        med(&|x| x.push_bytes as f64 / MB),
        med(&|x| x.push_objects as f64),
        med(&|x| secs(x.push_report)),
        med(&|x| x.put_files as f64),
        med(&|x| x.put_bytes as f64 / MB),
        med(&|x| secs(x.put_wall)),
        met(ratio_push >= 0.8),
    );
    println!(
        "| crc32c pass over the same bytes (the push computes one per object) | {:.3} s | | | |",
        med(&|x| secs(x.crc)),
    );
    println!(
        "| incremental push, 1% of keys changed, flushed to runs | {:.2} MB uploaded in {:.0} objects, {:.2} s | changed {:.2} MB (+ manifest {:.1} KB) | {:.2}× changed | ≤ 2× changed + manifest: {} |",
        inc_f / MB,
        med(&|x| x.inc_flushed.1 as f64),
        med(&|x| secs(x.inc_flushed.2)),
        changed_wal / MB,
        manifest / 1024.0,
        inc_f / changed,
        met(inc_f <= 2.0 * changed + manifest),
    );
    println!(
        "| incremental push, 1% of keys changed, in memtables (WAL slices) | {:.2} MB uploaded in {:.0} objects, {:.2} s | changed {:.2} MB (+ manifest {:.1} KB) | {:.2}× changed | ≤ 2× changed + manifest: {} |",
        inc_w / MB,
        med(&|x| x.inc_wal.1 as f64),
        med(&|x| secs(x.inc_wal.2)),
        changed_wal / MB,
        manifest / 1024.0,
        inc_w / changed_wal,
        met(inc_w <= 2.0 * changed_wal + manifest),
    );
    println!(
        "| restore + recover (`restore_from(..).recover()`) | {recover:.2} s, of which download {restore:.2} s ({:.0} objects, {:.0} MB) | `get` of the same objects into synced files: {download:.2} s, {:.0} MB | {ratio_restore:.2} (download part alone {ratio_download_only:.2}) | ≤ 1.5×: {} |",
        med(&|x| x.restore_objects as f64),
        med(&|x| x.restore_bytes as f64 / MB),
        med(&|x| x.download_bytes as f64 / MB),
        met(ratio_restore <= 1.5),
    );
    println!("| first read after the restore (one `get`) | {get_us:.0} µs | | | |");
    let pull_row = |what: &str, p: &dyn Fn(&Round) -> &PullReport, pushed: &dyn Fn(&Round) -> u64| {
        println!(
            "| standby pull after the {what} | {:.2} MB in {:.0} objects ({:.0} already cached), {:.3} s | the push uploaded {:.2} MB | {:.2}× uploaded | |",
            med(&|x| p(x).downloaded_bytes as f64 / MB),
            med(&|x| p(x).downloaded_objects as f64),
            med(&|x| p(x).cached_objects as f64),
            med(&|x| secs(p(x).duration)),
            med(&|x| pushed(x) as f64 / MB),
            med(&|x| p(x).downloaded_bytes as f64 / pushed(x) as f64),
        );
    };
    pull_row("full push", &|x| &x.pull_full, &|x| x.push_bytes);
    pull_row("incremental push (flushed)", &|x| &x.pull_flushed, &|x| {
        x.inc_flushed.0
    });
    pull_row("incremental push (WAL slices)", &|x| &x.pull_wal, &|x| {
        x.inc_wal.0
    });
    println!(
        "| lost node → reads on a standby: `restore_from(..).restore_cache(..).recover()` + first read | {warm:.3} s (restore {:.3} s, {:.0} of {:.0} objects from the cache; first read {:.0} µs) | the same without the cache (restore + recover + first read): {cold:.2} s | {ratio_standby:.3} | (a recovery, not a download) |",
        med(&|x| secs(x.standby_report)),
        med(&|x| x.standby_from_cache as f64),
        med(&|x| x.standby_objects as f64),
        med(&|x| secs(x.standby_first_get) * 1e6),
    );
    println!(
        "| pull progress callback's last bytes_done (= the WAL pull's downloaded bytes) | {:.0} B | | | |",
        med(&|x| x.pull_progress_bytes as f64),
    );
}
