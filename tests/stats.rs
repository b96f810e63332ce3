//! `Shard::stats` and `Store::stats` against a model of the operations
//! performed: random sequences of writes, batches, epoch commits,
//! checkpoints and flushes, counted by hand; and (feature `metrics`) what
//! the `metrics` facade receives agrees with the snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use statespine::io::MemFs;
use statespine::{CheckpointRequest, Options, Shard, Store};

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    Update(u8, u8, i8),
    Batch(u8),
    Commit,
    Checkpoint,
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u8>(), 0u8..40).prop_map(|(k, v)| Op::Put(k, v)),
        2 => any::<u8>().prop_map(Op::Delete),
        4 => (any::<u8>(), 0u8..40, any::<i8>()).prop_map(|(k, v, w)| Op::Update(k, v, w)),
        1 => (1u8..6).prop_map(Op::Batch),
        1 => Just(Op::Commit),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Flush),
    ]
}

/// What the operations should have counted.
#[derive(Debug, Default)]
struct Model {
    writes: u64,
    batches: u64,
    bytes_put: u64,
    commits: u64,
    checkpoints: u64,
}

fn key(k: u8) -> [u8; 4] {
    [b'k', b'e', b'y', k]
}

fn open(fs: &Arc<MemFs>) -> (Store, Shard) {
    let mut store = Options::new("/db")
        .fs(fs.clone())
        .young_run_age(Duration::ZERO)
        .open()
        .unwrap();
    let shard = store.take_shards().remove(0);
    (store, shard)
}

/// Applies `ops`, counting them into a model.
fn run(store: &mut Store, shard: &mut Shard, ops: &[Op]) -> Model {
    let kv = shard.create_kv("kv").unwrap();
    let zs = shard.create_zset("zs").unwrap();
    let mut m = Model::default();
    for op in ops {
        match *op {
            Op::Put(k, v) => {
                shard.put(kv, &key(k), &vec![7; v as usize]).unwrap();
                (m.writes, m.bytes_put) = (m.writes + 1, m.bytes_put + 4 + u64::from(v));
            }
            Op::Delete(k) => {
                shard.delete(kv, &key(k)).unwrap();
                (m.writes, m.bytes_put) = (m.writes + 1, m.bytes_put + 4);
            }
            Op::Update(k, v, w) => {
                shard
                    .update(zs, &key(k), &vec![1; v as usize], i64::from(w))
                    .unwrap();
                (m.writes, m.bytes_put) = (m.writes + 1, m.bytes_put + 4 + u64::from(v));
            }
            Op::Batch(n) => {
                let mut b = shard.batch();
                for i in 0..n {
                    b.put(kv, &key(i), b"vv");
                }
                shard.write(b).unwrap();
                m.writes += u64::from(n);
                m.batches += 1;
                m.bytes_put += u64::from(n) * 6;
            }
            Op::Commit => {
                let epoch = store.next_epoch();
                store
                    .commit_epoch_inline(&mut [&mut *shard], epoch, &CheckpointRequest::default())
                    .unwrap();
                m.commits += 1;
            }
            Op::Checkpoint => {
                let epoch = store.next_epoch();
                store
                    .checkpoint_inline(&mut [&mut *shard], epoch, CheckpointRequest::default())
                    .unwrap();
                m.checkpoints += 1;
            }
            Op::Flush => shard.flush_all().unwrap(),
        }
    }
    m
}

