//! A checkpoint's manifest from the shards' cuts: every run each spine's
//! cut holds, linked under its checkpoint name, and the request's metadata
//! over the offsets the shards recorded.

use uuid::Uuid;

use super::coordinator::CheckpointRequest;
use super::shard::ShardCut;
use crate::checkpoint::build::{run_link, split_operators, wall_time_ms};
use crate::checkpoint::{CheckpointManifest, PreparedCheckpoint, RunLink, ShardManifest, SpineManifest};
use crate::recovery::checkpoint_run_name;
use crate::spine::RunHandle;

/// The checkpoint `id` of `epoch` made of `cuts` (in shard order), and the
/// handles of every run it links (kept alive until it commits).
pub(crate) fn prepare(
    id: Uuid,
    fingerprint: &[u8],
    epoch: u64,
    req: &CheckpointRequest,
    cuts: &[ShardCut],
) -> (PreparedCheckpoint, Vec<RunHandle>) {
    let mut runs = Vec::new();
    let mut live = Vec::new();
    let shards = cuts
        .iter()
        .map(|c| shard_manifest(c, &mut runs, &mut live))
        .collect();
    let (operators, side_files) = split_operators(&req.operators);
    let mut source_offsets = req.source_offsets.clone();
    for c in cuts {
        source_offsets.extend(c.offsets.iter().map(|(k, v)| (k.clone(), *v)));
    }
    let manifest = CheckpointManifest {
        id,
        epoch,
        wall_time_ms: wall_time_ms(),
        fingerprint: fingerprint.to_vec(),
        runs_copied: false,
        shards,
        source_offsets,
        connectors: req.connectors.clone(),
        operators,
    };
    (
        PreparedCheckpoint {
            manifest,
            runs,
            side_files,
            retire_before_commit: Vec::new(),
        },
        live,
    )
}

/// One shard's part of the manifest; its runs' links go to `runs`, their
/// handles to `live`.
fn shard_manifest(c: &ShardCut, runs: &mut Vec<RunLink>, live: &mut Vec<RunHandle>) -> ShardManifest {
    let spines = c
        .spines
        .iter()
        .map(|s| {
            let entries = s
                .runs
                .iter()
                .map(|h| {
                    let file = h
                        .run()
                        .meta()
                        .path
                        .file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                    let (link, entry) = run_link(h, checkpoint_run_name(c.shard, s.id, &file));
                    runs.push(link);
                    live.push(h.clone());
                    entry
                })
                .collect();
            SpineManifest {
                id: s.id,
                name: s.name.clone(),
                mode: s.mode,
                covered_lsn: s.covered_lsn,
                runs: entries,
            }
        })
        .collect();
    ShardManifest {
        shard: c.shard,
        cut_lsn: c.cut_lsn,
        next_spine_id: c.next_spine_id,
        spines,
    }
}
