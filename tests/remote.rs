//! The remote tier end to end against `object_store`'s in-memory store
//! (behind a wrapper that counts requests and fails the one asked of it):
//! push, restore on another machine, fencing, a failure at every request of
//! a push, a damaged object, retention and garbage.
#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use statespine::io::MemFs;
use statespine::remote::object_store::memory::InMemory;
use statespine::remote::object_store::path::Path;
use statespine::remote::object_store::{
    self, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use statespine::remote::{ObjectKind, Remote, RemoteManifest, newest_manifest};
use statespine::run::{EntryKind, RunMode};
use statespine::spine::SpineOptions;
use statespine::store::{CheckpointRequest, Options, Shard, Store};
use statespine::wal::SyncPolicy;
use statespine::{Error, ErrorKind};

const ROOT: &str = "/db";
const WAIT: Duration = Duration::from_secs(30);
const SHARDS: u32 = 2;

type Kv = BTreeMap<Vec<u8>, Vec<u8>>;
type Z = BTreeMap<(Vec<u8>, Vec<u8>), i64>;

/// Per shard: spine "kv" and Z-set spine "z".
#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    kv: Vec<Kv>,
    z: Vec<Z>,
}

/// An in-memory object store that counts requests and fails request
/// number `fail_at` (1-based; 0: none).
#[derive(Default)]
struct Faulty {
    inner: InMemory,
    requests: AtomicUsize,
    fail_at: AtomicUsize,
    failed: AtomicUsize,
    /// Run once, before the next read of a data object (not a manifest).
    before_data_get: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faulty")
    }
}

impl std::fmt::Display for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "faulty")
    }
}

