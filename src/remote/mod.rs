//! The remote tier (feature `remote`): a store's checkpoints in object
//! storage, through the `object_store` crate, so that a node that dies comes
//! back on another one with its state. `format/remote.md` holds the bytes
//! and the protocol; this is the shape.
//!
//! | module | owns |
//! | --- | --- |
//! | `keys` | object keys: the manifest sequence, data objects per writer epoch |
//! | `manifest` | [`RemoteManifest`]: one numbered manifest, as bytes |
//! | `fence` | [`Writer`]: claiming the remote store, committing manifests |
//! | `snapshot` | the local files of a committed checkpoint, opened at once |
//! | `upload` | one push: the missing objects, then the manifest |
//! | `push` | the pusher thread of a store |
//! | `restore` | a remote checkpoint into an empty store directory |
//! | `gc` | deleting what no retained remote checkpoint needs |
//! | `standby` | a local cache following a bucket, for failover without a download |
//!
//! ```
//! use std::sync::Arc;
//! use statespine::io::MemFs;
//! use statespine::remote::Remote;
//! use statespine::remote::object_store::memory::InMemory;
//! use statespine::store::{CheckpointRequest, Options};
//! use std::time::Duration;
//!
//! // Any object_store backend: Remote::from_url("s3://bucket/job-7") reads
//! // the AWS_* variables; here an in-memory bucket.
//! let bucket = Remote::from_store(Arc::new(InMemory::new()), "job-7")?;
//!
//! // Node A pushes every checkpoint after it commits.
//! let mut store = Options::new("/a").fs(Arc::new(MemFs::new())).push_to(bucket.clone()).open()?;
//! let mut shard = store.take_shards().remove(0);
//! let counts = shard.create_kv("counts")?;
//! shard.put(counts, b"apple", b"3")?;
//! let mut request = CheckpointRequest::default();
//! request.source_offsets.insert("orders".into(), 42);
//! store.checkpoint_inline(&mut [&mut shard], 1, request)?;
//! let pushed = store.wait_pushed(Duration::from_secs(10))?.expect("pushed");
//! assert_eq!(pushed.epoch, 1);
//!
//! // Node A is lost; node B restores into an empty directory and takes
//! // over (A, if it was only slow, is fenced: its next push fails).
//! let state = Options::new("/b")
//!     .fs(Arc::new(MemFs::new()))
//!     .restore_from(bucket.clone())
//!     .push_to(bucket)
//!     .recover()?;
//! assert_eq!((state.epoch, state.source_offsets["orders"]), (1, 42));
//! let mut b = state.store;
//! let shard_b = b.take_shards().remove(0);
//! let counts = shard_b.kv_spine("counts").unwrap();
//! assert_eq!(shard_b.get(counts, b"apple")?, Some(&b"3"[..]));
//! # Ok::<(), statespine::Error>(())
//! ```
//!
//! **The commit point** is one conditional create (`PutMode::Create`) of
//! the next manifest in a numbered sequence (`manifest/<seq:020>`). Each
//! manifest lists every retained remote checkpoint with every object it
//! needs; data objects (runs, WAL slices, checkpoint files) are uploaded
//! first, under keys no other write uses, so nothing is visible before the
//! manifest and a crash at any point leaves the previous manifest whole.
//!
//! **Fencing** (the SlateDB pattern): a writer claims the store by creating
//! the next manifest with its writer epoch, which is that manifest's number
//! (so epochs strictly grow without reading any older manifest); each of
//! its commits creates the number after its last. Whoever created a number
//! first owns it: a writer whose create finds the object there reads it,
//! and it is its own earlier write retried (same tag) or the proof that it
//! was fenced ([`crate::Error::Fenced`]).
//!
//! **Who owns a bucket** is whoever opened it last with `push_to` (as in
//! SlateDB): the claim at open fences the previous owner. A store may claim
//! only a bucket that continues its own history (empty, or retaining a
//! checkpoint the store retains too); a node replaced by another must not
//! be restarted with the same push target, or it takes the bucket back.

mod fence;
mod gc;
pub mod keys;
mod manifest;
mod push;
mod restore;
mod snapshot;
mod standby;
mod upload;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use fence::{Writer, newest_manifest};
pub use gc::{GcReport, collect};
pub use manifest::{
    ObjectKind, REMOTE_MAGIC, REMOTE_VERSION, RemoteCheckpoint, RemoteManifest, RemoteObject,
};
pub use object_store;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
pub use push::PushProgress;
pub(crate) use push::{Origin, Pusher};
pub use restore::{RESTORE_MARKER, RestoreReport};
pub(crate) use restore::{restore, wanted as restore_wanted};
pub use standby::{PullReport, Standby};
pub use upload::PushReport;

use crate::{Error, Result};

/// Where a store's checkpoints live in object storage: an object store and
/// a prefix in it.
#[derive(Clone)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    url: String,
    settings: Settings,
    progress: Option<ProgressFn>,
}

/// A long remote operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A push of a checkpoint's objects.
    Push,
    /// A restore's download.
    Restore,
    /// A standby's pull.
    Pull,
}

/// Where a push, restore or pull stands: given to the callback of
/// [`Remote::on_progress`] when it starts and after each object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// What runs.
    pub operation: Operation,
    /// Objects transferred so far.
    pub objects_done: usize,
    /// Objects it transfers (those already there not counted).
    pub objects_total: usize,
    /// Bytes transferred so far.
    pub bytes_done: u64,
    /// Bytes it transfers.
    pub bytes_total: u64,
}

/// A progress callback ([`Remote::on_progress`]).
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// Counts one operation's progress and tells the callback.
pub(crate) struct Tracker<'a> {
    remote: &'a Remote,
    now: std::cell::Cell<Progress>,
}

