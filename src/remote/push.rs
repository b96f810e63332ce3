//! [`Pusher`]: the thread that pushes committed checkpoints to the remote
//! store, off the shard and coordinator threads.
//!
//! The committing thread only opens the checkpoint's files ([`Snapshot`])
//! and hands them over; the pusher maps, checksums and uploads them with
//! its own single-threaded runtime. One checkpoint waits while a push runs:
//! a newer one takes its place (each push carries everything its
//! checkpoint needs, so skipping one loses nothing, and the files of a
//! skipped one are closed at once).

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::gc;
use super::snapshot::Snapshot;
use super::upload::{self, Known, PushReport};
use super::{ObjectKind, Remote, RemoteManifest, Writer};
use crate::checkpoint::Layout;
use crate::io::Fs;
use crate::{Error, Result};

/// Where the pushes of a store stand.
#[derive(Debug, Clone, Default)]
pub struct PushProgress {
    /// Checkpoints handed to the pusher.
    pub offered: u64,
    /// Of which settled: pushed, failed, or skipped for a newer one.
    pub settled: u64,
    /// Pushes that committed a manifest.
    pub pushed: u64,
    /// Pushes that failed (the next checkpoint's push retries what they
    /// did not upload).
    pub failed: u64,
    /// Bytes uploaded by every push so far.
    pub uploaded_bytes: u64,
    /// The last push that committed.
    pub last: Option<PushReport>,
    /// The writer epoch this store pushes under.
    pub writer_epoch: u64,
}

#[derive(Debug, Default)]
struct State {
    progress: PushProgress,
    /// The checkpoint waiting to be pushed.
    next: Option<Snapshot>,
    /// The store is closing: the thread ends after the push under way.
    closed: bool,
    /// The last failure, until someone is told.
    error: Option<Error>,
    /// `(own epoch, the epoch that took over)` once fenced: for good.
    fenced: Option<(u64, u64)>,
    /// Pins set or cleared and not yet applied, by checkpoint id.
    pins: std::collections::HashMap<Uuid, bool>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// A push settled.
    settled: Condvar,
    /// A checkpoint is waiting, or the store closes.
    work: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic on the pusher thread poisons nothing we rely on: the
        // counters stay consistent under each single update.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a store knows of itself when it starts pushing.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    /// The checkpoints it retains.
    pub(crate) local: Vec<Uuid>,
    /// The epoch it recovered.
    pub(crate) epoch: u64,
    /// Whether this open restored it from the same remote store.
    pub(crate) restored: bool,
}

/// The pusher of one store (see the module docs).
#[derive(Debug)]
pub(crate) struct Pusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    fs: Arc<dyn Fs>,
    layout: Layout,
    url: String,
}

