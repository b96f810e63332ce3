//! One push: the objects of a [`Snapshot`] the remote store lacks, uploaded
//! with a bounded number of requests in flight, then the manifest that
//! lists them (module docs of `remote`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::PutPayload;

use super::keys::{checkpoint_key, parse_wal_key, run_key, wal_key};
use super::snapshot::{LocalFile, Snapshot};
use super::{ObjectKind, Operation, Remote, RemoteCheckpoint, RemoteObject, Tracker, Writer};
use crate::io::Mapping;
use crate::wal::format::{HEADER_LEN, SegmentHeader, frame_len, parse_frame, segment_name, skip_frame};
use crate::{Error, Result};

/// What one push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The checkpoint pushed.
    pub checkpoint: uuid::Uuid,
    /// Its epoch.
    pub epoch: u64,
    /// The number of the manifest that committed it.
    pub manifest_seq: u64,
    /// Objects it needs.
    pub objects: usize,
    /// Of which uploaded by this push (the rest the bucket held).
    pub uploaded_objects: usize,
    /// Bytes uploaded, the manifest's included.
    pub uploaded_bytes: u64,
    /// Bytes of every object it needs.
    pub total_bytes: u64,
    /// From the start of the upload to the manifest's commit.
    pub duration: Duration,
}

/// A mapped file as an upload's bytes, without a copy.
struct Owned(Mapping);

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Objects a writer knows the bucket holds, for reuse: run files by their
/// name in a checkpoint directory (`<shard>-<spine>-<run file>`: a run's
/// name never repeats while a checkpoint holds it; the size is checked
/// too), WAL parts by shard and LSN range (this writer's own only: within
/// one writer epoch an LSN names one record).
#[derive(Debug, Default)]
pub(crate) struct Known {
    runs: HashMap<String, RemoteObject>,
    /// By `(shard, first LSN)`, with the last LSN.
    wal: BTreeMap<(u32, u64), (u64, RemoteObject)>,
}

impl Known {
    /// After a commit: what `checkpoints` reference of what was known
    /// (seeded runs stay), and all of this writer's own objects there.
    pub(crate) fn refresh(&mut self, checkpoints: &[RemoteCheckpoint], writer: u64) {
        let referenced: std::collections::HashSet<&str> = checkpoints
            .iter()
            .flat_map(|c| &c.objects)
            .map(|o| o.key.as_str())
            .collect();
        self.runs.retain(|_, o| referenced.contains(o.key.as_str()));
        self.wal.retain(|_, (_, o)| referenced.contains(o.key.as_str()));
        // Another writer's runs may share a name with this one's without
        // sharing its bytes: only its own are added.
        let own = format!("w{writer:020}/");
        for o in checkpoints.iter().flat_map(|c| &c.objects) {
            if o.key.starts_with(&own) {
                self.add(o.clone());
            }
        }
    }

    /// The part of shard `shard`'s WAL holding record `lsn`, if known, and
    /// its last LSN.
    fn wal_part(&self, shard: u32, lsn: u64) -> Option<(&RemoteObject, u64)> {
        let (&(s, _), (last, o)) = self.wal.range(..=(shard, lsn)).next_back()?;
        (s == shard && lsn <= *last).then_some((o, *last))
    }

    /// Adds `o` (of this writer, or a run of a checkpoint that is also
    /// retained locally: the same file).
    pub(crate) fn add(&mut self, o: RemoteObject) {
        match o.kind {
            ObjectKind::Run => {
                self.runs.insert(file_name(&o.local).to_string(), o);
            }
            ObjectKind::Wal => {
                if let Some((_, shard, first, last)) = parse_wal_key(&o.key) {
                    self.wal.insert((shard, first), (last, o));
                }
            }
            _ => {}
        }
    }
}

/// The last part of a `/`-separated local path.
fn file_name(local: &str) -> &str {
    local.rsplit('/').next().unwrap_or(local)
}

