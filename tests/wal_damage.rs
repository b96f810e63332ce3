//! Damage at the end of the WAL is never a silent loss of acknowledged
//! writes (`format/wal.md`, "Reading and recovery rules"; DESIGN invariants
//! 2 and 4).
//!
//! The sweep: a store shut in each way a user can, then, over the last
//! records of the newest segment that holds records and over the newest
//! segment file, a truncation at every byte, zeros over each record's fields,
//! the whole record, the rest of the file and each 512-byte sector, and a
//! flipped byte at every offset. Recovery must bring back every acknowledged
//! write with its value, or fail with a typed corruption error naming a file
//! of the damaged log. The WAL-level tests pin the three rules that make it
//! so: a checkpoint's cut is known durable, a torn sealed segment still names
//! where the log ends, and the header walk below the replay point never
//! trusts a damaged length.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use statespine::Error;
use statespine::io::{Fs, MemFs};
use statespine::run::RunMode;
use statespine::spine::SpineOptions;
use statespine::store::{CheckpointRequest, Options, RecoveryPoint, Shard};
use statespine::wal::{RecoveryMode, SyncPolicy, WalOptions, WriteAheadLog, replay};

const ROOT: &str = "/db";
const WAIT: Duration = Duration::from_secs(10);
const SHARDS: u32 = 2;
/// Writes per shard: with 1 KiB segments, the newest segment that holds
/// records holds 11 of them.
const WRITES: u32 = 100;
/// The last records of a segment the sweep damages.
const LAST_RECORDS: usize = 4;

fn options(fs: MemFs) -> Options {
    Options::new(ROOT)
        .recovery_point(RecoveryPoint::Latest)
        .fs(Arc::new(fs))
        .shards(SHARDS)
        .spine_options(SpineOptions::new(RunMode::KeyValue).memtable_size_bytes(4 << 10))
        .wal_segment_size(1024)
        .sync_policy(SyncPolicy::EveryRecords(8))
        // Small rings: a recovery per injection stays cheap.
        .changelog_capacity(64 << 10, 1 << 10)
}

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:04}").into_bytes()
}

fn value(shard: u32, i: u32) -> Vec<u8> {
    vec![(i * 7 + shard) as u8; 8 + (i % 13) as usize]
}

/// How the store stopped before the damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Every write acknowledged, the shards dropped, `Store::close`.
    Close,
    /// `Store::shutdown`: memtables flushed, a final checkpoint, close.
    Shutdown,
    /// A checkpoint half-way, more acknowledged writes, close.
    CheckpointThenClose,
    /// Every write acknowledged and checkpointed, then the process ends
    /// without closing (what the files hold after a kill once the
    /// checkpoint returned): the newest segment is not sealed, and only the
    /// checkpoint knows how far the log was durable.
    CheckpointThenKill,
    /// A checkpoint half-way, more acknowledged writes, then the process
    /// ends without closing.
    WritesAfterCheckpointThenKill,
    /// Every write acknowledged, no checkpoint, the process ends without
    /// closing.
    Kill,
}

/// Writes `WRITES` records to every shard (all acknowledged), stops as
/// `stop` says; returns the durable image and the last checkpoint's cut as
/// a write count (0 without one).
fn stopped_store(stop: Stop) -> (MemFs, u32) {
    let fs = MemFs::new();
    let mut store = options(fs.clone()).open().unwrap();
    let mut shards = store.take_shards();
    let ids: Vec<_> = shards.iter_mut().map(|s| s.create_kv("kv").unwrap()).collect();
    let write = |shards: &mut [Shard], range: std::ops::Range<u32>| {
        for (n, s) in shards.iter_mut().enumerate() {
            for i in range.clone() {
                s.put(ids[n], &key(i), &value(n as u32, i)).unwrap();
            }
            s.wait_durable(s.last_lsn(), WAIT).unwrap();
        }
    };
    let cut = match stop {
        Stop::Close | Stop::Kill => 0,
        Stop::Shutdown | Stop::CheckpointThenKill => WRITES,
        Stop::CheckpointThenClose | Stop::WritesAfterCheckpointThenKill => WRITES / 2,
    };
    write(&mut shards, 0..cut);
    if cut > 0 && stop != Stop::Shutdown {
        let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
        store
            .checkpoint_inline(&mut refs, 1, CheckpointRequest::default())
            .unwrap();
    }
    write(&mut shards, cut..WRITES);
    let killed = fs.crash();
    match stop {
        Stop::Shutdown => {
            store.shutdown(shards, 1, CheckpointRequest::default()).unwrap();
        }
        _ => {
            drop(shards);
            store.close().unwrap();
        }
    }
    match stop {
        Stop::Close | Stop::Shutdown | Stop::CheckpointThenClose => (fs.crash(), cut),
        _ => (killed, cut),
    }
}