impl Pusher {
    /// Starts the pusher thread, which claims `remote` (fencing whoever
    /// pushed to it before) and returns once the claim is made. The claim
    /// runs on that thread, so this may be called from async code.
    pub(crate) fn start(remote: Remote, fs: Arc<dyn Fs>, layout: Layout, origin: Origin) -> Result<Pusher> {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel();
        let (s, f, l) = (Arc::clone(&shared), Arc::clone(&fs), layout.clone());
        let url = remote.url().to_string();
        let dispatch = crate::io::caller_subscriber();
        let thread = std::thread::Builder::new()
            .name("statespine-push".into())
            .spawn(move || {
                let _default = dispatch.as_ref().map(tracing::dispatcher::set_default);
                pusher_thread(&remote, f.as_ref(), &l, &origin, &s, &tx);
            })
            .map_err(|e| Error::io("spawn", std::path::Path::new("statespine-push"), e))?;
        let mut pusher = Pusher {
            shared,
            thread: Some(thread),
            fs,
            layout,
            url,
        };
        match rx.recv() {
            Ok(Ok(())) => Ok(pusher),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                pusher.thread.take().map(JoinHandle::join);
                Err(Error::Panicked {
                    thread: "the pusher thread",
                })
            }
        }
    }

    /// Sets the checkpoints to keep whatever the retention count from the
    /// next push on: those of `ids` the remote store retains, or this store
    /// pushes later.
    pub(crate) fn pin(&self, ids: &[Uuid], pinned: bool) {
        let mut st = self.shared.lock();
        for id in ids {
            st.pins.insert(*id, pinned);
        }
    }

    /// `Err(Fenced)` once another writer took the remote store over.
    pub(crate) fn check(&self) -> Result<()> {
        match self.shared.lock().fenced {
            Some((writer_epoch, by)) => Err(self.fenced(writer_epoch, by)),
            None => Ok(()),
        }
    }

    fn fenced(&self, writer_epoch: u64, by: u64) -> Error {
        Error::Fenced {
            url: self.url.clone(),
            writer_epoch,
            by,
        }
    }

    /// Hands the checkpoint `manifest` just committed to the pusher: opens
    /// its files now, before a later commit can retire them. A failure to
    /// open them is the push's failure, reported by [`Pusher::wait`], never
    /// the checkpoint's (it committed).
    pub(crate) fn offer(&self, manifest: &crate::checkpoint::CheckpointManifest) {
        let snap = Snapshot::take(self.fs.as_ref(), &self.layout, manifest);
        let mut st = self.shared.lock();
        st.progress.offered += 1;
        match snap {
            Ok(snap) => {
                if st.next.replace(snap).is_some() {
                    // Skipped for this newer one.
                    st.progress.settled += 1;
                }
                self.shared.work.notify_one();
            }
            Err(e) => {
                st.progress.settled += 1;
                st.progress.failed += 1;
                st.error.get_or_insert(e);
            }
        }
        self.shared.settled.notify_all();
    }

    /// Where pushes stand.
    pub(crate) fn progress(&self) -> PushProgress {
        self.shared.lock().progress.clone()
    }

    /// Waits until every checkpoint offered so far is settled, then
    /// reports the last push, or the first failure not yet reported
    /// (fenced: every time).
    pub(crate) fn wait(&self, timeout: Duration) -> Result<Option<PushReport>> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        while st.progress.settled < st.progress.offered {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::TimedOut {
                    what: format!("pushing to {}", self.url),
                    after: timeout,
                });
            }
            st = self
                .shared
                .settled
                .wait_timeout(st, left)
                .map_or_else(|p| p.into_inner().0, |r| r.0);
        }
        if let Some((writer_epoch, by)) = st.fenced {
            st.error = None;
            return Err(self.fenced(writer_epoch, by));
        }
        match st.error.take() {
            Some(e) => Err(e),
            None => Ok(st.progress.last.clone()),
        }
    }
}

