//! [`Retention`]: which committed checkpoints are kept, which go, and how
//! far each shard's WAL may be truncated because of them.
//!
//! The newest `max_retained` checkpoints stay. A shard's WAL is truncated
//! below the least LSN any retained checkpoint replays it from, and only
//! after the checkpoints older than that are gone, so every retained
//! checkpoint can always be recovered.

use std::sync::Arc;

use uuid::Uuid;

use super::dir::{CheckpointStore, FileSystemCheckpointStore, TMP_DIR_SUFFIX};
use super::manifest::{CheckpointManifest, ShardManifest};
use crate::Result;
use crate::wal::Watermark;

#[derive(Debug, Clone)]
struct Retained {
    id: Uuid,
    epoch: u64,
    /// Per shard: the first LSN recovery of it replays.
    replay_from: Vec<u64>,
}

impl Retained {
    fn of(m: &CheckpointManifest) -> Retained {
        Retained {
            id: m.id,
            epoch: m.epoch,
            replay_from: m.shards.iter().map(ShardManifest::replay_from).collect(),
        }
    }
}

/// The retained checkpoints, oldest first, and the WAL truncation they
/// allow.
#[derive(Debug)]
pub(crate) struct Retention {
    retained: Vec<Retained>,
    max_retained: usize,
    /// Per shard, the LSN below which the WAL may be truncated by now.
    truncated: Vec<u64>,
}

impl Retention {
    /// The checkpoints `store` holds (those whose manifest loads), keeping
    /// `max_retained` of them from the next commit on.
    pub(crate) fn load(
        store: &FileSystemCheckpointStore,
        max_retained: usize,
        shards: usize,
    ) -> Result<Self> {
        let mut retained = Vec::new();
        for id in store.list()? {
            if let Ok(m) = store.load_manifest(id) {
                retained.push(Retained::of(&m));
            }
        }
        retained.sort_by_key(|r| r.epoch);
        let mut r = Retention {
            retained,
            max_retained,
            truncated: Vec::new(),
        };
        // What the last process let the WAL truncate: the least replay
        // point of what it retained ([`Retention::check_replay_floor`]).
        r.truncated = (0..shards).map(|n| r.floor(n).unwrap_or(0)).collect();
        Ok(r)
    }

    /// The least LSN a retained checkpoint replays shard `n` from.
    fn floor(&self, n: usize) -> Option<u64> {
        self.retained
            .iter()
            .filter_map(|r| r.replay_from.get(n).copied())
            .min()
    }

    /// Ids and epochs of the retained checkpoints, oldest first.
    pub(crate) fn list(&self) -> Vec<(Uuid, u64)> {
        self.retained.iter().map(|r| (r.id, r.epoch)).collect()
    }

    /// The epoch of the newest checkpoint (0 if none).
    pub(crate) fn last_epoch(&self) -> u64 {
        self.retained.last().map_or(0, |r| r.epoch)
    }

    /// Asserts that a checkpoint about to commit replays every shard from
    /// a point its WAL still holds. Paired with recovery's check that the
    /// log holds the replay point: the WAL below what was truncated is gone,
    /// so a checkpoint that replays from there could never be recovered.
    pub(crate) fn check_replay_floor(&self, m: &CheckpointManifest) {
        for (s, floor) in m.shards.iter().zip(&self.truncated) {
            assert!(
                s.replay_from() >= *floor,
                "checkpoint {}: shard {} would replay from LSN {}, but the WAL was truncated below {floor}",
                m.epoch,
                s.shard,
                s.replay_from()
            );
        }
    }

    /// The checkpoints the commit of one more may retire in its own sync
    /// round: with two or more kept, the previous checkpoint stays whatever
    /// happens to the new one, so the oldest surplus can go early.
    pub(crate) fn retire_before_commit(&self) -> Vec<Uuid> {
        if self.max_retained < 2 {
            return Vec::new();
        }
        let surplus = (self.retained.len() + 1).saturating_sub(self.max_retained);
        self.retained[..surplus].iter().map(|r| r.id).collect()
    }

    /// The checkpoints of `early` that a commit renamed away are gone,
    /// whether it committed or not (one it did not reach is still a
    /// committed checkpoint, and stays retained); returns them. After a
    /// failed commit their directories go now (best effort: the next open
    /// deletes what is left), after a good one the caller's janitor's.
    pub(crate) fn forget_renamed(
        &mut self,
        store: &FileSystemCheckpointStore,
        early: &[Uuid],
        committed: bool,
    ) -> Vec<Uuid> {
        let fs = store.fs();
        let gone: Vec<Uuid> = self
            .retained
            .iter()
            .filter(|r| early.contains(&r.id))
            .filter(|r| !fs.exists(&store.checkpoint_dir(r.id)).unwrap_or(true))
            .map(|r| r.id)
            .collect();
        for id in &gone {
            tracing::debug!(checkpoint = %id, "checkpoint retired by the commit");
        }
        self.retained.retain(|r| !gone.contains(&r.id));
        if !committed {
            for id in &gone {
                let dir = store.dir().join(format!("{id}{TMP_DIR_SUFFIX}"));
                let _ = fs.remove_dir_all(&dir);
            }
        }
        gone
    }

    /// A checkpoint committed: it is retained.
    pub(crate) fn committed(&mut self, m: &CheckpointManifest) {
        self.retained.push(Retained::of(m));
    }

    /// Deletes the oldest checkpoints past `max_retained`, then asks each
    /// shard's drainer to truncate its WAL below what the rest replay from;
    /// returns how many checkpoints went. A checkpoint that fails to go
    /// stays retained (and keeps its WAL) until a later commit removes it:
    /// the commit before this stands.
    pub(crate) fn retire(
        &mut self,
        store: &FileSystemCheckpointStore,
        watermarks: &[Option<Arc<Watermark>>],
    ) -> usize {
        let mut removed = 0;
        while self.retained.len() > self.max_retained {
            crate::io::kill_point("retention");
            let oldest = &self.retained[0];
            if !remove_checkpoint(store, oldest.id) {
                tracing::debug!(checkpoint = %oldest.id, epoch = oldest.epoch, "retired checkpoint not removed yet");
                break;
            }
            tracing::debug!(checkpoint = %oldest.id, epoch = oldest.epoch, "checkpoint retired");
            self.retained.remove(0);
            removed += 1;
        }
        for (n, w) in watermarks.iter().enumerate() {
            let Some(w) = w else { continue };
            if let Some(lsn) = self.floor(n) {
                if lsn > self.truncated[n] {
                    tracing::debug!(shard = n, below_lsn = lsn, "wal truncation requested");
                }
                w.request_truncate(lsn);
                self.truncated[n] = self.truncated[n].max(lsn);
            }
        }
        removed
    }
}

/// Deletes a checkpoint; true once it is no longer a committed one (its
/// directory renamed away, even if deleting the files failed).
fn remove_checkpoint(store: &FileSystemCheckpointStore, id: Uuid) -> bool {
    store.remove(id).is_ok() || !store.fs().exists(&store.checkpoint_dir(id)).unwrap_or(true)
}
