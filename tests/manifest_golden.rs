//! The committed golden manifest (`format/golden/manifest-v1/MANIFEST`) is
//! read forever, the writer reproduces it byte for byte, and every damaged
//! variant of it — each bit flipped, each length cut — is a typed error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../format/golden/manifest_entries.rs"]
mod manifest_entries;

use std::path::{Path, PathBuf};

use statespine::Error;
use statespine::checkpoint::{CheckpointManifest, MANIFEST_HEADER_LEN, MANIFEST_VERSION};

fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("format/golden")
        .join(manifest_entries::DIR)
        .join("MANIFEST")
}

#[test]
fn golden_manifest_reads_back_and_the_writer_reproduces_it() {
    let bytes = std::fs::read(golden_path()).unwrap();
    let m = CheckpointManifest::decode(&bytes, &golden_path()).unwrap();
    assert_eq!(m, manifest_entries::golden_v1());
    assert_eq!(
        m.encode(),
        bytes,
        "the writer's bytes changed: a new format version is due"
    );
    assert_eq!(m.shards[0].replay_from(), 13, "least covered spine + 1");
    assert_eq!(m.shards[1].replay_from(), 8);
}

#[test]
fn every_flipped_bit_and_every_cut_is_an_error_naming_the_file() {
    let bytes = std::fs::read(golden_path()).unwrap();
    let path = golden_path();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let err = CheckpointManifest::decode(&b, &path).unwrap_err();
            assert!(err.to_string().contains("MANIFEST"), "byte {i} bit {bit}: {err}");
        }
    }
    for len in 0..bytes.len() {
        let err = CheckpointManifest::decode(&bytes[..len], &path).unwrap_err();
        assert!(matches!(err, Error::Corruption { .. }), "cut at {len}: {err}");
    }
}

#[test]
fn a_newer_version_is_refused_as_unsupported() {
    let mut bytes = std::fs::read(golden_path()).unwrap();
    bytes[8..12].copy_from_slice(&(MANIFEST_VERSION + 1).to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    let err = CheckpointManifest::decode(&bytes, &golden_path()).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { found, .. } if found == MANIFEST_VERSION + 1),
        "{err}"
    );
    assert_eq!(MANIFEST_HEADER_LEN, 32);
}
