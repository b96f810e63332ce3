//! Damaged run files give typed errors naming the file and offset: never a
//! panic, never a wrong answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{Owned, kv_entries, run_path, write_run};
use statespine::Error;
use statespine::io::{Fs, MemFs};
use statespine::run::format::{FOOTER_LEN, Footer};
use statespine::run::{Compression, Run, RunMode, RunOptions};

/// Everything a reader can do with a run, stopping at the first error. Any data
/// handed out before the error must be exactly what was written.
fn read_everything(fs: &MemFs, path: &Path, entries: &[Owned]) -> statespine::Result<()> {
    let run = Run::open(fs, path)?;
    let mut got = Vec::new();
    for e in run.iter() {
        let e = e?;
        got.push(Owned::of(e));
        assert_eq!(got.last(), entries.get(got.len() - 1), "wrong entry handed out");
    }
    assert_eq!(got.len(), entries.len(), "entries lost without an error");
    for e in entries {
        let found = run.get(&e.key)?.map(Owned::of);
        assert_eq!(found.as_ref(), Some(e), "wrong get result");
    }
    run.verify()
}

fn small_run(fs: &MemFs, compression: Compression) -> (Vec<u8>, Vec<Owned>) {
    let entries = kv_entries(300);
    let opts = RunOptions::new(RunMode::KeyValue)
        .block_size_bytes(512)
        .compression(compression);
    write_run(fs, &run_path(), opts, &entries);
    (fs.read(&run_path()).unwrap(), entries)
}

fn corruption_offset(err: &Error) -> u64 {
    match err {
        Error::Corruption { offset, path, .. } => {
            assert_eq!(path, &run_path(), "error names the file");
            assert!(err.to_string().contains("000001.run"), "{err}");
            *offset
        }
        other => panic!("expected a corruption error, got {other}"),
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    for compression in [Compression::None, Compression::Zstd { level: 1 }] {
        let fs = MemFs::new();
        let (bytes, entries) = small_run(&fs, compression);
        read_everything(&fs, &run_path(), &entries).unwrap();
        for pos in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[pos] ^= 1 << (pos % 8);
            fs.write(&run_path(), &damaged).unwrap();
            let err = read_everything(&fs, &run_path(), &entries).expect_err("flip went unnoticed");
            let at = corruption_offset(&err);
            assert!(at <= pos as u64, "flip at {pos} reported at {at}: {err}");
        }
    }
}

#[test]
fn every_truncation_is_detected() {
    let fs = MemFs::new();
    let (bytes, entries) = small_run(&fs, Compression::None);
    for len in 0..bytes.len() {
        fs.write(&run_path(), &bytes[..len]).unwrap();
        let err = read_everything(&fs, &run_path(), &entries).expect_err("truncation went unnoticed");
        corruption_offset(&err);
    }
}

#[test]
fn appended_bytes_are_detected() {
    let fs = MemFs::new();
    let (bytes, entries) = small_run(&fs, Compression::None);
    for tail in [&[0u8; 1][..], &[0; 4096], b"garbage"] {
        let mut longer = bytes.clone();
        longer.extend_from_slice(tail);
        fs.write(&run_path(), &longer).unwrap();
        let err = read_everything(&fs, &run_path(), &entries).unwrap_err();
        corruption_offset(&err);
    }
}

#[test]
fn garbage_files_are_refused() {
    let fs = MemFs::new();
    fs.create_dir_all(Path::new("/db/runs")).unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for len in [0usize, 1, 127, 128, 129, 1000, 70_000] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fs.write(&run_path(), &bytes).unwrap();
        assert!(
            Run::open(&fs, run_path()).unwrap_err().is_corruption(),
            "len {len}"
        );
    }
}

fn footer_of(bytes: &[u8]) -> Footer {
    let at = bytes.len() - FOOTER_LEN;
    Footer::decode(
        bytes[at..].try_into().unwrap(),
        at as u64,
        bytes.len() as u64,
        &run_path(),
    )
    .unwrap()
}

fn region_of(err: &Error) -> &'static str {
    match err {
        Error::Corruption { region, .. } => region,
        other => panic!("expected a corruption error, got {other}"),
    }
}

#[test]
fn each_region_reports_itself() {
    let fs = MemFs::new();
    let (bytes, entries) = small_run(&fs, Compression::None);
    let f = footer_of(&bytes);
    let damage = |pos: u64| {
        let mut d = bytes.clone();
        d[pos as usize] ^= 0x40;
        fs.write(&run_path(), &d).unwrap();
    };

    damage(f.file_len - 50);
    let err = Run::open(&fs, run_path()).unwrap_err();
    assert_eq!(
        (region_of(&err), corruption_offset(&err)),
        ("footer", f.file_len - FOOTER_LEN as u64)
    );

    damage(f.index_offset + 40);
    let err = Run::open(&fs, run_path()).unwrap_err();
    assert_eq!(
        (region_of(&err), corruption_offset(&err)),
        ("index", f.index_offset)
    );

    damage(f.filter_offset + 40);
    let err = Run::open(&fs, run_path()).unwrap_err();
    assert_eq!(
        (region_of(&err), corruption_offset(&err)),
        ("filter", f.filter_offset)
    );

    // A damaged data block is found when touched; other blocks stay readable.
    damage(40);
    let run = Run::open(&fs, run_path()).unwrap();
    let err = run.get(&entries[0].key).unwrap_err();
    assert_eq!((region_of(&err), corruption_offset(&err)), ("data block", 0));
    let last = entries.last().unwrap();
    assert_eq!(run.get(&last.key).unwrap().map(Owned::of).as_ref(), Some(last));
    assert!(run.iter().next().unwrap().is_err());
    // A full check names the damaged block, not just the body.
    let err = run.verify().unwrap_err();
    assert_eq!((region_of(&err), corruption_offset(&err)), ("data block", 0));
}

#[test]
fn newer_format_is_refused_by_version() {
    let fs = MemFs::new();
    let (bytes, _) = small_run(&fs, Compression::None);
    let mut f = footer_of(&bytes);
    f.format_version = 7;
    f.min_reader_version = 7;
    let mut d = bytes.clone();
    let at = d.len() - FOOTER_LEN;
    d[at..].copy_from_slice(&f.encode());
    fs.write(&run_path(), &d).unwrap();
    assert!(matches!(
        Run::open(&fs, run_path()),
        Err(Error::UnsupportedVersion { found: 7, .. })
    ));
}