/// Records `from..=cut` of the segment `bytes` (as far as it holds them):
/// `(first, last, start, end)`, the LSNs and byte range of their frames.
/// Frames before `from` are walked by their headers, those in range are
/// checked whole. `None` if the segment holds none of them.
fn wal_range(bytes: &[u8], h: &SegmentHeader, from: u64, cut: u64) -> Option<(u64, u64, usize, usize)> {
    let (mut at, mut lsn) = (HEADER_LEN, h.first_lsn);
    while lsn < from {
        at = skip_frame(bytes, at, lsn)?;
        lsn += 1;
    }
    let start = at;
    while lsn <= cut {
        let Some(f) = parse_frame(bytes, at, h.segment_id, lsn..=lsn) else {
            break;
        };
        at += frame_len(f.payload.len());
        lsn += 1;
    }
    (lsn > from).then_some((from, lsn - 1, start, at))
}

/// The WAL objects shard `shard` needs for records `from..=cut`: the parts
/// this writer pushed before, chained by LSN, then new parts for the rest,
/// one per local segment, each a segment of its own (a header naming its
/// first record, then the frames as they are).
fn wal_plans(
    writer: u64,
    shard: u32,
    from: u64,
    cut: u64,
    files: &[&LocalFile],
    known: &Known,
) -> Result<Vec<Plan>> {
    let mut plans = Vec::new();
    let mut next = from;
    while let Some((o, last)) = known.wal_part(shard, next).filter(|_| next <= cut) {
        next = last + 1;
        plans.push(Plan::Reuse(o.clone()));
    }
    for f in files {
        if next > cut {
            break;
        }
        let map = f.file.map(f.file.size()?)?;
        let h = SegmentHeader::decode(&map, &PathBuf::from(&f.local))?;
        if h.first_lsn > next {
            return Err(gap(&f.local, next, h.first_lsn));
        }
        let Some((first, last, start, end)) = wal_range(&map, &h, next, cut) else {
            continue;
        };
        let header = SegmentHeader {
            first_lsn: first,
            ..h
        }
        .encode();
        let frames = Bytes::from_owner(Owned(map)).slice(start..end);
        let bytes = Chunks(vec![Bytes::copy_from_slice(&header), frames]);
        let local = format!("shards/{shard}/wal/{}", segment_name(first));
        let o = RemoteObject {
            kind: ObjectKind::Wal,
            local,
            key: wal_key(writer, shard, first, last),
            size: bytes.len() as u64,
            crc32c: bytes.crc32c(),
        };
        plans.push(Plan::Upload(o, bytes));
        next = last + 1;
    }
    if next <= cut {
        return Err(gap(&format!("shards/{shard}/wal"), next, cut));
    }
    Ok(plans)
}

/// One object to upload, or one already there.
enum Plan {
    Reuse(RemoteObject),
    Upload(RemoteObject, Chunks),
}

/// Decides each file's object: maps it, and for new ones computes the
/// crc32c of the bytes to upload.
fn plan(writer: u64, snap: &Snapshot, known: &Known) -> Result<Vec<Plan>> {
    let id = snap.manifest.id;
    let mut plans = Vec::with_capacity(snap.files.len());
    for f in snap.files.iter().filter(|f| f.kind != ObjectKind::Wal) {
        let name = file_name(&f.local);
        let size = f.file.size()?;
        plans.push(match (f.kind, known.runs.get(name)) {
            (ObjectKind::Run, Some(o)) if o.size == size => Plan::Reuse(RemoteObject {
                local: f.local.clone(),
                ..o.clone()
            }),
            (ObjectKind::Run, _) => upload(f, run_key(writer, name), size)?,
            _ => upload(f, checkpoint_key(writer, id, name), size)?,
        });
    }
    for s in &snap.manifest.shards {
        let files: Vec<&LocalFile> = snap.files.iter().filter(|f| f.wal == Some(s.shard)).collect();
        if !files.is_empty() {
            plans.extend(wal_plans(
                writer,
                s.shard,
                s.replay_from(),
                s.cut_lsn,
                &files,
                known,
            )?);
        }
    }
    Ok(plans)
}

