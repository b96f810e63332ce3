//! The remote tier's part of a store (feature `remote`, module docs of
//! [`crate::remote`]): restoring an empty directory from a bucket before
//! recovery, and pushing each checkpoint after it commits.

use std::sync::Arc;
use std::time::Duration;

use super::{Options, Store};
use crate::checkpoint::Layout;
use crate::remote::{Origin, PushProgress, PushReport, Pusher, Remote, RestoreReport};
use crate::{Error, Result};

/// Where a store pushes to and restores from.
#[derive(Debug, Clone, Default)]
pub(crate) struct RemoteConfig {
    push: Option<Remote>,
    restore: Option<(Remote, Option<u64>)>,
    cache: Option<std::path::PathBuf>,
}

impl Options {
    /// Pushes every checkpoint to `remote` after it commits locally, off
    /// the shard and coordinator threads ([`Store::wait_pushed`],
    /// [`Store::push_progress`]). Opening claims the remote store: any
    /// other writer pushing to it is fenced from then on, and a store that
    /// finds itself fenced refuses every later checkpoint and epoch commit
    /// with [`Error::Fenced`]. Dropping the store (or
    /// [`Store::shutdown`], whose final checkpoint is pushed too) waits for
    /// the push under way.
    #[must_use]
    pub fn push_to(mut self, remote: Remote) -> Self {
        self.remote.push = Some(remote);
        self
    }

    /// Restores the newest valid checkpoint of `remote` when the directory
    /// holds no store yet (missing, empty, or an interrupted restore); a
    /// directory that holds one opens as it is, so the same options serve
    /// every start. The store then recovers exactly the epoch, state and
    /// offsets that checkpoint recorded ([`super::RecoveredState::restored`]
    /// says what came down). An empty remote store gives a new store.
    #[must_use]
    pub fn restore_from(mut self, remote: Remote) -> Self {
        self.remote.restore = Some((remote, None));
        self
    }

    /// A restore takes the objects it finds in `dir`, the cache of a
    /// [`crate::remote::Standby`] following the same remote store (each
    /// checked against its crc32c, then hard-linked), and downloads only
    /// the rest: failing over to a standby is a recovery, not a download.
    #[must_use]
    pub fn restore_cache(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.remote.cache = Some(dir.into());
        self
    }

    /// [`Options::restore_from`] the remote checkpoint of `epoch`
    /// ([`Error::EpochNotRecoverable`] if the remote store retains none).
    #[must_use]
    pub fn restore_from_epoch(mut self, remote: Remote, epoch: u64) -> Self {
        self.remote.restore = Some((remote, Some(epoch)));
        self
    }
}

/// Restores into the locked, still unrecovered directory, if asked and
/// wanted.
pub(super) fn restore(opts: &Options, layout: &Layout) -> Result<Option<RestoreReport>> {
    let Some((remote, epoch)) = &opts.remote.restore else {
        return Ok(None);
    };
    if !crate::remote::restore_wanted(opts.fs.as_ref(), layout)? {
        return Ok(None);
    }
    let cache = opts.remote.cache.as_deref();
    crate::remote::restore(opts.fs.as_ref(), layout, remote, *epoch, cache)
}

/// Claims the push target and starts the pusher of a recovered store;
/// `restored`: this open restored it (from the restore source).
pub(super) fn start(store: &mut Store, restored: bool) -> Result<()> {
    let Some(remote) = store.opts.remote.push.clone() else {
        return Ok(());
    };
    let same = |r: &Remote| r.url() == remote.url();
    let origin = Origin {
        local: store.coordinator.retained().iter().map(|r| r.0).collect(),
        epoch: store.last_epoch(),
        restored: restored && store.opts.remote.restore.as_ref().is_some_and(|(r, _)| same(r)),
    };
    let fs = Arc::clone(&store.opts.fs);
    let pusher = Pusher::start(remote, fs, store.layout.clone(), origin)?;
    store.coordinator.set_pusher(pusher);
    Ok(())
}

impl Store {
    /// Waits until every checkpoint committed so far is pushed (or its
    /// push failed, or was skipped for a newer one), for at most `timeout`;
    /// returns the last push, or the first failure not reported yet
    /// ([`Error::Fenced`] once fenced, every time). `Ok(None)`: nothing
    /// pushed yet.
    pub fn wait_pushed(&self, timeout: Duration) -> Result<Option<PushReport>> {
        self.pusher("wait_pushed")?.wait(timeout)
    }

    /// Keeps the remote checkpoints `ids` (this store's checkpoint ids,
    /// [`crate::store::IncrementalCheckpointMetadata::id`]) whatever the
    /// retention count, from the next push on (an id not pushed yet, from
    /// its push); `pinned: false` releases them.
    pub fn pin_remote(&self, ids: &[uuid::Uuid], pinned: bool) -> Result<()> {
        self.pusher("pin_remote")?.pin(ids, pinned);
        Ok(())
    }

    /// Where pushes stand (`None` without a push target).
    pub fn push_progress(&self) -> Option<PushProgress> {
        self.coordinator.pusher().map(Pusher::progress)
    }

    fn pusher(&self, what: &str) -> Result<&Pusher> {
        self.coordinator.pusher().ok_or_else(|| {
            Error::InvalidArgument(format!("{what}: the store has no push target (Options::push_to)"))
        })
    }
}
