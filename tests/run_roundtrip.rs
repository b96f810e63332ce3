//! Runs read back exactly what was written: entries, point lookups, seeks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Owned, kv_entries, read_all, run_path, write_run};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use statespine::io::{Fs, MemFs, StdFs};
use statespine::run::{Compression, EntryKind, Run, RunMode, RunOptions, RunWriter};

/// Every entry from the cursor's position on.
fn rest_of(mut c: statespine::run::Cursor<'_>) -> Vec<Owned> {
    let mut got = Vec::new();
    while let Some(e) = c.current() {
        got.push(Owned::of(e));
        c.advance().unwrap();
    }
    got
}

fn options() -> impl Strategy<Value = RunOptions> {
    (
        prop_oneof![Just(64usize), Just(300), Just(4096)],
        prop_oneof![Just(Compression::None), Just(Compression::Zstd { level: 1 })],
        prop_oneof![Just(1usize), Just(8), Just(16)],
        1u8..16,
    )
        .prop_map(|(block, compression, align, bits)| {
            RunOptions::new(RunMode::KeyValue)
                .block_size_bytes(block)
                .compression(compression)
                .value_align_bytes(align)
                .bloom_bits_per_key(bits)
        })
}

/// Small keys over a small alphabet, so probes often land on and between keys.
fn key() -> impl Strategy<Value = Vec<u8>> {
    let short = prop::collection::vec(prop_oneof![Just(0u8), Just(1), Just(b'a'), Just(0xff)], 0..6);
    // Half the keys share a 9-byte prefix, so block fences (8-byte key
    // prefixes) tie and searches must fall back to whole keys.
    (short, any::<bool>()).prop_map(|(k, shared)| {
        if shared {
            [&b"prefix-00"[..], &k].concat()
        } else {
            k
        }
    })
}

fn kv_model() -> impl Strategy<Value = BTreeMap<Vec<u8>, Option<Vec<u8>>>> {
    prop::collection::btree_map(
        key(),
        prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..50)),
        0..300,
    )
}

