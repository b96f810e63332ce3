//! Damage at rest: a bit flipped, or a range lost (read back as zeros), in
//! any file of a store that has WAL segments, runs, checkpoints and
//! manifests. Recovery must then return a typed corruption error naming the
//! file, or the right state: every acknowledged write and a gap-free prefix
//! of the rest (falling back past a damaged checkpoint where the WAL covers
//! it). Never a wrong value, never a panic. The one case that can lose an
//! acknowledged write without an error is damage in the newest WAL
//! segment's last records, which a torn write looks exactly like; it is
//! counted apart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/sim_store.rs"]
mod sim_store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use statespine::Error;
use statespine::io::{CrashVariant, Fs, SimFs};
use statespine::store::CheckpointRequest;

type Kv = BTreeMap<Vec<u8>, Vec<u8>>;

fn files(fs: &SimFs, dir: &Path, out: &mut Vec<PathBuf>) {
    for n in fs.list(dir).unwrap_or_default() {
        let p = dir.join(n);
        if fs.read(&p).is_ok() {
            out.push(p);
        } else {
            files(fs, &p, out);
        }
    }
}

#[test]
fn damage_at_rest_is_detected_or_harmless_never_wrong() {
    // The store: 600 writes, all acknowledged, 5 checkpoints, runs and WAL.
    let fs = Arc::new(SimFs::new());
    let mut store = sim_store::small_store(Arc::clone(&fs), 2, false).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let id = shard.create_kv("kv").unwrap();
    let mut model = Kv::new();
    for i in 0..600u32 {
        let (k, v) = sim_store::write(i);
        shard.put(id, &k, &v).unwrap();
        model.insert(k, v);
        shard.poll().unwrap();
        if i % 120 == 119 {
            store
                .checkpoint_inline(
                    &mut [&mut shard],
                    u64::from(i / 120 + 1),
                    CheckpointRequest::default(),
                )
                .unwrap();
        }
    }
    shard
        .wait_durable(shard.last_lsn(), Duration::from_secs(5))
        .unwrap();
    let clean = fs.image(CrashVariant::DropUnsynced, 0);
    drop((shard, store));
    let mut all = Vec::new();
    files(&clean, Path::new("/db"), &mut all);
    let newest_wal = all
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .max()
        .cloned()
        .unwrap();

    let (mut injected, mut detected, mut intact, mut short_at_wal_tail) = (0, 0, 0, 0);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for trial in 0..400u64 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let image = clean.image(CrashVariant::DropUnsynced, 0);
        let file = &all[(seed >> 33) as usize % all.len()];
        let len = image.read(file).unwrap().len() as u64;
        if len == 0 {
            continue;
        }
        let at = (seed >> 7) % len;
        if trial % 2 == 0 {
            image.flip_bit(file, at * 8 + (seed & 7)).unwrap();
        } else {
            image.lose_write(file, at / 512 * 512, 512).unwrap();
        }
        injected += 1;
        let what = format!(
            "trial {trial}: {} at byte {at} of {}",
            if trial % 2 == 0 { "bit flip" } else { "lost sector" },
            file.display()
        );
        match sim_store::small_store(Arc::new(image), 2, false).recover() {
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        Error::Corruption { .. }
                            | Error::UnsupportedVersion { .. }
                            | Error::UnsupportedFeatures { .. }
                            | Error::OutOfOrder { .. }
                    ),
                    "{what}: not a typed corruption error: {e}"
                );
                detected += 1;
            }
            Ok(mut state) => {
                let shard = state.store.take_shards().remove(0);
                let got: Kv = match shard.kv_spine("kv") {
                    Some(id) => match shard
                        .cursor(id)
                        .and_then(|c| c.map(|e| e.map(|e| (e.key.to_vec(), e.value.to_vec()))).collect())
                    {
                        Ok(kv) => kv,
                        Err(e) => {
                            assert!(e.is_corruption(), "{what}: a read failed untyped: {e}");
                            detected += 1;
                            continue;
                        }
                    },
                    None => Kv::new(),
                };
                if got == model {
                    intact += 1;
                    continue;
                }
                // Short: must be a prefix of the writes, and only from the WAL's tail.
                let mut m = Kv::new();
                let mut n = 0;
                while m != got {
                    assert!(n < 600, "{what}: wrong data recovered");
                    let (k, v) = sim_store::write(n);
                    m.insert(k, v);
                    n += 1;
                }
                assert_eq!(
                    file, &newest_wal,
                    "{what}: acknowledged writes lost without an error"
                );
                short_at_wal_tail += 1;
            }
        }
    }
    eprintln!(
        "damage at rest: {injected} injected ({} files), {detected} detected as typed errors, {intact} recovered intact (damage in unused bytes or a fallback covered it), {short_at_wal_tail} lost to the WAL's last records (a torn write's twin), wrong 0, panics 0",
        all.len()
    );
    assert!(detected > 0 && intact > 0);
}
