//! The manifest every golden `MANIFEST` file holds (shared by the generator
//! and `tests/manifest_golden.rs`): fixed id and wall time, so the bytes are
//! reproducible, and every field kind in use.

use std::collections::BTreeMap;

use statespine::checkpoint::{
    CheckpointManifest, ConnectorCheckpoint, OperatorCheckpoint, RunEntry, ShardManifest, SpineManifest,
};
use statespine::run::RunMode;
use uuid::Uuid;

/// Directory of the version-1 golden manifest, under `format/golden/`.
pub const DIR: &str = "manifest-v1";

/// The golden manifest of version 1.
pub fn golden_v1() -> CheckpointManifest {
    let run = |file: &str, size, crc32c, entries| RunEntry {
        file: file.into(),
        size,
        crc32c,
        entries,
    };
    CheckpointManifest {
        id: Uuid::from_u128(0x0123_4567_89ab_4cde_8f01_2345_6789_abcd),
        epoch: 42,
        wall_time_ms: 1_790_000_000_000,
        fingerprint: b"pipeline-v1".to_vec(),
        runs_copied: false,
        shards: vec![
            ShardManifest {
                shard: 0,
                cut_lsn: 1000,
                next_spine_id: 2,
                spines: vec![
                    SpineManifest {
                        id: 0,
                        name: "counts".into(),
                        mode: RunMode::KeyValue,
                        covered_lsn: 900,
                        runs: vec![
                            run("0-0-000000000003.run", 65536, 0xdead_beef, 1200),
                            run("0-0-000000000007.run", 4096, 0x0102_0304, 30),
                        ],
                    },
                    SpineManifest {
                        id: 1,
                        name: "joins".into(),
                        mode: RunMode::ZSet,
                        covered_lsn: 12,
                        runs: vec![],
                    },
                ],
            },
            ShardManifest {
                shard: 1,
                cut_lsn: 7,
                next_spine_id: 1,
                spines: vec![SpineManifest {
                    id: 0,
                    name: "counts".into(),
                    mode: RunMode::KeyValue,
                    covered_lsn: 7,
                    runs: vec![run("1-0-000000000001.run", 8192, 0xcafe_f00d, 64)],
                }],
            },
        ],
        source_offsets: BTreeMap::from([("orders/0".into(), 5000), ("orders/1".into(), 4990)]),
        connectors: BTreeMap::from([(
            "kafka-sink".into(),
            ConnectorCheckpoint {
                state: b"producer-epoch=3".to_vec(),
                prepared_transactions: vec!["txn-41".into(), "txn-42".into()],
            },
        )]),
        operators: BTreeMap::from([
            (
                "window".into(),
                OperatorCheckpoint::Inline(b"watermark=99".to_vec()),
            ),
            (
                "topk".into(),
                OperatorCheckpoint::File {
                    file: "operator-1.bin".into(),
                    len: 70000,
                    crc32c: 0x1234_5678,
                },
            ),
        ]),
    }
}