fn kv_from_model(model: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> Vec<Owned> {
    model
        .iter()
        .map(|(k, v)| match v {
            Some(v) => Owned {
                key: k.clone(),
                value: v.clone(),
                kind: EntryKind::Put,
            },
            None => Owned {
                key: k.clone(),
                value: Vec::new(),
                kind: EntryKind::Delete,
            },
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/proptest-regressions/run_roundtrip.txt"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn key_value_round_trip(model in kv_model(), opts in options(), probes in prop::collection::vec(key(), 0..40)) {
        let fs = MemFs::new();
        let entries = kv_from_model(&model);
        let meta = write_run(&fs, &run_path(), opts, &entries);
        prop_assert_eq!(meta.entry_count, entries.len() as u64);
        let run = Run::open(&fs, run_path()).unwrap();
        prop_assert_eq!(run.meta(), &meta);
        prop_assert_eq!(read_all(&run).unwrap(), entries.clone());
        for e in &entries {
            prop_assert_eq!(run.get(&e.key).unwrap().map(Owned::of), Some(e.clone()));
        }
        for p in &probes {
            // get: present exactly when the model has it.
            let want = entries.iter().find(|e| &e.key == p).cloned();
            prop_assert_eq!(run.get(p).unwrap().map(Owned::of), want);
            // seek: the first entry >= p, then the rest in order.
            let tail: Vec<Owned> = entries.iter().filter(|e| &e.key >= p).cloned().collect();
            let got = rest_of(run.seek(p).unwrap());
            prop_assert_eq!(got, tail);
        }
        run.verify().unwrap();
    }

    #[test]
    fn zset_round_trip(
        model in prop::collection::btree_map((key(), key()), prop_oneof![-5i64..-1, 1i64..5, Just(i64::MIN), Just(i64::MAX)], 0..300),
        compression in prop_oneof![Just(Compression::None), Just(Compression::Zstd { level: 1 })],
        probes in prop::collection::vec(key(), 0..40),
    ) {
        let fs = MemFs::new();
        let entries: Vec<Owned> = model
            .iter()
            .map(|((k, v), w)| Owned { key: k.clone(), value: v.clone(), kind: EntryKind::Weight(*w) })
            .collect();
        let zopts = RunOptions::new(RunMode::ZSet).block_size_bytes(64).compression(compression);
        write_run(&fs, &run_path(), zopts, &entries);
        let run = Run::open(&fs, run_path()).unwrap();
        prop_assert_eq!(run.mode(), RunMode::ZSet);
        prop_assert_eq!(read_all(&run).unwrap(), entries.clone());
        for p in &probes {
            let tail: Vec<Owned> = entries.iter().filter(|e| &e.key >= p).cloned().collect();
            let got = rest_of(run.seek(p).unwrap());
            prop_assert_eq!(&got, &tail);
            let first = entries.iter().find(|e| &e.key == p).cloned();
            prop_assert_eq!(run.get(p).unwrap().map(Owned::of), first);
        }
    }
}

#[test]
fn empty_run() {
    let fs = MemFs::new();
    let meta = write_run(&fs, &run_path(), RunOptions::new(RunMode::KeyValue), &[]);
    assert_eq!(
        (meta.entry_count, meta.block_count, meta.key_range.clone()),
        (0, 0, None)
    );
    let run = Run::open(&fs, run_path()).unwrap();
    assert!(run.is_empty());
    assert_eq!(read_all(&run).unwrap(), vec![]);
    assert_eq!(run.get(b"").unwrap(), None);
    assert!(run.seek(b"x").unwrap().is_exhausted());
    run.verify().unwrap();
}

#[test]
fn single_huge_value() {
    let fs = MemFs::new();
    let value: Vec<u8> = (0..24u32 << 20).map(|i| (i % 253) as u8).collect();
    let entries = vec![
        Owned {
            key: b"a".to_vec(),
            value: b"small".to_vec(),
            kind: EntryKind::Put,
        },
        Owned {
            key: b"b".to_vec(),
            value: value.clone(),
            kind: EntryKind::Put,
        },
        Owned {
            key: b"c".to_vec(),
            value: Vec::new(),
            kind: EntryKind::Put,
        },
    ];
    for compression in [Compression::None, Compression::Zstd { level: 1 }] {
        let opts = RunOptions::new(RunMode::KeyValue).compression(compression);
        let path = run_path();
        let _ = fs.remove_file(&path);
        write_run(&fs, &path, opts, &entries);
        let run = Run::open(&fs, &path).unwrap();
        assert_eq!(run.get(b"b").unwrap().unwrap().value, &value[..]);
        assert_eq!(read_all(&run).unwrap(), entries);
    }
}

#[test]
fn empty_and_64_kib_keys() {
    let fs = MemFs::new();
    let big = vec![0x5a; 64 << 10];
    let mut bigger = big.clone();
    bigger.push(0);
    let entries = vec![
        Owned {
            key: Vec::new(),
            value: b"empty key".to_vec(),
            kind: EntryKind::Put,
        },
        Owned {
            key: big.clone(),
            value: b"64 KiB key".to_vec(),
            kind: EntryKind::Put,
        },
        Owned {
            key: bigger.clone(),
            value: Vec::new(),
            kind: EntryKind::Delete,
        },
    ];
    write_run(
        &fs,
        &run_path(),
        RunOptions::new(RunMode::KeyValue).block_size_bytes(128),
        &entries,
    );
    let run = Run::open(&fs, run_path()).unwrap();
    assert_eq!(read_all(&run).unwrap(), entries);
    assert_eq!(run.get(b"").unwrap().unwrap().value, b"empty key");
    assert_eq!(run.get(&big).unwrap().unwrap().value, b"64 KiB key");
    assert_eq!(run.get(&bigger).unwrap().unwrap().kind, EntryKind::Delete);
    assert_eq!(run.seek(&big[..100]).unwrap().key(), Some(&big[..]));
    assert_eq!(run.meta().key_range, Some((Vec::new(), bigger)));
}

#[test]
fn values_are_aligned_in_the_mapping() {
    let fs = MemFs::new();
    for align in [1usize, 2, 4, 8, 16] {
        let entries = kv_entries(2000);
        let path = std::path::PathBuf::from(format!("/db/a{align}.run"));
        write_run(
            &fs,
            &path,
            RunOptions::new(RunMode::KeyValue).value_align_bytes(align),
            &entries,
        );
        let run = Run::open(&fs, &path).unwrap();
        for e in run.iter() {
            let e = e.unwrap();
            assert_eq!(e.value.as_ptr() as usize % align, 0, "align {align}");
        }
    }
}

#[test]
fn misuse_is_a_typed_error() {
    let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
    let kv = RunOptions::new(RunMode::KeyValue);
    let mut w = RunWriter::create(fs.clone(), "/x.run", kv).unwrap();
    w.put(b"b", b"1").unwrap();
    assert!(matches!(
        w.put(b"a", b"1"),
        Err(statespine::Error::OutOfOrder { index: 1, .. })
    ));
    assert!(matches!(
        w.put(b"b", b"2"),
        Err(statespine::Error::OutOfOrder { .. })
    ));
    assert!(matches!(
        w.update(b"c", b"", 1),
        Err(statespine::Error::InvalidArgument(_))
    ));
    assert!(matches!(
        w.push(b"c", b"v", EntryKind::Delete),
        Err(statespine::Error::InvalidArgument(_))
    ));
    // Over the size limit is not misuse but a limit, named by what is over.
    let huge = vec![0u8; statespine::run::MAX_ENTRY_BYTES + 1];
    assert!(matches!(
        w.put(&huge, b"v"),
        Err(statespine::Error::TooLarge { what: "key", .. })
    ));
    assert!(matches!(
        w.put(b"c", &huge),
        Err(statespine::Error::TooLarge { what: "value", .. })
    ));
    drop(huge);
    w.put(b"c", b"3").unwrap();
    assert_eq!(w.finish().unwrap().entry_count, 2);

    let mut z = RunWriter::create(fs.clone(), "/z.run", RunOptions::new(RunMode::ZSet)).unwrap();
    z.update(b"k", b"v2", 1).unwrap();
    assert!(matches!(
        z.update(b"k", b"v1", 1),
        Err(statespine::Error::OutOfOrder { .. })
    ));
    assert!(matches!(
        z.update(b"k", b"v3", 0),
        Err(statespine::Error::InvalidArgument(_))
    ));
    assert!(matches!(
        z.put(b"l", b""),
        Err(statespine::Error::InvalidArgument(_))
    ));
    z.update(b"k", b"v3", -2).unwrap();
    z.update(b"l", b"", 7).unwrap();
    assert_eq!(z.finish().unwrap().entry_count, 3);
}

#[test]
fn unfinished_run_is_invisible_and_cleaned_up() {
    let fs = MemFs::new();
    fs.create_dir_all(std::path::Path::new("/db")).unwrap();
    let mut w = RunWriter::create(
        Arc::new(fs.clone()),
        "/db/r.run",
        RunOptions::new(RunMode::KeyValue),
    )
    .unwrap();
    for e in kv_entries(10_000) {
        w.push(&e.key, &e.value, e.kind).unwrap();
    }
    assert_eq!(
        fs.list(std::path::Path::new("/db")).unwrap(),
        vec!["r.run.tmp".to_string()]
    );
    assert!(Run::open(&fs, "/db/r.run").is_err());
    drop(w);
    assert!(fs.list(std::path::Path::new("/db")).unwrap().is_empty());
}

#[test]
fn synced_run_survives_a_crash_deferred_one_need_not() {
    use statespine::run::Durability;
    let fs = MemFs::new();
    let entries = kv_entries(1000);
    write_run(
        &fs,
        std::path::Path::new("/db/s.run"),
        RunOptions::new(RunMode::KeyValue),
        &entries,
    );
    let deferred = RunOptions::new(RunMode::KeyValue).durability(Durability::Deferred);
    write_run(&fs, std::path::Path::new("/db/d.run"), deferred, &entries);
    let after = fs.crash();
    assert_eq!(
        read_all(&Run::open(&after, "/db/s.run").unwrap()).unwrap(),
        entries
    );
    assert!(Run::open(&after, "/db/d.run").unwrap_err().is_corruption());
}

#[test]
fn real_files_over_mmap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("real.run");
    let entries = kv_entries(50_000);
    let fs: Arc<dyn Fs> = Arc::new(StdFs::new());
    let mut w = RunWriter::create(fs.clone(), &path, RunOptions::new(RunMode::KeyValue)).unwrap();
    for e in &entries {
        w.push(&e.key, &e.value, e.kind).unwrap();
    }
    let meta = w.finish().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), meta.file_len);
    assert!(!dir.path().join("real.run.tmp").exists());
    let run = Run::open(&*fs, &path).unwrap();
    assert_eq!(read_all(&run).unwrap(), entries);
    for e in entries.iter().step_by(97) {
        assert_eq!(run.get(&e.key).unwrap().map(Owned::of), Some(e.clone()));
    }
    run.verify().unwrap();
}

