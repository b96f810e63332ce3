//! [`Snapshot`]: the local files of one committed checkpoint, opened on the
//! committing thread before anything can delete them.
//!
//! A push runs later, on the pusher's thread, while the store goes on: a
//! later checkpoint may retire this one's directory and truncate the WAL
//! below it. Open handles keep every file's bytes (an unlinked file lives
//! until its last handle closes), and the parts that matter never change
//! once written: run files and checkpoint files are immutable, and a WAL
//! segment's bytes up to a durable record are only ever appended after.

use std::path::Path;

use super::ObjectKind;
use crate::checkpoint::{CheckpointManifest, Layout, MANIFEST_NAME};
use crate::io::{Fs, ReadableFile};
use crate::wal::format::list_segments;
use crate::{Error, Result};

/// One local file a remote checkpoint needs.
#[derive(Debug)]
pub(crate) struct LocalFile {
    pub(crate) kind: ObjectKind,
    /// Its path relative to the store directory, `/`-separated.
    pub(crate) local: String,
    pub(crate) file: Box<dyn ReadableFile>,
    /// For a WAL segment: its shard.
    pub(crate) wal: Option<u32>,
}

/// The files of one committed checkpoint, open.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) manifest: CheckpointManifest,
    pub(crate) files: Vec<LocalFile>,
}

impl Snapshot {
    /// Opens every file the checkpoint `manifest` of the store at `layout`
    /// needs: its directory's files, and per shard the WAL segments that
    /// hold records from its replay point to its cut. Called by the commit,
    /// before a later one can retire any of them.
    pub(crate) fn take(fs: &dyn Fs, layout: &Layout, manifest: &CheckpointManifest) -> Result<Snapshot> {
        let id = manifest.id;
        let dir = layout.checkpoints().join(id.to_string());
        let manifest = manifest.clone();
        let runs: std::collections::HashSet<&str> = manifest
            .shards
            .iter()
            .flat_map(|s| &s.spines)
            .flat_map(|s| &s.runs)
            .map(|r| r.file.as_str())
            .collect();
        let mut files = Vec::new();
        let mut names = fs.list(&dir)?;
        names.sort();
        for name in names {
            let kind = if name == MANIFEST_NAME {
                ObjectKind::Manifest
            } else if runs.contains(name.as_str()) {
                ObjectKind::Run
            } else {
                ObjectKind::Side
            };
            files.push(LocalFile {
                kind,
                local: format!("checkpoints/{id}/{name}"),
                file: fs.open(&dir.join(&name))?,
                wal: None,
            });
        }
        for shard in &manifest.shards {
            let wal = layout.wal(shard.shard);
            let (from, cut) = (shard.replay_from(), shard.cut_lsn);
            if from > cut || !fs.exists(&wal)? {
                continue;
            }
            files.extend(wal_segments(fs, &wal, shard.shard, from, cut)?);
        }
        Ok(Snapshot { manifest, files })
    }
}

/// The segments of the WAL in `dir` holding records `from..=cut`, open.
fn wal_segments(fs: &dyn Fs, dir: &Path, shard: u32, from: u64, cut: u64) -> Result<Vec<LocalFile>> {
    let segments = list_segments(fs, dir)?;
    let mut out = Vec::new();
    for (i, (first, name)) in segments.iter().enumerate() {
        let next = segments.get(i + 1).map_or(u64::MAX, |(n, _)| *n);
        if *first > cut || next <= from {
            continue;
        }
        out.push(LocalFile {
            kind: ObjectKind::Wal,
            local: format!("shards/{shard}/wal/{name}"),
            file: fs.open(&dir.join(name))?,
            wal: Some(shard),
        });
    }
    if out.is_empty() || segments.first().is_none_or(|(f, _)| *f > from) {
        // The checkpoint committed with these records durable and
        // retention keeps them: a log without them was damaged.
        return Err(Error::corrupt(
            dir,
            0,
            "WAL segments",
            format!("records {from}..={cut} of shard {shard}"),
            format!(
                "segments starting at {:?}",
                segments.iter().map(|s| s.0).collect::<Vec<_>>()
            ),
        ));
    }
    Ok(out)
}