impl<'a> Tracker<'a> {
    pub(crate) fn start(
        remote: &'a Remote,
        operation: Operation,
        objects_total: usize,
        bytes_total: u64,
    ) -> Self {
        let now = Progress {
            operation,
            objects_done: 0,
            objects_total,
            bytes_done: 0,
            bytes_total,
        };
        if let Some(f) = &remote.progress {
            f(now);
        }
        Tracker {
            remote,
            now: std::cell::Cell::new(now),
        }
    }

    /// One more object of `bytes` done.
    pub(crate) fn done(&self, bytes: u64) {
        let mut p = self.now.get();
        p.objects_done += 1;
        p.bytes_done += bytes;
        self.now.set(p);
        if let Some(f) = &self.remote.progress {
            f(p);
        }
    }
}

/// How a remote store is pushed to and collected: [`Remote`]'s setters.
#[derive(Debug, Clone, Copy)]
struct Settings {
    keep: usize,
    concurrency: usize,
    part_size: usize,
    grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            keep: 3,
            concurrency: 8,
            part_size: 16 << 20,
            grace: Duration::from_secs(600),
        }
    }
}

impl Settings {
    /// How often a pusher collects garbage: each push when the grace period
    /// is short, at most once a minute otherwise (a collection lists every
    /// object under the prefix).
    fn gc_interval(&self) -> Duration {
        self.grace.min(Duration::from_secs(60))
    }
}

/// Runs `f` on a thread of its own and waits for it: a blocking remote
/// call made there drives its own runtime, so the caller may be async code
/// (a runtime cannot be started inside another).
pub(crate) fn off_the_caller<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let (dispatch, span) = (crate::io::caller_subscriber(), tracing::Span::current());
    std::thread::scope(|s| {
        s.spawn(move || {
            let _default = dispatch.as_ref().map(tracing::dispatcher::set_default);
            span.in_scope(f)
        })
        .join()
        .unwrap_or(Err(Error::Panicked {
            thread: "a remote store's call",
        }))
    })
}

/// The single-threaded runtime a store's remote work runs on (its own
/// thread's, never the caller's).
pub(crate) fn runtime(remote: &Remote) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Remote {
            op: "start a runtime",
            url: remote.url.clone(),
            source: Box::new(e),
        })
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// The remote store at `url` (`s3://bucket/prefix`, `gs://`, `az://`,
    /// `file:///path`, `memory://`), configured from the standard
    /// environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`: those
    /// `object_store`'s builders read).
    pub fn from_url(url: &str) -> Result<Remote> {
        Remote::from_url_with(url, std::iter::empty::<(String, String)>())
    }

    /// [`Remote::from_url`] with builder options (`object_store`'s
    /// configuration keys, e.g. `aws_endpoint`, `aws_allow_http`) that
    /// override the environment's.
    pub fn from_url_with<I, K, V>(url: &str, options: I) -> Result<Remote>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let bad = |e: String| Error::InvalidArgument(format!("remote URL {url:?}: {e}"));
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let env = std::env::vars().map(|(k, v)| (k.to_ascii_lowercase(), v));
        let given = options
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.into()));
        let (store, prefix) =
            object_store::parse_url_opts(&parsed, env.chain(given)).map_err(|e| bad(e.to_string()))?;
        Ok(Remote {
            store: Arc::from(store),
            prefix,
            url: url.trim_end_matches('/').to_string(),
            settings: Settings::default(),
            progress: None,
        })
    }

    /// A remote store over an object store built by the caller (its own
    /// client settings, a wrapper that counts or injects faults), under
    /// `prefix`.
    pub fn from_store(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Remote> {
        let prefix = ObjectPath::parse(prefix)
            .map_err(|e| Error::InvalidArgument(format!("remote prefix {prefix:?}: {e}")))?;
        let url = format!("{store}/{prefix}");
        Ok(Remote {
            store,
            prefix,
            url,
            settings: Settings::default(),
            progress: None,
        })
    }

    /// Calls `f` as pushes, restores and pulls through this remote store
    /// progress (on their own thread: keep it short).
    #[must_use]
    pub fn on_progress(mut self, f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Remote checkpoints a push keeps (default 3, at least 1), besides
    /// pinned ones.
    #[must_use]
    pub fn keep(mut self, n: usize) -> Self {
        self.settings.keep = n.max(1);
        self
    }

    /// Requests a push, restore or collection keeps in flight at once
    /// (default 8, at least 1).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.settings.concurrency = n.max(1);
        self
    }

    /// Objects larger than this go up in parts of this size (default 16
    /// MiB; at least 5 MiB, S3's smallest part).
    #[must_use]
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.settings.part_size = bytes.max(5 << 20);
        self
    }

    /// How long an object nothing references survives (default 10
    /// minutes): longer than any push takes to write its manifest and
    /// any restore takes to read what it listed.
    #[must_use]
    pub fn gc_grace(mut self, grace: Duration) -> Self {
        self.settings.grace = grace;
        self
    }

    /// The URL it was made from, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The full path of `key` (relative to the prefix).
    pub(crate) fn path(&self, key: &str) -> ObjectPath {
        key.split('/').fold(self.prefix.clone(), |p, part| p.join(part))
    }

    /// `key` as a URL, for errors.
    pub(crate) fn name(&self, key: &str) -> String {
        format!("{}/{key}", self.url)
    }

    /// An `object_store` failure of `op` on `key`, as this crate's error.
    pub(crate) fn error(&self, op: &'static str, key: &str, e: object_store::Error) -> Error {
        Error::Remote {
            op,
            url: self.name(key),
            source: Box::new(e),
        }
    }
}
