//! Exactly-once at every crash point (DESIGN, "Epochs", invariant 1): a
//! deterministic source of events `(offset, key, value)` feeds, on 2 shards
//! routed by key, a Z-set count per key and a key-value "latest value per
//! key", with an epoch commit every `COMMIT_EVERY` events and a checkpoint
//! every `CHECKPOINT_EVERY`, each recording `source_offsets {"src": offset}`.
//!
//! The run is crashed at every operation k (`SimFs::crash_at`) under every
//! crash variant, recovered with the default point (the last committed
//! epoch), and then:
//! - the recovered state must be the model's state at the recovered offset,
//!   exactly (a key counted past it is a double apply, one short of it a
//!   loss), and the offset no older than the last acknowledged commit's;
//! - the source is rewound to that offset and run to its end with the same
//!   cadence: the final state must be the crash-free run's, exactly;
//! - a power loss after the end, and recovery must give back that final
//!   epoch: the records recovery discarded stay discarded.
//!
//! Recovery itself is crashed too: at every operation of the recovery of a
//! crash image whose recovery discards records (deleting whole WAL segments
//! for most: the "wal-discard" step), under a variant per operation, then
//! recovered again: it must return the same epoch, and the checks above
//! hold.
//!
//! The default run (about a minute and a half in debug) checks every point
//! of the first variant and every third of the others, and crashes the
//! recoveries of 8 images that discard at least 8 records;
//! `CRASH_POINTS_ALL=1` checks every point under every variant and crashes
//! the recovery of every image that discards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use statespine::io::{CrashVariant, SimFs};
use statespine::run::{EntryKind, RunMode};
use statespine::spine::SpineOptions;
use statespine::store::{CheckpointRequest, KvSpine, Options, RecoveredState, Shard, Store, ZSetSpine};
use statespine::wal::SyncPolicy;

/// Events of the source; offset `o` means events `0..o` are applied.
const EVENTS: u64 = 360;
const KEYS: u64 = 48;
/// An epoch commit every this many events...
const COMMIT_EVERY: u64 = 15;
/// ...of which every this many events is a full checkpoint instead.
const CHECKPOINT_EVERY: u64 = 90;
const SEED: u64 = 0x5eed_0fe0_1234;

/// splitmix64.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Event `i` (its offset is `i + 1`): a key and a value naming the event.
fn event(i: u64) -> (Vec<u8>, Vec<u8>) {
    let h = mix(SEED ^ i);
    let key = format!("key-{:03}", h % KEYS).into_bytes();
    let mut value = format!("{i}:").into_bytes();
    value.resize(10 + ((h >> 32) % 50) as usize, b'a' + (i % 26) as u8);
    (key, value)
}

fn shard_of(key: &[u8]) -> usize {
    (mix(key.iter().fold(0u64, |a, &b| a.wrapping_mul(31) + u64::from(b))) % 2) as usize
}

/// The state, per (shard, key): the Z-set count and the latest value.
type State = BTreeMap<(usize, Vec<u8>), (i64, Option<Vec<u8>>)>;

/// The state after events `0..offset`.
fn model(offset: u64) -> State {
    let mut m = State::new();
    for i in 0..offset {
        let (k, v) = event(i);
        let e = m.entry((shard_of(&k), k)).or_default();
        e.0 += 1;
        e.1 = Some(v);
    }
    m
}

/// The event a stored value names.
fn event_of(v: &Option<Vec<u8>>) -> Option<u64> {
    let v = v.as_ref()?;
    let end = v.iter().position(|&b| b == b':')?;
    std::str::from_utf8(&v[..end]).ok()?.parse().ok()
}

