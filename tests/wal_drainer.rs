//! The changelog drainer: rings into logs under each sync policy, watermarks
//! the hot thread can read, replay from the log alone, fail-stop, and
//! records many times the ring's size.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use statespine::changelog::{ChangeRecord, StateChangelogBuffer, StateOp};
use statespine::io::MemFs;
use statespine::wal::{
    ChangelogDrainer, RecoveryMode, SyncPolicy, WalOptions, WriteAheadLog, decode_change, replay,
};

fn wal(fs: &MemFs, shard: u32) -> WriteAheadLog {
    WriteAheadLog::open(
        Arc::new(fs.clone()),
        dir(shard),
        WalOptions::new(shard).segment_size_bytes(64 << 10),
    )
    .unwrap()
}

fn dir(shard: u32) -> PathBuf {
    PathBuf::from(format!("/shards/{shard}/wal"))
}

/// spine, epoch, op, key, value.
type Owned = (u32, u64, StateOp, Vec<u8>, Vec<u8>);

fn record(shard: u32, i: u64) -> Owned {
    let op = match i % 3 {
        0 => StateOp::Put,
        1 => StateOp::Delete,
        _ => StateOp::Update(i as i64 - 7),
    };
    let value = if op == StateOp::Delete {
        Vec::new()
    } else {
        vec![shard as u8; (i % 50) as usize]
    };
    ((i % 4) as u32, i / 100, op, i.to_be_bytes().to_vec(), value)
}

fn change(o: &Owned) -> ChangeRecord<'_> {
    ChangeRecord {
        spine: o.0,
        epoch: o.1,
        op: o.2,
        key: &o.3,
        value: &o.4,
    }
}

