//! The kill -9 loop: a real process (`statespine-stress`) writes to a store
//! on the real file system, checkpoints, merges, and reports what is
//! acknowledged; this test kills it with SIGKILL at random moments, or lets
//! it abort itself at a named kill point inside a checkpoint commit,
//! retention, WAL truncation or a merge's publication; then a verifier
//! process recovers the same directory and checks that every acknowledged
//! write is there with its value and that what is there is a gap-free
//! prefix; then the loop goes on, on the same directory.
//!
//! The exactly-once loop (`kill_9_loop_exactly_once`) does the same with
//! the child's exactly-once mode: a deterministic source, epoch commits and
//! checkpoints recording its offset, resumed at the recovered offset; the
//! verifier recovers a copy of the directory (so that the next child's own
//! startup recovery does the discard, where the "wal-discard" kill point
//! may end it) and checks the state against the model at the recovered
//! offset: no input applied twice, none lost, no acknowledged epoch lost.
//!
//! `KILL9_ITERATIONS` (default 200 here, 120 for the exactly-once loop;
//! thousands for a long run:
//! `KILL9_ITERATIONS=3000 cargo test --release --features kill-points --test kill9 -- --nocapture`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_statespine-stress");
const POINTS: [&str; 8] = [
    "",
    "*",
    "checkpoint-before-sync",
    "checkpoint-before-rename",
    "checkpoint-after-rename",
    "retention",
    "wal-truncate",
    "merge-publish",
];

#[derive(Debug, Default)]
struct Run {
    start: [u64; 2],
    acked: [u64; 2],
    recovered_us: Option<u64>,
    checkpoints: u64,
}

fn parse(lines: impl BufRead) -> Run {
    let mut r = Run::default();
    for line in lines.lines() {
        let Ok(line) = line else { break };
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["START", s, n] => r.start[s.parse::<usize>().unwrap()] = n.parse().unwrap(),
            ["ACK", s, n] => {
                let s: usize = s.parse().unwrap();
                r.acked[s] = r.acked[s].max(n.parse().unwrap());
            }
            ["RECOVERED", us] => r.recovered_us = Some(us.parse().unwrap()),
            ["CKPT", _] => r.checkpoints += 1,
            _ => {}
        }
    }
    r
}