/// Inputs applied more often than the model says, and fewer: (double, lost).
/// A latest value from a later event than the model's counts as a double
/// apply, from an earlier one (or missing, or wrong) as a loss.
fn diff(got: &State, want: &State) -> (u64, u64) {
    let (mut double, mut lost) = (0, 0);
    let keys: std::collections::BTreeSet<_> = got.keys().chain(want.keys()).collect();
    for k in keys {
        let (g, w) = (
            got.get(k).cloned().unwrap_or_default(),
            want.get(k).cloned().unwrap_or_default(),
        );
        double += (g.0 - w.0).max(0) as u64;
        lost += (w.0 - g.0).max(0) as u64;
        if g.1 != w.1 {
            if event_of(&g.1) > event_of(&w.1) {
                double += 1;
            } else {
                lost += 1;
            }
        }
    }
    (double, lost)
}

/// The store on `fs`; `patience` bounds how long a commit waits for the
/// shards (see `crashed_run`).
fn options(fs: Arc<SimFs>, patience: Duration) -> Options {
    Options::new("/db")
        .fs(fs)
        .shards(2)
        .spine_options(
            SpineOptions::new(RunMode::KeyValue)
                .memtable_size_bytes(2 << 10)
                .memory_budget_bytes(8 << 10)
                .fan_in(3),
        )
        .wal_segment_size(2 << 10)
        // A small ring: the default 8 MiB costs a debug build most of an open.
        .changelog_capacity(64 << 10, 1 << 10)
        .sync_policy(SyncPolicy::Manual)
        .max_retained(2)
        .young_run_age(Duration::ZERO)
        .cut_timeout(patience)
}

/// The engine: the store, its two shards (owned by this thread) and their spines.
struct Engine {
    store: Store,
    shards: Vec<Shard>,
    count: Vec<ZSetSpine>,
    latest: Vec<KvSpine>,
}

/// What a recovery gave back: the offset to rewind the source to, the
/// records it discarded, and the engine, ready to run on.
struct Recovered {
    offset: u64,
    /// Records after the epoch recovered, discarded.
    discarded: u64,
    engine: Engine,
}

/// Recovers the store on `fs` (an empty one opens empty) with the default
/// recovery point.
fn recover(fs: Arc<SimFs>) -> statespine::Result<Recovered> {
    recover_with(fs, Duration::from_secs(60))
}

fn recover_with(fs: Arc<SimFs>, patience: Duration) -> statespine::Result<Recovered> {
    let RecoveredState {
        source_offsets,
        discarded_records,
        mut store,
        ..
    } = options(fs, patience).recover()?;
    let mut shards = store.take_shards();
    let (mut count, mut latest) = (Vec::new(), Vec::new());
    for s in &mut shards {
        count.push(s.create_zset("count")?);
        latest.push(s.create_kv("latest")?);
    }
    Ok(Recovered {
        offset: source_offsets.get("src").copied().unwrap_or(0),
        discarded: discarded_records,
        engine: Engine {
            store,
            shards,
            count,
            latest,
        },
    })
}

impl Engine {
    /// Runs the source from `from` to its end: an epoch commit (or a
    /// checkpoint) at every offset the cadence names; `acked` is the offset
    /// of the last one that returned `Ok`.
    fn run(&mut self, from: u64, acked: &mut u64) -> statespine::Result<()> {
        for i in from..EVENTS {
            let (k, v) = event(i);
            let s = shard_of(&k);
            let shard = &mut self.shards[s];
            shard.update(self.count[s], &k, b"", 1)?;
            shard.put(self.latest[s], &k, &v)?;
            shard.poll()?;
            let offset = i + 1;
            if offset % COMMIT_EVERY != 0 {
                continue;
            }
            let mut req = CheckpointRequest::default();
            req.source_offsets.insert("src".into(), offset);
            let epoch = self.store.next_epoch();
            let [s0, s1] = self.shards.as_mut_slice() else {
                unreachable!("two shards")
            };
            if offset % CHECKPOINT_EVERY == 0 {
                self.store.checkpoint_inline(&mut [s0, s1], epoch, req)?;
            } else {
                self.store.commit_epoch_inline(&mut [s0, s1], epoch, &req)?;
            }
            *acked = offset;
        }
        Ok(())
    }

