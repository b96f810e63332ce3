//! Restore: the newest valid remote checkpoint (or a chosen epoch's) into
//! an empty store directory, so that opening it recovers exactly the
//! state, epoch and offsets that checkpoint recorded.
//!
//! Every object is downloaded in parallel, checked against the size and
//! crc32c the manifest gives, and synced; the checkpoint's files go into
//! `checkpoints/<id>.tmp/`, its WAL slices into `shards/<n>/wal/`, and the
//! rename of the directory is the local commit. A `RESTORE` marker at the
//! store root says a restore is under way: an open that finds it (a crash,
//! a failed download) wipes what the restore wrote and starts over, so a
//! directory is never left half-restored. A damaged object sends the
//! restore to the next older retained checkpoint; an object that vanished
//! (garbage collection of a manifest superseded since it was read) sends
//! it back to the newest manifest.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use uuid::Uuid;

use super::fence::newest_manifest;
use super::{ObjectKind, Operation, Remote, RemoteCheckpoint, RemoteObject, Tracker};
use crate::checkpoint::{Layout, TMP_DIR_SUFFIX};
use crate::io::Fs;
use crate::{Error, Result};

/// The marker of a restore under way, at the store root.
pub const RESTORE_MARKER: &str = "RESTORE";

/// Times the manifest is read again when objects vanish under a restore.
const RELIST_ATTEMPTS: usize = 4;

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The checkpoint restored.
    pub checkpoint: Uuid,
    /// Its epoch.
    pub epoch: u64,
    /// The manifest it was listed in.
    pub manifest_seq: u64,
    /// Objects restored.
    pub objects: usize,
    /// Of which taken from a standby's cache rather than downloaded.
    pub from_cache: usize,
    /// Their bytes (cached ones included).
    pub bytes: u64,
    /// Newer checkpoints passed over, and why (a damaged object).
    pub skipped: Vec<(Uuid, String)>,
    /// The whole restore.
    pub duration: Duration,
}

/// True when the store at `layout` has nothing a restore would overwrite
/// (no checkpoint and no shard directory), or holds an unfinished restore.
pub(crate) fn wanted(fs: &dyn Fs, layout: &Layout) -> Result<bool> {
    Ok(fs.exists(&layout.root.join(RESTORE_MARKER))?
        || !(fs.exists(&layout.checkpoints())? || fs.exists(&layout.root.join("shards"))?))
}

/// Restores into the store directory at `layout` (locked by the caller):
/// the newest checkpoint of `remote`, or the one of epoch `epoch`.
/// `Ok(None)` when the remote store holds no checkpoint: the directory
/// stays empty, for a new store. Runs on a thread of its own, so it may be
/// called from async code.
pub(crate) fn restore(
    fs: &dyn Fs,
    layout: &Layout,
    remote: &Remote,
    epoch: Option<u64>,
    cache: Option<&Path>,
) -> Result<Option<RestoreReport>> {
    let span = tracing::info_span!("restore", url = %remote.url(), epoch);
    let _entered = span.enter();
    let restored = super::off_the_caller(|| restore_here(fs, layout, remote, epoch, cache));
    match &restored {
        Ok(Some(r)) => tracing::info!(
            checkpoint = %r.checkpoint,
            epoch = r.epoch,
            manifest_seq = r.manifest_seq,
            objects = r.objects,
            from_cache = r.from_cache,
            bytes = r.bytes,
            passed_over = r.skipped.len(),
            elapsed_us = r.duration.as_micros() as u64,
            "checkpoint restored"
        ),
        Ok(None) => tracing::info!("nothing to restore: the remote store holds no checkpoint"),
        Err(e) => tracing::error!(error = %e, "restore failed"),
    }
    restored
}