/// Shard `n`'s segments, oldest first.
fn segments(fs: &MemFs, n: u32) -> Vec<PathBuf> {
    let dir = Path::new(ROOT).join("shards").join(n.to_string()).join("wal");
    let mut names: Vec<String> = fs
        .list(&dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".wal"))
        .collect();
    names.sort();
    names.into_iter().map(|n| dir.join(n)).collect()
}

/// Offsets where the records of a segment start, by their length fields.
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 64;
    while at + 24 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if at + 24 + len > bytes.len() {
            break;
        }
        out.push(at);
        at += 24 + len;
    }
    out
}

#[derive(Debug, Clone)]
enum Damage {
    Truncate(usize),
    Zero(usize, usize),
    Flip(usize, u8),
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Truncate(at) => write!(f, "truncated at {at}"),
            Damage::Zero(a, b) => write!(f, "zeros over {a}..{b}"),
            Damage::Flip(at, mask) => write!(f, "byte {at} xor {mask:#04x}"),
        }
    }
}

impl Damage {
    fn apply(&self, bytes: &mut Vec<u8>) {
        match *self {
            Damage::Truncate(at) => bytes.truncate(at),
            Damage::Zero(a, b) => bytes[a..b].fill(0),
            Damage::Flip(at, mask) => bytes[at] ^= mask,
        }
    }
}

/// The damage the sweep injects into a segment of these bytes: over its
/// last `LAST_RECORDS` records, or over the header of a segment without
/// records.
fn injections(bytes: &[u8]) -> Vec<Damage> {
    let starts = record_starts(bytes);
    let len = bytes.len();
    let region = starts.len().saturating_sub(LAST_RECORDS);
    let from = starts.get(region).copied().unwrap_or(0);
    let mut out: Vec<Damage> = (from..len).map(Damage::Truncate).collect();
    // A bit at every offset (a different one each time), and the whole
    // byte of every length field.
    out.extend((from..len).map(|at| Damage::Flip(at, 1 << (at % 8))));
    for &s in &starts[region..] {
        out.extend((s..s + 4).map(|at| Damage::Flip(at, 0xff)));
    }
    let ends: Vec<usize> = starts.iter().skip(1).copied().chain([len]).collect();
    for (&s, &e) in starts.iter().zip(&ends).skip(region) {
        // len, crc, lsn, the whole frame header, the record, the rest.
        for (a, b) in [
            (s, s + 4),
            (s + 4, s + 8),
            (s + 8, s + 16),
            (s, s + 24),
            (s, e),
            (s, len),
        ] {
            out.push(Damage::Zero(a, b));
        }
    }
    if starts.is_empty() {
        out.push(Damage::Zero(0, len));
    }
    let mut sector = from / 512 * 512;
    while sector < len {
        out.push(Damage::Zero(sector, (sector + 512).min(len)));
        sector += 512;
    }
    out
}

/// The writes of each shard recovery lost or got wrong (empty: none).
fn lost_writes(image: MemFs) -> Result<Vec<Vec<u32>>, Error> {
    let mut state = options(image).recover()?;
    let shards = state.store.take_shards();
    Ok(shards
        .iter()
        .enumerate()
        .map(|(n, s)| match s.kv_spine("kv") {
            None => (0..WRITES).collect(),
            Some(id) => (0..WRITES)
                .filter(|&i| s.get(id, &key(i)).unwrap() != Some(&value(n as u32, i)[..]))
                .collect(),
        })
        .collect())
}

#[derive(Debug, Default)]
struct Outcomes {
    injected: usize,
    full: usize,
    errors: usize,
    /// What each silent loss was: the injection and the writes lost.
    silent: Vec<(String, Vec<u32>)>,
}

