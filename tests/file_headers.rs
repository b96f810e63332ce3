//! The three file kinds statespine writes (WAL segments, run files,
//! checkpoint manifests) each open with a block of magic, versions and a
//! checksum; damage to it is refused the same way whatever the kind: the
//! error names the file, the block's start and its region, and for a
//! checksum `expected` is the crc32c of the bytes as they are, `found` the
//! one the file stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{kv_entries, run_path, write_run};
use statespine::Error;
use statespine::checkpoint::{CheckpointManifest, MANIFEST_NAME, ValidationDepth, validate_checkpoint};
use statespine::io::{Fs, MemFs};
use statespine::run::format::FOOTER_LEN;
use statespine::run::{Run, RunMode, RunOptions};
use statespine::wal::{WalOptions, WriteAheadLog};

/// One file kind: where its file is, where its block starts, the block's
/// region name and where its crc32c lies within it, and how to open it.
struct Kind {
    path: PathBuf,
    start: usize,
    region: &'static str,
    crc_at: usize,
    open: fn(&MemFs, &Path) -> Error,
}

fn wal_segment(fs: &MemFs) -> Kind {
    let mut wal = WriteAheadLog::open(Arc::new(fs.clone()), "/wal", WalOptions::new(1)).unwrap();
    for i in 0..10u64 {
        wal.append(1, &i.to_le_bytes()).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    let name = fs.list(Path::new("/wal")).unwrap().remove(0);
    Kind {
        path: Path::new("/wal").join(name),
        start: 0,
        region: "segment header",
        crc_at: 60,
        open: |fs, _| WriteAheadLog::open(Arc::new(fs.clone()), "/wal", WalOptions::new(1)).unwrap_err(),
    }
}

fn run_file(fs: &MemFs) -> Kind {
    write_run(
        fs,
        &run_path(),
        RunOptions::new(RunMode::KeyValue),
        &kv_entries(50),
    );
    let len = fs.read(&run_path()).unwrap().len();
    Kind {
        path: run_path(),
        start: len - FOOTER_LEN,
        region: "footer",
        crc_at: FOOTER_LEN - 4,
        open: |fs, path| Run::open(fs, path).unwrap_err(),
    }
}

fn manifest(fs: &MemFs) -> Kind {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("format/golden");
    let dir = std::fs::read_dir(&golden)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join(MANIFEST_NAME).exists())
        .expect("a golden checkpoint directory");
    let bytes = std::fs::read(dir.join(MANIFEST_NAME)).unwrap();
    let path = Path::new("/ck").join(MANIFEST_NAME);
    CheckpointManifest::decode(&bytes, &path).unwrap();
    fs.create_dir_all(Path::new("/ck")).unwrap();
    fs.write(&path, &bytes).unwrap();
    Kind {
        path,
        start: 0,
        region: "manifest header",
        crc_at: 28,
        open: |fs, path| {
            let report = validate_checkpoint(fs, path.parent().unwrap(), ValidationDepth::Manifest);
            report.problems.into_iter().next().expect("a problem")
        },
    }
}

fn corruption(e: Error) -> (PathBuf, u64, &'static str, String, String) {
    match e {
        Error::Corruption {
            path,
            offset,
            region,
            expected,
            found,
        } => (path, offset, region, expected, found),
        other => panic!("not a corruption: {other}"),
    }
}

#[test]
fn damage_to_any_header_is_named_the_same_way() {
    for make in [wal_segment, run_file, manifest] {
        let fs = MemFs::new();
        let kind = make(&fs);
        let sound = fs.read(&kind.path).unwrap();
        let start = kind.start;
        let crc_at = start + kind.crc_at;
        // A wrong magic.
        let mut bytes = sound.clone();
        bytes[start] ^= 0x20;
        fs.write(&kind.path, &bytes).unwrap();
        let (path, offset, region, expected, _) = corruption((kind.open)(&fs, &kind.path));
        assert_eq!((&path, offset, region), (&kind.path, start as u64, kind.region));
        assert!(expected.starts_with("magic "), "{}: {expected}", kind.region);
        // A damaged byte under the checksum, past the magic: the version.
        let mut bytes = sound.clone();
        bytes[start + 9] ^= 0x01;
        fs.write(&kind.path, &bytes).unwrap();
        let computed = crc32c::crc32c(&bytes[start..crc_at]);
        let stored = u32::from_le_bytes(bytes[crc_at..crc_at + 4].try_into().unwrap());
        let got = corruption((kind.open)(&fs, &kind.path));
        let want = (
            kind.path.clone(),
            start as u64,
            kind.region,
            format!("crc32c {computed:#010x}"),
            format!("crc32c {stored:#010x}"),
        );
        assert_eq!(got, want, "{}", kind.region);
        // A damaged checksum itself reads the same way.
        let mut bytes = sound.clone();
        bytes[crc_at] ^= 0x80;
        fs.write(&kind.path, &bytes).unwrap();
        let (path, offset, region, expected, found) = corruption((kind.open)(&fs, &kind.path));
        assert_eq!((&path, offset, region), (&kind.path, start as u64, kind.region));
        let computed = crc32c::crc32c(&bytes[start..crc_at]);
        assert_eq!(expected, format!("crc32c {computed:#010x}"));
        assert_ne!(found, expected);
    }
}