fn restore_here(
    fs: &dyn Fs,
    layout: &Layout,
    remote: &Remote,
    epoch: Option<u64>,
    cache: Option<&Path>,
) -> Result<Option<RestoreReport>> {
    let started = Instant::now();
    let marker = layout.root.join(RESTORE_MARKER);
    wipe(fs, layout)?;
    // An earlier restore's marker stays: it is the same statement.
    if !fs.exists(&marker)? {
        fs.create(&marker)?.sync_data()?;
        fs.sync_dir(&layout.root)?;
    }
    let rt = super::runtime(remote)?;
    let mut skipped: Vec<(uuid::Uuid, String)> = Vec::new();
    for _ in 0..RELIST_ATTEMPTS {
        let (newest, _) = rt.block_on(newest_manifest(remote))?;
        let Some(m) = newest else {
            return finish(fs, layout, epoch, &[]).map(|()| None);
        };
        let candidates: Vec<&RemoteCheckpoint> = m
            .checkpoints
            .iter()
            .rev()
            .filter(|c| epoch.is_none_or(|e| c.epoch == e))
            .filter(|c| !skipped.iter().any(|(id, _)| *id == c.id))
            .collect();
        if candidates.is_empty() {
            if !skipped.is_empty() {
                // Every checkpoint there is damaged: never a new, empty
                // store in its place. The marker stays; the next open tries
                // again.
                return Err(all_damaged(remote, &skipped));
            }
            let recoverable: Vec<u64> = m.checkpoints.iter().map(|c| c.epoch).collect();
            return finish(fs, layout, epoch, &recoverable).map(|()| None);
        }
        for c in candidates {
            match rt.block_on(download(fs, layout, remote, c, cache)) {
                Ok((bytes, from_cache)) => {
                    fs.remove_file(&marker)?;
                    fs.sync_dir(&layout.root)?;
                    return Ok(Some(RestoreReport {
                        checkpoint: c.id,
                        epoch: c.epoch,
                        manifest_seq: m.seq,
                        objects: c.objects.len(),
                        from_cache,
                        bytes,
                        skipped,
                        duration: started.elapsed(),
                    }));
                }
                Err(e) => {
                    wipe(fs, layout)?;
                    if e.is_corruption() {
                        tracing::warn!(checkpoint = %c.id, epoch = c.epoch, reason = %e, "fallback past damaged remote checkpoint");
                        skipped.push((c.id, e.to_string()));
                        continue;
                    }
                    if !is_not_found(&e) {
                        return Err(e);
                    }
                    // Collected under us (a newer manifest superseded this
                    // one): read the newest again. If it is still this one,
                    // the object is lost: as good as damaged.
                    let (now, _) = rt.block_on(newest_manifest(remote))?;
                    if now.is_some_and(|n| n.seq == m.seq) {
                        skipped.push((c.id, e.to_string()));
                        continue;
                    }
                    break;
                }
            }
        }
    }
    Err(Error::TimedOut {
        what: format!(
            "restoring from {}: every checkpoint failed or vanished",
            remote.url()
        ),
        after: started.elapsed(),
    })
}

/// No retained checkpoint restores whole.
fn all_damaged(remote: &Remote, skipped: &[(uuid::Uuid, String)]) -> Error {
    let (id, why) = &skipped[0];
    Error::corrupt(
        &PathBuf::from(remote.url()),
        0,
        "remote checkpoints",
        "one that restores whole",
        format!("{} damaged, the newest ({id}): {why}", skipped.len()),
    )
}

/// No checkpoint to restore: a new store, unless an epoch was asked for.
fn finish(fs: &dyn Fs, layout: &Layout, epoch: Option<u64>, recoverable: &[u64]) -> Result<()> {
    if let Some(epoch) = epoch {
        return Err(Error::EpochNotRecoverable {
            epoch,
            recoverable: recoverable.to_vec(),
        });
    }
    fs.remove_file(&layout.root.join(RESTORE_MARKER))?;
    fs.sync_dir(&layout.root)
}

fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Remote { source, .. }
        if matches!(source.downcast_ref::<object_store::Error>(), Some(object_store::Error::NotFound { .. })))
}

/// Removes what a restore writes (the marker stays).
fn wipe(fs: &dyn Fs, layout: &Layout) -> Result<()> {
    for dir in [layout.checkpoints(), layout.root.join("shards")] {
        if fs.exists(&dir)? {
            fs.remove_dir_all(&dir)?;
        }
    }
    Ok(())
}

/// Where object `local` of checkpoint `id` goes while it downloads.
fn staging(layout: &Layout, id: Uuid, local: &str) -> PathBuf {
    let prefix = format!("checkpoints/{id}/");
    match local.strip_prefix(&prefix) {
        Some(name) => layout
            .checkpoints()
            .join(format!("{id}{TMP_DIR_SUFFIX}"))
            .join(name),
        None => local.split('/').fold(layout.root.clone(), |p, part| p.join(part)),
    }
}

