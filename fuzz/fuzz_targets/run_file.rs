//! Opens arbitrary bytes as a run file and exercises every read path.
//!
//! `cargo +nightly fuzz run run_file fuzz/corpus/run_file format/golden/v1`
//! (the golden files seed the corpus). Any panic, hang or sanitizer report is a
//! finding; so is a run that opens and then yields keys out of order.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use statespine::io::MemFs;
use statespine::run::{EntryKind, Run, RunMode};

/// Upper bound on entries visited, so huge claimed counts cannot hang a case.
const MAX_VISITS: usize = 100_000;

fuzz_target!(|data: &[u8]| {
    let fs = MemFs::new();
    let path = Path::new("/f.run");
    fs.write(path, data).unwrap();
    let Ok(run) = Run::open(&fs, path) else { return };

    // Full iteration: entries come strictly ordered, kinds match the mode.
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut prev: Option<(Vec<u8>, Vec<u8>)> = None;
    for e in run.iter().take(MAX_VISITS) {
        let Ok(e) = e else { break };
        match (run.mode(), e.kind) {
            (RunMode::KeyValue, EntryKind::Put | EntryKind::Delete) => {}
            (RunMode::ZSet, EntryKind::Weight(w)) => assert_ne!(w, 0),
            (mode, kind) => panic!("{kind:?} in a {mode:?} run"),
        }
        let cur = (e.key.to_vec(), e.value.to_vec());
        if let Some(p) = &prev {
            match run.mode() {
                RunMode::KeyValue => assert!(p.0 < cur.0, "keys out of order"),
                RunMode::ZSet => assert!(*p < cur, "(key, value) out of order"),
            }
        }
        if keys.len() < 64 {
            keys.push(cur.0.clone());
        }
        prev = Some(cur);
    }

    // Point lookups and seeks at seen keys and at probes cut from the input.
    let probes = data.chunks(7).take(16).map(|c| c.to_vec());
    for k in keys.iter().cloned().chain(probes) {
        if let Ok(Some(e)) = run.get(&k) {
            assert_eq!(e.key, k.as_slice(), "get returned another key");
        }
        if let Ok(mut c) = run.seek(&k) {
            for _ in 0..4 {
                match c.key() {
                    Some(found) => assert!(found >= k.as_slice(), "seek landed before its key"),
                    None => break,
                }
                if c.advance().is_err() {
                    break;
                }
            }
        }
    }
    let _ = run.verify();
});