/// Damages, one at a time, the last records of shard `shard`'s newest
/// segment that holds records, and its newest segment if that is another;
/// recovers each image.
fn sweep(stop: Stop, shard: u32) -> Outcomes {
    let (image, _) = stopped_store(stop);
    let segs = segments(&image, shard);
    let newest = segs.last().cloned().unwrap();
    let with_records = segs
        .iter()
        .rev()
        .find(|p| !record_starts(&image.read(p).unwrap()).is_empty())
        .cloned()
        .unwrap();
    let mut targets = vec![with_records];
    if newest != targets[0] {
        targets.push(newest);
    }
    let mut out = Outcomes::default();
    for target in targets {
        let bytes = image.read(&target).unwrap();
        for damage in injections(&bytes) {
            let damaged = image.crash();
            let mut b = bytes.clone();
            damage.apply(&mut b);
            damaged.write(&target, &b).unwrap();
            out.injected += 1;
            let what = format!("{stop:?}, {} {damage}", target.display());
            match lost_writes(damaged) {
                Ok(lost) if lost.iter().all(Vec::is_empty) => out.full += 1,
                Ok(lost) => out.silent.push((what, lost[shard as usize].clone())),
                Err(e) => {
                    let Error::Corruption { path, .. } = &e else {
                        panic!("{what}: not a typed corruption error: {e}")
                    };
                    assert!(
                        path.starts_with(target.parent().unwrap()),
                        "{what}: the error names {}: {e}",
                        path.display()
                    );
                    out.errors += 1;
                }
            }
        }
    }
    out
}

#[test]
fn newest_segment_damage_is_recovered_in_full_or_an_error() {
    let mut total = Outcomes::default();
    for (stop, shard) in [
        (Stop::Close, 0),
        (Stop::Shutdown, 1),
        (Stop::CheckpointThenClose, 0),
        (Stop::CheckpointThenKill, 1),
    ] {
        let o = sweep(stop, shard);
        eprintln!(
            "{stop:?}: {} injections: {} recovered in full, {} errors, {} silent losses",
            o.injected,
            o.full,
            o.errors,
            o.silent.len()
        );
        total.injected += o.injected;
        total.full += o.full;
        total.errors += o.errors;
        total.silent.extend(o.silent);
    }
    for (what, lost) in &total.silent {
        eprintln!("silent loss: {what}: writes {lost:?}");
    }
    eprintln!(
        "wal damage: {} injections: {} recovered in full, {} errors, {} silent losses",
        total.injected,
        total.full,
        total.errors,
        total.silent.len()
    );
    assert!(total.full > 0 && total.errors > 0);
    assert!(
        total.silent.is_empty(),
        "{} injections lost acknowledged writes without an error",
        total.silent.len()
    );
}

/// The limit: in a log that was neither sealed nor checkpointed past its
/// last records (the process ended after they were acknowledged), damage
/// that leaves nothing valid after it looks exactly like a torn write and is
/// trimmed like one. What is lost is then only writes after the last
/// checkpoint's cut, and a suffix of them: every write up to the cut is
/// back, or recovery fails.
#[test]
fn damage_past_the_last_checkpoint_of_a_killed_store_loses_at_most_a_suffix_past_the_cut() {
    for stop in [Stop::WritesAfterCheckpointThenKill, Stop::Kill] {
        let (_, cut) = stopped_store(stop);
        let o = sweep(stop, 0);
        for (what, lost) in &o.silent {
            assert!(lost[0] >= cut, "{what}: a write up to the cut was lost: {lost:?}");
            assert_eq!(
                lost,
                &(lost[0]..WRITES).collect::<Vec<_>>(),
                "{what}: not a suffix"
            );
        }
        eprintln!(
            "{stop:?} (cut after write {cut}): {} injections: {} recovered in full, {} errors, {} lost a suffix past the cut",
            o.injected,
            o.full,
            o.errors,
            o.silent.len()
        );
    }
}

// ---- The log's rules, one by one --------------------------------------

const DIR: &str = "/wal";

fn wal_opts() -> WalOptions {
    WalOptions::new(7).segment_size_bytes(1 << 20)
}

