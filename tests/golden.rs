//! The committed golden run files are read forever, and writing the same input
//! again yields the same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../format/golden/entries.rs"]
mod entries;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use statespine::Error;
use statespine::io::{MemFs, StdFs};
use statespine::run::{Run, RunWriter};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("format/golden/v1")
}

#[test]
fn golden_v1_files_read_back_every_entry() {
    for g in entries::goldens_v1() {
        let run = Run::open(&StdFs::new(), golden_dir().join(g.name)).unwrap();
        assert_eq!(run.mode(), g.options.mode(), "{}", g.name);
        run.verify().unwrap();
        let got: Vec<_> = run
            .iter()
            .map(|e| e.unwrap())
            .map(|e| (e.key.to_vec(), e.value.to_vec(), e.kind))
            .collect();
        assert_eq!(got, g.entries, "{}", g.name);
        for (k, v, kind) in &g.entries {
            let mut c = run.seek(k).unwrap();
            while c.current().is_some_and(|e| e.value != v.as_slice()) {
                c.advance().unwrap();
            }
            let e = c.current().unwrap();
            assert_eq!((e.key, e.kind), (k.as_slice(), *kind), "{}", g.name);
        }
    }
}

#[test]
fn writing_golden_inputs_again_gives_identical_bytes() {
    for g in entries::goldens_v1() {
        let fs = MemFs::new();
        let path = Path::new("/g.run");
        let mut w = RunWriter::create(Arc::new(fs.clone()), path, g.options).unwrap();
        for (k, v, kind) in &g.entries {
            w.push(k, v, *kind).unwrap();
        }
        w.finish().unwrap();
        let committed = std::fs::read(golden_dir().join(g.name)).unwrap();
        assert!(
            fs.read(path).unwrap() == committed,
            "{} differs from the committed golden file",
            g.name
        );
    }
}

#[test]
fn damaged_twin_reports_its_damage() {
    let path = golden_dir().join(entries::DAMAGED_NAME);
    let run = Run::open(&StdFs::new(), &path).expect("damage in a data block is found lazily");
    let err = run
        .iter()
        .find_map(|e| e.err())
        .expect("the damaged block must fail");
    match &err {
        Error::Corruption {
            path: p,
            offset,
            region,
            ..
        } => {
            assert_eq!(p, &path);
            assert_eq!(*region, "data block");
            // The error names the second block's frame, whose byte 40 was flipped
            // (byte 584 of the file, as the generator printed).
            assert_eq!(entries::damaged_offset(*offset), 584, "{err}");
        }
        other => panic!("expected corruption, got {other}"),
    }
    assert!(run.verify().unwrap_err().is_corruption());
    // Blocks before the damage still read.
    assert_eq!(run.get(b"").unwrap().unwrap().value, b"the empty key");
}