impl Faulty {
    fn request(&self) -> object_store::Result<()> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_at.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(object_store::Error::Generic {
                store: "faulty",
                source: format!("request {n} failed on purpose").into(),
            });
        }
        Ok(())
    }

    /// Fails the `n`th request from now.
    fn fail_in(&self, n: usize) {
        self.fail_at
            .store(self.requests.load(Ordering::SeqCst) + n, Ordering::SeqCst);
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.request()?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.request()?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.request()?;
        if !location.as_ref().contains("/manifest/") {
            let hook = self.before_data_get.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        match self.request() {
            Ok(()) => self.inner.delete_stream(locations),
            Err(e) => Box::pin(futures::stream::once(async { Err(e) })),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.request() {
            Ok(()) => self.inner.list(prefix),
            Err(e) => Box::pin(futures::stream::once(async { Err(e) })),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.request()?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.request()?;
        self.inner.copy_opts(from, to, options).await
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn remote_on(store: &Arc<Faulty>) -> Remote {
    Remote::from_store(store.clone(), "jobs/q5").unwrap()
}

fn options(fs: &Arc<MemFs>) -> Options {
    Options::new(ROOT)
        .fs(fs.clone())
        .shards(SHARDS)
        .spine_options(
            SpineOptions::new(RunMode::KeyValue)
                .memtable_size_bytes(4 << 10)
                .memory_budget_bytes(16 << 10)
                .fan_in(3),
        )
        .wal_segment_size(8 << 10)
        .sync_policy(SyncPolicy::EveryRecords(64))
}

/// Writes epoch `epoch`'s records: `n` puts and Z-set updates per shard.
fn write(shards: &mut [Shard], epoch: u64, n: u64) {
    for s in shards.iter_mut() {
        let kv = match s.kv_spine("kv") {
            Some(kv) => kv,
            None => s.create_kv("kv").unwrap(),
        };
        let z = match s.zset_spine("z") {
            Some(z) => z,
            None => s.create_zset("z").unwrap(),
        };
        for i in 0..n {
            let key = format!("k{:05}", (i * 7 + epoch * 13) % 997);
            s.put(kv, key.as_bytes(), format!("{epoch}:{i}").as_bytes())
                .unwrap();
            s.update(z, key.as_bytes(), b"v", if i % 3 == 0 { -1 } else { 1 })
                .unwrap();
        }
    }
}

fn read_back(shards: &[Shard]) -> Model {
    let mut m = Model::default();
    for s in shards {
        let mut kvs = Kv::new();
        if let Some(kv) = s.kv_spine("kv") {
            for e in s.cursor(kv).unwrap() {
                let e = e.unwrap();
                kvs.insert(e.key.to_vec(), e.value.to_vec());
            }
        }
        let mut zs = Z::new();
        if let Some(z) = s.zset_spine("z") {
            for e in s.cursor(z).unwrap() {
                let e = e.unwrap();
                let EntryKind::Weight(w) = e.kind else {
                    panic!("{e:?}")
                };
                zs.insert((e.key.to_vec(), e.value.to_vec()), w);
            }
        }
        m.kv.push(kvs);
        m.z.push(zs);
    }
    m
}

fn offsets(epoch: u64) -> CheckpointRequest {
    let mut r = CheckpointRequest::default();
    r.source_offsets.insert("bids".into(), epoch * 100);
    r
}

/// Writes epoch `epoch` and checkpoints it; returns the state it holds.
fn checkpoint(store: &mut Store, shards: &mut [Shard], epoch: u64, n: u64) -> statespine::Result<Model> {
    write(shards, epoch, n);
    commit(store, shards, epoch)
}

/// The same, with every memtable flushed to runs first.
fn checkpoint_flushed(
    store: &mut Store,
    shards: &mut [Shard],
    epoch: u64,
    n: u64,
) -> statespine::Result<Model> {
    write(shards, epoch, n);
    for s in shards.iter_mut() {
        s.flush_all()?;
    }
    commit(store, shards, epoch)
}

fn commit(store: &mut Store, shards: &mut [Shard], epoch: u64) -> statespine::Result<Model> {
    let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
    store.checkpoint_inline(&mut refs, epoch, offsets(epoch))?;
    Ok(read_back(shards))
}

/// Restores `remote` onto a new machine (a fresh file system) and checks
/// epoch, offsets and every key and weight against `expected`.
fn restore_and_check(
    remote: &Remote,
    epoch: Option<u64>,
    expected: &Model,
    expected_epoch: u64,
) -> statespine::store::RecoveredState {
    let fs = Arc::new(MemFs::new());
    let opts = match epoch {
        Some(e) => options(&fs).restore_from_epoch(remote.clone(), e),
        None => options(&fs).restore_from(remote.clone()),
    };
    let mut state = opts.recover().unwrap();
    assert_eq!(state.epoch, expected_epoch);
    assert_eq!(state.source_offsets["bids"], expected_epoch * 100);
    let restored = state.restored.as_ref().expect("a restore ran");
    assert_eq!(restored.epoch, expected_epoch);
    let shards = state.store.take_shards();
    assert_eq!(&read_back(&shards), expected, "restored state differs");
    drop(shards);
    state
}

fn newest(remote: &Remote) -> RemoteManifest {
    block_on(newest_manifest(remote)).unwrap().0.unwrap()
}

#[test]
fn a_restore_on_another_machine_equals_the_pushed_checkpoint() {
    let bucket = Arc::new(Faulty::default());
    let remote = remote_on(&bucket);
    let fs = Arc::new(MemFs::new());
    let mut store = steady(&fs).push_to(remote.clone()).open().unwrap();
    let mut shards = store.take_shards();
    let m1 = checkpoint_flushed(&mut store, &mut shards, 1, 3000).unwrap();
    let first = store.wait_pushed(WAIT).unwrap().unwrap();
    assert_eq!((first.epoch, first.uploaded_objects), (1, first.objects));
    checkpoint(&mut store, &mut shards, 2, 30).unwrap();
    store.wait_pushed(WAIT).unwrap().unwrap();
    // A small change: most runs are already there.
    let m2 = checkpoint(&mut store, &mut shards, 3, 30).unwrap();
    let second = store.wait_pushed(WAIT).unwrap().unwrap();
    assert_eq!(second.epoch, 3);
    assert!(
        second.uploaded_objects < second.objects && second.uploaded_bytes * 4 < second.total_bytes,
        "the second push re-sent what the bucket held: {first:?} then {second:?}"
    );
    // Epoch 4 is committed locally but never checkpointed: not remote.
    write(&mut shards, 4, 50);
    let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
    store.commit_epoch_inline(&mut refs, 4, &offsets(4)).unwrap();
    assert_eq!(store.push_progress().unwrap().pushed, 3);

    let state = restore_and_check(&remote, None, &m2, 3);
    assert!(state.restored.as_ref().unwrap().skipped.is_empty());
    restore_and_check(&remote, Some(1), &m1, 1);
    let asked = options(&Arc::new(MemFs::new()))
        .restore_from_epoch(remote.clone(), 7)
        .recover();
    assert_eq!(asked.unwrap_err().kind(), ErrorKind::Misuse);
}

#[test]
fn a_restored_store_opens_as_it_is_on_its_next_start() {
    let bucket = Arc::new(Faulty::default());
    let remote = remote_on(&bucket);
    let fs = Arc::new(MemFs::new());
    let mut store = options(&fs).push_to(remote.clone()).open().unwrap();
    let mut shards = store.take_shards();
    checkpoint(&mut store, &mut shards, 1, 500).unwrap();
    store.wait_pushed(WAIT).unwrap();
    let other = Arc::new(MemFs::new());
    let state = options(&other).restore_from(remote.clone()).recover().unwrap();
    assert!(state.restored.is_some());
    let mut s2 = state.store;
    let mut sh2 = s2.take_shards();
    let m2 = checkpoint(&mut s2, &mut sh2, 2, 100).unwrap();
    drop((sh2, s2));
    let state = options(&other).restore_from(remote.clone()).recover().unwrap();
    assert!(
        state.restored.is_none(),
        "a directory holding a store is not overwritten"
    );
    assert_eq!(state.epoch, 2);
    let mut s3 = state.store;
    assert_eq!(read_back(&s3.take_shards()), m2);
}

#[test]
fn a_new_owner_fences_the_old_one_for_good() {
    let bucket = Arc::new(Faulty::default());
    let remote = remote_on(&bucket);
    let fs_a = Arc::new(MemFs::new());
    let mut a = options(&fs_a).push_to(remote.clone()).open().unwrap();
    let mut sa = a.take_shards();
    checkpoint(&mut a, &mut sa, 1, 500).unwrap();
    a.wait_pushed(WAIT).unwrap();

    // The node is presumed dead; another takes over from the bucket.
    let fs_b = Arc::new(MemFs::new());
    let state = options(&fs_b)
        .restore_from(remote.clone())
        .push_to(remote.clone())
        .recover()
        .unwrap();
    assert_eq!(state.epoch, 1);
    let mut b = state.store;
    let mut sb = b.take_shards();

    // The old owner was only slow: its next checkpoint commits locally,
    // its push is refused, and from then on so is every commit.
    checkpoint(&mut a, &mut sa, 2, 50).unwrap();
    let e = a.wait_pushed(WAIT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Fenced, "{e}");
    assert_eq!(
        a.wait_pushed(WAIT).unwrap_err().kind(),
        ErrorKind::Fenced,
        "fenced for good"
    );
    let e = checkpoint(&mut a, &mut sa, 3, 10).unwrap_err();
    assert!(matches!(e, Error::Fenced { .. }), "{e}");
    let mut refs: Vec<&mut Shard> = sa.iter_mut().collect();
    assert_eq!(
        a.commit_epoch_inline(&mut refs, 4, &offsets(4))
            .unwrap_err()
            .kind(),
        ErrorKind::Fenced
    );

    let mb = checkpoint(&mut b, &mut sb, 2, 70).unwrap();
    let pushed = b.wait_pushed(WAIT).unwrap().unwrap();
    let m = newest(&remote);
    assert_eq!(m.writer_epoch, b.push_progress().unwrap().writer_epoch);
    assert_eq!(m.newest().unwrap().id, pushed.checkpoint);
    restore_and_check(&remote, None, &mb, 2);
}

/// [`options`] with every run in the checkpoint that cuts it, however young:
/// each push of the same writes then makes the same requests, whatever the
/// machine's load.
fn steady(fs: &Arc<MemFs>) -> Options {
    options(fs).young_run_age(Duration::ZERO)
}

/// A push fails at each of its requests in turn: the previous remote
/// checkpoint stays the newest valid one (or the new one, if only a
/// request after its manifest failed), and the next push succeeds.
#[test]
fn a_push_failing_at_any_request_leaves_a_whole_remote_store() {
    // How many requests a push of this shape makes.
    let requests = {
        let bucket = Arc::new(Faulty::default());
        let fs = Arc::new(MemFs::new());
        let mut store = steady(&fs).push_to(remote_on(&bucket)).open().unwrap();
        let mut shards = store.take_shards();
        checkpoint(&mut store, &mut shards, 1, 800).unwrap();
        store.wait_pushed(WAIT).unwrap();
        let before = bucket.requests.load(Ordering::SeqCst);
        checkpoint(&mut store, &mut shards, 2, 300).unwrap();
        store.wait_pushed(WAIT).unwrap();
        bucket.requests.load(Ordering::SeqCst) - before
    };
    assert!(requests >= 5, "{requests}");
    let mut injected = 0;
    for n in 1..=requests {
        let bucket = Arc::new(Faulty::default());
        let remote = remote_on(&bucket);
        let fs = Arc::new(MemFs::new());
        let mut store = steady(&fs).push_to(remote.clone()).open().unwrap();
        let mut shards = store.take_shards();
        checkpoint(&mut store, &mut shards, 1, 800).unwrap();
        store.wait_pushed(WAIT).unwrap();
        bucket.fail_in(n);
        checkpoint(&mut store, &mut shards, 2, 300).unwrap();
        let outcome = store.wait_pushed(WAIT);
        injected += bucket.failed.load(Ordering::SeqCst);
        let epoch = newest(&remote).newest().unwrap().epoch;
        // A failure after the manifest (the check for a newer writer, or
        // garbage collection, which is best effort) may leave epoch 2.
        assert!(matches!(epoch, 1 | 2), "request {n}: newest remote epoch {epoch}");
        if outcome.is_ok() {
            assert_eq!(epoch, 2, "request {n}: a push reported done is visible");
        }
        if let Err(e) = &outcome {
            assert_ne!(e.kind(), ErrorKind::Fenced, "request {n}: {e}");
        }
        let m3 = checkpoint(&mut store, &mut shards, 3, 100).unwrap();
        let r = store.wait_pushed(WAIT).unwrap().unwrap();
        assert_eq!(r.epoch, 3, "request {n}");
        drop((shards, store));
        restore_and_check(&remote, None, &m3, 3);
    }
    assert_eq!(injected, requests, "every request of the push failed once");
    eprintln!("failure injection: {injected} pushes each failed at one of their {requests} requests");
}

/// Flips one byte of an object only the newest remote checkpoint needs: the
/// restore detects it and falls back to the checkpoint before.
#[test]
fn a_damaged_remote_object_sends_the_restore_to_the_checkpoint_before() {
    for kind in [ObjectKind::Run, ObjectKind::Wal, ObjectKind::Manifest] {
        let bucket = Arc::new(Faulty::default());
        let remote = remote_on(&bucket);
        let fs = Arc::new(MemFs::new());
        let mut store = steady(&fs).push_to(remote.clone()).open().unwrap();
        let mut shards = store.take_shards();
        let m1 = checkpoint_flushed(&mut store, &mut shards, 1, 800).unwrap();
        store.wait_pushed(WAIT).unwrap();
        checkpoint(&mut store, &mut shards, 2, 800).unwrap();
        store.wait_pushed(WAIT).unwrap();
        let m = newest(&remote);
        let older: HashSet<&str> = m.checkpoints[0].objects.iter().map(|o| o.key.as_str()).collect();
        let victim = m.checkpoints[1]
            .objects
            .iter()
            .find(|o| o.kind == kind && !older.contains(o.key.as_str()) && o.size > 64)
            .unwrap_or_else(|| panic!("no new {kind:?} object"));
        let path = Path::parse(format!("jobs/q5/{}", victim.key)).unwrap();
        block_on(async {
            let mut bytes = bucket
                .inner
                .get(&path)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec();
            let at = bytes.len() / 2;
            bytes[at] ^= 0x10;
            bucket.inner.put(&path, PutPayload::from(bytes)).await.unwrap();
        });
        let state = restore_and_check(&remote, None, &m1, 1);
        let skipped = &state.restored.as_ref().unwrap().skipped;
        assert_eq!(skipped.len(), 1, "{kind:?}");
        assert_eq!(skipped[0].0, m.checkpoints[1].id);
        assert!(skipped[0].1.contains(&victim.key), "{kind:?}: {}", skipped[0].1);
    }
}

fn keys(bucket: &Faulty) -> HashSet<String> {
    block_on(async {
        let metas: Vec<ObjectMeta> = bucket.inner.list(None).try_collect().await.unwrap();
        metas
            .into_iter()
            .map(|m| m.location.as_ref().trim_start_matches("jobs/q5/").to_string())
            .collect()
    })
}

/// Retention keeps the newest N remote checkpoints; garbage collection
/// deletes what none of them needs, but only past the grace period, so
/// that a restore reading a superseded manifest finds its objects.
#[test]
fn garbage_goes_only_when_no_retained_checkpoint_or_recent_manifest_needs_it() {
    for grace in [Duration::ZERO, Duration::from_secs(3600)] {
        let bucket = Arc::new(Faulty::default());
        let remote = remote_on(&bucket).keep(2).gc_grace(grace);
        let fs = Arc::new(MemFs::new());
        let mut store = options(&fs)
            .push_to(remote.clone())
            .max_retained(2)
            .open()
            .unwrap();
        let mut shards = store.take_shards();
        let mut models = Vec::new();
        let mut manifests = Vec::new();
        for epoch in 1..=5 {
            models.push(checkpoint(&mut store, &mut shards, epoch, 600).unwrap());
            store.wait_pushed(WAIT).unwrap();
            manifests.push(newest(&remote));
            // Objects younger than a millisecond are never old.
            std::thread::sleep(Duration::from_millis(5));
        }
        // One more push collects what the last one left.
        models.push(checkpoint(&mut store, &mut shards, 6, 10).unwrap());
        store.wait_pushed(WAIT).unwrap();
        let m = newest(&remote);
        let epochs: Vec<u64> = m.checkpoints.iter().map(|c| c.epoch).collect();
        assert_eq!(epochs, [5, 6]);
        let there = keys(&bucket);
        for o in m.checkpoints.iter().flat_map(|c| &c.objects) {
            assert!(there.contains(&o.key), "{} was deleted while retained", o.key);
        }
        // The first manifest's objects: kept within the grace period (a
        // restore may be reading them), gone after it.
        let first: Vec<&str> = manifests[0]
            .checkpoints
            .iter()
            .flat_map(|c| &c.objects)
            .map(|o| o.key.as_str())
            .collect();
        let referenced: HashSet<&str> = m
            .checkpoints
            .iter()
            .flat_map(|c| &c.objects)
            .map(|o| o.key.as_str())
            .collect();
        let unreferenced: Vec<&&str> = first.iter().filter(|k| !referenced.contains(**k)).collect();
        assert!(!unreferenced.is_empty());
        for k in unreferenced {
            assert_eq!(there.contains(*k), !grace.is_zero(), "{k} with grace {grace:?}");
        }
        restore_and_check(&remote, Some(5), &models[4], 5);
        restore_and_check(&remote, None, &models[5], 6);
    }
}

/// A standby follows the bucket; failing over to it restores from its
/// cache (nothing downloaded), and a damaged cached copy is downloaded
/// again instead of trusted.
#[test]
fn a_standby_fails_over_without_a_download() {
    use statespine::remote::Standby;
    let bucket = Arc::new(Faulty::default());
    let remote = remote_on(&bucket);
    let fs = Arc::new(MemFs::new());
    // Runs go into the first checkpoint at once (not after a second).
    let mut store = options(&fs)
        .young_run_age(Duration::ZERO)
        .push_to(remote.clone())
        .open()
        .unwrap();
    let mut shards = store.take_shards();
    let standby_fs = Arc::new(MemFs::new());
    let mut standby = Standby::with_fs(remote.clone(), standby_fs.clone(), "/cache").unwrap();
    assert_eq!(standby.pull().unwrap(), None, "nothing to follow yet");
    checkpoint_flushed(&mut store, &mut shards, 1, 800).unwrap();
    store.wait_pushed(WAIT).unwrap();
    let first = standby.pull().unwrap().unwrap();
    assert_eq!((first.epoch, first.cached_objects), (1, 0));
    let m2 = checkpoint(&mut store, &mut shards, 2, 40).unwrap();
    let pushed = store.wait_pushed(WAIT).unwrap().unwrap();
    let second = standby.pull().unwrap().unwrap();
    assert_eq!(second.epoch, 2);
    assert_eq!(
        second.downloaded_objects, pushed.uploaded_objects,
        "only what the push added"
    );
    assert!(second.cached_objects > 0);
    drop((shards, store));

    // The primary is lost: promote the standby.
    let requests = bucket.requests.load(Ordering::SeqCst);
    let state = options(&standby_fs)
        .restore_from(remote.clone())
        .restore_cache("/cache")
        .recover()
        .unwrap();
    let r = state.restored.clone().unwrap();
    assert_eq!(
        (r.epoch, r.from_cache, r.objects),
        (2, r.objects, second.downloaded_objects + second.cached_objects)
    );
    // Only the manifest was read: one list, one get.
    assert_eq!(bucket.requests.load(Ordering::SeqCst) - requests, 2);
    let mut s = state.store;
    assert_eq!(read_back(&s.take_shards()), m2);
    drop(s);

    // A damaged cached copy is not trusted: the cache, copied onto a
    // fresh machine's disk with one byte of one object flipped.
    use statespine::io::Fs;
    let m = newest(&remote);
    let objects = &m.newest().unwrap().objects;
    let victim = objects.iter().find(|o| o.size > 64).unwrap();
    let other = Arc::new(MemFs::new());
    for o in objects {
        let at = std::path::Path::new("/cache").join(&o.key);
        let f = standby_fs.open(&at).unwrap();
        let mut b = vec![0; f.size().unwrap() as usize];
        f.read_exact_at(&mut b, 0).unwrap();
        if o.key == victim.key {
            b[10] ^= 1;
        }
        other.create_dir_all(at.parent().unwrap()).unwrap();
        let mut w = other.create(&at).unwrap();
        w.append(&b).unwrap();
        w.sync_data().unwrap();
    }
    let state = options(&other)
        .restore_from(remote)
        .restore_cache("/cache")
        .recover()
        .unwrap();
    let r = state.restored.clone().unwrap();
    assert_eq!(r.from_cache, r.objects - 1, "the damaged copy was downloaded");
    let mut s = state.store;
    assert_eq!(read_back(&s.take_shards()), m2);
}

/// A store that neither pushed to a bucket nor was restored from it is
/// refused before its claim could fence the bucket's owner; nothing changes.
#[test]
fn a_store_is_refused_a_bucket_holding_another_stores_checkpoints() {
    let bucket = Arc::new(Faulty::default());
    let remote = remote_on(&bucket);
    let fs = Arc::new(MemFs::new());
    let mut a = options(&fs).push_to(remote.clone()).open().unwrap();
    let mut sa = a.take_shards();
    checkpoint(&mut a, &mut sa, 1, 100).unwrap();
    a.wait_pushed(WAIT).unwrap();
    let before = newest(&remote);

    let other = Arc::new(MemFs::new());
    let mut c = options(&other).open().unwrap();
    let mut sc = c.take_shards();
    checkpoint(&mut c, &mut sc, 1, 10).unwrap();
    drop((sc, c));
    let e = options(&other).push_to(remote.clone()).open().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Incompatible, "{e}");
    assert_eq!(newest(&remote), before, "the refused open wrote nothing");
    // The owner was not fenced.
    checkpoint(&mut a, &mut sa, 2, 10).unwrap();
    assert_eq!(a.wait_pushed(WAIT).unwrap().unwrap().epoch, 2);
}

/// A pinned remote checkpoint outlives the retention count until unpinned;
/// progress is reported object by object.
#[test]
fn pinned_remote_checkpoints_outlive_retention_and_progress_is_reported() {
    use statespine::remote::{Operation, Progress};
    let seen: Arc<std::sync::Mutex<Vec<Progress>>> = Arc::default();
    let log = seen.clone();
    let bucket = Arc::new(Faulty::default());
    let remote = remote_on(&bucket)
        .keep(1)
        .on_progress(move |p| log.lock().unwrap().push(p));
    let fs = Arc::new(MemFs::new());
    let mut store = options(&fs).push_to(remote.clone()).open().unwrap();
    let mut shards = store.take_shards();
    let m1 = checkpoint(&mut store, &mut shards, 1, 300).unwrap();
    let first = store.wait_pushed(WAIT).unwrap().unwrap();
    {
        let seen = seen.lock().unwrap();
        let last = seen.last().unwrap();
        assert_eq!(last.operation, Operation::Push);
        assert_eq!(
            (last.objects_done, last.objects_total),
            (first.uploaded_objects, first.uploaded_objects)
        );
        assert_eq!(last.bytes_done, last.bytes_total);
        assert_eq!(
            seen.len(),
            first.uploaded_objects + 1,
            "a report at the start and per object"
        );
    }
    store.pin_remote(&[first.checkpoint], true).unwrap();
    for epoch in 2..=3 {
        checkpoint(&mut store, &mut shards, epoch, 50).unwrap();
        store.wait_pushed(WAIT).unwrap();
    }
    let epochs = |m: RemoteManifest| {
        m.checkpoints
            .iter()
            .map(|c| (c.epoch, c.pinned))
            .collect::<Vec<_>>()
    };
    assert_eq!(epochs(newest(&remote)), [(1, true), (3, false)]);
    restore_and_check(&remote, Some(1), &m1, 1);
    assert_eq!(seen.lock().unwrap().last().unwrap().operation, Operation::Restore);
    store.pin_remote(&[first.checkpoint], false).unwrap();
    checkpoint(&mut store, &mut shards, 4, 50).unwrap();
    store.wait_pushed(WAIT).unwrap();
    assert_eq!(epochs(newest(&remote)), [(4, false)]);
}

/// Garbage collection deletes the checkpoint a restore is reading (a newer
/// one was pushed and the grace period is zero): the restore does not end
/// half-restored but reads the newest manifest again and restores that.
#[test]
fn a_restore_racing_garbage_collection_restores_the_newer_checkpoint() {
    let bucket = Arc::new(Faulty::default());
    let remote = remote_on(&bucket).keep(1).gc_grace(Duration::ZERO);
    let fs = Arc::new(MemFs::new());
    let store = options(&fs)
        .young_run_age(Duration::ZERO)
        .push_to(remote.clone())
        .open()
        .unwrap();
    let primary = Arc::new(std::sync::Mutex::new(store));
    let shards = Arc::new(std::sync::Mutex::new(primary.lock().unwrap().take_shards()));
    {
        let (mut st, mut sh) = (primary.lock().unwrap(), shards.lock().unwrap());
        checkpoint_flushed(&mut st, &mut sh, 1, 600).unwrap();
        st.wait_pushed(WAIT).unwrap();
    }
    let old = newest(&remote);
    let expected: Arc<std::sync::Mutex<Option<Model>>> = Arc::default();
    let (p, s, e) = (primary.clone(), shards.clone(), expected.clone());
    *bucket.before_data_get.lock().unwrap() = Some(Box::new(move || {
        // Mid-restore: the owner pushes epoch 2, which collects epoch 1.
        let (mut st, mut sh) = (p.lock().unwrap(), s.lock().unwrap());
        std::thread::sleep(Duration::from_millis(5));
        *e.lock().unwrap() = Some(checkpoint_flushed(&mut st, &mut sh, 2, 600).unwrap());
        st.wait_pushed(WAIT).unwrap();
    }));
    let state = options(&Arc::new(MemFs::new()))
        .restore_from(remote.clone())
        .recover()
        .unwrap();
    let gone = old
        .newest()
        .unwrap()
        .objects
        .iter()
        .filter(|o| !keys(&bucket).contains(&o.key))
        .count();
    assert!(
        gone > 0,
        "garbage collection took objects of the checkpoint being restored"
    );
    let r = state.restored.clone().unwrap();
    assert_eq!(r.epoch, 2, "the restore went on with the newer checkpoint");
    let mut store = state.store;
    assert_eq!(
        Some(read_back(&store.take_shards())),
        expected.lock().unwrap().clone()
    );
}

/// A restore cut short (its marker left behind) starts over at the next
/// open; one that finds every retained checkpoint damaged fails, keeps its
/// marker and never leaves an empty store in the bucket's place.
#[test]
fn an_interrupted_restore_starts_over_and_an_all_damaged_bucket_is_an_error() {
    use statespine::io::Fs;
    let bucket = Arc::new(Faulty::default());
    let remote = remote_on(&bucket);
    let fs = Arc::new(MemFs::new());
    let mut store = options(&fs).push_to(remote.clone()).open().unwrap();
    let mut shards = store.take_shards();
    let m1 = checkpoint(&mut store, &mut shards, 1, 300).unwrap();
    store.wait_pushed(WAIT).unwrap();
    drop((shards, store));

    // A restore died after writing some files.
    let other = Arc::new(MemFs::new());
    other
        .create_dir_all(std::path::Path::new("/db/checkpoints/x.tmp"))
        .unwrap();
    other
        .create(std::path::Path::new("/db/RESTORE"))
        .unwrap()
        .sync_data()
        .unwrap();
    other
        .create_dir_all(std::path::Path::new("/db/shards/0/wal"))
        .unwrap();
    let state = options(&other).restore_from(remote.clone()).recover().unwrap();
    assert_eq!(state.restored.as_ref().unwrap().epoch, 1);
    assert!(!other.exists(std::path::Path::new("/db/RESTORE")).unwrap());
    let mut s = state.store;
    assert_eq!(read_back(&s.take_shards()), m1);
    drop(s);

    // Every retained checkpoint damaged: an error, never a new store.
    let m = newest(&remote);
    let victim = m
        .newest()
        .unwrap()
        .objects
        .iter()
        .find(|o| o.kind == ObjectKind::Manifest)
        .unwrap();
    let path = Path::parse(format!("jobs/q5/{}", victim.key)).unwrap();
    block_on(
        bucket
            .inner
            .put(&path, PutPayload::from_static(b"not a manifest")),
    )
    .unwrap();
    let third = Arc::new(MemFs::new());
    for _ in 0..2 {
        let e = options(&third)
            .restore_from(remote.clone())
            .recover()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corruption, "{e}");
        assert!(
            third.exists(std::path::Path::new("/db/RESTORE")).unwrap(),
            "the next open tries again"
        );
    }
}

/// A store restored from an older checkpoint starts a new history there:
/// the old owner's later checkpoints are not kept as its own.
#[test]
fn a_store_restored_from_an_older_checkpoint_drops_the_history_it_left() {
    let bucket = Arc::new(Faulty::default());
    let remote = remote_on(&bucket);
    let fs = Arc::new(MemFs::new());
    let mut a = options(&fs).push_to(remote.clone()).open().unwrap();
    let mut sa = a.take_shards();
    let m1 = checkpoint(&mut a, &mut sa, 1, 300).unwrap();
    checkpoint(&mut a, &mut sa, 3, 300).unwrap();
    a.wait_pushed(WAIT).unwrap();
    drop((sa, a));

    let other = Arc::new(MemFs::new());
    let state = options(&other)
        .restore_from_epoch(remote.clone(), 1)
        .push_to(remote.clone())
        .recover()
        .unwrap();
    assert_eq!(state.epoch, 1);
    let epochs = |m: RemoteManifest| m.checkpoints.iter().map(|c| c.epoch).collect::<Vec<_>>();
    assert_eq!(
        epochs(newest(&remote)),
        [1],
        "the claim keeps only this store's history"
    );
    let mut b = state.store;
    let mut sb = b.take_shards();
    assert_eq!(read_back(&sb), m1);
    write(&mut sb, 2, 20);
    let mut refs: Vec<&mut Shard> = sb.iter_mut().collect();
    b.commit_epoch_inline(&mut refs, 2, &offsets(2)).unwrap();
    let m5 = checkpoint(&mut b, &mut sb, 5, 20).unwrap();
    b.wait_pushed(WAIT).unwrap();
    assert_eq!(epochs(newest(&remote)), [1, 5]);
    restore_and_check(&remote, None, &m5, 5);
}

/// Opening, pushing, restoring and pulling from inside async code (a
/// tokio runtime on the calling thread) works: the remote work runs on
/// threads of its own. Checkpoints through the coordinator are pushed too.
#[test]
fn the_remote_tier_works_from_async_code_and_through_the_coordinator() {
    let bucket = Arc::new(Faulty::default());
    let remote = remote_on(&bucket);
    block_on(async {
        let fs = Arc::new(MemFs::new());
        let mut store = options(&fs).push_to(remote.clone()).open().unwrap();
        let mut shards = store.take_shards();
        write(&mut shards, 1, 100);
        let pending = store.coordinator().begin(1, offsets(1)).unwrap();
        for s in shards.iter_mut() {
            s.poll().unwrap();
        }
        store.coordinator().finish(pending).unwrap();
        let expected = read_back(&shards);
        assert_eq!(store.wait_pushed(WAIT).unwrap().unwrap().epoch, 1);
        let mut standby =
            statespine::remote::Standby::with_fs(remote.clone(), Arc::new(MemFs::new()), "/c").unwrap();
        assert_eq!(standby.pull().unwrap().unwrap().epoch, 1);
        drop(standby);
        let state = options(&Arc::new(MemFs::new()))
            .restore_from(remote.clone())
            .recover()
            .unwrap();
        let mut s = state.store;
        assert_eq!(read_back(&s.take_shards()), expected);
    });
}