/// Downloads every object of `c` (or takes it from `cache`), checked and
/// synced, then renames its directory into place; returns the bytes and
/// how many objects came from the cache.
async fn download(
    fs: &dyn Fs,
    layout: &Layout,
    remote: &Remote,
    c: &RemoteCheckpoint,
    cache: Option<&Path>,
) -> Result<(u64, usize)> {
    let tmp = layout.checkpoints().join(format!("{}{TMP_DIR_SUFFIX}", c.id));
    let mut dirs = vec![tmp.clone()];
    let places: Vec<(&RemoteObject, PathBuf)> = c
        .objects
        .iter()
        .map(|o| (o, staging(layout, c.id, &o.local)))
        .collect();
    for (o, at) in &places {
        let in_ck = o.local.starts_with(&format!("checkpoints/{}/", c.id));
        // Decoding allowed only these shapes; a checkpoint file of another
        // checkpoint would be a manifest bug.
        assert!(
            in_ck || o.kind == ObjectKind::Wal,
            "remote object {} outside its checkpoint",
            o.local
        );
        let parent = crate::io::parent_dir(at);
        if !dirs.contains(&parent) {
            dirs.push(parent);
        }
    }
    for d in &dirs {
        crate::io::create_dir_all_durable(fs, d)?;
    }
    let mut from_cache = 0;
    let mut todo = Vec::new();
    for (o, to) in places {
        match cache {
            Some(cache) if from_cached(fs, cache, o, &to)? => from_cache += 1,
            _ => todo.push((o, to)),
        }
    }
    let bytes = todo.iter().map(|(o, _)| o.size).sum();
    let tracker = Tracker::start(remote, Operation::Restore, todo.len(), bytes);
    futures::stream::iter(todo)
        .map(|(o, to)| fetch(fs, remote, o, to))
        .buffer_unordered(remote.settings.concurrency)
        .inspect_ok(|n| tracker.done(*n))
        .try_collect::<Vec<u64>>()
        .await?;
    for d in &dirs {
        fs.sync_dir(d)?;
    }
    fs.rename(&tmp, &layout.checkpoints().join(c.id.to_string()))?;
    fs.sync_dir(&layout.checkpoints())?;
    Ok((c.bytes(), from_cache))
}

/// Takes `o` from a standby's cache if a whole, matching copy is there:
/// hard-linked (a WAL slice, which the store appends to, copied).
/// `Ok(false)`: not cached, or damaged there; download it.
fn from_cached(fs: &dyn Fs, cache: &Path, o: &RemoteObject, to: &Path) -> Result<bool> {
    let at = super::standby::cached(cache, &o.key);
    if !fs.exists(&at)? {
        return Ok(false);
    }
    let f = fs.open(&at)?;
    if f.size()? != o.size {
        return Ok(false);
    }
    let map = f.map(o.size)?;
    if crc32c::crc32c(&map) != o.crc32c {
        return Ok(false);
    }
    if o.kind != ObjectKind::Wal && fs.hard_link(&at, to).is_ok() {
        return Ok(true);
    }
    let mut w = fs.create(to)?;
    w.append(&map)?;
    w.sync_data()?;
    Ok(true)
}

/// Downloads one object to `to`, checks its size and crc32c against the
/// manifest's, and syncs it.
pub(crate) async fn fetch(fs: &dyn Fs, remote: &Remote, o: &RemoteObject, to: PathBuf) -> Result<u64> {
    let err = |e| remote.error("get", &o.key, e);
    let got = remote.store.get(&remote.path(&o.key)).await.map_err(err)?;
    let mut stream = got.into_stream();
    let mut file = fs.create(&to)?;
    let (mut crc, mut size) = (0u32, 0u64);
    while let Some(chunk) = stream.try_next().await.map_err(err)? {
        crc = crc32c::crc32c_append(crc, &chunk);
        size += chunk.len() as u64;
        if size > o.size {
            break;
        }
        file.append(&chunk)?;
    }
    let name = PathBuf::from(remote.name(&o.key));
    if size != o.size {
        return Err(mismatch(&name, "size", o.size.to_string(), size.to_string()));
    }
    if crc != o.crc32c {
        return Err(mismatch(
            &name,
            "crc32c",
            format!("{:#010x}", o.crc32c),
            format!("{crc:#010x}"),
        ));
    }
    file.sync_data()?;
    Ok(size)
}

fn mismatch(name: &Path, what: &'static str, expected: String, found: String) -> Error {
    Error::corrupt(name, 0, what, expected, found)
}