/// Records missing from the WAL slices of a push: a log that lost records
/// the checkpoint made durable.
fn gap(local: &str, expected: u64, found: u64) -> Error {
    Error::corrupt(
        &PathBuf::from(local),
        0,
        "WAL records for a push",
        format!("record {expected}"),
        format!("the log going on at {found}"),
    )
}

fn upload(f: &LocalFile, key: String, size: u64) -> Result<Plan> {
    let bytes = Chunks::from(Bytes::from_owner(Owned(f.file.map(size)?)));
    let o = RemoteObject {
        kind: f.kind,
        local: f.local.clone(),
        key,
        size: bytes.len() as u64,
        crc32c: bytes.crc32c(),
    };
    Ok(Plan::Upload(o, bytes))
}

/// An object's bytes as they are found: mapped file ranges and small
/// headers, never copied into one buffer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chunks(Vec<Bytes>);

impl Chunks {
    fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    fn crc32c(&self) -> u32 {
        self.0.iter().fold(0, |crc, b| crc32c::crc32c_append(crc, b))
    }

    /// Bytes `start..end` as a payload (zero-copy slices).
    fn payload(&self, start: usize, end: usize) -> PutPayload {
        let mut at = 0;
        let mut out = Vec::new();
        for b in &self.0 {
            let (lo, hi) = (start.max(at), end.min(at + b.len()));
            if lo < hi {
                out.push(b.slice(lo - at..hi - at));
            }
            at += b.len();
        }
        out.into_iter().collect()
    }
}

impl From<Bytes> for Chunks {
    fn from(b: Bytes) -> Self {
        Chunks(vec![b])
    }
}

/// Uploads `bytes` to `key`: one request, or a multipart upload of
/// `part`-sized parts above it, `concurrency` of them in flight.
pub(crate) async fn put(remote: &Remote, key: &str, bytes: Chunks) -> Result<()> {
    let path = remote.path(key);
    let (part, len) = (remote.settings.part_size, bytes.len());
    let err = |e| remote.error("put", key, e);
    if len <= part {
        remote
            .store
            .put_opts(&path, bytes.payload(0, len), Default::default())
            .await
            .map_err(err)?;
        return Ok(());
    }
    let mut up = remote
        .store
        .put_multipart_opts(&path, Default::default())
        .await
        .map_err(err)?;
    let done = futures::stream::iter((0..len).step_by(part))
        .map(|at| up.put_part(bytes.payload(at, (at + part).min(len))))
        .buffer_unordered(remote.settings.concurrency)
        .try_collect::<Vec<()>>()
        .await;
    match done {
        Ok(_) => up.complete().await.map(drop).map_err(err),
        Err(e) => {
            // Best effort: an abandoned upload costs storage until the
            // bucket's lifecycle rule removes it.
            let _ = up.abort().await;
            Err(err(e))
        }
    }
}