    /// Every key's count and latest value, read back with cursors.
    fn read(&mut self) -> statespine::Result<State> {
        let mut st = State::new();
        for (s, shard) in self.shards.iter_mut().enumerate() {
            for e in shard.cursor(self.count[s])? {
                let e = e?;
                if let EntryKind::Weight(w) = e.kind {
                    st.entry((s, e.key.to_vec())).or_default().0 += w;
                }
            }
            for e in shard.cursor(self.latest[s])? {
                let e = e?;
                if e.kind == EntryKind::Put {
                    st.entry((s, e.key.to_vec())).or_default().1 = Some(e.value.to_vec());
                }
            }
        }
        Ok(st)
    }
}

/// Runs the source from the start on `fs` until it ends or the crash stops
/// it; returns the offset of the last acknowledged commit, and whether a
/// commit timed out instead of failing.
///
/// A short patience: should a commit wait on a dead drainer again (the
/// regression `a_dead_drainer_fails_every_shard_at_once`), a crash point
/// costs a second, not a minute, and the report counts it. What the crash
/// image holds was fixed at the crash either way.
fn crashed_run(fs: Arc<SimFs>) -> (u64, bool) {
    let mut acked = 0;
    if let Ok(mut r) = recover_with(fs, Duration::from_secs(1))
        && let Err(e) = r.engine.run(0, &mut acked)
    {
        return (acked, matches!(e, statespine::Error::TimedOut { .. }));
    }
    (acked, false)
}

#[derive(Debug, Default)]
struct Report {
    /// Crash points (operation × variant) checked.
    points: u64,
    /// Crashes during a recovery, recovered again and checked.
    recovery_crashes: u64,
    /// Recoveries whose state was checked against the model at their epoch.
    epochs: u64,
    /// Runs taken to the end after a recovery, final state checked.
    finals: u64,
    double: u64,
    lost: u64,
    /// Commits that timed out on a dead drainer instead of failing.
    timed_out: u64,
    /// Records recoveries discarded past their epoch.
    discarded: u64,
    /// Recoveries that returned an epoch older than an acknowledged commit.
    acked_lost: u64,
    failures: Vec<String>,
}

impl Report {
    fn fail(&mut self, msg: String) {
        if self.failures.len() < 20 {
            self.failures.push(msg);
        }
    }

    /// Compares a recovered or final state with the model's.
    fn compare(&mut self, got: statespine::Result<State>, want: &State, what: &str) {
        let got = match got {
            Ok(g) => g,
            Err(e) => return self.fail(format!("{what}: read failed: {e}")),
        };
        let (double, lost) = diff(&got, want);
        if double + lost > 0 {
            self.fail(format!("{what}: {double} inputs applied twice, {lost} lost"));
        }
        self.double += double;
        self.lost += lost;
    }
}

/// Recovers `image` (a crash after commits up to offset `acked` returned)
/// and checks the state against the model at the offset recovered; then
/// rewinds the source there, runs it to the end, checks the final state,
/// and checks it again after a power loss. Returns the offset recovered.
fn check(image: &Arc<SimFs>, acked: u64, what: &str, r: &mut Report) -> Option<u64> {
    let mut rec = match recover(Arc::clone(image)) {
        Ok(rec) => rec,
        Err(e) => {
            r.fail(format!("{what}: recovery failed: {e}"));
            return None;
        }
    };
    let offset = rec.offset;
    if offset < acked {
        r.acked_lost += 1;
        r.fail(format!(
            "{what}: recovered offset {offset} is older than the acknowledged {acked}"
        ));
    }
    if offset % COMMIT_EVERY != 0 || offset > EVENTS {
        r.fail(format!("{what}: recovered offset {offset} was never committed"));
    }
    r.compare(
        rec.engine.read(),
        &model(offset),
        &format!("{what}, recovered at {offset}"),
    );
    r.epochs += 1;
    r.discarded += rec.discarded;
    let mut done = 0;
    if let Err(e) = rec.engine.run(offset, &mut done) {
        r.fail(format!("{what}: the run from {offset} failed: {e}"));
        return Some(offset);
    }
    let end = model(EVENTS);
    r.compare(rec.engine.read(), &end, &format!("{what}, at the end"));
    // A power loss now: the end is committed, and what recovery discarded
    // stays discarded.
    let lost_power = Arc::new(image.image(CrashVariant::DropUnsynced, 0));
    drop(rec);
    match recover(lost_power) {
        Ok(mut again) if again.offset == EVENTS => {
            r.compare(
                again.engine.read(),
                &end,
                &format!("{what}, at the end after a power loss"),
            );
        }
        Ok(again) => r.fail(format!(
            "{what}: after the end, recovered offset {}",
            again.offset
        )),
        Err(e) => r.fail(format!("{what}: recovery after the end failed: {e}")),
    }
    r.finals += 1;
    Some(offset)
}

