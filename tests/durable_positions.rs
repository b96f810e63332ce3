//! Durability a client can hold: every write returns its position in the
//! shard's log, and `wait_durable(position, timeout)` says durable, timed
//! out, or the log failed (with the failure). Catalog records (spines
//! created and dropped) take positions too, but a client never counts:
//! it compares. Regression: `wait_durable` returned a bare bool mixing a
//! timeout with a failed log, and counted changelog records, so a client
//! had to track `pushed()` after every write.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/sim_store.rs"]
mod sim_store;

use std::sync::Arc;
use std::time::Duration;

use statespine::Error;
use statespine::io::{Errno, MemFs, SimFs};
use statespine::store::{Lsn, Options, RecoveryPoint};
use statespine::wal::SyncPolicy;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_writes_position_becomes_durable_whatever_catalog_records_come_between() {
    let fs = Arc::new(MemFs::new());
    let mut store = Options::new("/db")
        .recovery_point(RecoveryPoint::Latest)
        .fs(fs.clone())
        .sync_policy(SyncPolicy::Manual)
        .open()
        .unwrap();
    let mut shard = store.take_shards().remove(0);
    let kv = shard.create_kv("kv").unwrap();
    let first = shard.put(kv, b"a", b"1").unwrap();
    // Spines created and dropped in between take positions of their own.
    let tmp = shard.create_zset("tmp").unwrap();
    let dropped = shard.drop_spine(tmp).unwrap();
    let second = shard.put(kv, b"b", b"2").unwrap();
    assert!(first < dropped && dropped < second, "{first} {dropped} {second}");
    assert_eq!(shard.last_lsn(), second);
    // Manual sync: nothing is durable until a waiter asks.
    assert!(shard.durable_lsn() < first);
    shard.wait_durable(first, WAIT).unwrap();
    assert!(shard.durable_lsn() >= first);
    shard.wait_durable(second, WAIT).unwrap();
    assert!(shard.durable_lsn() >= second);
    // Both survive a power loss now.
    let image = Arc::new(fs.crash());
    drop((shard, store));
    let mut store = Options::new("/db")
        .recovery_point(RecoveryPoint::Latest)
        .fs(image)
        .open()
        .unwrap();
    let shard = store.take_shards().remove(0);
    let kv = shard.kv_spine("kv").unwrap();
    assert_eq!(shard.get(kv, b"a").unwrap(), Some(&b"1"[..]));
    assert_eq!(shard.get(kv, b"b").unwrap(), Some(&b"2"[..]));
    assert!(shard.spine_id("tmp").is_none());
}

#[test]
fn a_wait_that_runs_out_of_time_says_so_and_can_be_retried() {
    let fs = Arc::new(MemFs::new());
    let mut store = Options::new("/db")
        .recovery_point(RecoveryPoint::Latest)
        .fs(fs)
        .sync_policy(SyncPolicy::Manual)
        .open()
        .unwrap();
    let mut shard = store.take_shards().remove(0);
    let kv = shard.create_kv("kv").unwrap();
    // A zero timeout ends before the drainer (asleep between rounds) can
    // sync: timed out, not failed. (One round in a thousand could win the
    // race; ten in a row cannot.)
    let timed_out = (0..10).any(|i| {
        let lsn = shard.put(kv, &[i], b"v").unwrap();
        matches!(
            shard.wait_durable(lsn, Duration::ZERO),
            Err(Error::TimedOut { .. })
        )
    });
    assert!(timed_out);
    // The write is not lost: a longer wait sees it durable.
    shard.wait_durable(shard.last_lsn(), WAIT).unwrap();
}

#[test]
fn a_failed_log_is_a_typed_error_with_its_cause() {
    let fs = Arc::new(SimFs::new());
    let mut store = sim_store::small_store(fs.clone(), 2, false).open().unwrap();
    let mut shard = store.take_shards().remove(0);
    let kv = shard.create_kv("kv").unwrap();
    let ok = shard.put(kv, b"a", b"1").unwrap();
    shard.wait_durable(ok, WAIT).unwrap();
    fs.fail_named("fdatasync", 1, Errno::Eio);
    let lost = shard.put(kv, b"b", b"2").unwrap();
    match shard.wait_durable(lost, WAIT) {
        Err(Error::Poisoned { path, cause }) => {
            assert!(path.ends_with("shards/0/wal"), "{path:?}");
            assert!(cause.contains("injected EIO"), "{cause}");
        }
        other => panic!("expected Poisoned, got {other:?}"),
    }
    // Fail-stop: what was durable stays so, nothing later ever is.
    shard.wait_durable(ok, Duration::ZERO).unwrap();
    let later = shard.put(kv, b"c", b"3");
    if let Ok(lsn) = later {
        assert!(matches!(
            shard.wait_durable(lsn, WAIT),
            Err(Error::Poisoned { .. })
        ));
    }
}

#[test]
fn waiting_for_what_was_not_written_or_without_a_wal_is_refused() {
    let mut store = Options::new("/db")
        .recovery_point(RecoveryPoint::Latest)
        .fs(Arc::new(MemFs::new()))
        .open()
        .unwrap();
    let mut shard = store.take_shards().remove(0);
    let kv = shard.create_kv("kv").unwrap();
    let lsn = shard.put(kv, b"a", b"1").unwrap();
    assert!(matches!(
        shard.wait_durable(Lsn(lsn.0 + 1), WAIT),
        Err(Error::InvalidArgument(_))
    ));
    let mut store = Options::new("/nowal")
        .recovery_point(RecoveryPoint::Latest)
        .fs(Arc::new(MemFs::new()))
        .wal(false)
        .open()
        .unwrap();
    let mut shard = store.take_shards().remove(0);
    let kv = shard.create_kv("kv").unwrap();
    let lsn = shard.put(kv, b"a", b"1").unwrap();
    assert!(matches!(
        shard.wait_durable(lsn, WAIT),
        Err(Error::NotSupported(_))
    ));
}
