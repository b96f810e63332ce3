//! [`RemoteManifest`]: one numbered object of a remote store's manifest
//! sequence, and its bytes (`format/remote.md`). Each one is the whole
//! truth of the remote store when it was written: the writer that wrote it
//! (epoch and a tag unique to the write) and every remote checkpoint it
//! retains, with every object each needs (size and crc32c of its bytes).
//!
//! Decoding checks every length against the bytes left and every local
//! path against the shapes a store's layout has, so a damaged or hostile
//! manifest is a typed error naming the object and offset, never a panic,
//! an allocation sized by garbage or a write outside the store directory.

use std::path::Path;

use uuid::Uuid;

use crate::checkpoint::{MANIFEST_NAME, Reader, put_bytes, put_u32, put_u64, with_header};
use crate::io::header::{FeatureBits, HeaderSpec, check_header, crc_matches, le_u32, le_u64};
use crate::wal::format::parse_segment_name;
use crate::{Error, Result};

/// First 8 bytes of every remote manifest.
pub const REMOTE_MAGIC: [u8; 8] = *b"SSPNREMO";
/// The remote manifest format version this build writes and reads.
pub const REMOTE_VERSION: u32 = 1;
/// Bytes of the header.
pub const REMOTE_HEADER_LEN: usize = 32;
const HEADER_SPEC: HeaderSpec = HeaderSpec {
    region: "remote manifest header",
    magic: &REMOTE_MAGIC,
    len: REMOTE_HEADER_LEN,
    crc_at: 28,
    version_at: 8,
    min_reader_at: None,
    supported: REMOTE_VERSION,
    features: Some(FeatureBits {
        at: 12,
        width: 4,
        known: 0,
    }),
};

/// What an object of a remote checkpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// The checkpoint's own `MANIFEST`.
    Manifest,
    /// A run file.
    Run,
    /// A prefix of a WAL segment, ending at a record boundary.
    Wal,
    /// An operator side file.
    Side,
}

impl ObjectKind {
    fn to_byte(self) -> u8 {
        match self {
            ObjectKind::Manifest => 1,
            ObjectKind::Run => 2,
            ObjectKind::Wal => 3,
            ObjectKind::Side => 4,
        }
    }

    fn from_byte(b: u8) -> Option<ObjectKind> {
        Some(match b {
            1 => ObjectKind::Manifest,
            2 => ObjectKind::Run,
            3 => ObjectKind::Wal,
            4 => ObjectKind::Side,
            _ => return None,
        })
    }
}

/// One object a remote checkpoint needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    /// What it is.
    pub kind: ObjectKind,
    /// Where a restore puts it, relative to the store directory, with `/`
    /// separators (`checkpoints/<id>/<name>` or `shards/<n>/wal/<segment>`).
    pub local: String,
    /// Its key, relative to the remote store's prefix.
    pub key: String,
    /// Its length in bytes.
    pub size: u64,
    /// crc32c of all its bytes.
    pub crc32c: u32,
}

/// One checkpoint the remote store retains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCheckpoint {
    /// The local checkpoint's id (its directory's name).
    pub id: Uuid,
    /// Its epoch.
    pub epoch: u64,
    /// When it was cut, in milliseconds since the Unix epoch.
    pub wall_time_ms: u64,
    /// Kept whatever the retention count.
    pub pinned: bool,
    /// Every object it needs; the manifest object among them.
    pub objects: Vec<RemoteObject>,
}

impl RemoteCheckpoint {
    /// Bytes of all its objects.
    pub fn bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }
}

/// One object of the manifest sequence. See `format/remote.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteManifest {
    /// Its number in the sequence (also in its key).
    pub seq: u64,
    /// The epoch of the writer that wrote it.
    pub writer_epoch: u64,
    /// Unique to this write: a writer whose retried create finds the
    /// object already there knows by the tag whether it was its own.
    pub writer_tag: Uuid,
    /// When it was written, in milliseconds since the Unix epoch (the
    /// writer's clock; garbage collection uses the object store's).
    pub wall_time_ms: u64,
    /// The retained checkpoints, oldest first.
    pub checkpoints: Vec<RemoteCheckpoint>,
}

impl RemoteManifest {
    /// The newest retained checkpoint.
    pub fn newest(&self) -> Option<&RemoteCheckpoint> {
        self.checkpoints.last()
    }

