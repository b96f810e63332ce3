//! Decodes arbitrary bytes as a checkpoint `MANIFEST`, re-encodes what
//! decodes and checks the round trip, then validates a checkpoint directory
//! holding it (whose run files are missing or garbage) at every depth.
//!
//! `cargo +nightly fuzz run manifest fuzz/corpus/manifest format/golden/manifest-v1`
//! Any panic, hang, oversized allocation or sanitizer report is a finding.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use statespine::checkpoint::{CheckpointManifest, ValidationDepth, validate_checkpoint};
use statespine::io::{Fs, MemFs};

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/ck/MANIFEST");
    if let Ok(m) = CheckpointManifest::decode(data, path) {
        let again = CheckpointManifest::decode(&m.encode(), path).expect("an encoded manifest decodes");
        assert_eq!(again, m, "round trip");
        for s in &m.shards {
            let _ = s.replay_from();
        }
    }
    let fs = MemFs::new();
    fs.create_dir_all(Path::new("/ck")).unwrap();
    fs.write(path, data).unwrap();
    // A run-like file under a name the manifest may use: the tail of the input.
    let _ = fs.write(Path::new("/ck/0-0-000000000001.run"), &data[data.len() / 2..]);
    for depth in [ValidationDepth::Manifest, ValidationDepth::Footers, ValidationDepth::Blocks] {
        let report = validate_checkpoint(&fs, Path::new("/ck"), depth);
        let _ = report.to_string();
    }
});
