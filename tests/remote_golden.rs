//! The committed golden remote manifest (`format/golden/remote-v1`) is read
//! forever, the writer reproduces it byte for byte, and every damaged
//! variant of it (each bit flipped, each length cut) is a typed error.
//!
//! Regenerate it (only when a format version is added; then commit it):
//! `STATESPINE_WRITE_GOLDEN=1 cargo test --features remote --test remote_golden -- --ignored write_golden_file`
#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../format/golden/remote_entries.rs"]
mod remote_entries;

use std::path::{Path, PathBuf};

use statespine::remote::keys::{checkpoint_key, manifest_key, run_key, wal_key};
use statespine::remote::{REMOTE_MAGIC, REMOTE_VERSION, RemoteManifest};
use statespine::{Error, ErrorKind};

fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("format/golden")
        .join(remote_entries::FILE)
}

fn golden_bytes() -> Vec<u8> {
    std::fs::read(golden_path()).unwrap()
}

#[test]
fn golden_remote_manifest_reads_back_and_the_writer_reproduces_it() {
    let bytes = golden_bytes();
    let m = RemoteManifest::decode(&bytes, &golden_path()).unwrap();
    assert_eq!(m, remote_entries::golden_v1());
    assert_eq!(
        remote_entries::golden_v1().encode(),
        bytes,
        "the writer's bytes changed: a new format version is due"
    );
    assert_eq!(m.newest().unwrap().id, remote_entries::NEW_ID);
    assert!(m.checkpoints[0].pinned && !m.checkpoints[1].pinned);
}

/// The header fields at the offsets `format/remote.md` gives.
#[test]
fn the_header_holds_what_the_spec_says() {
    let b = golden_bytes();
    let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    assert_eq!(&b[0..8], &REMOTE_MAGIC);
    assert_eq!(&b[0..8], b"SSPNREMO");
    assert_eq!(u32_at(8), REMOTE_VERSION);
    assert_eq!(u32_at(8), 1);
    assert_eq!(u32_at(12), 0, "no feature bits");
    assert_eq!(u64_at(16), (b.len() - 32) as u64, "body length");
    assert_eq!(u32_at(24), crc32c::crc32c(&b[32..]), "body crc32c");
    assert_eq!(u32_at(28), crc32c::crc32c(&b[..28]), "header crc32c");
    // The body starts with the sequence number and the writer epoch.
    assert_eq!((u64_at(32), u64_at(40)), (6, 5));
}

/// The object key layout the golden manifest (and `format/remote.md`) uses.
#[test]
fn object_keys_have_the_documented_shapes() {
    assert_eq!(manifest_key(6), "manifest/00000000000000000006");
    assert_eq!(
        run_key(2, "0-0-000000000003.run"),
        "w00000000000000000002/runs/0-0-000000000003.run"
    );
    assert_eq!(
        wal_key(5, 1, 5, 20),
        "w00000000000000000005/wal/1/00000000000000000005-00000000000000000020.wal"
    );
    assert_eq!(
        checkpoint_key(2, remote_entries::OLD_ID, "MANIFEST"),
        "w00000000000000000002/ck/01234567-89ab-4cde-8f01-23456789abcd/MANIFEST"
    );
}

#[test]
fn every_flipped_bit_and_every_cut_is_an_error_naming_the_file() {
    let bytes = golden_bytes();
    let path = golden_path();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let err = RemoteManifest::decode(&b, &path).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corruption, "byte {i} bit {bit}: {err}");
            assert!(
                err.to_string().contains(remote_entries::FILE),
                "byte {i} bit {bit}: {err}"
            );
        }
    }
    for len in 0..bytes.len() {
        let err = RemoteManifest::decode(&bytes[..len], &path).unwrap_err();
        assert!(matches!(err, Error::Corruption { .. }), "cut at {len}: {err}");
    }
}

/// `bytes` with the header's u32 at `at` set to `v` and the header crc
/// recomputed.
fn with_header_u32(mut bytes: Vec<u8>, at: usize, v: u32) -> Vec<u8> {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn a_newer_version_or_an_unknown_feature_is_refused_as_unsupported() {
    let bytes = with_header_u32(golden_bytes(), 8, REMOTE_VERSION + 1);
    let err = RemoteManifest::decode(&bytes, &golden_path()).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { found, .. } if found == REMOTE_VERSION + 1),
        "{err}"
    );
    let bytes = with_header_u32(golden_bytes(), 12, 1);
    let err = RemoteManifest::decode(&bytes, &golden_path()).unwrap_err();
    assert!(matches!(err, Error::UnsupportedFeatures { bits: 1, .. }), "{err}");
}

/// Writes the golden file from `remote_entries::golden_v1()`: run only when
/// a format version is added (module docs), never to make the test above
/// pass after a change to the writer.
#[test]
#[ignore = "writes format/golden/remote-v1; run explicitly with STATESPINE_WRITE_GOLDEN=1"]
fn write_golden_file() {
    if std::env::var_os("STATESPINE_WRITE_GOLDEN").is_none() {
        println!(
            "STATESPINE_WRITE_GOLDEN is unset: not writing {}",
            golden_path().display()
        );
        return;
    }
    let bytes = remote_entries::golden_v1().encode();
    std::fs::write(golden_path(), &bytes).unwrap();
    println!("{}: {} bytes", remote_entries::FILE, bytes.len());
}