    /// The manifest's bytes: header and body.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(256);
        put_u64(&mut b, self.seq);
        put_u64(&mut b, self.writer_epoch);
        b.extend_from_slice(self.writer_tag.as_bytes());
        put_u64(&mut b, self.wall_time_ms);
        put_u32(&mut b, self.checkpoints.len() as u32);
        for c in &self.checkpoints {
            b.extend_from_slice(c.id.as_bytes());
            put_u64(&mut b, c.epoch);
            put_u64(&mut b, c.wall_time_ms);
            b.push(u8::from(c.pinned));
            put_u32(&mut b, c.objects.len() as u32);
            for o in &c.objects {
                b.push(o.kind.to_byte());
                put_bytes(&mut b, o.local.as_bytes());
                put_bytes(&mut b, o.key.as_bytes());
                put_u64(&mut b, o.size);
                put_u32(&mut b, o.crc32c);
            }
        }
        with_header(&REMOTE_MAGIC, REMOTE_VERSION, 0, &b)
    }

    /// Parses a manifest read from the object named `name` (in errors).
    pub fn decode(bytes: &[u8], name: &Path) -> Result<RemoteManifest> {
        check_header(bytes, 0, name, &HEADER_SPEC)?;
        let body_len = le_u64(bytes, 16);
        let actual = (bytes.len() - REMOTE_HEADER_LEN) as u64;
        if body_len != actual {
            let (exp, found) = (actual.to_string(), body_len.to_string());
            return Err(Error::corrupt(
                name,
                16,
                "remote manifest body length",
                exp,
                found,
            ));
        }
        let body = &bytes[REMOTE_HEADER_LEN..];
        let (stored, computed) = (le_u32(bytes, 24), crc32c::crc32c(body));
        if !crc_matches(stored, computed) {
            return Err(Error::corrupt(
                name,
                REMOTE_HEADER_LEN as u64,
                "remote manifest body checksum",
                format!("crc32c {computed:#010x}"),
                format!("crc32c {stored:#010x}"),
            ));
        }
        let mut r = Reader {
            b: body,
            at: 0,
            path: name,
            base: REMOTE_HEADER_LEN as u64,
        };
        let seq = r.u64("sequence number")?;
        let writer_epoch = r.u64("writer epoch")?;
        let writer_tag = uuid(&mut r, "writer tag")?;
        let wall_time_ms = r.u64("wall time")?;
        let n = r.count("checkpoint count", 16 + 8 + 8 + 1 + 4)?;
        let mut checkpoints = Vec::with_capacity(n);
        for _ in 0..n {
            checkpoints.push(checkpoint(&mut r)?);
        }
        if r.at != body.len() {
            let left = format!("{} more bytes", body.len() - r.at);
            return Err(r.err("remote manifest end", "end of body".into(), left));
        }
        Ok(RemoteManifest {
            seq,
            writer_epoch,
            writer_tag,
            wall_time_ms,
            checkpoints,
        })
    }
}

fn uuid(r: &mut Reader<'_>, region: &'static str) -> Result<Uuid> {
    let b = r.take(16, region)?;
    let mut id = [0u8; 16];
    id.copy_from_slice(b);
    Ok(Uuid::from_bytes(id))
}

fn checkpoint(r: &mut Reader<'_>) -> Result<RemoteCheckpoint> {
    let id = uuid(r, "checkpoint id")?;
    let epoch = r.u64("checkpoint epoch")?;
    let wall_time_ms = r.u64("checkpoint wall time")?;
    let pinned = match r.u8("pinned flag")? {
        0 => false,
        1 => true,
        b => {
            r.at -= 1;
            return Err(r.err("pinned flag", "0 or 1".into(), b.to_string()));
        }
    };
    let n = r.count("object count", 1 + 4 + 4 + 8 + 4)?;
    let mut objects = Vec::with_capacity(n);
    let mut places = std::collections::HashSet::with_capacity(n);
    for _ in 0..n {
        let at = r.at;
        let kind_byte = r.u8("object kind")?;
        let local = r.string("object local path")?;
        let key = r.string("object key")?;
        let size = r.u64("object size")?;
        let crc32c = r.u32("object crc32c")?;
        let kind = ObjectKind::from_byte(kind_byte).filter(|k| local_path_ok(*k, id, &local));
        // Two objects in one place would be written over each other.
        let twice = !places.insert(local.clone());
        let Some(kind) = kind.filter(|_| key_ok(&key) && !twice) else {
            r.at = at;
            let found = format!("kind {kind_byte}, local {local:?}, key {key:?}");
            return Err(r.err(
                "object entry",
                "an object of this checkpoint's layout".into(),
                found,
            ));
        };
        objects.push(RemoteObject {
            kind,
            local,
            key,
            size,
            crc32c,
        });
    }
    Ok(RemoteCheckpoint {
        id,
        epoch,
        wall_time_ms,
        pinned,
        objects,
    })
}

/// A file name inside one directory: no separator, not `.` or `..`.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// Whether `local` is where a store of checkpoint `id` keeps an object of
/// `kind`: nothing else may be written by a restore.
pub(crate) fn local_path_ok(kind: ObjectKind, id: Uuid, local: &str) -> bool {
    let parts: Vec<&str> = local.split('/').collect();
    match (kind, parts.as_slice()) {
        (ObjectKind::Manifest, ["checkpoints", dir, name]) => {
            *dir == id.to_string() && *name == MANIFEST_NAME
        }
        (ObjectKind::Run | ObjectKind::Side, ["checkpoints", dir, name]) => {
            *dir == id.to_string() && plain_name(name) && *name != MANIFEST_NAME
        }
        (ObjectKind::Wal, ["shards", shard, "wal", seg]) => {
            shard.parse::<u32>().is_ok_and(|n| n.to_string() == *shard) && parse_segment_name(seg).is_some()
        }
        _ => false,
    }
}

