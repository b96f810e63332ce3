//! The run list of a checkpoint: each run named once, and the runs a commit
//! links exactly those its manifest names. A commit asked to break that is a
//! bug (it panics before writing anything); a manifest read back that breaks
//! it is damage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../format/golden/manifest_entries.rs"]
#[allow(dead_code)]
mod manifest_entries;

use std::path::Path;
use std::sync::Arc;

use statespine::Error;
use statespine::checkpoint::{
    CheckpointManifest, CheckpointStore, FileSystemCheckpointStore, MANIFEST_NAME, PreparedCheckpoint,
    RunLink, ValidationDepth, validate_checkpoint,
};
use statespine::io::{Fs, MemFs};

/// The golden manifest with its first spine's first run named again by
/// its second spine.
fn manifest_naming_a_run_twice() -> CheckpointManifest {
    let mut m = manifest_entries::golden_v1();
    let first = m.shards[0].spines[0].runs[0].clone();
    m.shards[0].spines[1].runs.push(first);
    m
}

#[test]
fn a_manifest_naming_a_run_twice_is_damage() {
    let fs = MemFs::new();
    let dir = Path::new("/ck");
    fs.create_dir_all(dir).unwrap();
    let m = manifest_naming_a_run_twice();
    fs.write(&dir.join(MANIFEST_NAME), &m.encode()).unwrap();
    let report = validate_checkpoint(&fs, dir, ValidationDepth::Manifest);
    let dup = &m.shards[0].spines[0].runs[0].file;
    assert!(
        report.problems.iter().any(|e| matches!(e,
            Error::Corruption { region: "manifest run list", found, .. } if found.contains(dup.as_str()))),
        "{report}"
    );
}

fn prepared(m: CheckpointManifest, fs: &MemFs) -> PreparedCheckpoint {
    let mut runs = Vec::new();
    fs.create_dir_all(Path::new("/live")).unwrap();
    for s in &m.shards {
        for sp in &s.spines {
            for r in &sp.runs {
                let source = Path::new("/live").join(&r.file);
                fs.write(&source, &vec![0u8; r.size as usize]).unwrap();
                runs.push(RunLink {
                    source,
                    name: r.file.clone(),
                    size: r.size,
                    is_new: false,
                });
            }
        }
    }
    PreparedCheckpoint {
        manifest: m,
        runs,
        side_files: Vec::new(),
        retire_before_commit: Vec::new(),
    }
}

fn store(fs: &MemFs) -> FileSystemCheckpointStore {
    FileSystemCheckpointStore::new(Arc::new(fs.clone()), "/checkpoints").unwrap()
}

#[test]
fn a_commit_of_matching_runs_goes_through() {
    let fs = MemFs::new();
    let mut m = manifest_entries::golden_v1();
    m.operators.clear();
    let ck = prepared(m, &fs);
    store(&fs).commit(&ck, &mut || Ok(())).unwrap();
}

#[test]
#[should_panic(expected = "names a run twice")]
fn a_commit_naming_a_run_twice_is_a_bug() {
    let fs = MemFs::new();
    let mut m = manifest_naming_a_run_twice();
    m.operators.clear();
    let mut ck = prepared(m, &fs);
    ck.runs.pop();
    let _ = store(&fs).commit(&ck, &mut || Ok(()));
}

#[test]
#[should_panic(expected = "not those its manifest names")]
fn a_commit_linking_a_run_its_manifest_does_not_name_is_a_bug() {
    let fs = MemFs::new();
    let mut m = manifest_entries::golden_v1();
    m.operators.clear();
    let mut ck = prepared(m, &fs);
    ck.runs.pop();
    let _ = store(&fs).commit(&ck, &mut || Ok(()));
}
