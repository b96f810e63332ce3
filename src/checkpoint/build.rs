//! The parts of a checkpoint's manifest built from what this layer knows:
//! a run's link and entry from its handle, operator states inline or in
//! side files, the manifest's wall time. The store assembles them with the
//! shards' cuts.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use super::dir::RunLink;
use super::manifest::{OperatorCheckpoint, RunEntry};
use crate::spine::RunHandle;

/// Operator states larger than this go to a side file, not the manifest.
pub const INLINE_OPERATOR_LIMIT: usize = 64 << 10;

/// A side file of a checkpoint: its name and bytes.
pub(crate) type SideFile = (String, Vec<u8>);

/// The link a checkpoint makes to the run `h` holds, under `name`, and the
/// run's manifest entry.
pub(crate) fn run_link(h: &RunHandle, name: String) -> (RunLink, RunEntry) {
    let meta = h.run().meta();
    let link = RunLink {
        source: meta.path.clone(),
        name: name.clone(),
        size: meta.file_len,
        is_new: !h.is_durable(),
    };
    let entry = RunEntry {
        file: name,
        size: meta.file_len,
        crc32c: meta.body_crc32c,
        entries: meta.entry_count,
    };
    (link, entry)
}

/// Operator states as the manifest records them: inline up to
/// [`INLINE_OPERATOR_LIMIT`], else in a side file (returned with them).
pub(crate) fn split_operators(
    operators: &BTreeMap<String, Vec<u8>>,
) -> (BTreeMap<String, OperatorCheckpoint>, Vec<SideFile>) {
    let mut side_files = Vec::new();
    let inline = operators
        .iter()
        .enumerate()
        .map(|(i, (name, bytes))| {
            let op = if bytes.len() <= INLINE_OPERATOR_LIMIT {
                OperatorCheckpoint::Inline(bytes.clone())
            } else {
                let file = format!("operator-{i}.bin");
                side_files.push((file.clone(), bytes.clone()));
                OperatorCheckpoint::File {
                    file,
                    len: bytes.len() as u64,
                    crc32c: crc32c::crc32c(bytes),
                }
            };
            (name.clone(), op)
        })
        .collect();
    (inline, side_files)
}

/// Milliseconds since the Unix epoch now (0 on a clock before it).
pub(crate) fn wall_time_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