/// Whether `key` is a data object's key: relative, plain segments, never
/// inside the manifest sequence.
pub(crate) fn key_ok(key: &str) -> bool {
    !key.starts_with(super::keys::MANIFEST_DIR) && key.split('/').all(plain_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::keys;

    pub(crate) fn sample() -> RemoteManifest {
        let id = Uuid::from_u128(0x1234);
        let object = |kind, local: String, key: String, size| RemoteObject {
            kind,
            local,
            key,
            size,
            crc32c: 0xdead_beef ^ size as u32,
        };
        RemoteManifest {
            seq: 7,
            writer_epoch: 3,
            writer_tag: Uuid::from_u128(0x77),
            wall_time_ms: 1_700_000_000_000,
            checkpoints: vec![RemoteCheckpoint {
                id,
                epoch: 42,
                wall_time_ms: 1_700_000_000_001,
                pinned: true,
                objects: vec![
                    object(
                        ObjectKind::Manifest,
                        format!("checkpoints/{id}/MANIFEST"),
                        keys::checkpoint_key(3, id, "MANIFEST"),
                        300,
                    ),
                    object(
                        ObjectKind::Run,
                        format!("checkpoints/{id}/0-1-000000000004.run"),
                        keys::run_key(3, "0-1-000000000004.run"),
                        4096,
                    ),
                    object(
                        ObjectKind::Wal,
                        "shards/0/wal/00000000000000000001.wal".into(),
                        keys::wal_key(3, 0, 1, 9),
                        900,
                    ),
                ],
            }],
        }
    }

    #[test]
    fn a_manifest_reads_back_as_written() {
        let m = sample();
        let bytes = m.encode();
        assert_eq!(RemoteManifest::decode(&bytes, Path::new("m")).unwrap(), m);
        assert_eq!(m.newest().unwrap().bytes(), 300 + 4096 + 900);
    }

    /// Every cut and every flipped bit is refused as corruption, never a
    /// panic or a different manifest.
    #[test]
    fn every_truncation_and_bit_flip_is_refused() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            let e = RemoteManifest::decode(&bytes[..len], Path::new("m")).unwrap_err();
            assert!(e.is_corruption(), "cut at {len}: {e}");
        }
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            let e = RemoteManifest::decode(&b, Path::new("m")).unwrap_err();
            assert!(matches!(e.kind(), crate::ErrorKind::Corruption), "bit {i}: {e}");
        }
    }

    /// A manifest whose checksums hold but whose paths leave the store's
    /// layout (a hostile or buggy writer) is refused: a restore writes
    /// only where a store keeps its files.
    #[test]
    fn paths_outside_the_layout_are_refused() {
        let id = Uuid::from_u128(0x1234);
        let bad_locals = [
            (ObjectKind::Run, "checkpoints/../../etc/passwd".to_string()),
            (ObjectKind::Run, format!("checkpoints/{id}/../x")),
            (
                ObjectKind::Run,
                format!("checkpoints/{}/r.run", Uuid::from_u128(9)),
            ),
            (ObjectKind::Run, format!("checkpoints/{id}/MANIFEST")),
            (ObjectKind::Manifest, format!("checkpoints/{id}/r.run")),
            (ObjectKind::Wal, "shards/0/wal/x.wal".into()),
            (ObjectKind::Wal, "shards/00/wal/00000000000000000001.wal".into()),
            (ObjectKind::Wal, "/shards/0/wal/00000000000000000001.wal".into()),
        ];
        for (kind, local) in bad_locals {
            let mut m = sample();
            m.checkpoints[0].objects[1].kind = kind;
            m.checkpoints[0].objects[1].local = local.clone();
            let e = RemoteManifest::decode(&m.encode(), Path::new("m")).unwrap_err();
            assert!(e.is_corruption(), "{local}: {e}");
        }
        for key in ["", "/abs", "a//b", "w1/../x", "manifest/00000000000000000001"] {
            let mut m = sample();
            m.checkpoints[0].objects[0].key = key.into();
            assert!(
                RemoteManifest::decode(&m.encode(), Path::new("m")).is_err(),
                "{key:?}"
            );
        }
        // Two objects of one checkpoint in one place.
        let mut m = sample();
        let first = m.checkpoints[0].objects[0].clone();
        m.checkpoints[0].objects.push(first);
        let e = RemoteManifest::decode(&m.encode(), Path::new("m")).unwrap_err();
        assert!(e.is_corruption(), "{e}");
    }
}