/// A synced log holding one record per payload (LSNs from 1), in one
/// segment; returns its path.
fn log_of(fs: &MemFs, payloads: &[Vec<u8>]) -> PathBuf {
    let mut wal = WriteAheadLog::open(Arc::new(fs.clone()), DIR, wal_opts()).unwrap();
    for p in payloads {
        wal.append(1, p).unwrap();
    }
    wal.sync().unwrap();
    Path::new(DIR).join(fs.list(Path::new(DIR)).unwrap()[0].clone())
}

/// Records as `(lsn, payload)`.
type Records = Vec<(u64, Vec<u8>)>;

/// Opens the log, collecting the records handed over from `from` on.
fn open_from(fs: &MemFs, opts: WalOptions) -> statespine::Result<(WriteAheadLog, Records)> {
    let mut got = Vec::new();
    let wal = WriteAheadLog::open_replaying(Arc::new(fs.clone()), DIR, opts, |f| {
        got.push((f.lsn, f.payload.to_vec()));
        Ok(())
    })?;
    Ok((wal, got))
}

#[test]
fn a_damaged_length_below_the_replay_point_never_hides_the_records_after_it() {
    // Records 1..=10 of 50 bytes, 11..=18 of 104 (128-byte frames, 1 KiB in
    // all): a flip of bit 10 of record 10's length makes the header walk
    // jump exactly to the end of the file.
    let payloads: Vec<Vec<u8>> = (1..=18u8)
        .map(|i| vec![i; if i <= 10 { 50 } else { 104 }])
        .collect();
    let fs = MemFs::new();
    let path = log_of(&fs, &payloads);
    let bytes = fs.read(&path).unwrap();
    let starts = record_starts(&bytes);
    let want: Records = (11..=18).map(|i| (i, payloads[i as usize - 1].clone())).collect();
    let (mut full, mut errors) = (0, 0);
    for &s in &starts[..10] {
        for at in s..s + 4 {
            for mask in [1u8, 2, 4, 8, 16, 32, 64, 128, 0xff] {
                let damaged = fs.crash();
                let mut b = bytes.clone();
                b[at] ^= mask;
                damaged.write(&path, &b).unwrap();
                let what = format!("byte {at} xor {mask:#04x}");
                match open_from(&damaged, wal_opts().scan_from(11)) {
                    Ok((wal, got)) => {
                        assert_eq!((wal.next_lsn(), &got), (19, &want), "{what}");
                        full += 1;
                    }
                    Err(e) => {
                        assert!(e.is_corruption(), "{what}: {e}");
                        assert_eq!(
                            damaged.read(&path).unwrap(),
                            b,
                            "{what}: a refused open trims nothing"
                        );
                        errors += 1;
                    }
                }
            }
        }
    }
    // The jump to the end is damage, named at record 10.
    let damaged = fs.crash();
    let mut b = bytes.clone();
    b[starts[9] + 1] ^= 0x04;
    damaged.write(&path, &b).unwrap();
    let err = open_from(&damaged, wal_opts().scan_from(11)).unwrap_err();
    let Error::Corruption { path: p, offset, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!((p, *offset), (&path, starts[9] as u64), "{err}");
    // A length is under its record's crc: every such flip is found.
    assert_eq!((full, errors), (0, 10 * 4 * 9));
}

#[test]
fn a_log_that_ends_before_its_known_durable_lsn_is_refused_untouched() {
    let payloads: Vec<Vec<u8>> = (1..=20u8).map(|i| vec![i; 30 + usize::from(i)]).collect();
    let fs = MemFs::new();
    let path = log_of(&fs, &payloads);
    let bytes = fs.read(&path).unwrap();
    let starts = record_starts(&bytes);
    let last = starts[19];
    // Damage a torn write cannot be told from by the log alone: a clean
    // truncation, zeros over the last record, a flip in it.
    let mut flipped = bytes.clone();
    flipped[last + 30] ^= 0x10;
    let mut zeroed = bytes.clone();
    zeroed[last..].fill(0);
    for damaged_bytes in [bytes[..last].to_vec(), zeroed, flipped] {
        let damaged = fs.crash();
        damaged.write(&path, &damaged_bytes).unwrap();
        // Known durable up to 20 (a checkpoint's cut): corruption, where the
        // records stop, and nothing trimmed.
        let err = open_from(&damaged, wal_opts().known_durable(20)).unwrap_err();
        let Error::Corruption { path: p, offset, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!((p, *offset), (&path, last as u64), "{err}");
        assert!(err.to_string().contains("write-ahead log end"), "{err}");
        assert!(err.to_string().contains("LSN 19"), "{err}");
        assert_eq!(
            damaged.read(&path).unwrap(),
            damaged_bytes,
            "a refused open trims nothing"
        );
        // Known durable up to 19 only: the rest may be a torn write.
        let (wal, _) = open_from(&damaged, wal_opts().known_durable(19)).unwrap();
        assert_eq!(wal.next_lsn(), 20);
        drop(wal);
        // Salvage stays an explicit opt-in.
        let damaged = fs.crash();
        damaged.write(&path, &damaged_bytes).unwrap();
        let opts = wal_opts()
            .known_durable(20)
            .recovery(RecoveryMode::TolerateCorruption);
        assert_eq!(open_from(&damaged, opts).unwrap().0.next_lsn(), 20);
    }
}

#[test]
fn a_torn_sealed_segment_still_names_where_the_log_before_it_ends() {
    let fs = MemFs::new();
    let payloads: Vec<Vec<u8>> = (1..=20u8).map(|i| vec![i; 40]).collect();
    let path = log_of(&fs, &payloads);
    let mut wal = WriteAheadLog::open(Arc::new(fs.clone()), DIR, wal_opts()).unwrap();
    wal.seal().unwrap();
    drop(wal);
    let names = fs.list(Path::new(DIR)).unwrap();
    assert_eq!(names.len(), 2, "{names:?}");
    let sealed = Path::new(DIR).join(&names[1]);
    let bytes = fs.read(&path).unwrap();
    let cut = record_starts(&bytes)[18];

    // The sealed segment torn alone is a torn creation: it goes, nothing lost.
    let damaged = fs.crash();
    damaged.write(&sealed, &[0u8; 64]).unwrap();
    let (wal, _) = open_from(&damaged, wal_opts()).unwrap();
    assert_eq!(wal.next_lsn(), 21);
    drop(wal);

    // With the segment before it cut short too, its name says records
    // 19 and 20 are missing.
    for torn in [vec![0u8; 64], vec![], b"SSPNWAL".to_vec()] {
        let damaged = fs.crash();
        damaged.write(&path, &bytes[..cut]).unwrap();
        damaged.write(&sealed, &torn).unwrap();
        let err = open_from(&damaged, wal_opts()).unwrap_err();
        let Error::Corruption { path: p, offset, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!((p, *offset), (&path, cut as u64), "{err}");
        assert!(err.to_string().contains(&names[1]), "{err}");
        assert!(damaged.exists(&sealed).unwrap(), "a refused open removes nothing");
        let err = replay(&damaged, Path::new(DIR), 1, RecoveryMode::Strict, |_| Ok(())).unwrap_err();
        assert!(err.is_corruption(), "{err}");
    }
}

#[test]
fn a_torn_sealed_segment_above_unscanned_ones_keeps_them_in_the_log() {
    // Several segments, sealed: below the replay point only their headers
    // are read. A torn sealed segment goes; the log that continues must
    // still know the older segments, or truncation would never delete them.
    let fs = MemFs::new();
    let mut wal = WriteAheadLog::open(
        Arc::new(fs.clone()),
        DIR,
        WalOptions::new(7).segment_size_bytes(512),
    )
    .unwrap();
    for i in 1..=40u8 {
        wal.append(1, &[i; 40]).unwrap();
    }
    wal.sync().unwrap();
    wal.seal().unwrap();
    drop(wal);
    let names = fs.list(Path::new(DIR)).unwrap();
    assert!(names.len() >= 4, "{names:?}");
    let sealed = Path::new(DIR).join(names.last().unwrap());
    fs.write(&sealed, &[0u8; 64]).unwrap();
    let opts = WalOptions::new(7).segment_size_bytes(512).scan_from(41);
    let (mut wal, got) = open_from(&fs, opts).unwrap();
    assert!(got.is_empty());
    assert_eq!(wal.next_lsn(), 41);
    assert_eq!(wal.segment_count(), names.len());
    assert_eq!(wal.truncate_below(41).unwrap(), names.len() - 1);
    assert_eq!(fs.list(Path::new(DIR)).unwrap().len(), 1);
}
