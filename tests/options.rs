//! The store's one builder: every value out of range is refused at open,
//! naming the setter, before anything is written; the fingerprint the store
//! writes is the one it requires.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use statespine::io::{Fs, MemFs};
use statespine::{CheckpointRequest, ErrorKind, Options};

fn opts(fs: &Arc<MemFs>) -> Options {
    Options::new("/db").fs(fs.clone())
}

/// A builder with one value set.
type Setter = fn(Options) -> Options;

#[test]
fn values_out_of_range_are_refused_before_the_disk_is_touched() {
    let refusals: [(&str, Setter); 7] = [
        ("shards", |o| o.shards(0)),
        ("wal_segment_size", |o| o.wal_segment_size(1023)),
        ("changelog_capacity", |o| o.changelog_capacity(0, 16)),
        ("changelog_capacity", |o| o.changelog_capacity(1 << 16, 0)),
        ("max_retained", |o| o.max_retained(0)),
        ("flush_after", |o| o.flush_after(0)),
        ("cut_timeout", |o| o.cut_timeout(Duration::ZERO)),
    ];
    for (setter, bad) in refusals {
        let fs = Arc::new(MemFs::new());
        let err = bad(opts(&fs)).open().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Misuse, "{setter}: {err}");
        assert!(err.to_string().contains(setter), "{setter}: {err}");
        assert!(
            !fs.exists(std::path::Path::new("/db")).unwrap(),
            "{setter}: the refusal wrote"
        );
    }
    // The smallest accepted values open.
    let fs = Arc::new(MemFs::new());
    opts(&fs)
        .shards(1)
        .wal_segment_size(statespine::store::MIN_WAL_SEGMENT_BYTES)
        .changelog_capacity(1, 1)
        .max_retained(1)
        .flush_after(1)
        .open()
        .unwrap();
}

/// One fingerprint: what a store writes into its checkpoints is what the
/// same options require, so a store always reopens with its own options,
/// and another program's options are refused as incompatible.
#[test]
fn the_fingerprint_written_is_the_one_required() {
    let fs = Arc::new(MemFs::new());
    let mut store = opts(&fs).fingerprint(b"job v1".to_vec()).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let kv = shard.create_kv("kv").unwrap();
    shard.put(kv, b"k", b"v").unwrap();
    store
        .checkpoint_inline(&mut [&mut shard], 1, CheckpointRequest::default())
        .unwrap();
    drop((shard, store));

    let state = opts(&fs).fingerprint(b"job v1".to_vec()).recover().unwrap();
    assert_eq!(state.epoch, 1);
    drop(state);
    match opts(&fs).fingerprint(b"job v2".to_vec()).recover() {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Incompatible, "{e}"),
        Ok(s) => panic!("another program's fingerprint recovered epoch {}", s.epoch),
    }
    // Still opens with its own.
    assert!(opts(&fs).fingerprint(b"job v1".to_vec()).open().is_ok());
}
