//! The epoch-commit record (`format/wal.md`, "Epoch commits"): what an epoch
//! commit appends to every shard's WAL. It is a changelog record of the
//! reserved spine [`COMMIT_SPINE`]: key = the epoch (u64 LE), value = a
//! version byte, the epoch's metadata laid out as a manifest's metadata
//! fields (`format/manifest.md`) with every operator state inline, then the
//! source offsets the shard itself recorded (a count, then name and offset
//! pairs): those are where the shard's own sources stood at its record.

use std::collections::BTreeMap;
use std::path::Path;

use super::manifest::{Reader, put_connectors, put_inline_operator, put_offsets, put_u32};
use super::{ConnectorCheckpoint, OperatorCheckpoint};
use crate::{Error, Result};

/// The spine id of epoch-commit records in a shard's WAL (the catalog's is
/// `u32::MAX`).
pub const COMMIT_SPINE: u32 = u32::MAX - 1;
/// The version byte this build writes first in a commit record's value.
pub const COMMIT_RECORD_VERSION: u8 = 1;

/// What an epoch commit (or a checkpoint, which is one too) records next to
/// the state: where the sources stand, what the sinks prepared, small
/// operator state. Recovery hands back exactly this for the epoch it
/// recovers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochMetadata {
    /// Source offsets (`source -> offset`): where to rewind the sources.
    pub source_offsets: BTreeMap<String, u64>,
    /// Connector checkpoints by connector name, with the transactions
    /// two-phase-commit sinks prepared in the epoch.
    pub connectors: BTreeMap<String, ConnectorCheckpoint>,
    /// Operator states by operator name (a checkpoint puts large ones in
    /// side files; an epoch commit keeps them in its WAL record).
    pub operators: BTreeMap<String, Vec<u8>>,
}

impl EpochMetadata {
    /// The transactions each two-phase-commit sink prepared, by connector
    /// (connectors without any left out).
    pub fn prepared_transactions(&self) -> BTreeMap<String, Vec<String>> {
        self.connectors
            .iter()
            .filter(|(_, c)| !c.prepared_transactions.is_empty())
            .map(|(n, c)| (n.clone(), c.prepared_transactions.clone()))
            .collect()
    }
}

/// The key of the commit record of `epoch`.
pub fn commit_key(epoch: u64) -> [u8; 8] {
    epoch.to_le_bytes()
}

/// The part of a commit record's value every shard shares: the version
/// byte and the epoch's metadata (each shard appends its own offsets:
/// [`append_shard_offsets`]).
pub fn encode_commit_value(
    source_offsets: &BTreeMap<String, u64>,
    connectors: &BTreeMap<String, ConnectorCheckpoint>,
    operators: &BTreeMap<String, Vec<u8>>,
) -> Vec<u8> {
    let mut b = vec![COMMIT_RECORD_VERSION];
    put_offsets(&mut b, source_offsets);
    put_connectors(&mut b, connectors);
    put_u32(&mut b, operators.len() as u32);
    for (name, bytes) in operators {
        put_inline_operator(&mut b, name, bytes);
    }
    b
}

/// Appends the offsets a shard recorded to a commit record's value.
pub fn append_shard_offsets(out: &mut Vec<u8>, offsets: &BTreeMap<String, u64>) {
    put_offsets(out, offsets);
}

/// The epoch a commit record's key names; `path` (the WAL) and `lsn` name
/// the record in the error.
pub fn decode_commit_key(key: &[u8], path: &Path, lsn: u64) -> Result<u64> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| {
        Error::corrupt(
            path,
            lsn,
            "epoch-commit record",
            "an 8-byte epoch",
            format!("{} bytes", key.len()),
        )
    })?;
    Ok(u64::from_le_bytes(bytes))
}

