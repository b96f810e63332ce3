//! Checkpoint directories and their commit protocol (`format/checkpoint.md`):
//!
//! 1. make `checkpoints/<uuid>.tmp/` (flat: one directory, one fsync);
//! 2. make the runs written since the last checkpoint durable, side by side
//!    (parallel `fdatasync`s: the device merges them);
//! 3. hard-link every run the cut needs into it (copy and sync on a file
//!    system without links, and say so in the manifest);
//! 4. write operator side files and `MANIFEST`;
//! 5. sync them and the directory in one parallel round;
//! 6. rename it to `checkpoints/<uuid>/` — the commit point — and sync
//!    `checkpoints/`.
//!
//! A crash before 6 leaves a `.tmp` directory that the next open deletes; a
//! crash after it leaves a complete checkpoint.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;

use super::manifest::{CheckpointManifest, MANIFEST_NAME};
use crate::io::{Fs, Job, Pool};
use crate::{Error, Result};

/// Suffix of a checkpoint directory being written.
pub const TMP_DIR_SUFFIX: &str = ".tmp";
/// Suffix of a checkpoint directory recovery found damaged and set aside.
pub const DAMAGED_DIR_SUFFIX: &str = ".damaged";
/// Most jobs one checkpoint's syncs are split into (each syncs a share of
/// the files), so a commit never queues more than this on the pool.
const SYNC_JOBS: usize = 8;

/// One run file a checkpoint links.
#[derive(Debug, Clone)]
pub struct RunLink {
    /// The live run file.
    pub source: PathBuf,
    /// The link's name in the checkpoint directory.
    pub name: String,
    /// The file's length (a run's length is fixed once it is published).
    pub size: u64,
    /// True if the run was written since the last checkpoint, so its bytes
    /// may not be durable yet.
    pub is_new: bool,
}

/// Everything a checkpoint directory receives.
#[derive(Debug, Clone)]
pub struct PreparedCheckpoint {
    /// The manifest (its `runs_copied` is set by the commit).
    pub manifest: CheckpointManifest,
    /// The runs to link.
    pub runs: Vec<RunLink>,
    /// Operator side files: name in the directory, bytes.
    pub side_files: Vec<(String, Vec<u8>)>,
    /// Older checkpoints to delete as part of this commit: renamed away
    /// before the commit point, in the same sync round as the manifest. Only
    /// safe while another committed checkpoint stays (`max_retained >= 2`).
    pub retire_before_commit: Vec<Uuid>,
}

/// What a commit did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Runs linked.
    pub linked: usize,
    /// Runs copied because links failed.
    pub copied: usize,
    /// Runs synced because they were new.
    pub synced_runs: usize,
    /// Bytes of new runs (synced now) and copies.
    pub new_bytes: u64,
    /// Bytes of the manifest and side files.
    pub metadata_bytes: u64,
}

/// Where checkpoints live and how they are read, written and removed.
pub trait CheckpointStore: Send + Sync + std::fmt::Debug {
    /// Committed checkpoints, in no particular order.
    fn list(&self) -> Result<Vec<Uuid>>;
    /// The directory of checkpoint `id`.
    fn checkpoint_dir(&self, id: Uuid) -> PathBuf;
    /// Reads and checks the manifest of checkpoint `id`.
    fn load_manifest(&self, id: Uuid) -> Result<CheckpointManifest>;
    /// Writes and commits a checkpoint (module docs); `before_commit` runs
    /// just before the commit point and can veto it (the coordinator waits
    /// there for the WALs to be durable up to the cut, so that wait overlaps
    /// the run syncs).
    fn commit(
        &self,
        ck: &PreparedCheckpoint,
        before_commit: &mut dyn FnMut() -> Result<()>,
    ) -> Result<CommitReport>;
    /// Deletes a checkpoint durably.
    fn remove(&self, id: Uuid) -> Result<()>;
    /// Sets a damaged checkpoint aside (renamed, kept for inspection).
    fn quarantine(&self, id: Uuid) -> Result<()>;
    /// Deletes half-written and retired checkpoint directories (`.tmp`);
    /// returns how many.
    fn remove_temporaries(&self) -> Result<usize>;
}