impl Drop for Pusher {
    /// Lets the push under way, and the one waiting, finish (a manifest
    /// commits or not: either leaves the remote store whole), then stops
    /// the thread.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The pusher thread: claims `remote`, says how that went on `tx`, then
/// pushes until the store closes.
fn pusher_thread(
    remote: &Remote,
    fs: &dyn Fs,
    layout: &Layout,
    origin: &Origin,
    shared: &Shared,
    tx: &mpsc::Sender<Result<()>>,
) {
    match claim(remote, fs, layout, origin) {
        Ok((rt, writer, known)) => {
            tracing::info!(url = %remote.url(), writer_epoch = writer.epoch(), "remote store claimed");
            shared.lock().progress.writer_epoch = writer.epoch();
            let _ = tx.send(Ok(()));
            run(&rt, writer, known, shared);
        }
        Err(e) => {
            tracing::error!(url = %remote.url(), error = %e, "remote store not claimed");
            let _ = tx.send(Err(e));
        }
    }
}

/// On the pusher thread: checks that `remote` continues this store's
/// history, claims it, and seeds the objects it holds of this store's.
fn claim(
    remote: &Remote,
    fs: &dyn Fs,
    layout: &Layout,
    origin: &Origin,
) -> Result<(tokio::runtime::Runtime, Writer, Known)> {
    let rt = super::runtime(remote)?;
    // Checked before the claim, which would fence the bucket's owner.
    let (newest, _) = rt.block_on(super::newest_manifest(remote))?;
    if !origin.restored {
        check_lineage(remote, layout, newest.as_ref(), &origin.local)?;
    }
    // The checkpoints of this store's history: those it holds, and those
    // up to the epoch it recovered (a store restored from an older
    // checkpoint leaves the later ones of the old owner's history).
    let ours = |c: &super::RemoteCheckpoint| origin.local.contains(&c.id) || c.epoch <= origin.epoch;
    let writer = rt.block_on(Writer::claim_keeping(remote.clone(), ours))?;
    let mut known = Known::default();
    for c in writer
        .manifest()
        .checkpoints
        .iter()
        .filter(|c| origin.local.contains(&c.id))
    {
        for o in c.objects.iter().filter(|o| o.kind == ObjectKind::Run) {
            let path = layout.root.join(&o.local);
            let same = fs.open(&path).and_then(|f| f.size()).is_ok_and(|s| s == o.size);
            if same {
                known.add(o.clone());
            }
        }
    }
    Ok((rt, writer, known))
}

/// The pusher thread: one push at a time, the newest waiting one next.
fn run(rt: &tokio::runtime::Runtime, mut writer: Writer, mut known: Known, shared: &Shared) {
    let mut last_gc: Option<Instant> = None;
    loop {
        let (snap, fenced, pins) = {
            let mut st = shared.lock();
            while st.next.is_none() && !st.closed {
                st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            let Some(snap) = st.next.take() else { return };
            (snap, st.fenced, std::mem::take(&mut st.pins))
        };
        let result = match fenced {
            Some((writer_epoch, by)) => Err(Error::Fenced {
                url: writer.remote().url().to_string(),
                writer_epoch,
                by,
            }),
            None => rt.block_on(upload::push(&mut writer, &snap, &mut known, &pins)),
        };
        drop(snap);
        trace_push(&result);
        // Pins not applied (a failed push, or an id not pushed yet) wait
        // for the next push, unless set again since.
        let applied = |id: &Uuid| result.is_ok() && writer.manifest().checkpoints.iter().any(|c| c.id == *id);
        let unapplied: Vec<(Uuid, bool)> = pins.into_iter().filter(|(id, _)| !applied(id)).collect();
        if result.is_ok() && last_gc.is_none_or(|t| t.elapsed() >= writer.remote().settings.gc_interval()) {
            // Garbage is best effort: what stays is collected next time.
            match rt.block_on(gc::collect(writer.remote())) {
                Ok(r) => tracing::info!(
                    url = %writer.remote().url(),
                    listed = r.listed,
                    manifests_deleted = r.manifests_deleted,
                    objects_deleted = r.objects_deleted,
                    bytes_deleted = r.bytes_deleted,
                    "remote garbage collected"
                ),
                Err(e) => tracing::warn!(error = %e, "remote garbage collection failed"),
            }
            last_gc = Some(Instant::now());
        }
        let mut st = shared.lock();
        for (id, p) in unapplied {
            st.pins.entry(id).or_insert(p);
        }
        st.progress.settled += 1;
        match result {
            Ok(report) => {
                st.progress.pushed += 1;
                st.progress.uploaded_bytes += report.uploaded_bytes;
                st.progress.last = Some(report);
            }
            Err(e) => {
                if let Error::Fenced { writer_epoch, by, .. } = &e {
                    st.fenced = Some((*writer_epoch, *by));
                }
                st.progress.failed += 1;
                st.error.get_or_insert(e);
            }
        }
        shared.settled.notify_all();
    }
}

/// Says how a push ended (a fenced one is said where the fence is found).
fn trace_push(result: &Result<PushReport>) {
    match result {
        Ok(r) => tracing::info!(
            checkpoint = %r.checkpoint,
            epoch = r.epoch,
            manifest_seq = r.manifest_seq,
            objects = r.objects,
            uploaded_objects = r.uploaded_objects,
            uploaded_bytes = r.uploaded_bytes,
            total_bytes = r.total_bytes,
            elapsed_us = r.duration.as_micros() as u64,
            "checkpoint pushed"
        ),
        Err(Error::Fenced { .. }) => {}
        Err(e) => tracing::warn!(error = %e, "push failed: the next checkpoint's push retries"),
    }
}

/// Refuses to push a store to a bucket that holds another store's
/// checkpoints: its claim would fence that store's owner and its pushes mix
/// two histories. A bucket continues this store's history when it is
/// empty, or retains a checkpoint this store also retains (it pushed it,
/// or was restored from it).
fn check_lineage(
    remote: &Remote,
    layout: &Layout,
    newest: Option<&RemoteManifest>,
    local: &[Uuid],
) -> Result<()> {
    let Some(m) = newest else { return Ok(()) };
    if m.checkpoints.is_empty() || m.checkpoints.iter().any(|c| local.contains(&c.id)) {
        return Ok(());
    }
    Err(Error::Incompatible {
        path: layout.root.clone(),
        reason: format!(
            "{} holds checkpoints of another store (none of its {} is retained here): restore from it \
             (Options::restore_from, into an empty directory) to take it over, or push to an empty prefix",
            remote.url(),
            m.checkpoints.len()
        ),
    })
}
