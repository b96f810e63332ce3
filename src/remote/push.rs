//! [`Pusher`]: the thread that pushes committed checkpoints to the remote
//! store, off the shard and coordinator threads.
//!
//! The committing thread only opens the checkpoint's files ([`Snapshot`])
//! and hands them over; the pusher maps, checksums and uploads them with
//! its own single-threaded runtime. Checkpoints offered while a push runs
//! wait; if several wait, only the newest is pushed (each push carries
//! everything its checkpoint needs, so skipping one loses nothing).

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::gc;
use super::snapshot::Snapshot;
use super::upload::{self, Known, PushReport};
use super::{ObjectKind, Remote, Writer};
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
    /// The last failure, until someone is told.
    error: Option<Error>,
    /// `(own epoch, the epoch that took over)` once fenced: for good.
    fenced: Option<(u64, u64)>,
    /// Pins set or cleared since the last push, by checkpoint id.
    pins: std::collections::HashMap<Uuid, bool>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    settled: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic on the pusher thread poisons nothing we rely on: the
        // counters stay consistent under each single update.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The pusher of one store (see the module docs).
#[derive(Debug)]
pub(crate) struct Pusher {
    tx: Option<Sender<Snapshot>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    fs: Arc<dyn Fs>,
    layout: Layout,
    url: String,
}

impl Pusher {
    /// Claims `remote` (fencing whoever pushed to it before) and starts
    /// the pusher thread. `local` are the checkpoints the store retains:
    /// their runs that the remote store also holds are not uploaded again.
    pub(crate) fn start(remote: Remote, fs: Arc<dyn Fs>, layout: Layout, local: &[Uuid]) -> Result<Pusher> {
        let rt = super::runtime(&remote)?;
        // Checked before the claim, which would fence the bucket's owner.
        let (newest, _) = rt.block_on(super::newest_manifest(&remote))?;
        check_lineage(&remote, &layout, newest.as_ref(), local)?;
        let writer = rt.block_on(Writer::claim(remote.clone()))?;
        let mut known = Known::default();
        for c in writer
            .manifest()
            .checkpoints
            .iter()
            .filter(|c| local.contains(&c.id))
        {
            for o in c.objects.iter().filter(|o| o.kind == ObjectKind::Run) {
                let path = layout.root.join(&o.local);
                let same = fs.open(&path).and_then(|f| f.size()).is_ok_and(|s| s == o.size);
                if same {
                    known.add(o.clone());
                }
            }
        }
        let shared = Arc::new(Shared::default());
        shared.lock().progress.writer_epoch = writer.epoch();
        let (tx, rx) = mpsc::channel();
        let s = Arc::clone(&shared);
        let url = remote.url().to_string();
        let thread = std::thread::Builder::new()
            .name("statespine-push".into())
            .spawn(move || run(rt, writer, known, rx, &s))
            .map_err(|e| Error::io("spawn", std::path::Path::new("statespine-push"), e))?;
        Ok(Pusher {
            tx: Some(tx),
            shared,
            thread: Some(thread),
            fs,
            layout,
            url,
        })
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
            Some((writer_epoch, by)) => Err(Error::Fenced {
                url: self.url.clone(),
                writer_epoch,
                by,
            }),
            None => Ok(()),
        }
    }

    /// Hands committed checkpoint `id` to the pusher: opens its files now,
    /// before a later commit can retire them. A failure to open them is
    /// the push's failure, reported by [`Pusher::wait`], never the
    /// checkpoint's (it committed).
    pub(crate) fn offer(&self, id: Uuid) {
        let snap = Snapshot::take(self.fs.as_ref(), &self.layout, id);
        let mut st = self.shared.lock();
        st.progress.offered += 1;
        match snap {
            Ok(snap) => {
                if let Some(tx) = &self.tx
                    && tx.send(snap).is_ok()
                {
                    return;
                }
                st.progress.settled += 1;
                st.progress.failed += 1;
                st.error = Some(Error::Panicked {
                    thread: "the pusher thread",
                });
            }
            Err(e) => {
                st.progress.settled += 1;
                st.progress.failed += 1;
                st.error = Some(e);
            }
        }
        self.shared.settled.notify_all();
    }

    /// Where pushes stand.
    pub(crate) fn progress(&self) -> PushProgress {
        self.shared.lock().progress.clone()
    }

    /// Waits until every checkpoint offered so far is settled, then
    /// reports the last push, or the first failure not yet reported.
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
            // For good: every later wait says so too.
            st.error = None;
            return Err(Error::Fenced {
                url: self.url.clone(),
                writer_epoch,
                by,
            });
        }
        match st.error.take() {
            Some(e) => Err(e),
            None => Ok(st.progress.last.clone()),
        }
    }
}

impl Drop for Pusher {
    /// Lets the push under way finish (its manifest commits or not: either
    /// leaves the remote store whole), and stops the thread.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The pusher thread: one push at a time, the newest waiting one next.
fn run(
    rt: tokio::runtime::Runtime,
    mut writer: Writer,
    mut known: Known,
    rx: Receiver<Snapshot>,
    shared: &Shared,
) {
    let mut last_gc: Option<Instant> = None;
    while let Ok(mut snap) = rx.recv() {
        let mut skipped = 0;
        while let Ok(newer) = rx.try_recv() {
            snap = newer;
            skipped += 1;
        }
        let (fenced, pins) = {
            let mut st = shared.lock();
            (st.fenced, std::mem::take(&mut st.pins))
        };
        let result = if let Some((writer_epoch, by)) = fenced {
            Err(Error::Fenced {
                url: writer.remote().url().to_string(),
                writer_epoch,
                by,
            })
        } else {
            rt.block_on(upload::push(&mut writer, &snap, &mut known, &pins))
        };
        drop(snap);
        if result.is_err() {
            // Not applied: kept for the next push, unless set again since.
            let mut st = shared.lock();
            for (id, p) in pins {
                st.pins.entry(id).or_insert(p);
            }
        } else if last_gc.is_none_or(|t: Instant| t.elapsed() >= writer.remote().settings.gc_interval()) {
            // Garbage is best effort: what stays is collected next time.
            let _ = rt.block_on(gc::collect(writer.remote()));
            last_gc = Some(Instant::now());
        }
        let mut st = shared.lock();
        st.progress.settled += 1 + skipped;
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

/// Refuses to push a store to a bucket that holds another store's
/// checkpoints: its claim would fence that store's owner and its pushes mix
/// two histories. A bucket continues this store's history when it is
/// empty, or retains a checkpoint this store also retains (it pushed it,
/// or was restored from it).
fn check_lineage(
    remote: &Remote,
    layout: &Layout,
    newest: Option<&super::RemoteManifest>,
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
             (Options::restore_from) to take it over, or push to an empty prefix",
            remote.url(),
            m.checkpoints.len()
        ),
    })
}