fn verify(dir: &str) -> Run {
    let out = Command::new(BIN).args([dir, "--verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "verifier failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&out.stdout[..])
}

#[test]
fn kill_9_loop_loses_nothing_acknowledged() {
    let iterations: u64 = std::env::var("KILL9_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let dir = dir.to_str().unwrap();
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut acked = [0u64; 2];
    let (mut kills, mut aborts_at_points, mut checkpoints) = (0u64, 0u64, 0u64);
    // Aborts inside a checkpoint's commit, its retention or the WAL
    // truncation that follows it.
    let mut aborts_in_checkpoint = 0u64;
    let mut recoveries = Vec::new();
    for it in 0..iterations {
        let point = POINTS[(it % POINTS.len() as u64) as usize];
        let mut cmd = Command::new(BIN);
        // The child's stderr goes to a file: a child that ends otherwise
        // than killed or aborted says why in the failure.
        let stderr_path = tmp.path().join("child.stderr");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        cmd.arg(dir).stdout(Stdio::piped()).stderr(Stdio::from(stderr));
        if !point.is_empty() {
            cmd.env("STATESPINE_KILL_POINT", point)
                .env("STATESPINE_KILL_PROB", "0.05");
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || parse(BufReader::new(stdout)));
        std::thread::sleep(Duration::from_millis(20 + rand() % 200));
        let _ = child.kill(); // SIGKILL, unless it already aborted
        let status = child.wait().unwrap();
        match status.signal() {
            Some(9) => kills += 1,
            Some(6) => {
                aborts_at_points += 1;
                if point.starts_with("checkpoint") || point == "retention" || point == "wal-truncate" {
                    aborts_in_checkpoint += 1;
                }
            }
            other => panic!(
                "the stress child ended otherwise: {status:?} ({other:?}); its stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            ),
        }
        let run = reader.join().unwrap();
        checkpoints += run.checkpoints;
        for s in 0..2 {
            assert!(
                run.start[s] >= acked[s] || run.recovered_us.is_none(),
                "iteration {it}: shard {s} started at {} below the acknowledged {}",
                run.start[s],
                acked[s]
            );
            acked[s] = acked[s].max(run.acked[s]);
        }
        // A separate process recovers and checks every present write's value.
        let v = verify(dir);
        for s in 0..2 {
            assert!(
                v.start[s] >= acked[s],
                "iteration {it} (kill point {point:?}): shard {s} has {} writes, {} were acknowledged",
                v.start[s],
                acked[s]
            );
        }
        recoveries.push(v.recovered_us.unwrap());
    }
    recoveries.sort_unstable();
    let p = |q: f64| recoveries[((recoveries.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    eprintln!(
        "kill -9 loop: {iterations} iterations, {kills} SIGKILLs, {aborts_at_points} aborts at kill points ({aborts_in_checkpoint} inside a checkpoint, its retention or WAL truncation), {checkpoints} checkpoints committed, {} acknowledged writes verified present with their values, lost 0, wrong 0; recovery p50 {:.1} ms, p99 {:.1} ms",
        acked[0] + acked[1],
        p(0.5),
        p(0.99)
    );
    assert!(checkpoints > 0);
}

/// The exactly-once loop's kill points, with the probability of firing at
/// each pass: "" kills at random only; "wal-discard" fires only inside the
/// child's startup recovery, while it deletes WAL segments past the epoch.
const EO_POINTS: [(&str, &str); 9] = [
    ("", "0"),
    ("*", "0.02"),
    ("wal-discard", "0.5"),
    ("checkpoint-before-sync", "0.3"),
    ("checkpoint-before-rename", "0.3"),
    ("checkpoint-after-rename", "0.3"),
    ("retention", "0.3"),
    ("wal-truncate", "0.3"),
    ("merge-publish", "0.05"),
];

/// What an exactly-once child or verifier printed.
#[derive(Debug, Default)]
struct EoRun {
    /// `START`: the offset and epoch recovered, the records discarded.
    start: Option<(u64, u64, u64)>,
    /// The offset of the last commit that returned.
    acked: u64,
    commits: u64,
    checkpoints: u64,
    /// `VERIFIED`: offset, double-applied, lost, keys.
    verified: Option<[u64; 4]>,
}

fn parse_eo(lines: impl BufRead) -> EoRun {
    let mut r = EoRun::default();
    let num = |s: &str| s.parse::<u64>().unwrap();
    for line in lines.lines() {
        let Ok(line) = line else { break };
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["START", o, e, d] => r.start = Some((num(o), num(e), num(d))),
            ["COMMIT" | "CKPT", _, o] => {
                r.acked = r.acked.max(num(o));
                r.commits += 1;
                r.checkpoints += u64::from(line.starts_with("CKPT"));
            }
            ["VERIFIED", o, d, l, k] => r.verified = Some([num(o), num(d), num(l), num(k)]),
            _ => {}
        }
    }
    r
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Recovers a copy of `dir` in a separate process (the directory itself
/// keeps what its next child's recovery must discard).
fn verify_eo(dir: &Path) -> Result<EoRun, String> {
    let copy = dir.with_extension("verify");
    let _ = std::fs::remove_dir_all(&copy);
    copy_dir(dir, &copy);
    let out = Command::new(BIN)
        .arg(&copy)
        .args(["--exactly-once", "--verify"])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(format!(
            "verifier failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(parse_eo(&out.stdout[..]))
}

/// Counts of the exactly-once loop.
#[derive(Debug, Default)]
struct EoCounts {
    /// Per armed point: SIGKILLs, aborts at the point.
    kills: BTreeMap<&'static str, (u64, u64)>,
    commits: u64,
    checkpoints: u64,
    verified: u64,
    epochs: BTreeSet<u64>,
    discarded_at_startup: u64,
    double: u64,
    lost: u64,
    acked_lost: u64,
    failures: Vec<String>,
}

/// One child of the exactly-once loop, armed at `point`: killed after
/// `wait` unless it aborted itself first. What it printed, and the signal
/// that ended it.
fn eo_child(dir: &Path, (point, prob): (&str, &str), wait: Duration) -> (EoRun, Option<i32>) {
    let mut cmd = Command::new(BIN);
    cmd.arg(dir)
        .arg("--exactly-once")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if !point.is_empty() {
        cmd.env("STATESPINE_KILL_POINT", point)
            .env("STATESPINE_KILL_PROB", prob);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || parse_eo(BufReader::new(stdout)));
    std::thread::sleep(wait);
    let _ = child.kill(); // SIGKILL, unless it already aborted
    let status = child.wait().unwrap();
    (reader.join().unwrap(), status.signal())
}

#[test]
fn kill_9_loop_exactly_once() {
    let iterations: u64 = std::env::var("KILL9_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut seed = 0x0e0e_1234_5678_9abcu64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut c = EoCounts::default();
    // The offset the last verification recovered, and of the last commit a
    // child saw return.
    let (mut verified, mut acked) = (0u64, 0u64);
    for it in 0..iterations {
        let armed = EO_POINTS[(it % EO_POINTS.len() as u64) as usize];
        let (run, signal) = eo_child(&dir, armed, Duration::from_millis(20 + rand() % 200));
        let kills = c.kills.entry(armed.0).or_default();
        match signal {
            Some(9) => kills.0 += 1,
            Some(6) => kills.1 += 1,
            other => {
                c.failures
                    .push(format!("iteration {it}: the child ended otherwise ({other:?})"));
                break;
            }
        }
        if let Some((offset, _, discarded)) = run.start {
            c.discarded_at_startup += discarded;
            if offset != verified {
                c.failures.push(format!(
                    "iteration {it}: the child started at {offset}, the verifier recovered {verified}"
                ));
            }
        }
        acked = acked.max(run.acked);
        (c.commits, c.checkpoints) = (c.commits + run.commits, c.checkpoints + run.checkpoints);
        let v = verify_eo(&dir).unwrap_or_else(|e| {
            c.failures.push(format!("iteration {it}: {e}"));
            EoRun::default()
        });
        let (Some((_, epoch, _)), Some([offset, double, lost, _])) = (v.start, v.verified) else {
            break; // the failure is noted: the loop cannot go on
        };
        let what = format!("iteration {it} (armed {:?}): recovered offset {offset}", armed.0);
        if offset < acked || offset < verified {
            c.acked_lost += 1;
            c.failures.push(format!(
                "{what}, acknowledged {acked}, verified before {verified}"
            ));
        }
        if double + lost > 0 {
            c.failures
                .push(format!("{what}: {double} inputs applied twice, {lost} lost"));
        }
        (c.double, c.lost, c.verified) = (c.double + double, c.lost + lost, c.verified + 1);
        c.epochs.insert(epoch);
        verified = offset;
    }
    report_eo(iterations, verified, &c);
}

fn report_eo(iterations: u64, offset: u64, c: &EoCounts) {
    let kills: u64 = c.kills.values().map(|k| k.0 + k.1).sum();
    let per_point: Vec<String> = c
        .kills
        .iter()
        .map(|(p, (k, a))| format!("{:?}: {k} SIGKILL + {a} aborts at the point", p))
        .collect();
    eprintln!(
        "kill -9 loop, exactly once: {kills} of {iterations} iterations done, {kills} kills ({}); {} commits acknowledged ({} checkpoints), {} recoveries verified ({} distinct epochs, last offset {offset}), {} records discarded by the children's own startup recoveries; double-applied {}, lost {}, acknowledged epochs lost {}",
        per_point.join(", "),
        c.commits,
        c.checkpoints,
        c.verified,
        c.epochs.len(),
        c.discarded_at_startup,
        c.double,
        c.lost,
        c.acked_lost
    );
    assert!(
        c.failures.is_empty(),
        "{} failures, the first:\n{}",
        c.failures.len(),
        c.failures[..c.failures.len().min(20)].join("\n")
    );
    assert_eq!((c.double, c.lost, c.acked_lost), (0, 0, 0));
    assert!(c.commits > 0 && c.checkpoints > 0);
}
