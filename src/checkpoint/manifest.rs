//! [`CheckpointManifest`]: what one checkpoint is, and its byte layout
//! (`format/manifest.md`): a 32-byte header (magic, version, flags, body
//! length, body crc32c, header crc32c) and a body of little-endian fields.
//!
//! Decoding checks every length against the bytes left before reading, so a
//! damaged manifest is a typed error naming the file and offset, never a
//! panic or an allocation sized by garbage.

use std::collections::BTreeMap;
use std::path::Path;

use uuid::Uuid;

use crate::io::header::{FeatureBits, HeaderSpec, check_header, crc_matches, le_u32, le_u64};
use crate::run::RunMode;
use crate::{Error, Result};

/// File name of the manifest inside a checkpoint directory.
pub const MANIFEST_NAME: &str = "MANIFEST";
/// First 8 bytes of every manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"SSPNMANI";
/// The manifest format version this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
/// Bytes of the header.
pub const MANIFEST_HEADER_LEN: usize = 32;
/// Flag: runs were copied, not hard-linked (another file system).
pub const FLAG_RUNS_COPIED: u32 = 1;
const KNOWN_FLAGS: u32 = FLAG_RUNS_COPIED;
/// The header as [`check_header`] reads it: no oldest-reader field, so a
/// reader must know the writer's version itself.
const HEADER_SPEC: HeaderSpec = HeaderSpec {
    region: "manifest header",
    magic: &MANIFEST_MAGIC,
    len: MANIFEST_HEADER_LEN,
    crc_at: 28,
    version_at: 8,
    min_reader_at: None,
    supported: MANIFEST_VERSION,
    features: Some(FeatureBits {
        at: 12,
        width: 4,
        known: KNOWN_FLAGS as u64,
    }),
};

/// One run a spine's state needs, as the checkpoint holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEntry {
    /// File name inside the shard's directory of the checkpoint.
    pub file: String,
    /// File length in bytes.
    pub size: u64,
    /// The run's content checksum (its footer's `body_crc32c`).
    pub crc32c: u32,
    /// Entries in the run.
    pub entries: u64,
}

/// One spine of a shard at the cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpineManifest {
    /// The spine's id in its shard (ids are never reused).
    pub id: u32,
    /// The spine's name.
    pub name: String,
    /// Key-value or Z-set.
    pub mode: RunMode,
    /// Every write of the spine with an LSN up to this is in `runs`; replay
    /// applies the spine's later records only.
    pub covered_lsn: u64,
    /// Its runs, oldest first.
    pub runs: Vec<RunEntry>,
}

/// One shard at the cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardManifest {
    /// The shard's number.
    pub shard: u32,
    /// LSN of the shard's last record of the checkpoint's epoch: the state at
    /// the epoch is the runs plus the WAL replayed up to here.
    pub cut_lsn: u64,
    /// The id the shard's next new spine gets.
    pub next_spine_id: u32,
    /// Its spines, by id.
    pub spines: Vec<SpineManifest>,
}

impl ShardManifest {
    /// The first LSN recovery must replay: one past the least covered spine
    /// (or past the cut, with no spine).
    pub fn replay_from(&self) -> u64 {
        self.spines
            .iter()
            .map(|s| s.covered_lsn)
            .min()
            .unwrap_or(self.cut_lsn)
            .min(self.cut_lsn)
            + 1
    }
}

/// What a connector (source or sink) saved with the checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectorCheckpoint {
    /// Opaque bytes the connector restores from.
    pub state: Vec<u8>,
    /// Transactions a two-phase-commit sink prepared for this epoch: recovery
    /// hands them back so the sink commits or aborts each.
    pub prepared_transactions: Vec<String>,
}

/// Where an operator's checkpoint bytes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorCheckpoint {
    /// In the manifest itself (small states).
    Inline(Vec<u8>),
    /// In a side file of the checkpoint directory.
    File {
        /// File name inside the checkpoint directory.
        file: String,
        /// Its length.
        len: u64,
        /// crc32c of its bytes.
        crc32c: u32,
    },
}

