//! [`Standby`]: a local cache that follows a remote store, so that failing
//! over to this machine is a recovery, not a download.
//!
//! Each [`Standby::pull`] reads the newest manifest and downloads the
//! objects of its newest checkpoint that the cache lacks (checked against
//! size and crc32c, synced, then renamed into place: a cached file is whole
//! or absent), and deletes cached objects no retained checkpoint needs. A
//! restore given the cache (`Options::restore_cache`) takes every object
//! it finds there (checked again, then hard-linked; WAL slices, which the
//! store appends to, copied) and downloads only the rest.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};

use super::fence::newest_manifest;
use super::restore::fetch;
use super::{Operation, Remote, RemoteObject, Tracker};
use crate::io::{Fs, StdFs};
use crate::{Error, Result};

/// Suffix of an object being downloaded into the cache.
const PART_SUFFIX: &str = ".part";

/// What one pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    /// The manifest followed.
    pub manifest_seq: u64,
    /// The epoch of its newest checkpoint, now whole in the cache.
    pub epoch: u64,
    /// Objects downloaded by this pull.
    pub downloaded_objects: usize,
    /// Their bytes.
    pub downloaded_bytes: u64,
    /// Objects of the newest checkpoint already cached.
    pub cached_objects: usize,
    /// Cached objects deleted (no retained checkpoint needs them).
    pub removed_objects: usize,
    /// The whole pull.
    pub duration: Duration,
}

/// A follower of a remote store (module docs).
#[derive(Debug)]
pub struct Standby {
    remote: Remote,
    fs: Arc<dyn Fs>,
    cache: PathBuf,
}

/// Where object `key` lives in the cache at `cache`.
pub(crate) fn cached(cache: &Path, key: &str) -> PathBuf {
    key.split('/').fold(cache.to_path_buf(), |p, part| p.join(part))
}

impl Standby {
    /// A standby of `remote` caching into the directory `cache` (made if
    /// missing) on the real file system.
    pub fn new(remote: Remote, cache: impl Into<PathBuf>) -> Result<Standby> {
        Standby::with_fs(remote, Arc::new(StdFs::new()), cache)
    }

    /// [`Standby::new`] on the file system `fs`.
    pub fn with_fs(remote: Remote, fs: Arc<dyn Fs>, cache: impl Into<PathBuf>) -> Result<Standby> {
        let cache = cache.into();
        crate::io::create_dir_all_durable(fs.as_ref(), &cache)?;
        Ok(Standby { remote, fs, cache })
    }

    /// The cache directory, for `Options::restore_cache`.
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// Brings the cache up to the newest remote checkpoint (module docs);
    /// `Ok(None)` while the remote store holds none. Runs on a thread of
    /// its own, so it may be called from async code.
    pub fn pull(&mut self) -> Result<Option<PullReport>> {
        let this = &*self;
        super::off_the_caller(|| this.pull_here())
    }

    fn pull_here(&self) -> Result<Option<PullReport>> {
        let started = Instant::now();
        let rt = super::runtime(&self.remote)?;
        let (m, _) = rt.block_on(newest_manifest(&self.remote))?;
        let Some(m) = m else { return Ok(None) };
        let Some(newest) = m.newest() else { return Ok(None) };
        let fs = self.fs.as_ref();
        let mut report = PullReport {
            manifest_seq: m.seq,
            epoch: newest.epoch,
            ..PullReport::default()
        };
        let mut missing: Vec<&RemoteObject> = Vec::new();
        for o in &newest.objects {
            let at = cached(&self.cache, &o.key);
            if fs.exists(&at)? && fs.open(&at)?.size()? == o.size {
                report.cached_objects += 1;
            } else {
                missing.push(o);
            }
        }
        let (remote, cache) = (&self.remote, &self.cache);
        let bytes = missing.iter().map(|o| o.size).sum();
        let tracker = Tracker::start(remote, Operation::Pull, missing.len(), bytes);
        let sizes: Vec<u64> = rt.block_on(
            futures::stream::iter(missing)
                .map(|o| async move {
                    let at = cached(cache, &o.key);
                    crate::io::create_dir_all_durable(fs, &crate::io::parent_dir(&at))?;
                    let part = PathBuf::from(format!("{}{PART_SUFFIX}", at.display()));
                    if fs.exists(&part)? {
                        fs.remove_file(&part)?;
                    }
                    let n = fetch(fs, remote, o, part.clone()).await?;
                    fs.rename(&part, &at)?;
                    fs.sync_dir(&crate::io::parent_dir(&at))?;
                    Ok::<u64, Error>(n)
                })
                .buffer_unordered(remote.settings.concurrency)
                .inspect_ok(|n| tracker.done(*n))
                .try_collect(),
        )?;
        report.downloaded_objects = sizes.len();
        report.downloaded_bytes = sizes.iter().sum();
        let keep: std::collections::HashSet<PathBuf> = m
            .checkpoints
            .iter()
            .flat_map(|c| &c.objects)
            .map(|o| cached(cache, &o.key))
            .collect();
        report.removed_objects = prune(fs, cache, &keep)?;
        report.duration = started.elapsed();
        Ok(Some(report))
    }
}

/// Deletes every file under `dir` not in `keep` (unfinished downloads
/// too); returns how many.
fn prune(fs: &dyn Fs, dir: &Path, keep: &std::collections::HashSet<PathBuf>) -> Result<usize> {
    let mut removed = 0;
    for name in fs.list(dir)? {
        let p = dir.join(&name);
        if keep.contains(&p) {
            continue;
        }
        // A directory lists (it has entries or is empty); a file does not.
        match fs.list(&p) {
            Ok(_) => removed += prune(fs, &p, keep)?,
            Err(_) => {
                fs.remove_file(&p)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}