fn check(store: &Store, shard: &Shard, m: &Model) {
    let s = shard.stats();
    assert_eq!(s.writes, m.writes);
    assert_eq!(s.batches, m.batches);
    assert_eq!(s.bytes_put, m.bytes_put);
    assert_eq!(s.commits_answered, m.commits);
    assert_eq!(s.cuts_answered, m.checkpoints);
    assert_eq!(s.answer_pauses.count(), m.commits + m.checkpoints);
    assert_eq!(s.spines.len(), 2);
    assert_eq!(
        s.spines.iter().map(|sp| sp.counters.bytes_put).sum::<u64>(),
        m.bytes_put
    );
    assert_eq!(s.run_bytes, s.spines.iter().map(|sp| sp.run_bytes).sum::<u64>());
    // Every run byte on disk was written by a flush or a merge.
    assert!(s.run_bytes <= s.run_bytes_written, "{s:?}");
    let st = store.stats();
    assert_eq!(st.epoch_commits, m.commits);
    assert_eq!(st.epoch_commit_latency.count(), m.commits);
    assert_eq!(st.checkpoints, m.checkpoints);
    assert_eq!(st.checkpoint_latency.count(), m.checkpoints);
    assert_eq!(st.checkpoint_failures, 0);
    assert_eq!(st.last_epoch, m.commits + m.checkpoints);
    assert_eq!(
        st.retained_checkpoints,
        m.checkpoints.min(3),
        "three retained by default"
    );
    if m.commits + m.checkpoints > 0 {
        // Each commit waited for its record to be durable: synced.
        assert!(st.wal_syncs >= 1 && s.wal_syncs >= 1, "{st:?}");
        assert!(s.wal_bytes_appended > 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn stats_agree_with_a_model(ops in proptest::collection::vec(op(), 0..120)) {
        let fs = Arc::new(MemFs::new());
        let (mut store, mut shard) = open(&fs);
        let m = run(&mut store, &mut shard, &ops);
        check(&store, &shard, &m);
    }
}

#[test]
fn recovery_figures_describe_the_last_open() {
    let fs = Arc::new(MemFs::new());
    let (mut store, mut shard) = open(&fs);
    let m = run(
        &mut store,
        &mut shard,
        &[
            Op::Put(1, 3),
            Op::Checkpoint,
            Op::Put(2, 3),
            Op::Put(3, 3),
            Op::Commit,
            Op::Put(4, 1),
        ],
    );
    check(&store, &shard, &m);
    drop((shard, store));
    let state = Options::new("/db").fs(fs.clone()).recover().unwrap();
    let r = state.store.stats().recovery;
    assert_eq!(r.epoch, 2);
    assert_eq!(r.skipped_checkpoints, 0);
    // The put of the uncommitted epoch is discarded (the model's only
    // uncommitted write); the rest agrees with what `recover` returned.
    assert_eq!(r.discarded_records, 1, "{r:?}");
    assert_eq!(
        (
            r.replayed_records,
            r.replayed_bytes,
            r.select_time,
            r.restore_time
        ),
        (
            state.replayed_records,
            state.replayed_bytes,
            state.select_time,
            state.restore_time
        )
    );
    assert!(
        r.replayed_records >= 3,
        "two puts and a commit after the checkpoint: {r:?}"
    );
    let mut store = state.store;
    let shard = store.take_shards().remove(0);
    // Counters start again at the open; sizes are what recovery rebuilt.
    let s = shard.stats();
    // No write since the open; the spines count the bytes replay put back
    // (the three puts of 4 + 3 bytes still in memtables at the crash).
    assert_eq!((s.writes, s.bytes_put), (0, 21));
    assert_eq!(s.spines.len(), 2);
}

#[test]
fn amplification_is_disk_over_user_bytes() {
    let fs = Arc::new(MemFs::new());
    let (mut store, mut shard) = open(&fs);
    let ops: Vec<Op> = (0..200u8)
        .map(|k| Op::Put(k, 30))
        .chain([Op::Commit, Op::Flush])
        .collect();
    run(&mut store, &mut shard, &ops);
    let s = shard.stats();
    assert!(s.run_bytes > 0 && s.wal_bytes > 0);
    let wa = s.write_amplification();
    // The WAL wrote every user byte plus framing; the flush wrote the run.
    let expected = (s.run_bytes_written + s.wal_bytes_appended) as f64 / s.bytes_put as f64;
    assert!((wa - expected).abs() < 1e-9 && wa > 1.0, "{wa}");
    assert!(s.space_amplification() >= 1.0, "{s:?}");
}

#[cfg(feature = "metrics")]
mod export {
    use super::*;
    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// Keeps the last value of every counter and gauge, and how many
    /// samples each histogram got, by name and labels.
    #[derive(Debug, Default)]
    struct Recorded {
        values: Mutex<BTreeMap<String, f64>>,
    }

    #[derive(Debug)]
    struct Handle(Arc<Recorded>, String);

    impl Handle {
        fn set(&self, f: impl FnOnce(f64) -> f64) {
            let mut v = self.0.values.lock().unwrap();
            let e = v.entry(self.1.clone()).or_insert(0.0);
            *e = f(*e);
        }
    }

    impl CounterFn for Handle {
        fn increment(&self, n: u64) {
            self.set(|v| v + n as f64);
        }
        fn absolute(&self, n: u64) {
            self.set(|_| n as f64);
        }
    }
    impl GaugeFn for Handle {
        fn increment(&self, n: f64) {
            self.set(|v| v + n);
        }
        fn decrement(&self, n: f64) {
            self.set(|v| v - n);
        }
        fn set(&self, n: f64) {
            Handle::set(self, |_| n);
        }
    }
    impl HistogramFn for Handle {
        fn record(&self, _: f64) {
            self.set(|v| v + 1.0);
        }
    }

    #[derive(Debug, Default)]
    struct TestRecorder(Arc<Recorded>);

    impl TestRecorder {
        fn handle(&self, key: &Key) -> Arc<Handle> {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            Arc::new(Handle(
                self.0.clone(),
                format!("{}{{{}}}", key.name(), labels.join(",")),
            ))
        }
        fn get(&self, name: &str) -> Option<f64> {
            self.0.values.lock().unwrap().get(name).copied()
        }
    }

    impl Recorder for TestRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.handle(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.handle(key))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.handle(key))
        }
    }

    #[test]
    fn the_facade_receives_what_stats_report() {
        let rec = TestRecorder::default();
        let fs = Arc::new(MemFs::new());
        let (mut store, mut shard) = open(&fs);
        let ops = [
            Op::Put(1, 5),
            Op::Update(2, 1, 3),
            Op::Batch(3),
            Op::Commit,
            Op::Checkpoint,
            Op::Delete(1),
        ];
        let m = metrics::with_local_recorder(&rec, || {
            let m = run(&mut store, &mut shard, &ops);
            shard.publish_metrics();
            m
        });
        let s = shard.stats();
        assert_eq!(rec.get("statespine_writes_total{shard=0}"), Some(m.writes as f64));
        assert_eq!(
            rec.get("statespine_bytes_put_total{shard=0}"),
            Some(m.bytes_put as f64)
        );
        assert_eq!(rec.get("statespine_write_batches_total{shard=0}"), Some(1.0));
        assert_eq!(
            rec.get("statespine_memory_bytes{shard=0}"),
            Some(s.memory_bytes as f64)
        );
        assert_eq!(rec.get("statespine_epoch{shard=0}"), Some(3.0));
        assert_eq!(rec.get("statespine_epoch_commits_total{}"), Some(1.0));
        assert_eq!(rec.get("statespine_epoch_commit_seconds{}"), Some(1.0));
        assert_eq!(rec.get("statespine_checkpoints_total{}"), Some(1.0));
        assert_eq!(rec.get("statespine_checkpoint_seconds{}"), Some(1.0));
    }

    #[test]
    fn poll_publishes_at_most_once_per_interval() {
        let rec = TestRecorder::default();
        let fs = Arc::new(MemFs::new());
        let opened = std::time::Instant::now();
        let (mut store, mut shard) = open(&fs);
        metrics::with_local_recorder(&rec, || {
            run(&mut store, &mut shard, &[Op::Put(1, 1)]);
            shard.poll().unwrap();
        });
        // Opened just now: the first interval has not passed (unless the
        // machine stalled for a whole interval, when nothing can be said).
        if opened.elapsed() < statespine::PUBLISH_INTERVAL {
            assert_eq!(rec.get("statespine_writes_total{shard=0}"), None);
        }
        std::thread::sleep(statespine::PUBLISH_INTERVAL);
        metrics::with_local_recorder(&rec, || shard.poll().unwrap());
        assert_eq!(rec.get("statespine_writes_total{shard=0}"), Some(1.0));
    }
}

#[test]
fn dropping_a_spine_keeps_the_shards_totals() {
    let fs = Arc::new(MemFs::new());
    let (mut store, mut shard) = open(&fs);
    let m = run(
        &mut store,
        &mut shard,
        &[Op::Put(1, 10), Op::Put(2, 10), Op::Flush],
    );
    let before = shard.stats();
    let kv = shard.kv_spine("kv").unwrap();
    shard.drop_spine(kv).unwrap();
    let after = shard.stats();
    assert_eq!(after.spines.len(), 1);
    assert_eq!((after.writes, after.bytes_put), (m.writes, m.bytes_put));
    assert_eq!(
        (after.seals, after.run_bytes_written),
        (before.seals, before.run_bytes_written)
    );
    // Sizes are of what is left: the dropped spine's runs are gone.
    assert!(after.run_bytes < before.run_bytes, "{after:?}");
}
