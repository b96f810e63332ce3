//! The spine benchmark table: one process per workload (so each has its own
//! peak RSS), cooperative and background merging side by side.
//!
//! `cargo run --release --example spine_bench [-- --entries N] [--modes coop,background]`
//!
//! Single thread, 16-byte pseudo-random keys, 100-byte values, default
//! options, runs on the real file system under `target/spine-bench`.
//! Workloads: fillrandom, fillseq, readrandom present and absent (ops/s and
//! p99), full scan, Z-set updates (N updates over N/10 keys × 10 values),
//! and for fillrandom the merge_step latency histogram, write and space
//! amplification, and peak RSS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../benches/common/keys.rs"]
mod keys;

use keys::{key, mix};
use std::sync::Arc;
use std::time::{Duration, Instant};

use statespine::io::{Fs, StdFs};
use statespine::run::RunMode;
use statespine::spine::{MergeMode, Spine, SpineOptions};

/// Writes between two `merge_step` calls of the owner's loop.
const WRITES_PER_STEP: u64 = 64;
const VALUE_BYTES: usize = 100;

fn seq_key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.to_be_bytes());
    k
}

fn value(i: u64) -> [u8; VALUE_BYTES] {
    let mut v = [0x5a; VALUE_BYTES];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

struct Bench {
    spine: Spine,
    steps: Vec<Duration>,
    /// The steps that published a merge (sealed and opened its output).
    completing: Vec<Duration>,
    peak_anon_kib: u64,
}

impl Bench {
    fn new(dir: &std::path::Path, mode: RunMode, merge: MergeMode) -> Bench {
        let fs: Arc<dyn Fs> = Arc::new(StdFs::new());
        let _ = fs.remove_dir_all(dir);
        let opts = SpineOptions::new(mode).merge_mode(merge);
        Bench {
            spine: Spine::create(fs, dir, opts).unwrap(),
            steps: Vec::new(),
            completing: Vec::new(),
            peak_anon_kib: 0,
        }
    }

    /// The owner's loop: every `WRITES_PER_STEP` writes, one timed merge step.
    fn tick(&mut self, i: u64) {
        if i % WRITES_PER_STEP == WRITES_PER_STEP - 1 {
            let budget = self.spine.options().merge_budget();
            let t = Instant::now();
            let step = self.spine.merge_step(budget).unwrap();
            let d = t.elapsed();
            // Background mode: a step only publishes what the helper finished.
            if step.bytes > 0 || step.completed > 0 {
                self.steps.push(d);
                if step.completed > 0 {
                    self.completing.push(d);
                }
            }
        }
        if i.is_multiple_of(65_536) {
            self.peak_anon_kib = self.peak_anon_kib.max(status_kib("RssAnon:"));
        }
    }
}

/// One result, as a machine-readable line the driver collects:
/// name, merge mode, the figure the table ranks by, its unit, free detail.
fn row(name: &str, merge: &str, (value, unit): (f64, &str), extra: String) {
    println!("ROW\t{name}\t{merge}\t{value}\t{unit}\t{extra}");
}

fn mops(n: u64, d: Duration) -> (f64, &'static str) {
    (n as f64 / d.as_secs_f64() / 1e6, "M ops/s")
}

fn fill(dir: &std::path::Path, n: u64, merge: MergeMode, seq: bool) {
    let mut b = Bench::new(dir, RunMode::KeyValue, merge);
    let t = Instant::now();
    for i in 0..n {
        let k = if seq { seq_key(i) } else { key(i) };
        b.spine.put(&k, &value(i)).unwrap();
        b.tick(i);
    }
    let ingest = t.elapsed();
    let t = Instant::now();
    b.spine.settle().unwrap();
    let settle = t.elapsed();
    let name = if seq { "fillseq" } else { "fillrandom" };
    let label = format!("{merge:?}");
    row(
        name,
        &label,
        mops(n, ingest),
        format!("then settling merges took {settle:.2?}"),
    );
    if seq {
        return;
    }
    let st = b.spine.stats();
    b.steps.sort_unstable();
    let hist: Vec<String> = [0.5, 0.9, 0.99, 0.999, 1.0]
        .iter()
        .map(|&p| format!("p{}={:.0?}", p * 100.0, percentile(&b.steps, p)))
        .collect();
    b.completing.sort_unstable();
    row(
        "merge_step p99",
        &label,
        (percentile(&b.steps, 0.99).as_secs_f64() * 1e6, "µs"),
        format!(
            "{} steps: {}; {} published a merge (median {:.0?}, max {:.0?})",
            b.steps.len(),
            hist.join(" "),
            b.completing.len(),
            percentile(&b.completing, 0.5),
            percentile(&b.completing, 1.0)
        ),
    );
    let user = n * (16 + VALUE_BYTES as u64);
    row(
        "write amplification",
        &label,
        (st.bytes_written as f64 / st.bytes_put as f64, "×"),
        format!(
            "{} MB written for {} MB put",
            st.bytes_written / 1_000_000,
            st.bytes_put / 1_000_000
        ),
    );
    row(
        "peak RSS",
        &label,
        (status_kib("VmHWM:") as f64 / 1024.0, "MiB"),
        format!(
            "of it anonymous (sampled): {} MiB; memory budget {} MiB; stalled writes {}",
            b.peak_anon_kib / 1024,
            b.spine.options().memory_budget() >> 20,
            st.stalled_writes
        ),
    );
    reads(&mut b, n, &label);
    let settled = format!(
        "levels after settling {:?}",
        b.spine
            .levels()
            .iter()
            .map(|l| (l.level, l.batches))
            .collect::<Vec<_>>()
    );
    b.spine.compact().unwrap();
    row(
        "space amplification",
        &label,
        (b.spine.disk_size_bytes() as f64 / user as f64, "×"),
        format!("run bytes / key+value bytes after compact(); {settled}"),
    );
}

fn timed_reads(b: &Bench, n: u64, label: &str, absent: bool) {
    let ops: u64 = std::env::var("SPINE_BENCH_READS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut x = 12345u64;
    let t = Instant::now();
    let mut found = 0u64;
    for _ in 0..ops {
        x = mix(x);
        let i = if absent { n + x % n } else { x % n };
        if let Some(v) = b.spine.get(&key(i)).unwrap() {
            assert_eq!(v[..8], i.to_le_bytes());
            found += 1;
        }
    }
    let total = t.elapsed();
    assert_eq!(found, if absent { 0 } else { ops });
    let mut lat = Vec::with_capacity(100_000);
    for _ in 0..ops.min(100_000) {
        x = mix(x);
        let i = if absent { n + x % n } else { x % n };
        let t = Instant::now();
        std::hint::black_box(b.spine.get(&key(i)).unwrap());
        lat.push(t.elapsed());
    }
    lat.sort_unstable();
    let name = if absent {
        "readrandom absent"
    } else {
        "readrandom present"
    };
    row(
        name,
        label,
        mops(ops, total),
        format!(
            "p50 {:.0?} p99 {:.0?} (timed singly)",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        ),
    );
}

fn reads(b: &mut Bench, n: u64, label: &str) {
    timed_reads(b, n, label, false);
    timed_reads(b, n, label, true);
    // SPINE_BENCH_SCANS repeats the scan (for profiling); the last one counts.
    let scans: u32 = std::env::var("SPINE_BENCH_SCANS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let (mut count, mut d) = (0u64, Duration::ZERO);
    for _ in 0..scans {
        let t = Instant::now();
        count = 0;
        let mut c = b.spine.cursor().unwrap();
        while let Some(e) = c.current() {
            std::hint::black_box((e.key[0], e.value[0]));
            count += 1;
            c.advance().unwrap();
        }
        d = t.elapsed();
    }
    assert_eq!(count, n);
    row(
        "full scan",
        label,
        (n as f64 / d.as_secs_f64() / 1e6, "M entries/s"),
        format!("{d:.2?}"),
    );
}

fn zset(dir: &std::path::Path, n: u64, merge: MergeMode) {
    let mut b = Bench::new(dir, RunMode::ZSet, merge);
    let keys = (n / 10).max(1);
    let t = Instant::now();
    for i in 0..n {
        let x = mix(i);
        let (k, v) = (x % keys, (x >> 32) % 10);
        let w = if i % 4 == 3 { -1 } else { 1 };
        b.spine.update(&key(k), &v.to_le_bytes(), w).unwrap();
        b.tick(i);
    }
    let d = t.elapsed();
    b.spine.settle().unwrap();
    let probe = b.spine.values(&key(7)).unwrap().len();
    row(
        "Z-set updates",
        &format!("{merge:?}"),
        mops(n, d),
        format!("{keys} keys × 10 values; key 7 has {probe} values after settling"),
    );
}

/// name, merge mode, unit, and (value, detail) of every run.
type Row = (String, String, String, Vec<(f64, String)>);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let n: u64 = flag("--entries").map_or(2_000_000, |s| s.parse().expect("--entries N"));
    let modes = flag("--modes").unwrap_or_else(|| "coop,background".into());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/spine-bench");
    if let Some(only) = flag("--only") {
        let merge = if flag("--merge").as_deref() == Some("background") {
            MergeMode::Background
        } else {
            MergeMode::Cooperative
        };
        let dir = root.join(format!("{only}-{merge:?}"));
        match only.as_str() {
            "fillrandom" => fill(&dir, n, merge, false),
            "fillseq" => fill(&dir, n, merge, true),
            "zset" => zset(&dir, n, merge),
            other => panic!("unknown workload {other}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let runs: usize = flag("--runs").map_or(3, |s| s.parse().expect("--runs N"));
    println!("spine_bench: {n} entries, 16-byte keys, {VALUE_BYTES}-byte values, default options");
    println!("owner loop: one merge_step at the default budget every {WRITES_PER_STEP} writes");
    println!(
        "each workload runs {runs} times in a fresh process; median [min–max], detail from the median run\n"
    );
    println!("| workload | merge mode | median | range | detail |");
    println!("| --- | --- | --- | --- | --- |");
    let exe = std::env::current_exe().unwrap();
    for merge in modes.split(',') {
        for only in ["fillrandom", "fillseq", "zset"] {
            let mut rows: Vec<Row> = Vec::new();
            for _ in 0..runs {
                let out = std::process::Command::new(&exe)
                    .args(["--only", only, "--merge", merge, "--entries", &n.to_string()])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{only} {merge} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    let f: Vec<&str> = line.split('\t').collect();
                    let [_, name, mode, value, unit, detail] = f[..] else {
                        continue;
                    };
                    let v: f64 = value.parse().unwrap();
                    match rows.iter_mut().find(|r| r.0 == name) {
                        Some(r) => r.3.push((v, detail.to_string())),
                        None => rows.push((
                            name.into(),
                            mode.into(),
                            unit.into(),
                            vec![(v, detail.to_string())],
                        )),
                    }
                }
            }
            for (name, mode, unit, mut vals) in rows {
                vals.sort_by(|a, b| a.0.total_cmp(&b.0));
                let (med, detail) = &vals[vals.len() / 2];
                let (lo, hi) = (vals[0].0, vals[vals.len() - 1].0);
                println!("| {name} | {mode} | {med:.2} {unit} | {lo:.2}–{hi:.2} | {detail} |");
            }
        }
    }
}