/// One committed checkpoint. See `format/manifest.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointManifest {
    /// The checkpoint's id, also its directory's name.
    pub id: Uuid,
    /// The epoch it captures.
    pub epoch: u64,
    /// When it was cut, in milliseconds since the Unix epoch.
    pub wall_time_ms: u64,
    /// The program's fingerprint: recovery refuses a checkpoint whose
    /// fingerprint differs from the one it is given.
    pub fingerprint: Vec<u8>,
    /// True if the runs were copied because hard links failed.
    pub runs_copied: bool,
    /// Every shard's cut.
    pub shards: Vec<ShardManifest>,
    /// Source offsets (`source -> offset`).
    pub source_offsets: BTreeMap<String, u64>,
    /// Connector checkpoints by connector name.
    pub connectors: BTreeMap<String, ConnectorCheckpoint>,
    /// Operator checkpoints by operator name.
    pub operators: BTreeMap<String, OperatorCheckpoint>,
}

impl CheckpointManifest {
    /// The manifest's bytes: header and body.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(256);
        b.extend_from_slice(self.id.as_bytes());
        put_u64(&mut b, self.epoch);
        put_u64(&mut b, self.wall_time_ms);
        put_bytes(&mut b, &self.fingerprint);
        put_u32(&mut b, self.shards.len() as u32);
        for s in &self.shards {
            put_u32(&mut b, s.shard);
            put_u64(&mut b, s.cut_lsn);
            put_u32(&mut b, s.next_spine_id);
            put_u32(&mut b, s.spines.len() as u32);
            for sp in &s.spines {
                put_u32(&mut b, sp.id);
                put_bytes(&mut b, sp.name.as_bytes());
                b.push(sp.mode.to_byte());
                put_u64(&mut b, sp.covered_lsn);
                put_u32(&mut b, sp.runs.len() as u32);
                for r in &sp.runs {
                    put_bytes(&mut b, r.file.as_bytes());
                    put_u64(&mut b, r.size);
                    put_u32(&mut b, r.crc32c);
                    put_u64(&mut b, r.entries);
                }
            }
        }
        put_metadata(&mut b, &self.source_offsets, &self.connectors, &self.operators);
        let flags = if self.runs_copied { FLAG_RUNS_COPIED } else { 0 };
        with_header(&MANIFEST_MAGIC, MANIFEST_VERSION, flags, &b)
    }

    /// Parses a manifest read from `path` (named in errors).
    pub fn decode(bytes: &[u8], path: &Path) -> Result<CheckpointManifest> {
        let corrupt = |off: u64, region: &'static str, exp: String, found: String| {
            Error::corrupt(path, off, region, exp, found)
        };
        let checked = check_header(bytes, 0, path, &HEADER_SPEC)?;
        let flags = checked.features as u32;
        let body_len = le_u64(bytes, 16);
        let actual = (bytes.len() - MANIFEST_HEADER_LEN) as u64;
        if body_len != actual {
            return Err(corrupt(
                16,
                "manifest body length",
                format!("{actual}"),
                format!("{body_len}"),
            ));
        }
        let body = &bytes[MANIFEST_HEADER_LEN..];
        let body_crc = le_u32(bytes, 24);
        if !crc_matches(body_crc, crc32c::crc32c(body)) {
            return Err(corrupt(
                MANIFEST_HEADER_LEN as u64,
                "manifest body checksum",
                format!("crc32c {:#010x}", crc32c::crc32c(body)),
                format!("crc32c {body_crc:#010x}"),
            ));
        }
        let mut r = Reader {
            b: body,
            at: 0,
            path,
            base: MANIFEST_HEADER_LEN as u64,
        };
        let mut m = r.header_fields()?;
        m.runs_copied = flags & FLAG_RUNS_COPIED != 0;
        let shards = r.count("shard count", 24)?;
        for _ in 0..shards {
            m.shards.push(r.shard()?);
        }
        r.metadata(&mut m)?;
        if r.at != body.len() {
            return Err(r.err(
                "manifest end",
                "end of body".into(),
                format!("{} more bytes", body.len() - r.at),
            ));
        }
        Ok(m)
    }
}

/// Appends source offsets, connector and operator checkpoints (the
/// manifest's metadata fields).
fn put_metadata(
    b: &mut Vec<u8>,
    source_offsets: &BTreeMap<String, u64>,
    connectors: &BTreeMap<String, ConnectorCheckpoint>,
    operators: &BTreeMap<String, OperatorCheckpoint>,
) {
    put_offsets(b, source_offsets);
    put_connectors(b, connectors);
    put_u32(b, operators.len() as u32);
    for (name, op) in operators {
        match op {
            OperatorCheckpoint::Inline(bytes) => put_inline_operator(b, name, bytes),
            OperatorCheckpoint::File { file, len, crc32c } => {
                put_bytes(b, name.as_bytes());
                b.push(1);
                put_bytes(b, file.as_bytes());
                put_u64(b, *len);
                put_u32(b, *crc32c);
            }
        }
    }
}

