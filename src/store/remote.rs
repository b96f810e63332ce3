//! The remote tier's part of a store (feature `remote`, module docs of
//! [`crate::remote`]): restoring an empty directory from a bucket before
//! recovery, and pushing each checkpoint after it commits.

use std::sync::Arc;
use std::time::Duration;

use super::{Options, Store};
use crate::checkpoint::Layout;
use crate::remote::{PushProgress, PushReport, Pusher, Remote, RestoreReport};
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

/// Claims the push target and starts the pusher of a recovered store.
pub(super) fn start(store: &mut Store) -> Result<()> {
    if let Some(remote) = store.opts.remote.push.clone() {
        let local: Vec<uuid::Uuid> = store.coordinator.retained().iter().map(|r| r.0).collect();
        let fs = Arc::clone(&store.opts.fs);
        store.pusher = Some(Pusher::start(remote, fs, store.layout.clone(), &local)?);
    }
    Ok(())
}

impl Store {
    /// `Err(Fenced)` once another writer took the push target over.
    pub(super) fn check_fenced(&self) -> Result<()> {
        self.pusher.as_ref().map_or(Ok(()), Pusher::check)
    }

    /// Checkpoint `id` committed: hand it to the pusher.
    pub(super) fn committed_checkpoint(&self, id: uuid::Uuid) {
        if let Some(p) = &self.pusher {
            p.offer(id);
        }
    }

    /// Waits until every checkpoint committed so far is pushed (or its
    /// push failed, or was skipped for a newer one), for at most `timeout`;
    /// returns the last push, or the first failure not reported yet
    /// ([`Error::Fenced`] once fenced). `Ok(None)`: nothing pushed yet.
    pub fn wait_pushed(&self, timeout: Duration) -> Result<Option<PushReport>> {
        match &self.pusher {
            Some(p) => p.wait(timeout),
            None => Err(Error::InvalidArgument(
                "wait_pushed: the store has no push target (Options::push_to)".into(),
            )),
        }
    }

    /// Keeps the remote checkpoints `ids` (this store's checkpoint ids,
    /// [`crate::store::IncrementalCheckpointMetadata::id`]) whatever the
    /// retention count, from the next push on; `pinned: false` releases
    /// them. Ids the remote store does not hold are ignored.
    pub fn pin_remote(&self, ids: &[uuid::Uuid], pinned: bool) -> Result<()> {
        match &self.pusher {
            Some(p) => {
                p.pin(ids, pinned);
                Ok(())
            }
            None => Err(Error::InvalidArgument(
                "pin_remote: the store has no push target (Options::push_to)".into(),
            )),
        }
    }

    /// Where pushes stand (`None` without a push target).
    pub fn push_progress(&self) -> Option<PushProgress> {
        self.pusher.as_ref().map(Pusher::progress)
    }
}
