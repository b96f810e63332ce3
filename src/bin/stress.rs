//! `statespine-stress DIR`: the child of the kill -9 loop (`tests/kill9.rs`).
//!
//! Recovers the store at DIR (2 shards, small memtables and segments so that
//! merges, WAL rotation, checkpoints, retention and truncation all happen
//! within a second), then writes unique keys `s<shard>-<n>` with values
//! derived from them, forever, reporting on stdout:
//! - `START <shard> <n>`: the writes it recovered (and continues after);
//! - `RECOVERED <microseconds>`: recovery until the first read;
//! - `ACK <shard> <n>`: writes `0..n` of the shard are durable (a WAL sync
//!   or a checkpoint returned);
//! - `CKPT <epoch>`: a checkpoint committed.
//!
//! The parent kills it with SIGKILL at random; `STATESPINE_KILL_POINT` makes
//! it abort itself inside the library's named kill points too.
//!
//! `statespine-stress DIR --exactly-once [--verify]`: the exactly-once mode
//! (module `exactly_once`): a deterministic source into a Z-set count and a
//! latest value per key, epoch commits and checkpoints recording the
//! source's offset, continued from the recovered offset at startup; the
//! verifier checks the recovered state against the model at that offset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use statespine::run::RunMode;
use statespine::spine::SpineOptions;
use statespine::store::{CheckpointRequest, Options, RecoveryPoint, Shard};

/// The options the stress child and its verifier both open the store with.
fn options(dir: &str) -> Options {
    Options::new(dir)
        .recovery_point(RecoveryPoint::Latest)
        .shards(2)
        .spine_options(
            SpineOptions::new(RunMode::KeyValue)
                .memtable_size_bytes(32 << 10)
                .memory_budget_bytes(128 << 10)
                .fan_in(3),
        )
        .wal_segment_size(128 << 10)
        .max_retained(2)
}

fn key(shard: u32, n: u64) -> String {
    format!("s{shard}-{n:010}")
}

fn value(shard: u32, n: u64) -> Vec<u8> {
    let mut v = format!("v{shard}:{n}:").into_bytes();
    v.resize(24 + (n % 50) as usize, b'0' + (n % 10) as u8);
    v
}

