//! Operation sequences over the crash-simulating file system: each input
//! byte pair is an operation (put, delete, poll, WAL sync, checkpoint, or a
//! power loss under one of the crash variants followed by a reopen), run
//! against a model. After every crash the recovered state must be the
//! acknowledged one plus a gap-free prefix of what followed; a panic, a
//! failed recovery or a wrong state is a finding.
//!
//! `cargo +nightly fuzz run store_ops fuzz/corpus/store_ops -- -max_total_time=1800`
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use statespine::io::{CrashVariant, SimFs};
use statespine::run::RunMode;
use statespine::spine::SpineOptions;
use statespine::store::{CheckpointRequest, KvSpine, Options, Shard, Store};
use statespine::wal::SyncPolicy;

type Kv = BTreeMap<Vec<u8>, Vec<u8>>;

fn options(fs: Arc<SimFs>) -> Options {
    Options::new("/db")
        .fs(fs)
        .spine_options(
            SpineOptions::new(RunMode::KeyValue)
                .memtable_size_bytes(1 << 10)
                .memory_budget_bytes(4 << 10)
                .fan_in(2),
        )
        .wal_segment_size(1 << 10)
        .sync_policy(SyncPolicy::Manual)
        .max_retained(1)
        .young_run_age(Duration::ZERO)
}

fn open(fs: Arc<SimFs>) -> (Store, Shard, KvSpine, u64, Kv) {
    let mut state = options(fs).recover().expect("recovery never fails after a crash");
    let mut shard = state.store.take_shards().remove(0);
    let id = shard.create_kv("kv").expect("spine");
    let got: Kv = shard
        .cursor(id)
        .expect("cursor")
        .map(|e| {
            let e = e.expect("entry");
            (e.key.to_vec(), e.value.to_vec())
        })
        .collect();
    (state.store, shard, id, state.epoch, got)
}

fuzz_target!(|data: &[u8]| {
    let mut fs = Arc::new(SimFs::new());
    let (mut store, mut shard, mut id, mut epoch, _) = open(Arc::clone(&fs));
    let mut acked = Kv::new();
    let mut pending: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    for pair in data.chunks(2).take(400) {
        let (op, arg) = (pair[0], pair.get(1).copied().unwrap_or(0));
        let key = format!("k{:03}", arg % 64).into_bytes();
        match op % 16 {
            0..=8 => {
                let value = vec![op; 8 + usize::from(arg % 40)];
                shard.put(id, &key, &value).expect("put");
                pending.push((key, Some(value)));
            }
            9 | 10 => {
                shard.delete(id, &key).expect("delete");
                pending.push((key, None));
            }
            11 | 12 => {
                shard.poll().expect("poll");
            }
            13 => {
                shard.wait_durable(shard.last_lsn(), Duration::from_secs(5)).expect("sync");
                for (k, v) in pending.drain(..) {
                    match v {
                        Some(v) => acked.insert(k, v),
                        None => acked.remove(&k),
                    };
                }
            }
            14 => {
                epoch += 1;
                store
                    .checkpoint_inline(&mut [&mut shard], epoch, CheckpointRequest::default())
                    .expect("checkpoint");
                for (k, v) in pending.drain(..) {
                    match v {
                        Some(v) => acked.insert(k, v),
                        None => acked.remove(&k),
                    };
                }
            }
            _ => {
                let variant = CrashVariant::ALL[usize::from(arg) % CrashVariant::ALL.len()];
                let image = Arc::new(fs.image(variant, u64::from(arg)));
                drop((shard, store));
                fs = image;
                let got;
                (store, shard, id, epoch, got) = open(Arc::clone(&fs));
                let mut model = acked.clone();
                let mut n = 0;
                while model != got {
                    assert!(n < pending.len(), "recovered state is not a prefix after a {variant:?} crash");
                    match &pending[n].1 {
                        Some(v) => model.insert(pending[n].0.clone(), v.clone()),
                        None => model.remove(&pending[n].0),
                    };
                    n += 1;
                }
                acked = got;
                pending.clear();
            }
        }
    }
});
