//! [`Writer`]: the one process allowed to commit to a remote store, and
//! how it finds out that it no longer is (module docs of `remote`).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use uuid::Uuid;

use super::keys::{MANIFEST_DIR, manifest_key, parse_manifest_key};
use super::{Remote, RemoteCheckpoint, RemoteManifest};
use crate::{Error, Result};

/// How many times a claim retries when another claim takes the number it
/// tried: each retry reads the newer manifest, so only a steady stream of
/// rival claims exhausts it.
const CLAIM_ATTEMPTS: usize = 16;

/// The numbers of the manifests in the sequence, ascending.
async fn manifest_numbers(remote: &Remote) -> Result<Vec<u64>> {
    let dir = remote.path(MANIFEST_DIR.trim_end_matches('/'));
    let metas: Vec<_> = remote
        .store
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|e| remote.error("list", MANIFEST_DIR, e))?;
    let mut seqs: Vec<u64> = metas
        .iter()
        .filter_map(|m| parse_manifest_key(&format!("{MANIFEST_DIR}{}", m.location.filename()?)))
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

/// Reads manifest `seq`; `Ok(None)` if there is no such object.
pub(crate) async fn read_manifest(remote: &Remote, seq: u64) -> Result<Option<RemoteManifest>> {
    let key = manifest_key(seq);
    let got = match remote.store.get(&remote.path(&key)).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(remote.error("get", &key, e)),
    };
    let bytes = got.bytes().await.map_err(|e| remote.error("get", &key, e))?;
    let m = RemoteManifest::decode(&bytes, &PathBuf::from(remote.name(&key)))?;
    if m.seq != seq {
        return Err(Error::corrupt(
            &PathBuf::from(remote.name(&key)),
            32,
            "sequence number",
            seq.to_string(),
            m.seq.to_string(),
        ));
    }
    Ok(Some(m))
}

