//! The kill -9 loop: a real process (`statespine-stress`) writes to a store
//! on the real file system, checkpoints, merges, and reports what is
//! acknowledged; this test kills it with SIGKILL at random moments, or lets
//! it abort itself at a named kill point inside a checkpoint commit,
//! retention, WAL truncation or a merge's publication; then a verifier
//! process recovers the same directory and checks that every acknowledged
//! write is there with its value and that what is there is a gap-free
//! prefix; then the loop goes on, on the same directory.
//!
//! `KILL9_ITERATIONS` (default 200 here; thousands for a long run:
//! `KILL9_ITERATIONS=3000 cargo test --release --features kill-points --test kill9 -- --nocapture`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
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
        cmd.arg(dir).stdout(Stdio::piped()).stderr(Stdio::null());
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
            other => panic!("the stress child ended otherwise: {status:?} ({other:?})"),
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
