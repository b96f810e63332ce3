//! Remote garbage: objects no retained remote checkpoint needs, deleted
//! once they are older than the remote's grace period
//! (`format/remote.md`, "Garbage").
//!
//! A restore reads the manifest that was newest when it started, possibly
//! for a while after a newer one commits; so every manifest that was the
//! newest at some moment within the grace period is protected, with every
//! object it references. Ages come from the object store's own clock
//! (`last_modified`), measured against the newest object it lists, never
//! against this machine's clock. An object younger than the grace period
//! is never deleted: it may belong to a push whose manifest is not written
//! yet.

use std::collections::HashSet;

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStoreExt};

use super::Remote;
use super::fence::read_manifest;
use super::keys::parse_manifest_key;
use crate::Result;

/// What one collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Objects listed under the prefix.
    pub listed: usize,
    /// Manifests deleted.
    pub manifests_deleted: usize,
    /// Data objects deleted.
    pub objects_deleted: usize,
    /// Their bytes.
    pub bytes_deleted: u64,
}

/// The key of `meta` relative to the remote's prefix.
fn relative(remote: &Remote, meta: &ObjectMeta) -> Option<String> {
    let parts: Vec<String> = meta
        .location
        .prefix_match(&remote.prefix)?
        .map(|p| p.as_ref().to_string())
        .collect();
    Some(parts.join("/"))
}

/// Collects the garbage of `remote` (module docs). Safe to run from any
/// process at any time, beside a writer and restores.
pub async fn collect(remote: &Remote) -> Result<GcReport> {
    let all: Vec<ObjectMeta> = remote
        .store
        .list(Some(&remote.prefix))
        .try_collect()
        .await
        .map_err(|e| remote.error("list", "", e))?;
    let mut report = GcReport {
        listed: all.len(),
        ..GcReport::default()
    };
    let Some(now) = all.iter().map(|m| m.last_modified.timestamp_millis()).max() else {
        return Ok(report);
    };
    let grace = remote.settings.grace.as_millis() as i64;
    // At least `grace` old (with no grace, everything not the newest).
    let old = |m: &ObjectMeta| m.last_modified.timestamp_millis() <= now - grace;
    let mut manifests: Vec<(u64, &ObjectMeta)> = Vec::new();
    let mut data: Vec<(String, &ObjectMeta)> = Vec::new();
    for m in &all {
        let Some(key) = relative(remote, m) else { continue };
        match parse_manifest_key(&key) {
            Some(seq) => manifests.push((seq, m)),
            None => data.push((key, m)),
        }
    }
    manifests.sort_by_key(|(seq, _)| *seq);
    // Protected: the newest, and each one whose successor is young (it
    // was the newest within the grace period).
    let protected: Vec<u64> = manifests
        .iter()
        .enumerate()
        .filter(|(i, _)| manifests.get(i + 1).is_none_or(|(_, next)| !old(next)))
        .map(|(_, (seq, _))| *seq)
        .collect();
    let mut referenced: HashSet<String> = HashSet::new();
    for &seq in &protected {
        match read_manifest(remote, seq).await {
            Ok(Some(m)) => {
                let keys = m
                    .checkpoints
                    .iter()
                    .flat_map(|c| &c.objects)
                    .map(|o| o.key.clone());
                referenced.extend(keys);
            }
            // Deleted meanwhile by another collector: it protects nothing.
            Ok(None) => {}
            // A protected manifest that does not read back: what it
            // references is unknown, so nothing is deleted.
            Err(_) => return Ok(report),
        }
    }
    let mut doomed = Vec::new();
    for (seq, m) in &manifests {
        if !protected.contains(seq) {
            doomed.push(m.location.clone());
            report.manifests_deleted += 1;
        }
    }
    for (key, m) in &data {
        if old(m) && !referenced.contains(key) {
            doomed.push(m.location.clone());
            report.objects_deleted += 1;
            report.bytes_deleted += m.size;
        }
    }
    futures::stream::iter(doomed)
        .map(|path| async move {
            match remote.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(remote.error("delete", path.as_ref(), e)),
            }
        })
        .buffer_unordered(remote.settings.concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(report)
}