/// How many of the shard's writes are present (they must be a prefix).
fn present(shard: &mut Shard) -> u64 {
    let Some(id) = shard.kv_spine("data") else {
        return 0;
    };
    let prefix = format!("s{}-", shard.id());
    shard.prefix(id, prefix.as_bytes()).unwrap().count() as u64
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: statespine-stress DIR");
    let flags: Vec<String> = std::env::args().skip(2).collect();
    let verify = flags.iter().any(|f| f == "--verify");
    if flags.iter().any(|f| f == "--exactly-once") {
        return exactly_once::main(&dir, verify);
    }
    let t = Instant::now();
    let mut state = options(&dir).recover().expect("recovery");
    let mut shards = state.store.take_shards();
    // Recovery ends at the first read.
    if let Some(id) = shards[0].kv_spine("data") {
        let _ = shards[0].get(id, key(0, 0).as_bytes()).expect("first read");
    }
    let recovered = t.elapsed();
    let mut next = Vec::new();
    let mut ids = Vec::new();
    for s in &mut shards {
        let id = s.create_kv("data").expect("spine");
        let n = present(s);
        // Every present write has its own value, in order.
        if verify {
            for i in 0..n {
                let got = s.get(id, key(s.id(), i).as_bytes()).unwrap();
                assert_eq!(got, Some(&value(s.id(), i)[..]), "shard {} write {i}", s.id());
            }
        }
        next.push(n);
        ids.push(id);
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    for (s, n) in next.iter().enumerate() {
        writeln!(out, "START {s} {n}").unwrap();
    }
    writeln!(out, "RECOVERED {}", recovered.as_micros()).unwrap();
    out.flush().unwrap();
    if verify {
        return;
    }
    let mut round = 0u64;
    loop {
        for (s, shard) in shards.iter_mut().enumerate() {
            for _ in 0..16 {
                let n = next[s];
                shard
                    .put(ids[s], key(s as u32, n).as_bytes(), &value(s as u32, n))
                    .unwrap();
                next[s] += 1;
            }
            shard.poll().unwrap();
        }
        round += 1;
        if round.is_multiple_of(4) {
            for (s, shard) in shards.iter().enumerate() {
                if shard
                    .wait_durable(shard.last_lsn(), Duration::from_secs(10))
                    .is_ok()
                {
                    writeln!(out, "ACK {s} {}", next[s]).unwrap();
                }
            }
            out.flush().unwrap();
        }
        if round.is_multiple_of(16) {
            // Not the recovered epoch + 1: recovering to the latest write
            // keeps an epoch only some shards committed, and epochs must
            // grow past every epoch the store holds.
            let epoch = state.store.next_epoch();
            let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
            state
                .store
                .checkpoint_inline(&mut refs, epoch, CheckpointRequest::default())
                .unwrap();
            writeln!(out, "CKPT {epoch}").unwrap();
            for (s, n) in next.iter().enumerate() {
                writeln!(out, "ACK {s} {n}").unwrap();
            }
            out.flush().unwrap();
        }
    }
}

/// The exactly-once mode: the child of `tests/kill9.rs`'s exactly-once loop.
///
/// The source: event `i` (its offset is `i + 1`) of block `i / KEYS` adds 1
/// to the count of one key and makes event `i` its latest value; each block
/// is a permutation of the keys (seeded by the block), so the state at any
/// offset has a closed form (`model`). Key `j` lives on shard `j % 2`.
///
/// The child recovers (the last committed epoch), takes the source's
/// offset from what it recovered, and runs the source from there forever:
/// an epoch commit every `COMMIT_EVERY` events, of which every
/// `CHECKPOINT_EVERY` is a checkpoint, each recording the offset. On stdout:
/// - `START <offset> <epoch> <discarded>`: what it recovered;
/// - `COMMIT <epoch> <offset>` / `CKPT <epoch> <offset>`: a commit returned.
///
/// The verifier (`--verify`) recovers, reads every key back with cursors,
/// and prints `VERIFIED <offset> <double> <lost> <keys>` after its `START`:
/// inputs the state holds more often than the model at the offset says
/// (double-applied) and fewer (lost), for counts and latest values.
mod exactly_once {
    use std::io::Write;

    use statespine::run::{EntryKind, RunMode};
    use statespine::spine::SpineOptions;
    use statespine::store::{CheckpointRequest, KvSpine, Options, RecoveredState, Shard, Store, ZSetSpine};

    const KEYS: u64 = 1024;
    const COMMIT_EVERY: u64 = 64;
    const CHECKPOINT_EVERY: u64 = 1024;

    fn mix(mut x: u64) -> u64 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// Block `b`'s order of the keys.
    fn perm(b: u64) -> Vec<u32> {
        let mut p: Vec<u32> = (0..KEYS as u32).collect();
        let mut seed = b ^ 0xE0_5EED;
        for i in (1..p.len()).rev() {
            seed = mix(seed);
            p.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        p
    }

    /// Where each key comes in block `b`.
    fn position(b: u64) -> Vec<u64> {
        let mut at = vec![0; KEYS as usize];
        for (i, j) in perm(b).into_iter().enumerate() {
            at[j as usize] = i as u64;
        }
        at
    }

    fn key(j: u64) -> String {
        format!("k{j:05}")
    }

    fn value(i: u64) -> Vec<u8> {
        let mut v = format!("{i}:").into_bytes();
        v.resize(16 + (mix(i) % 48) as usize, b'a' + (i % 26) as u8);
        v
    }

    /// The state after events `0..offset`: per key, its count and the
    /// event of its latest value.
    fn model(offset: u64) -> Vec<(i64, Option<u64>)> {
        let (b, r) = (offset / KEYS, offset % KEYS);
        let at = position(b);
        let before = (b > 0).then(|| position(b - 1));
        (0..KEYS as usize)
            .map(|j| {
                if at[j] < r {
                    (b as i64 + 1, Some(b * KEYS + at[j]))
                } else {
                    (b as i64, before.as_ref().map(|p| (b - 1) * KEYS + p[j]))
                }
            })
            .collect()
    }

    fn options(dir: &str) -> Options {
        Options::new(dir)
            .shards(2)
            .spine_options(
                SpineOptions::new(RunMode::KeyValue)
                    .memtable_size_bytes(16 << 10)
                    .memory_budget_bytes(64 << 10)
                    .fan_in(3),
            )
            // Small segments: the records recovery discards span some, so
            // the discard deletes whole segments ("wal-discard").
            .wal_segment_size(4 << 10)
            // 1 MiB rings: the default 8 MiB costs a debug build's open most
            // of the loop's shortest runs.
            .changelog_capacity(1 << 20, 1 << 14)
            // One checkpoint kept: retention then runs after each commit
            // (with two or more, the oldest goes inside the commit and the
            // "retention" kill point is never passed).
            .max_retained(1)
    }

    /// Per key: its count and latest value, as read back.
    type Read = Vec<(i64, Option<Vec<u8>>)>;

    struct Job {
        store: Store,
        shards: Vec<Shard>,
        count: Vec<ZSetSpine>,
        latest: Vec<KvSpine>,
        offset: u64,
    }

    /// Recovers the store at `dir` (default point: the last committed
    /// epoch); prints what it recovered.
    fn open(dir: &str, out: &mut impl Write) -> Job {
        let RecoveredState {
            source_offsets,
            epoch,
            discarded_records,
            mut store,
            ..
        } = options(dir).recover().expect("recovery");
        let offset = source_offsets.get("src").copied().unwrap_or(0);
        writeln!(out, "START {offset} {epoch} {discarded_records}").unwrap();
        out.flush().unwrap();
        let mut shards = store.take_shards();
        let count = shards
            .iter_mut()
            .map(|s| s.create_zset("count").unwrap())
            .collect();
        let latest = shards
            .iter_mut()
            .map(|s| s.create_kv("latest").unwrap())
            .collect();
        Job {
            store,
            shards,
            count,
            latest,
            offset,
        }
    }

    impl Job {
        /// The source from the recovered offset on, forever.
        fn run(&mut self, out: &mut impl Write) {
            let mut block = (u64::MAX, Vec::new());
            for i in self.offset.. {
                if block.0 != i / KEYS {
                    block = (i / KEYS, perm(i / KEYS));
                }
                let j = u64::from(block.1[(i % KEYS) as usize]);
                let s = (j % 2) as usize;
                let (k, shard) = (key(j), &mut self.shards[s]);
                shard.update(self.count[s], k.as_bytes(), b"", 1).unwrap();
                shard.put(self.latest[s], k.as_bytes(), &value(i)).unwrap();
                let offset = i + 1;
                if offset.is_multiple_of(16) {
                    for s in &mut self.shards {
                        s.poll().unwrap();
                    }
                }
                if offset.is_multiple_of(COMMIT_EVERY) {
                    self.commit(offset, out);
                }
            }
        }

        fn commit(&mut self, offset: u64, out: &mut impl Write) {
            let mut req = CheckpointRequest::default();
            req.source_offsets.insert("src".into(), offset);
            let epoch = self.store.next_epoch();
            let [a, b] = self.shards.as_mut_slice() else {
                unreachable!("two shards")
            };
            if offset.is_multiple_of(CHECKPOINT_EVERY) {
                self.store.checkpoint_inline(&mut [a, b], epoch, req).unwrap();
                writeln!(out, "CKPT {epoch} {offset}").unwrap();
            } else {
                self.store.commit_epoch_inline(&mut [a, b], epoch, &req).unwrap();
                writeln!(out, "COMMIT {epoch} {offset}").unwrap();
            }
            out.flush().unwrap();
        }

        /// Every key's count and latest value as read back: per key, its
        /// count, its latest value, and keys found on the wrong shard.
        fn read(&mut self) -> (Read, u64) {
            let mut got = vec![(0, None); KEYS as usize];
            let mut misplaced = 0;
            for (s, shard) in self.shards.iter_mut().enumerate() {
                let spines = [self.count[s].id(), self.latest[s].id()];
                for id in spines {
                    for e in shard.cursor(id).unwrap() {
                        let e = e.unwrap();
                        let j: usize = std::str::from_utf8(&e.key[1..]).unwrap().parse().unwrap();
                        misplaced += u64::from(j % 2 != s);
                        match e.kind {
                            EntryKind::Weight(w) => got[j].0 += w,
                            EntryKind::Put => got[j].1 = Some(e.value.to_vec()),
                            EntryKind::Delete => {}
                        }
                    }
                }
            }
            (got, misplaced)
        }
    }

    /// Inputs applied more often than the model says, and fewer.
    fn diff(got: &Read, want: &[(i64, Option<u64>)]) -> (u64, u64) {
        let (mut double, mut lost) = (0, 0);
        for ((count, latest), (want_count, want_latest)) in got.iter().zip(want) {
            double += (count - want_count).max(0) as u64;
            lost += (want_count - count).max(0) as u64;
            let event = latest.as_ref().and_then(|v| {
                let end = v.iter().position(|&b| b == b':')?;
                std::str::from_utf8(&v[..end]).ok()?.parse::<u64>().ok()
            });
            if event > *want_latest {
                double += 1;
            } else if event < *want_latest || latest.as_deref() != want_latest.map(value).as_deref() {
                lost += 1;
            }
        }
        (double, lost)
    }

    pub fn main(dir: &str, verify: bool) {
        let out = std::io::stdout();
        let mut out = out.lock();
        let mut job = open(dir, &mut out);
        if !verify {
            return job.run(&mut out);
        }
        let (got, misplaced) = job.read();
        let (double, lost) = diff(&got, &model(job.offset));
        let keys = got.iter().filter(|g| g.0 != 0).count();
        writeln!(
            out,
            "VERIFIED {} {} {lost} {keys}",
            job.offset,
            double + misplaced
        )
        .unwrap();
    }
}