#[test]
fn writing_the_same_input_twice_gives_identical_bytes() {
    let fs = MemFs::new();
    let entries = kv_entries(5000);
    for compression in [Compression::None, Compression::Zstd { level: 3 }] {
        let opts = RunOptions::new(RunMode::KeyValue).compression(compression);
        write_run(&fs, std::path::Path::new("/db/1.run"), opts, &entries);
        write_run(&fs, std::path::Path::new("/db/2.run"), opts, &entries);
        assert_eq!(
            fs.read("/db/1.run".as_ref()).unwrap(),
            fs.read("/db/2.run".as_ref()).unwrap()
        );
        fs.remove_file("/db/1.run".as_ref()).unwrap();
        fs.remove_file("/db/2.run".as_ref()).unwrap();
    }
}

#[test]
fn compression_shrinks_compressible_blocks() {
    let fs = MemFs::new();
    let entries: Vec<Owned> = (0..20_000u32)
        .map(|i| Owned {
            key: i.to_be_bytes().to_vec(),
            value: vec![b'x'; 100],
            kind: EntryKind::Put,
        })
        .collect();
    let plain = write_run(
        &fs,
        "/db/p.run".as_ref(),
        RunOptions::new(RunMode::KeyValue),
        &entries,
    );
    let opts = RunOptions::new(RunMode::KeyValue).compression(Compression::Zstd { level: 3 });
    let packed = write_run(&fs, "/db/z.run".as_ref(), opts, &entries);
    assert_eq!(packed.compressed_blocks, packed.block_count);
    assert!(
        packed.file_len * 4 < plain.file_len,
        "{} vs {}",
        packed.file_len,
        plain.file_len
    );
    let run = Run::open(&fs, "/db/z.run").unwrap();
    assert_eq!(run.meta().compressed_blocks, packed.block_count);
    assert_eq!(read_all(&run).unwrap(), entries);
}