fn all() -> bool {
    std::env::var_os("CRASH_POINTS_ALL").is_some()
}

/// The crash-free run: its final state is the model's, and the number of
/// operations it takes.
fn crash_free() -> u64 {
    let fs = Arc::new(SimFs::new());
    let mut rec = recover(Arc::clone(&fs)).unwrap();
    let mut acked = 0;
    rec.engine.run(0, &mut acked).unwrap();
    assert_eq!(acked, EVENTS);
    assert_eq!(
        rec.engine.read().unwrap(),
        model(EVENTS),
        "the crash-free run is the model"
    );
    drop(rec);
    fs.ops()
}

/// Crashes the run at every `stride`-th operation from `first` under `variant` and
/// checks each crash point.
fn crash_points(variant: CrashVariant, first: u64, stride: u64, total: u64, r: &mut Report) {
    let mut k = first;
    while k <= total {
        let fs = Arc::new(SimFs::new());
        fs.crash_at(k);
        let (acked, timed_out) = crashed_run(Arc::clone(&fs));
        r.timed_out += u64::from(timed_out);
        let image = Arc::new(fs.image(variant, k));
        check(&image, acked, &format!("{variant:?} at op {k}/{total}"), r);
        r.points += 1;
        k += stride;
    }
}

fn report(name: &str, r: &Report) {
    eprintln!(
        "{name}: {} crash points (op x variant), {} crashes during recovery, {} epochs checked at recovery, {} runs to the end checked, records discarded {}, double-applied {}, lost {}, acknowledged epochs lost {} (commits timed out in a crashed run: {})",
        r.points,
        r.recovery_crashes,
        r.epochs,
        r.finals,
        r.discarded,
        r.double,
        r.lost,
        r.acked_lost,
        r.timed_out
    );
    assert!(
        r.failures.is_empty(),
        "{name}: {} failures, the first:\n{}",
        r.failures.len(),
        r.failures.join("\n")
    );
    assert_eq!((r.double, r.lost, r.acked_lost), (0, 0, 0));
}

#[test]
fn exactly_once_at_every_crash_point() {
    let total = crash_free();
    let mut r = Report::default();
    for (i, variant) in CrashVariant::ALL.into_iter().enumerate() {
        // Every point of the first variant; a stride (offset per variant)
        // of the others unless every point is asked for.
        let stride = if i == 0 || all() { 1 } else { 3 };
        let t = std::time::Instant::now();
        crash_points(variant, 1 + i as u64 % stride, stride, total, &mut r);
        eprintln!("{variant:?}: every {stride}. point, {:.1?}", t.elapsed());
    }
    eprintln!("{total} operations in the crash-free run");
    report("exactly once at every crash point", &r);
    assert!(r.points > total);
}

/// WAL segments of both shards on `fs`.
fn segments(fs: &SimFs) -> usize {
    use statespine::io::Fs;
    (0..2)
        .map(|s| {
            fs.list(std::path::Path::new(&format!("/db/shards/{s}/wal")))
                .map_or(0, |l| l.len())
        })
        .sum()
}