/// The [`CheckpointStore`] of a directory, through an [`Fs`].
#[derive(Debug, Clone)]
pub struct FileSystemCheckpointStore {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    /// Where syncs run side by side: [`Pool::shared`] unless
    /// [`FileSystemCheckpointStore::with_pool`] gave one.
    pool: Option<Arc<Pool>>,
}

impl FileSystemCheckpointStore {
    /// Checkpoints in `dir` (usually `<store>/checkpoints`), created if missing.
    pub fn new(fs: Arc<dyn Fs>, dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        crate::io::create_dir_all_durable(fs.as_ref(), &dir)?;
        Ok(FileSystemCheckpointStore { fs, dir, pool: None })
    }

    /// The directory holding the checkpoints.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file system.
    pub fn fs(&self) -> &Arc<dyn Fs> {
        &self.fs
    }

    /// Runs the syncs of a commit on `pool` (the store's) instead of the
    /// process-wide [`Pool::shared`].
    #[must_use]
    pub fn with_pool(mut self, pool: Arc<Pool>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The pool its background I/O runs on: the one given, or the
    /// process-wide one.
    pub(crate) fn pool(&self) -> Result<Arc<Pool>> {
        self.pool.clone().map_or_else(Pool::shared, Ok)
    }

    /// Syncs files (`fdatasync`) and directories (`fsync`) side by side, in
    /// at most [`SYNC_JOBS`] jobs on the pool.
    fn sync_all(&self, paths: &[PathBuf], dirs: &[PathBuf]) -> Result<()> {
        let mut targets = paths
            .iter()
            .map(|p| (p.clone(), false))
            .chain(dirs.iter().map(|d| (d.clone(), true)))
            .peekable();
        let pool = self.pool()?;
        // No more jobs than the pool has threads: more would only queue.
        let per = (paths.len() + dirs.len())
            .div_ceil(SYNC_JOBS.min(pool.size()))
            .max(1);
        let mut chunks: Vec<Vec<(PathBuf, bool)>> = Vec::new();
        while targets.peek().is_some() {
            chunks.push(targets.by_ref().take(per).collect());
        }
        let jobs: Vec<Job<()>> = chunks
            .into_iter()
            .map(|chunk| {
                let fs = Arc::clone(&self.fs);
                Box::new(move || {
                    chunk
                        .iter()
                        .try_for_each(|(p, dir)| if *dir { fs.sync_dir(p) } else { fs.sync_file(p) })
                }) as Job<()>
            })
            .collect();
        if jobs.len() <= 1 {
            // One job runs on the caller's thread: no pool needed.
            return jobs.into_iter().try_for_each(|job| job());
        }
        pool.run_all("a sync thread", jobs).into_iter().collect()
    }

    /// [`CheckpointStore::commit`]'s work (module docs, steps 1–6).
    fn commit_in_span(
        &self,
        ck: &PreparedCheckpoint,
        before_commit: &mut dyn FnMut() -> Result<()>,
    ) -> Result<CommitReport> {
        let id = ck.manifest.id;
        let names = linked_names(ck);
        let tmp = self.dir.join(format!("{id}{TMP_DIR_SUFFIX}"));
        self.fs.create_dir_all(&tmp)?;
        let mut report = CommitReport::default();
        // Step 2: new runs, durable side by side.
        let fresh: Vec<PathBuf> = ck
            .runs
            .iter()
            .filter(|r| r.is_new)
            .map(|r| r.source.clone())
            .collect();
        self.sync_all(&fresh, &[])?;
        report.synced_runs = fresh.len();
        // Step 3: links (or copies, synced with the manifest below).
        let mut copy = false;
        let mut written = Vec::new();
        for r in &ck.runs {
            let to = tmp.join(&r.name);
            if self.link_or_copy(&r.source, &to, &mut copy)? {
                report.new_bytes += r.size;
                written.push(to);
            } else {
                report.linked += 1;
                if r.is_new {
                    report.new_bytes += r.size;
                }
            }
        }
        report.copied = written.len();
        // Step 4: side files and the manifest.
        for (name, bytes) in &ck.side_files {
            write_new(self.fs.as_ref(), &tmp.join(name), bytes)?;
            report.metadata_bytes += bytes.len() as u64;
            written.push(tmp.join(name));
        }
        let mut manifest = ck.manifest.clone();
        manifest.runs_copied = report.copied > 0;
        let bytes = manifest.encode();
        let path = tmp.join(MANIFEST_NAME);
        debug_assert_eq!(
            CheckpointManifest::decode(&bytes, &path).ok().as_ref(),
            Some(&manifest),
            "checkpoint {id}: the manifest written does not read back as itself"
        );
        // Every run the manifest names got its link or copy (each succeeded:
        // its file is in the directory). Counted, not asked of the file
        // system: an extra call would be one more place for a fault.
        assert_eq!(
            report.linked + report.copied,
            names.len(),
            "checkpoint {id}: not every run the manifest names was linked"
        );
        report.metadata_bytes += bytes.len() as u64;
        write_new(self.fs.as_ref(), &path, &bytes)?;
        written.push(tmp.join(MANIFEST_NAME));
        // Checkpoints this commit retires early (the caller vouches that
        // enough others stay) are renamed away; the commit's own directory
        // sync makes that durable, and their files go only after it.
        for old in &ck.retire_before_commit {
            self.fs.rename(
                &self.checkpoint_dir(*old),
                &self.dir.join(format!("{old}{TMP_DIR_SUFFIX}")),
            )?;
        }
        // Step 5: one parallel round of syncs: the files written above and
        // the directory holding every link.
        crate::io::kill_point("checkpoint-before-sync");
        self.sync_all(&written, std::slice::from_ref(&tmp))?;
        // Step 6: the commit point, once the caller's condition holds.
        before_commit()?;
        crate::io::kill_point("checkpoint-before-rename");
        self.fs.rename(&tmp, &self.checkpoint_dir(id))?;
        crate::io::kill_point("checkpoint-after-rename");
        self.fs.sync_dir(&self.dir)?;
        Ok(report)
    }

    /// Step 3 for one run; returns true if it had to copy.
    fn link_or_copy(&self, from: &Path, to: &Path, copy: &mut bool) -> Result<bool> {
        if !*copy {
            match self.fs.hard_link(from, to) {
                Ok(()) => return Ok(false),
                Err(Error::Io { source, .. })
                    if matches!(source.kind(), ErrorKind::CrossesDevices | ErrorKind::Unsupported)
                        || source.raw_os_error() == Some(EPERM) =>
                {
                    tracing::warn!(
                        run = %from.display(),
                        error = %source,
                        "hard links fail here: this checkpoint copies its runs"
                    );
                    *copy = true;
                }
                Err(e) => return Err(e),
            }
        }
        copy_file(self.fs.as_ref(), from, to)?;
        Ok(true)
    }
}

/// `EPERM`: what some file systems (FAT, some FUSE mounts) answer to `link`.
const EPERM: i32 = 1;

/// Copies `from` to a new file `to` in 1 MiB pieces (not synced).
pub fn copy_file(fs: &dyn Fs, from: &Path, to: &Path) -> Result<u64> {
    let src = fs.open(from)?;
    let len = src.size()?;
    let mut dst = fs.create(to)?;
    let mut buf = vec![0u8; (1 << 20).min(len as usize)];
    let mut at = 0;
    while at < len {
        let n = buf.len().min((len - at) as usize);
        src.read_exact_at(&mut buf[..n], at)?;
        dst.append(&buf[..n])?;
        at += n as u64;
    }
    Ok(len)
}

/// Reads a whole small file.
pub fn read_file(fs: &dyn Fs, path: &Path) -> Result<Vec<u8>> {
    let f = fs.open(path)?;
    let mut buf = vec![0u8; f.size()? as usize];
    f.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// The link names of the runs a commit links, which must be exactly the
/// runs its manifest names, each once: the writer builds both from one cut,
/// so a difference is a bug, and a duplicate would make the second link fail.
fn linked_names(ck: &PreparedCheckpoint) -> Vec<&str> {
    let id = ck.manifest.id;
    let mut named: Vec<&str> = ck
        .manifest
        .shards
        .iter()
        .flat_map(|s| s.spines.iter())
        .flat_map(|sp| sp.runs.iter())
        .map(|r| r.file.as_str())
        .collect();
    named.sort_unstable();
    assert!(
        named.windows(2).all(|w| w[0] != w[1]),
        "checkpoint {id}: its manifest names a run twice"
    );
    let mut linked: Vec<&str> = ck.runs.iter().map(|r| r.name.as_str()).collect();
    linked.sort_unstable();
    assert_eq!(
        named, linked,
        "checkpoint {id}: the runs linked are not those its manifest names"
    );
    linked
}

/// Creates `path` with `bytes` (synced later, with the rest).
fn write_new(fs: &dyn Fs, path: &Path, bytes: &[u8]) -> Result<()> {
    fs.create(path)?.append(bytes)
}

impl CheckpointStore for FileSystemCheckpointStore {
    fn list(&self) -> Result<Vec<Uuid>> {
        Ok(self
            .fs
            .list(&self.dir)?
            .iter()
            .filter_map(|n| Uuid::try_parse(n).ok())
            .collect())
    }

    fn checkpoint_dir(&self, id: Uuid) -> PathBuf {
        self.dir.join(id.to_string())
    }

    fn load_manifest(&self, id: Uuid) -> Result<CheckpointManifest> {
        let path = self.checkpoint_dir(id).join(MANIFEST_NAME);
        let m = CheckpointManifest::decode(&read_file(self.fs.as_ref(), &path)?, &path)?;
        if m.id != id {
            return Err(Error::corrupt(
                &path,
                32,
                "checkpoint id",
                id.to_string(),
                m.id.to_string(),
            ));
        }
        Ok(m)
    }

    fn commit(
        &self,
        ck: &PreparedCheckpoint,
        before_commit: &mut dyn FnMut() -> Result<()>,
    ) -> Result<CommitReport> {
        let span = tracing::info_span!("checkpoint_commit", id = %ck.manifest.id, epoch = ck.manifest.epoch);
        let _entered = span.enter();
        let started = Instant::now();
        let committed = self.commit_in_span(ck, before_commit);
        match &committed {
            Ok(r) => tracing::debug!(
                runs = ck.runs.len(),
                linked = r.linked,
                copied = r.copied,
                synced_runs = r.synced_runs,
                new_bytes = r.new_bytes,
                metadata_bytes = r.metadata_bytes,
                elapsed_us = started.elapsed().as_micros() as u64,
                "checkpoint directory committed"
            ),
            Err(e) => tracing::debug!(error = %e, "checkpoint directory not committed"),
        }
        committed
    }

    fn remove(&self, id: Uuid) -> Result<()> {
        // Rename first: a crash mid-delete must not leave a checkpoint that
        // looks committed but lost files.
        let doomed = self.dir.join(format!("{id}{TMP_DIR_SUFFIX}"));
        self.fs.rename(&self.checkpoint_dir(id), &doomed)?;
        self.fs.sync_dir(&self.dir)?;
        self.fs.remove_dir_all(&doomed)
    }

    fn quarantine(&self, id: Uuid) -> Result<()> {
        let to = self.dir.join(format!("{id}{DAMAGED_DIR_SUFFIX}"));
        self.fs.rename(&self.checkpoint_dir(id), &to)?;
        self.fs.sync_dir(&self.dir)
    }

    fn remove_temporaries(&self) -> Result<usize> {
        let mut n = 0;
        for name in self.fs.list(&self.dir)? {
            if name.ends_with(TMP_DIR_SUFFIX) {
                self.fs.remove_dir_all(&self.dir.join(&name))?;
                n += 1;
            }
        }
        if n > 0 {
            self.fs.sync_dir(&self.dir)?;
            tracing::info!(dir = %self.dir.display(), count = n, "half-written checkpoint directories removed");
        }
        Ok(n)
    }
}
