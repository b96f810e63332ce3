//! Check, then log, then apply: a write the store refuses (a handle of
//! another shard or another open store, a dropped spine, a key, value or
//! name over its limit, a name taken by the other mode) returns a typed
//! error and changes nothing: nothing reaches the changelog, so the store
//! still opens after a crash, holding exactly the acknowledged writes.
//! Regression: a Z-set `put` was refused after its record had been logged,
//! and every later recovery failed on it. (A key-value write to a Z-set
//! spine no longer compiles: see `ZSetSpine`'s docs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use statespine::Error;
use statespine::io::MemFs;
use statespine::run::RunMode;
use statespine::store::{
    MAX_KEY_BYTES, MAX_SPINE_NAME_BYTES, MAX_VALUE_BYTES, Options, RecoveryPoint, Shard,
};

const WAIT: Duration = Duration::from_secs(10);

/// Asserts that `f` fails as `expected` says and leaves the shard's log
/// position where it was.
fn refused(
    shard: &mut Shard,
    f: impl FnOnce(&mut Shard) -> statespine::Result<()>,
    expected: fn(&Error) -> bool,
) {
    let before = shard.last_lsn();
    match f(shard) {
        Err(e) if expected(&e) => {}
        other => panic!("unexpected outcome {other:?}"),
    }
    assert_eq!(shard.last_lsn(), before, "a refused call logs nothing");
}

#[test]
fn refused_writes_log_nothing_and_the_store_reopens_after_a_crash() {
    let fs = Arc::new(MemFs::new());
    let mut store = Options::new("/db")
        .recovery_point(RecoveryPoint::Latest)
        .fs(fs.clone())
        .shards(2)
        .open()
        .unwrap();
    let mut shards = store.take_shards();
    let (s0, s1) = shards.split_at_mut(1);
    let (s0, s1) = (&mut s0[0], &mut s1[0]);
    let a0 = s0.create_kv("a").unwrap();
    let z0 = s0.create_zset("z").unwrap();
    let a1 = s1.create_kv("a").unwrap();
    s0.put(a0, b"k", b"shard 0").unwrap();
    s1.put(a1, b"k", b"shard 1").unwrap();
    s0.update(z0, b"k", b"v", 3).unwrap();

    // A handle of shard 0 on shard 1: same index, never written there.
    refused(
        s1,
        |s| s.put(a0, b"k", b"wrong").map(drop),
        |e| {
            matches!(
                e,
                Error::WrongShard {
                    owner: 0,
                    shard: 1,
                    same_store: true,
                    ..
                }
            )
        },
    );
    refused(
        s1,
        |s| s.drop_spine(a0).map(drop),
        |e| matches!(e, Error::WrongShard { .. }),
    );
    assert_eq!(s1.get(a1, b"k").unwrap(), Some(&b"shard 1"[..]));

    // A name held by the other mode.
    refused(
        s0,
        |s| s.create_kv("z").map(drop),
        |e| matches!(e, Error::WrongMode { mode: "Z-set", .. }),
    );
    assert!(
        s0.spine_id("z").unwrap().kv().is_none(),
        "no key-value handle of a Z-set"
    );

    // Limits, checked at the API, at their edges.
    s0.put(a0, &vec![1u8; MAX_KEY_BYTES], b"edge").unwrap();
    refused(
        s0,
        |s| s.put(a0, &vec![1u8; MAX_KEY_BYTES + 1], b"v").map(drop),
        |e| matches!(e, Error::TooLarge { what: "key", .. }),
    );
    refused(
        s0,
        |s| s.delete(a0, &vec![1u8; MAX_KEY_BYTES + 1]).map(drop),
        |e| matches!(e, Error::TooLarge { what: "key", .. }),
    );
    refused(
        s0,
        |s| s.update(z0, &vec![1u8; MAX_KEY_BYTES + 1], b"v", 1).map(drop),
        |e| matches!(e, Error::TooLarge { what: "key", .. }),
    );
    let huge = vec![7u8; MAX_VALUE_BYTES + 1];
    refused(
        s0,
        |s| s.put(a0, b"k", &huge).map(drop),
        |e| matches!(e, Error::TooLarge { what: "value", .. }),
    );
    refused(
        s0,
        |s| s.update(z0, b"k", &huge, 1).map(drop),
        |e| matches!(e, Error::TooLarge { what: "value", .. }),
    );
    drop(huge);
    let long = "n".repeat(MAX_SPINE_NAME_BYTES + 1);
    refused(
        s0,
        |s| s.create_spine(&long, RunMode::KeyValue).map(drop),
        |e| {
            matches!(
                e,
                Error::TooLarge {
                    what: "spine name",
                    ..
                }
            )
        },
    );

    // A dropped spine's handle.
    let gone = s0.create_kv("gone").unwrap();
    s0.drop_spine(gone).unwrap();
    refused(
        s0,
        |s| s.put(gone, b"k", b"v").map(drop),
        |e| matches!(e, Error::NoSuchSpine { shard: 0, .. }),
    );
    refused(
        s0,
        |s| s.drop_spine(gone).map(drop),
        |e| matches!(e, Error::NoSuchSpine { .. }),
    );

    for s in [&*s0, &*s1] {
        s.wait_durable(s.last_lsn(), WAIT).unwrap();
    }
    // A crash: only what was synced survives, and it opens.
    let image = Arc::new(fs.crash());
    drop((shards, store));
    let mut store = Options::new("/db")
        .recovery_point(RecoveryPoint::Latest)
        .fs(image)
        .shards(2)
        .open()
        .unwrap();
    let shards = store.take_shards();
    let a = shards[0].kv_spine("a").unwrap();
    assert_eq!(shards[0].get(a, b"k").unwrap(), Some(&b"shard 0"[..]));
    assert_eq!(
        shards[0].get(a, &vec![1u8; MAX_KEY_BYTES]).unwrap(),
        Some(&b"edge"[..])
    );
    let z = shards[0].zset_spine("z").unwrap();
    assert_eq!(
        shards[0].spine(z).unwrap().values(b"k").unwrap(),
        [(&b"v"[..], 3)]
    );
    let a = shards[1].kv_spine("a").unwrap();
    assert_eq!(shards[1].get(a, b"k").unwrap(), Some(&b"shard 1"[..]));
    assert!(shards[0].spine_id("gone").is_none());
}