/// Appends connector checkpoints: a count, then each connector.
pub(super) fn put_connectors(b: &mut Vec<u8>, connectors: &BTreeMap<String, ConnectorCheckpoint>) {
    put_u32(b, connectors.len() as u32);
    for (name, c) in connectors {
        put_bytes(b, name.as_bytes());
        put_bytes(b, &c.state);
        put_u32(b, c.prepared_transactions.len() as u32);
        for t in &c.prepared_transactions {
            put_bytes(b, t.as_bytes());
        }
    }
}

/// Appends one operator entry of kind 0 (inline) (its count comes first).
pub(super) fn put_inline_operator(b: &mut Vec<u8>, name: &str, bytes: &[u8]) {
    put_bytes(b, name.as_bytes());
    b.push(0);
    put_bytes(b, bytes);
}

/// Appends source offsets: a count, then name and offset pairs.
pub(super) fn put_offsets(b: &mut Vec<u8>, source_offsets: &BTreeMap<String, u64>) {
    put_u32(b, source_offsets.len() as u32);
    for (name, off) in source_offsets {
        put_bytes(b, name.as_bytes());
        put_u64(b, *off);
    }
}

/// `body` behind the 32-byte header both manifest formats share
/// (`format/manifest.md`, "Header"): magic, version, flags, the body's
/// length and crc32c, then the crc32c of the header's first 28 bytes.
pub(crate) fn with_header(magic: &[u8; 8], version: u32, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MANIFEST_HEADER_LEN + body.len());
    out.extend_from_slice(magic);
    put_u32(&mut out, version);
    put_u32(&mut out, flags);
    put_u64(&mut out, body.len() as u64);
    put_u32(&mut out, crc32c::crc32c(body));
    let header_crc = crc32c::crc32c(&out);
    put_u32(&mut out, header_crc);
    out.extend_from_slice(body);
    out
}

pub(crate) fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_bytes(b: &mut Vec<u8>, v: &[u8]) {
    put_u32(b, v.len() as u32);
    b.extend_from_slice(v);
}

/// A bounds-checked cursor over the body; offsets in errors are file offsets
/// (`base` plus the offset in `b`).
pub(crate) struct Reader<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) at: usize,
    pub(crate) path: &'a Path,
    pub(crate) base: u64,
}

impl<'a> Reader<'a> {
    pub(crate) fn err(&self, region: &'static str, expected: String, found: String) -> Error {
        Error::corrupt(self.path, self.base + self.at as u64, region, expected, found)
    }

