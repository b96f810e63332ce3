//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use statespine::io::{Fs, MemFs};
use statespine::run::{EntryKind, EntryRef, Run, RunMeta, RunOptions, RunWriter};

/// An owned entry, for models and expectations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub kind: EntryKind,
}

impl Owned {
    pub fn of(e: EntryRef<'_>) -> Owned {
        Owned {
            key: e.key.to_vec(),
            value: e.value.to_vec(),
            kind: e.kind,
        }
    }
}

/// Writes `entries` (already sorted) to `path` on `fs`.
pub fn write_run(fs: &MemFs, path: &Path, opts: RunOptions, entries: &[Owned]) -> RunMeta {
    fs.create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = RunWriter::create(Arc::new(fs.clone()), path, opts).unwrap();
    for e in entries {
        w.push(&e.key, &e.value, e.kind).unwrap();
    }
    w.finish().unwrap()
}

/// Every entry of a run, or the first error.
pub fn read_all(run: &Run) -> statespine::Result<Vec<Owned>> {
    run.iter().map(|r| r.map(Owned::of)).collect()
}

pub fn run_path() -> PathBuf {
    PathBuf::from("/db/runs/000001.run")
}

/// `n` key-value entries with 16-byte keys and values of varying length.
pub fn kv_entries(n: usize) -> Vec<Owned> {
    (0..n as u64)
        .map(|i| {
            let mut key = (i * 7919).to_be_bytes().to_vec();
            key.extend_from_slice(&i.to_le_bytes());
            let (value, kind) = if i % 5 == 3 {
                (Vec::new(), EntryKind::Delete)
            } else {
                (vec![(i % 251) as u8; (i % 40) as usize], EntryKind::Put)
            };
            Owned { key, value, kind }
        })
        .collect()
}

/// Flips a bit in the last byte of checkpoint `id`'s MANIFEST under store
/// `root` (its checksum then fails).
pub fn damage_manifest(fs: &MemFs, root: &str, id: uuid::Uuid) {
    let manifest = Path::new(root)
        .join("checkpoints")
        .join(id.to_string())
        .join("MANIFEST");
    let mut bytes = fs.read(&manifest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    fs.write(&manifest, &bytes).unwrap();
}