#[test]
fn a_handle_of_another_open_store_is_refused() {
    let mut one = Options::new("/one")
        .recovery_point(RecoveryPoint::Latest)
        .fs(Arc::new(MemFs::new()))
        .open()
        .unwrap();
    let mut other = Options::new("/other")
        .recovery_point(RecoveryPoint::Latest)
        .fs(Arc::new(MemFs::new()))
        .open()
        .unwrap();
    let mut s1 = one.take_shards().remove(0);
    let mut s2 = other.take_shards().remove(0);
    let mine = s1.create_kv("kv").unwrap();
    s2.create_kv("kv").unwrap();
    refused(
        &mut s2,
        |s| s.put(mine, b"k", b"v").map(drop),
        |e| {
            matches!(
                e,
                Error::WrongShard {
                    same_store: false,
                    ..
                }
            )
        },
    );
    assert!(matches!(s2.get(mine, b"k"), Err(Error::WrongShard { .. })));
}

#[test]
fn handles_are_refused_after_the_store_is_opened_again() {
    let fs = Arc::new(MemFs::new());
    let mut store = Options::new("/db")
        .recovery_point(RecoveryPoint::Latest)
        .fs(fs.clone())
        .open()
        .unwrap();
    let mut shard = store.take_shards().remove(0);
    let old = shard.create_kv("kv").unwrap();
    drop((shard, store));
    let mut store = Options::new("/db")
        .recovery_point(RecoveryPoint::Latest)
        .fs(fs)
        .open()
        .unwrap();
    let mut shard = store.take_shards().remove(0);
    refused(
        &mut shard,
        |s| s.put(old, b"k", b"v").map(drop),
        |e| {
            matches!(
                e,
                Error::WrongShard {
                    same_store: false,
                    ..
                }
            )
        },
    );
    let new = shard.kv_spine("kv").unwrap();
    shard.put(new, b"k", b"v").unwrap();
}

/// A log written by an earlier version, which logged a Z-set `put` before
/// refusing it: recovery skips the record (the write was refused) instead
/// of failing on it at every open.
#[test]
fn a_logged_write_the_spine_refuses_is_skipped_at_recovery() {
    use statespine::changelog::{ChangeRecord, StateOp};
    use statespine::wal::{WalOptions, WriteAheadLog, encode_change};
    let fs = Arc::new(MemFs::new());
    let mut store = Options::new("/db")
        .recovery_point(RecoveryPoint::Latest)
        .fs(fs.clone())
        .open()
        .unwrap();
    let mut shard = store.take_shards().remove(0);
    let z = shard.create_zset("z").unwrap();
    shard.update(z, b"k", b"v", 2).unwrap();
    drop(shard);
    store.close().unwrap();
    // What the earlier version left: a put record for the Z-set spine.
    let mut wal = WriteAheadLog::open(fs.clone(), "/db/shards/0/wal", WalOptions::new(0)).unwrap();
    let mut payload = Vec::new();
    encode_change(
        &mut payload,
        &ChangeRecord {
            spine: z.id().index(),
            epoch: 1,
            op: StateOp::Put,
            key: b"k",
            value: b"refused",
        },
    );
    wal.append(1, &payload).unwrap();
    wal.sync().unwrap();
    drop(wal);
    for round in 0..2 {
        let mut state = Options::new("/db")
            .recovery_point(RecoveryPoint::Latest)
            .fs(fs.clone())
            .recover()
            .unwrap();
        assert_eq!(state.refused_records, 1);
        let mut shard = state.store.take_shards().remove(0);
        let z = shard.zset_spine("z").unwrap();
        assert_eq!(
            shard.spine(z).unwrap().values(b"k").unwrap(),
            [(&b"v"[..], 2 + round)]
        );
        shard.update(z, b"k", b"v", 1).unwrap();
        shard.wait_durable(shard.last_lsn(), WAIT).unwrap();
    }
}