    pub(crate) fn take(&mut self, n: usize, region: &'static str) -> Result<&'a [u8]> {
        let left = self.b.len() - self.at;
        if n > left {
            return Err(self.err(region, format!("{n} bytes"), format!("{left} bytes left")));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    pub(crate) fn u8(&mut self, region: &'static str) -> Result<u8> {
        Ok(self.take(1, region)?[0])
    }

    pub(crate) fn u32(&mut self, region: &'static str) -> Result<u32> {
        Ok(le_u32(self.take(4, region)?, 0))
    }

    pub(crate) fn u64(&mut self, region: &'static str) -> Result<u64> {
        Ok(le_u64(self.take(8, region)?, 0))
    }

    pub(crate) fn bytes(&mut self, region: &'static str) -> Result<&'a [u8]> {
        let n = self.u32(region)? as usize;
        self.take(n, region)
    }

    pub(crate) fn string(&mut self, region: &'static str) -> Result<String> {
        let at = self.at;
        let b = self.bytes(region)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => {
                self.at = at;
                Err(self.err(region, "UTF-8".into(), e.to_string()))
            }
        }
    }

    /// A count of items of at least `min_item` bytes each: larger than what
    /// is left is damage (and never sizes an allocation).
    pub(crate) fn count(&mut self, region: &'static str, min_item: usize) -> Result<usize> {
        let n = self.u32(region)? as usize;
        let left = self.b.len() - self.at;
        if n.saturating_mul(min_item) > left {
            self.at -= 4;
            return Err(self.err(
                region,
                format!("at most {} items", left / min_item),
                format!("{n}"),
            ));
        }
        Ok(n)
    }

    /// Source offsets, connector and operator checkpoints.
    fn metadata(&mut self, m: &mut CheckpointManifest) -> Result<()> {
        m.source_offsets = self.offsets()?;
        m.connectors = self.connectors()?;
        m.operators = self.operators()?;
        Ok(())
    }

    /// Source offsets.
    pub(super) fn offsets(&mut self) -> Result<BTreeMap<String, u64>> {
        let n = self.count("source offset count", 12)?;
        let mut out = BTreeMap::new();
        for _ in 0..n {
            let name = self.string("source name")?;
            out.insert(name, self.u64("source offset")?);
        }
        Ok(out)
    }

    /// Connector checkpoints.
    pub(super) fn connectors(&mut self) -> Result<BTreeMap<String, ConnectorCheckpoint>> {
        let n = self.count("connector count", 12)?;
        let mut out = BTreeMap::new();
        for _ in 0..n {
            let name = self.string("connector name")?;
            let state = self.bytes("connector state")?.to_vec();
            let t = self.count("prepared transaction count", 4)?;
            let mut prepared_transactions = Vec::with_capacity(t);
            for _ in 0..t {
                prepared_transactions.push(self.string("prepared transaction id")?);
            }
            out.insert(
                name,
                ConnectorCheckpoint {
                    state,
                    prepared_transactions,
                },
            );
        }
        Ok(out)
    }

    /// Operator checkpoints.
    pub(super) fn operators(&mut self) -> Result<BTreeMap<String, OperatorCheckpoint>> {
        let n = self.count("operator count", 9)?;
        let mut out = BTreeMap::new();
        for _ in 0..n {
            let name = self.string("operator name")?;
            let op = self.operator()?;
            out.insert(name, op);
        }
        Ok(out)
    }

    fn header_fields(&mut self) -> Result<CheckpointManifest> {
        let id = Uuid::from_slice(self.take(16, "checkpoint id")?)
            .map_err(|e| self.err("checkpoint id", "16 bytes".into(), e.to_string()))?;
        Ok(CheckpointManifest {
            id,
            epoch: self.u64("epoch")?,
            wall_time_ms: self.u64("wall time")?,
            fingerprint: self.bytes("fingerprint")?.to_vec(),
            runs_copied: false,
            shards: Vec::new(),
            source_offsets: BTreeMap::new(),
            connectors: BTreeMap::new(),
            operators: BTreeMap::new(),
        })
    }

    fn shard(&mut self) -> Result<ShardManifest> {
        let shard = self.u32("shard number")?;
        let cut_lsn = self.u64("shard cut LSN")?;
        let next_spine_id = self.u32("next spine id")?;
        let n = self.count("spine count", 21)?;
        let mut spines = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.u32("spine id")?;
            let name = self.string("spine name")?;
            let at = self.at;
            let mode = RunMode::from_byte(self.u8("spine mode")?).ok_or_else(|| {
                self.at = at;
                self.err("spine mode", "1 or 2".into(), format!("{}", self.b[at]))
            })?;
            let covered_lsn = self.u64("spine covered LSN")?;
            let runs = self.count("run count", 24)?;
            let mut entries = Vec::with_capacity(runs);
            for _ in 0..runs {
                entries.push(RunEntry {
                    file: self.string("run file name")?,
                    size: self.u64("run size")?,
                    crc32c: self.u32("run checksum")?,
                    entries: self.u64("run entry count")?,
                });
            }
            if covered_lsn > cut_lsn {
                return Err(self.err(
                    "spine covered LSN",
                    format!("at most the cut LSN {cut_lsn}"),
                    format!("{covered_lsn}"),
                ));
            }
            spines.push(SpineManifest {
                id,
                name,
                mode,
                covered_lsn,
                runs: entries,
            });
        }
        Ok(ShardManifest {
            shard,
            cut_lsn,
            next_spine_id,
            spines,
        })
    }

    fn operator(&mut self) -> Result<OperatorCheckpoint> {
        let at = self.at;
        match self.u8("operator kind")? {
            0 => Ok(OperatorCheckpoint::Inline(self.bytes("operator state")?.to_vec())),
            1 => Ok(OperatorCheckpoint::File {
                file: self.string("operator file name")?,
                len: self.u64("operator file length")?,
                crc32c: self.u32("operator file checksum")?,
            }),
            k => {
                self.at = at;
                Err(self.err("operator kind", "0 (inline) or 1 (file)".into(), format!("{k}")))
            }
        }
    }
}