/// Parses a commit record's value: the shared metadata and the shard's own
/// offsets. Errors name `path` (the WAL directory), with the record's LSN
/// for the offset, as for any WAL payload.
pub fn decode_commit_value(
    value: &[u8],
    path: &Path,
    lsn: u64,
) -> Result<(EpochMetadata, BTreeMap<String, u64>)> {
    let bad =
        |expected: String, found: String| Error::corrupt(path, lsn, "epoch-commit record", expected, found);
    match value.first() {
        Some(&COMMIT_RECORD_VERSION) => {}
        Some(v) => {
            return Err(bad(
                format!("version {COMMIT_RECORD_VERSION}"),
                format!("version {v}"),
            ));
        }
        None => return Err(bad("a version byte".into(), "an empty value".into())),
    }
    let mut r = Reader {
        b: &value[1..],
        at: 0,
        path,
        base: 0,
    };
    let source_offsets = r.offsets()?;
    let connectors = r.connectors()?;
    let mut operators = BTreeMap::new();
    for (name, op) in r.operators()? {
        match op {
            OperatorCheckpoint::Inline(bytes) => operators.insert(name, bytes),
            OperatorCheckpoint::File { file, .. } => {
                return Err(bad(
                    "operator states inline".into(),
                    format!("operator {name} in side file {file}"),
                ));
            }
        };
    }
    let own = r.offsets()?;
    if r.at != r.b.len() {
        return Err(bad(
            "the end of the record".into(),
            format!("{} more bytes", r.b.len() - r.at),
        ));
    }
    let meta = EpochMetadata {
        source_offsets,
        connectors,
        operators,
    };
    Ok((meta, own))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EpochMetadata {
        let mut m = EpochMetadata::default();
        m.source_offsets.insert("src".into(), 100);
        m.connectors.insert(
            "sink".into(),
            ConnectorCheckpoint {
                state: b"s".to_vec(),
                prepared_transactions: vec!["tx-7".into()],
            },
        );
        m.operators.insert("op".into(), vec![1, 2, 3]);
        m
    }

    #[test]
    fn round_trip_and_every_cut_is_refused() {
        let p = Path::new("/wal");
        let m = sample();
        let mut v = encode_commit_value(&m.source_offsets, &m.connectors, &m.operators);
        let own: BTreeMap<String, u64> = [("src/0".to_string(), 7)].into();
        append_shard_offsets(&mut v, &own);
        assert_eq!(decode_commit_value(&v, p, 9).unwrap(), (m.clone(), own));
        assert_eq!(m.prepared_transactions()["sink"], vec!["tx-7".to_string()]);
        for cut in 0..v.len() {
            let e = decode_commit_value(&v[..cut], p, 9).unwrap_err();
            assert!(e.is_corruption(), "cut at {cut}: {e}");
        }
        let mut longer = v.clone();
        longer.push(0);
        assert!(decode_commit_value(&longer, p, 9).unwrap_err().is_corruption());
        let mut other = v;
        other[0] = 2;
        assert!(decode_commit_value(&other, p, 9).unwrap_err().is_corruption());
        assert_eq!(decode_commit_key(&commit_key(42), p, 1).unwrap(), 42);
        assert!(decode_commit_key(b"short", p, 1).is_err());
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    /// The bytes of version 1 (`format/wal.md`, "Epoch commits"): a change
    /// here is a format change.
    #[test]
    fn version_1_bytes_are_pinned() {
        let mut m = EpochMetadata::default();
        m.source_offsets.insert("s".into(), 5);
        m.connectors.insert(
            "c".into(),
            ConnectorCheckpoint {
                state: vec![9],
                prepared_transactions: vec!["t".into()],
            },
        );
        m.operators.insert("o".into(), vec![7]);
        let mut v = encode_commit_value(&m.source_offsets, &m.connectors, &m.operators);
        append_shard_offsets(&mut v, &[("p".to_string(), 2)].into());
        let expected: Vec<u8> = [
            &[1u8][..],
            &[1, 0, 0, 0, 1, 0, 0, 0, b's', 5, 0, 0, 0, 0, 0, 0, 0],
            &[
                1, 0, 0, 0, 1, 0, 0, 0, b'c', 1, 0, 0, 0, 9, 1, 0, 0, 0, 1, 0, 0, 0, b't',
            ],
            &[1, 0, 0, 0, 1, 0, 0, 0, b'o', 0, 1, 0, 0, 0, 7],
            &[1, 0, 0, 0, 1, 0, 0, 0, b'p', 2, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(v, expected);
        assert_eq!(commit_key(3), [3, 0, 0, 0, 0, 0, 0, 0]);
    }
}