/// Pushes `snap` through `writer`: uploads what `known` lacks, then commits
/// a manifest retaining the writer's older checkpoints (trimmed to the
/// remote's `keep`, pinned ones kept) and this one. On success `known` is
/// what the new manifest holds.
pub(crate) async fn push(
    writer: &mut Writer,
    snap: &Snapshot,
    known: &mut Known,
    pins: &HashMap<uuid::Uuid, bool>,
) -> Result<PushReport> {
    let started = Instant::now();
    let remote = writer.remote().clone();
    let plans = plan(writer.epoch(), snap, known)?;
    let mut objects = Vec::with_capacity(plans.len());
    let mut uploads = Vec::new();
    for p in plans {
        match p {
            Plan::Reuse(o) => objects.push(o),
            Plan::Upload(o, bytes) => {
                uploads.push((o.key.clone(), bytes));
                objects.push(o);
            }
        }
    }
    let uploaded_objects = uploads.len();
    let mut uploaded_bytes: u64 = uploads
        .iter()
        .map(|(_, b): &(String, Chunks)| b.len() as u64)
        .sum();
    let tracker = Tracker::start(&remote, Operation::Push, uploaded_objects, uploaded_bytes);
    futures::stream::iter(uploads)
        .map(|(key, bytes)| {
            let remote = &remote;
            let n = bytes.len() as u64;
            async move { put(remote, &key, bytes).await.map(|()| n) }
        })
        .buffer_unordered(remote.settings.concurrency)
        .inspect_ok(|n| tracker.done(*n))
        .try_collect::<Vec<u64>>()
        .await?;
    let m = &snap.manifest;
    let mut new = RemoteCheckpoint {
        id: m.id,
        epoch: m.epoch,
        wall_time_ms: m.wall_time_ms,
        pinned: false,
        objects,
    };
    let (objects, total_bytes) = (new.objects.len(), new.bytes());
    let mut old = writer.manifest().checkpoints.clone();
    for c in old.iter_mut().chain(std::iter::once(&mut new)) {
        c.pinned = pins.get(&c.id).copied().unwrap_or(c.pinned);
    }
    let checkpoints = retained(&old, new, remote.settings.keep);
    writer.commit(checkpoints).await?;
    uploaded_bytes += writer.manifest_bytes();
    let committed = writer.manifest();
    known.refresh(&committed.checkpoints, committed.writer_epoch);
    Ok(PushReport {
        checkpoint: m.id,
        epoch: m.epoch,
        manifest_seq: committed.seq,
        objects,
        uploaded_objects,
        uploaded_bytes,
        total_bytes,
        duration: started.elapsed(),
    })
}

/// The checkpoints a manifest retains after `new`: the older ones of a
/// history it continues (epochs below its own: a store restored from an
/// older checkpoint starts a new history there), the newest `keep` of them
/// counting `new`, and every pinned one.
pub(crate) fn retained(
    old: &[RemoteCheckpoint],
    new: RemoteCheckpoint,
    keep: usize,
) -> Vec<RemoteCheckpoint> {
    let mut all: Vec<RemoteCheckpoint> = old.iter().filter(|c| c.epoch < new.epoch).cloned().collect();
    all.push(new);
    let unpinned = all.iter().filter(|c| !c.pinned).count();
    let mut drop = unpinned.saturating_sub(keep.max(1));
    all.retain(|c| {
        if c.pinned || drop == 0 {
            return true;
        }
        drop -= 1;
        false
    });
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_any_range_across_chunks() {
        let whole: Vec<u8> = (0..40u8).collect();
        let chunks = Chunks(vec![
            Bytes::copy_from_slice(&whole[..3]),
            Bytes::copy_from_slice(&whole[3..3]),
            Bytes::copy_from_slice(&whole[3..25]),
            Bytes::copy_from_slice(&whole[25..]),
        ]);
        assert_eq!(chunks.len(), 40);
        assert_eq!(chunks.crc32c(), crc32c::crc32c(&whole));
        for start in 0..=40 {
            for end in start..=40 {
                let got: Vec<u8> = chunks
                    .payload(start, end)
                    .iter()
                    .flat_map(|b| b.to_vec())
                    .collect();
                assert_eq!(got, &whole[start..end], "{start}..{end}");
            }
        }
    }

    #[test]
    fn retention_keeps_the_newest_and_every_pinned_one() {
        let ck = |epoch: u64, pinned: bool| RemoteCheckpoint {
            id: uuid::Uuid::from_u128(epoch.into()),
            epoch,
            wall_time_ms: 0,
            pinned,
            objects: Vec::new(),
        };
        let old = vec![ck(1, true), ck(2, false), ck(3, false), ck(9, false)];
        let kept: Vec<(u64, bool)> = retained(&old, ck(5, false), 2)
            .iter()
            .map(|c| (c.epoch, c.pinned))
            .collect();
        // Epoch 9 belongs to a history this one does not continue.
        assert_eq!(kept, [(1, true), (3, false), (5, false)]);
    }
}