fn replayed(fs: &MemFs, shard: u32) -> Vec<Owned> {
    let mut out = Vec::new();
    replay(fs, &dir(shard), 1, RecoveryMode::Strict, |f| {
        let r = decode_change(f.payload, f.epoch, Path::new("wal"), f.lsn).unwrap();
        out.push((r.spine, r.epoch, r.op, r.key.to_vec(), r.value.to_vec()));
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn two_shards_replay_exactly_what_their_hot_threads_pushed() {
    let fs = MemFs::new();
    let mut drainer = ChangelogDrainer::new(SyncPolicy::EveryRecords(1000));
    let mut producers = Vec::new();
    for shard in 0..2u32 {
        let (p, c) = StateChangelogBuffer::with_capacity(16 << 10, 256);
        let mark = drainer.add_shard(c, wal(&fs, shard));
        producers.push((shard, p, mark));
    }
    let handle = drainer.spawn().unwrap();
    let n = 20_000u64;
    let threads: Vec<_> = producers
        .into_iter()
        .map(|(shard, mut p, mark)| {
            std::thread::spawn(move || {
                for i in 0..n {
                    p.push(&change(&record(shard, i))).unwrap();
                }
                mark.request_sync(p.pushed());
                drop(p);
                mark.wait_durable(n, Duration::from_secs(30))
                    .expect("acknowledged");
                assert_eq!(mark.durable_epoch(), (n - 1) / 100);
                assert_eq!(mark.durable_lsn(), n);
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let drainer = handle.stop().unwrap();
    assert_eq!(drainer.stats().records, 2 * n);
    // Group commit: at most one sync per 1,000 records (and the final ones).
    let syncs = drainer.stats().syncs;
    assert!(syncs >= 2 && syncs <= 2 * n / 1000 + 2, "{:?}", drainer.stats());
    for shard in 0..2 {
        let got = replayed(&fs, shard);
        assert_eq!(got.len(), n as usize);
        for (i, r) in got.into_iter().enumerate() {
            assert_eq!(r, record(shard, i as u64), "shard {shard} record {i}");
        }
    }
    // And they were durable: a power loss keeps them all.
    assert_eq!(replayed(&fs.crash(), 1).len(), n as usize);
}

/// One shard on a fresh in-memory file system: its drainer, producer and
/// watermark.
fn one_shard(
    policy: SyncPolicy,
) -> (
    MemFs,
    ChangelogDrainer,
    statespine::changelog::ChangelogProducer,
    Arc<statespine::wal::Watermark>,
) {
    let fs = MemFs::new();
    let mut drainer = ChangelogDrainer::new(policy);
    let (p, c) = StateChangelogBuffer::with_capacity(64 << 10, 1024);
    let mark = drainer.add_shard(c, wal(&fs, 0));
    (fs, drainer, p, mark)
}

fn push(p: &mut statespine::changelog::ChangelogProducer, from: u64, to: u64) {
    for i in from..to {
        p.try_push(&change(&record(0, i))).unwrap();
    }
}

#[test]
fn each_policy_syncs_when_it_says() {
    let cases = [
        (SyncPolicy::EveryAppend, 1, true),
        (SyncPolicy::EveryRecords(10), 9, false),
        (SyncPolicy::EveryRecords(10), 10, true),
        (SyncPolicy::EveryBytes(1 << 20), 50, false),
        (SyncPolicy::EveryBytes(100), 50, true),
        (SyncPolicy::Manual, 50, false),
        (SyncPolicy::Interval(Duration::from_secs(3600)), 50, false),
    ];
    for (policy, records, durable) in cases {
        let (fs, mut drainer, mut p, mark) = one_shard(policy);
        push(&mut p, 0, records);
        assert_eq!(drainer.drain_once().unwrap(), records as usize);
        let want = if durable { records } else { 0 };
        assert_eq!(mark.durable_records(), want, "{policy:?} after {records}");
        assert_eq!(
            replayed(&fs.crash(), 0).len() as u64,
            want,
            "{policy:?}: durable means durable"
        );
    }
}

#[test]
fn manual_syncs_on_request_and_interval_syncs_an_idle_tail() {
    let (_fs, mut drainer, mut p, mark) = one_shard(SyncPolicy::Manual);
    push(&mut p, 0, 30);
    drainer.drain_once().unwrap();
    assert_eq!(mark.durable_records(), 0);
    mark.request_sync(30);
    drainer.drain_once().unwrap();
    assert_eq!(mark.durable_records(), 30);

    let (_fs, drainer, mut p, mark) = one_shard(SyncPolicy::Interval(Duration::from_millis(20)));
    let handle = drainer.spawn().unwrap();
    push(&mut p, 0, 5);
    // Nothing more is pushed: the timer alone must sync the tail.
    mark.wait_durable(5, Duration::from_secs(10)).unwrap();
    drop(p);
    handle.stop().unwrap();
}

#[test]
fn a_failed_sync_stops_the_drainer_and_flags_the_shard() {
    let (fs, mut drainer, mut p, mark) = one_shard(SyncPolicy::EveryAppend);
    push(&mut p, 0, 10);
    drainer.drain_once().unwrap();
    assert_eq!(mark.durable_records(), 10);
    fs.fail_syncs(true);
    push(&mut p, 10, 20);
    assert!(drainer.drain_once().is_err());
    assert!(mark.is_failed());
    assert_eq!(mark.durable_records(), 10, "nothing more acknowledged");
    assert!(matches!(
        mark.wait_durable(20, Duration::from_millis(10)),
        Err(statespine::Error::Poisoned { .. })
    ));
    fs.fail_syncs(false);
    push(&mut p, 20, 21);
    assert!(drainer.drain_once().is_err(), "the log stays poisoned");
}

/// `len` bytes that differ by seed and by position (a shifted, truncated or
/// swapped byte would not compare equal), drawn eight at a time.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn a_record_64_times_the_ring_lands_in_the_log_and_replays_intact() {
    // A 1 MiB ring; a 64 KiB key with a value of 64 MiB and a bit: the
    // record is spilled, the small records around it go through the ring.
    let fs = MemFs::new();
    let mut drainer = ChangelogDrainer::new(SyncPolicy::EveryRecords(100));
    let (mut p, c) = StateChangelogBuffer::with_capacity(1 << 20, 1024);
    let mark = drainer.add_shard(c, wal(&fs, 0));
    let handle = drainer.spawn().unwrap();
    let big: Owned = (
        2,
        5,
        StateOp::Put,
        pattern(1, 64 << 10),
        pattern(2, (64 << 20) + 13),
    );
    let mut want: Vec<Owned> = (0..300).map(|i| record(0, i)).collect();
    want.insert(150, big);
    // And a second one, so the spill budget has to let the first one go.
    let big2: Owned = (
        3,
        6,
        StateOp::Update(-4),
        pattern(3, 10),
        pattern(4, (4 << 20) + 1),
    );
    want.insert(151, big2);
    for r in &want {
        p.push(&change(r)).unwrap();
    }
    assert_eq!(p.spilled(), 2);
    let n = p.pushed();
    drop(p);
    // Stopping drains, syncs and seals what the ring holds.
    let drainer = handle.stop().unwrap();
    assert_eq!(drainer.stats().records, n);
    assert_eq!(mark.durable_records(), n);
    assert_eq!(mark.durable_lsn(), n);
    // Replayed from the log, and from what a power loss would leave of it.
    for got in [replayed(&fs, 0), replayed(&fs.crash(), 0)] {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // Compare lengths first: a failure should not print 64 MiB.
            assert_eq!((g.3.len(), g.4.len()), (w.3.len(), w.4.len()), "record {i}");
            assert!(g == w, "record {i} differs");
        }
    }
}

/// The syncs of a round run on the pool the drainer is given (the store's),
/// at most its size side by side, and every shard's watermark moves.
#[test]
fn a_round_syncs_its_shards_on_the_pool_it_is_given() {
    let fs = MemFs::new();
    let pool = Arc::new(statespine::io::Pool::new(2, "test-sync").unwrap());
    let mut drainer = ChangelogDrainer::new(SyncPolicy::EveryAppend).with_pool(Arc::clone(&pool));
    let mut shards = Vec::new();
    for shard in 0..5u32 {
        let (mut p, c) = StateChangelogBuffer::with_capacity(16 << 10, 256);
        let mark = drainer.add_shard(c, wal(&fs, shard));
        for i in 0..10 {
            p.push(&change(&record(shard, i))).unwrap();
        }
        shards.push((p, mark));
    }
    drainer.drain_once().unwrap();
    assert_eq!(drainer.stats().syncs, 5);
    for (shard, (_, mark)) in shards.iter().enumerate() {
        assert_eq!(mark.durable_lsn(), 10, "shard {shard}");
        assert_eq!(replayed(&fs, shard as u32).len(), 10);
    }
}