/// Thousands of tiny blocks, so the block search crosses many fence groups,
/// with runs of keys that share their first 8 bytes (fences tie) between
/// keys that do not.
#[test]
fn block_search_across_many_fence_groups_and_ties() {
    let fs = MemFs::new();
    fs.create_dir_all(run_path().parent().unwrap()).unwrap();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for i in 0..3000u32 {
        let group = (i / 100).to_be_bytes();
        if i % 3 == 0 {
            keys.push([&b"shared-p"[..], &group, &i.to_be_bytes()].concat());
        } else {
            keys.push([&group[..], &i.to_be_bytes()].concat());
        }
    }
    keys.sort();
    keys.dedup();
    let mut w = RunWriter::create(
        Arc::new(fs.clone()),
        run_path(),
        RunOptions::new(RunMode::KeyValue).block_size_bytes(48),
    )
    .unwrap();
    for k in &keys {
        w.put(k, &k[..2]).unwrap();
    }
    let meta = w.finish().unwrap();
    assert!(meta.block_count > 64 * 10, "{} blocks", meta.block_count);
    let run = Run::open(&fs, &meta.path).unwrap();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(run.get(k).unwrap().map(|e| e.value), Some(&k[..2]), "key {i}");
        let mut between = k.clone();
        between.push(0);
        assert_eq!(run.get(&between).unwrap(), None);
        assert_eq!(
            run.seek(&between).unwrap().key(),
            keys.get(i + 1).map(Vec::as_slice),
            "after key {i}"
        );
        assert_eq!(run.seek(k).unwrap().key(), Some(k.as_slice()));
    }
    assert_eq!(run.seek(b"").unwrap().key(), Some(keys[0].as_slice()));
    assert_eq!(run.seek(&[0xff; 20]).unwrap().key(), None);
}