/// The newest manifest of the remote store that reads back whole, and the
/// highest number in the sequence (which a damaged newest manifest still
/// takes); `(None, 0)` for an empty store.
pub async fn newest_manifest(remote: &Remote) -> Result<(Option<RemoteManifest>, u64)> {
    let seqs = manifest_numbers(remote).await?;
    let top = seqs.last().copied().unwrap_or(0);
    let mut damage = None;
    for &seq in seqs.iter().rev() {
        match read_manifest(remote, seq).await {
            Ok(Some(m)) => return Ok((Some(m), top)),
            // Deleted since the listing (garbage collection): an older one.
            Ok(None) => {}
            Err(e) if e.is_corruption() => {
                damage.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    match damage {
        // Every manifest is damaged: nothing to trust, say why.
        Some(e) => Err(e),
        None => Ok((None, top)),
    }
}

/// The writer epoch of a manifest numbered above `seq`, if there is one
/// (0 if it does not read back).
async fn newer_than(remote: &Remote, seq: u64) -> Result<Option<u64>> {
    let dir = remote.path(MANIFEST_DIR.trim_end_matches('/'));
    let metas: Vec<_> = remote
        .store
        .list_with_offset(Some(&dir), &remote.path(&manifest_key(seq)))
        .try_collect()
        .await
        .map_err(|e| remote.error("list", MANIFEST_DIR, e))?;
    let Some(top) = metas
        .iter()
        .filter_map(|m| parse_manifest_key(&format!("{MANIFEST_DIR}{}", m.location.filename()?)))
        .filter(|&s| s > seq)
        .max()
    else {
        return Ok(None);
    };
    Ok(Some(match read_manifest(remote, top).await {
        Ok(Some(m)) => m.writer_epoch,
        _ => 0,
    }))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a conditional create of a manifest came to.
enum Created {
    /// This write made it, of this many bytes.
    Ours(u64),
    /// Another write made the object first: here it is (`None` if it does
    /// not read back whole).
    Theirs(Option<RemoteManifest>),
}

async fn create(remote: &Remote, m: &RemoteManifest) -> Result<Created> {
    let key = manifest_key(m.seq);
    let opts = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    let bytes = m.encode();
    let len = bytes.len() as u64;
    match remote
        .store
        .put_opts(&remote.path(&key), PutPayload::from(bytes), opts)
        .await
    {
        Ok(_) => Ok(Created::Ours(len)),
        Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
            let there = match read_manifest(remote, m.seq).await {
                Ok(there) => there,
                Err(e) if e.is_corruption() => None,
                Err(e) => return Err(e),
            };
            // A create retried after its response was lost finds its own
            // write: the tag says so.
            match there {
                Some(t) if t.writer_tag == m.writer_tag => Ok(Created::Ours(len)),
                there => Ok(Created::Theirs(there)),
            }
        }
        Err(e) => Err(remote.error("put", &key, e)),
    }
}

/// The owner of a remote store: the writer epoch it claimed, and the last
/// manifest it wrote.
#[derive(Debug)]
pub struct Writer {
    remote: Remote,
    last: RemoteManifest,
    /// Bytes of `last`.
    last_bytes: u64,
    /// A create whose outcome is unknown (its request failed): it may have
    /// landed, so the next commit settles it before taking a number.
    pending: Option<RemoteManifest>,
    fenced_by: Option<u64>,
}

impl Writer {
    /// Claims the remote store: creates the next manifest, retaining what
    /// the newest one retains, under a new writer epoch (its number). Any
    /// writer that held the store before is fenced from then on.
    pub async fn claim(remote: Remote) -> Result<Writer> {
        Writer::claim_keeping(remote, |_| true).await
    }

    /// [`Writer::claim`], retaining only the checkpoints `keep` accepts (a
    /// store restored from an older checkpoint drops the later ones of the
    /// history it left).
    pub async fn claim_keeping(remote: Remote, keep: impl Fn(&RemoteCheckpoint) -> bool) -> Result<Writer> {
        for _ in 0..CLAIM_ATTEMPTS {
            let (newest, top) = newest_manifest(&remote).await?;
            let seq = top + 1;
            let m = RemoteManifest {
                seq,
                writer_epoch: seq,
                writer_tag: Uuid::new_v4(),
                wall_time_ms: now_ms(),
                checkpoints: newest
                    .map(|n| n.checkpoints.into_iter().filter(|c| keep(c)).collect())
                    .unwrap_or_default(),
            };
            if let Created::Ours(last_bytes) = create(&remote, &m).await? {
                return Ok(Writer {
                    remote,
                    last: m,
                    last_bytes,
                    pending: None,
                    fenced_by: None,
                });
            }
        }
        Err(Error::TimedOut {
            what: format!("claiming {}: every attempt lost to another claim", remote.url()),
            after: std::time::Duration::ZERO,
        })
    }

    /// This writer's epoch.
    pub fn epoch(&self) -> u64 {
        self.last.writer_epoch
    }

    /// The last manifest this writer wrote (or claimed with).
    pub fn manifest(&self) -> &RemoteManifest {
        &self.last
    }

    /// Bytes of [`Writer::manifest`] as written.
    pub fn manifest_bytes(&self) -> u64 {
        self.last_bytes
    }

    /// The remote store.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// The writer of epoch `by` took the remote store over: this one is
    /// fenced for good.
    fn lose(&mut self, by: u64) -> Error {
        tracing::error!(
            url = %self.remote.url(),
            writer_epoch = self.epoch(),
            by,
            "fenced: another writer took the remote store over; this store pushes no more"
        );
        self.fenced_by = Some(by);
        self.fenced(by)
    }

    fn fenced(&self, by: u64) -> Error {
        Error::Fenced {
            url: self.remote.url().to_string(),
            writer_epoch: self.epoch(),
            by,
        }
    }

    /// Commits `checkpoints` as the remote store's retained list: creates
    /// the manifest after this writer's last. Fails with
    /// [`Error::Fenced`] if another writer created it first, and from then
    /// on refuses every commit. A failed request changes nothing this
    /// writer knows: the same commit may be retried.
    pub async fn commit(&mut self, checkpoints: Vec<RemoteCheckpoint>) -> Result<&RemoteManifest> {
        if let Some(by) = self.fenced_by {
            return Err(self.fenced(by));
        }
        if let Some(p) = self.pending.take() {
            // The same bytes again: landed before (ours), now, or beaten.
            self.settle(p).await?;
        }
        let m = RemoteManifest {
            seq: self.last.seq + 1,
            writer_epoch: self.epoch(),
            writer_tag: Uuid::new_v4(),
            wall_time_ms: now_ms(),
            checkpoints,
        };
        self.settle(m).await?;
        Ok(&self.last)
    }

    /// Creates `m`, the manifest after this writer's last.
    async fn settle(&mut self, m: RemoteManifest) -> Result<()> {
        match create(&self.remote, &m).await {
            Ok(Created::Ours(len)) => {
                let seq = m.seq;
                self.last = m;
                self.last_bytes = len;
                // A newer writer's manifests make ours dead on arrival,
                // even where garbage collection deleted the number we took.
                match newer_than(&self.remote, seq).await? {
                    Some(by) => Err(self.lose(by)),
                    None => Ok(()),
                }
            }
            Ok(Created::Theirs(there)) => {
                let by = there.map_or(0, |t| t.writer_epoch);
                Err(self.lose(by))
            }
            Err(e) => {
                self.pending = Some(m);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests;
