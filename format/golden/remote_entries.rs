//! The remote manifest the golden file `format/golden/remote-v1` holds
//! (`tests/remote_golden.rs` reads it and regenerates it): fixed ids, tag
//! and wall times, so the bytes are reproducible; two retained checkpoints,
//! every object kind, one checkpoint pinned, and a run the newer checkpoint
//! reuses from an older writer epoch's upload.

use statespine::remote::keys::{checkpoint_key, run_key, wal_key};
use statespine::remote::{ObjectKind, RemoteCheckpoint, RemoteManifest, RemoteObject};
use uuid::Uuid;

/// The golden file of version 1, under `format/golden/`.
pub const FILE: &str = "remote-v1";

/// The older checkpoint's id (pinned, uploaded by writer epoch 2).
pub const OLD_ID: Uuid = Uuid::from_u128(0x0123_4567_89ab_4cde_8f01_2345_6789_abcd);
/// The newer checkpoint's id (uploaded by writer epoch 5).
pub const NEW_ID: Uuid = Uuid::from_u128(0xfedc_ba98_7654_4321_8fed_cba9_8765_4321);

fn object(kind: ObjectKind, local: String, key: String, size: u64, crc32c: u32) -> RemoteObject {
    RemoteObject {
        kind,
        local,
        key,
        size,
        crc32c,
    }
}

/// The golden remote manifest of version 1: number 6 of the sequence,
/// written by writer epoch 5.
pub fn golden_v1() -> RemoteManifest {
    let (old, new) = (OLD_ID, NEW_ID);
    RemoteManifest {
        seq: 6,
        writer_epoch: 5,
        writer_tag: Uuid::from_u128(0x5555_6666_7777_4888_9999_aaaa_bbbb_cccc),
        wall_time_ms: 1_790_000_100_000,
        checkpoints: vec![
            RemoteCheckpoint {
                id: old,
                epoch: 41,
                wall_time_ms: 1_790_000_000_000,
                pinned: true,
                objects: vec![
                    object(
                        ObjectKind::Manifest,
                        format!("checkpoints/{old}/MANIFEST"),
                        checkpoint_key(2, old, "MANIFEST"),
                        412,
                        0x1111_2222,
                    ),
                    object(
                        ObjectKind::Run,
                        format!("checkpoints/{old}/0-0-000000000003.run"),
                        run_key(2, "0-0-000000000003.run"),
                        65536,
                        0xdead_beef,
                    ),
                    object(
                        ObjectKind::Run,
                        format!("checkpoints/{old}/1-0-000000000001.run"),
                        run_key(2, "1-0-000000000001.run"),
                        8192,
                        0xcafe_f00d,
                    ),
                    object(
                        ObjectKind::Side,
                        format!("checkpoints/{old}/operator-1.bin"),
                        checkpoint_key(2, old, "operator-1.bin"),
                        70000,
                        0x1234_5678,
                    ),
                    object(
                        ObjectKind::Wal,
                        "shards/0/wal/00000000000000000001.wal".into(),
                        wal_key(2, 0, 1, 1000),
                        131_136,
                        0x0bad_cafe,
                    ),
                    object(
                        ObjectKind::Wal,
                        "shards/1/wal/00000000000000000005.wal".into(),
                        wal_key(2, 1, 5, 7),
                        1024,
                        0x0102_0304,
                    ),
                ],
            },
            RemoteCheckpoint {
                id: new,
                epoch: 42,
                wall_time_ms: 1_790_000_060_000,
                pinned: false,
                objects: vec![
                    object(
                        ObjectKind::Manifest,
                        format!("checkpoints/{new}/MANIFEST"),
                        checkpoint_key(5, new, "MANIFEST"),
                        436,
                        0x3333_4444,
                    ),
                    // Reused: the same run, uploaded once by writer epoch 2.
                    object(
                        ObjectKind::Run,
                        format!("checkpoints/{new}/0-0-000000000003.run"),
                        run_key(2, "0-0-000000000003.run"),
                        65536,
                        0xdead_beef,
                    ),
                    object(
                        ObjectKind::Run,
                        format!("checkpoints/{new}/1-0-000000000009.run"),
                        run_key(5, "1-0-000000000009.run"),
                        12288,
                        0xf00d_f00d,
                    ),
                    object(
                        ObjectKind::Wal,
                        "shards/0/wal/00000000000000000901.wal".into(),
                        wal_key(5, 0, 901, 1500),
                        70_000,
                        0x5a5a_5a5a,
                    ),
                    object(
                        ObjectKind::Wal,
                        "shards/1/wal/00000000000000000005.wal".into(),
                        wal_key(5, 1, 5, 20),
                        4096,
                        0xa5a5_a5a5,
                    ),
                ],
            },
        ],
    }
}