/// The crash image at op `k` (DropUnsynced) and its last acknowledged
/// commit; with it, how a clean recovery of it goes: the offset, whether
/// whole segments went, its operations, and the records it discarded.
fn discarding_image(k: u64) -> Option<(Arc<SimFs>, u64, u64, bool, u64, u64)> {
    let fs = Arc::new(SimFs::new());
    fs.crash_at(k);
    let (acked, _) = crashed_run(Arc::clone(&fs));
    let image = Arc::new(fs.image(CrashVariant::DropUnsynced, k));
    let copy = Arc::new(image.image(CrashVariant::DropUnsynced, 0));
    let before = segments(&copy);
    let rec = recover(Arc::clone(&copy)).ok()?;
    let ops = copy.ops();
    let (offset, discarded) = (rec.offset, rec.discarded);
    let deleted = segments(&copy) < before;
    drop(rec);
    (discarded > 0).then_some((image, acked, offset, deleted, ops, discarded))
}

/// A crash during recovery, at each of its operations, under a variant per
/// operation: the next recovery must return the same epoch with its state,
/// exactly, and the source run on from there must end in the crash-free
/// state, also after a power loss.
#[test]
fn exactly_once_when_recovery_itself_crashes() {
    let total = crash_free();
    let mut r = Report::default();
    let (mut images, mut with_deletes, mut budget) = (0, 0, if all() { u64::MAX } else { 8 });
    let mut k = 5;
    while k <= total && budget > 0 {
        let point = discarding_image(k);
        k += if all() { 1 } else { 13 };
        // By default, discards of many records: most delete whole
        // segments too (the "wal-discard" step).
        let Some((image, acked, offset, deleted, ops, _)) = point.filter(|p| p.5 >= 8 || all()) else {
            continue;
        };
        (images, with_deletes, budget) = (images + 1, with_deletes + u64::from(deleted), budget - 1);
        assert!(
            offset >= acked,
            "op {k}: recovered {offset}, acknowledged {acked}"
        );
        for j in 1..=ops {
            let fs = Arc::new(image.image(CrashVariant::DropUnsynced, 0));
            fs.crash_at(j);
            drop(recover(Arc::clone(&fs)));
            let variant = CrashVariant::ALL[(j % 6) as usize];
            let what = format!("crash at op {k}, recovery crashed at its op {j}/{ops} ({variant:?})");
            let again = check(&Arc::new(fs.image(variant, j)), offset, &what, &mut r);
            if again.is_some_and(|o| o != offset) {
                r.fail(format!(
                    "{what}: recovered {again:?}, the clean recovery {offset}"
                ));
            }
            r.recovery_crashes += 1;
        }
    }
    eprintln!(
        "{images} crash images whose recovery discards ({with_deletes} deleting whole WAL segments), recovery crashed at each of its operations"
    );
    report("exactly once when recovery itself crashes", &r);
    assert!(with_deletes > 0 && r.recovery_crashes > 100, "too few discards");
}

/// Regression (found here): a disk failure on one shard's log stops the
/// drainer thread, which failed that shard's watermark only; the other
/// shard's writes would never be durable, but its `wait_durable` (and an
/// epoch commit or checkpoint waiting on it) said so only at its timeout,
/// as `TimedOut` ("may still become durable") instead of `Poisoned`.
#[test]
fn a_dead_drainer_fails_every_shard_at_once() {
    let fs = Arc::new(SimFs::new());
    let mut rec = recover(Arc::clone(&fs)).unwrap();
    let shards = &mut rec.engine.shards;
    for s in shards.iter() {
        s.wait_durable(s.last_lsn(), Duration::from_secs(5)).unwrap();
    }
    fs.crash_at(fs.ops() + 1); // the disk dies: every operation from the next on fails
    let z = &rec.engine.count;
    let lsns = [
        shards[0].update(z[0], b"k", b"", 1).unwrap(),
        shards[1].update(z[1], b"k", b"", 1).unwrap(),
    ];
    for (s, lsn) in shards.iter().zip(lsns) {
        let t = std::time::Instant::now();
        let r = s.wait_durable(lsn, Duration::from_secs(10));
        assert!(
            matches!(r, Err(statespine::Error::Poisoned { .. })) && t.elapsed() < Duration::from_secs(2),
            "shard {}: {r:?} after {:?}",
            s.id(),
            t.elapsed()
        );
    }
}
