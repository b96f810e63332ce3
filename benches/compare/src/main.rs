//! statespine side by side with RocksDB and fjall (issue 7).
//!
//! `cargo run --release -p statespine-compare -- [--entries N] [--runs R]
//! [--threads T] [--engines a,b] [--groups g,h] [--dir D] [--svg F] [--md F]
//! [--samples F] [--replot F]`
//!
//! The parent spawns itself once per (run, group, engine), engines in an
//! order rotated run by run, each in a fresh directory and process (its own
//! peak RSS); the children print `RESULT` lines, the parent prints every
//! option set, the medians and the ratios, and writes the chart.

mod engine;
mod engines;
mod report;
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use engine::{Config, Engine, Result};
use engines::fjall::Fjall;
#[cfg(feature = "rocksdb")]
use engines::rocks::Rocks;
use engines::statespine::Statespine;

pub const ENGINES: [&str; 3] = ["statespine", "rocksdb", "fjall"];
pub const GROUPS: [&str; 4] = ["main", "fillseq", "fillsync", "zset"];

#[derive(Debug, Clone)]
struct Args {
    entries: u64,
    runs: usize,
    threads: usize,
    engines: Vec<String>,
    groups: Vec<String>,
    dir: PathBuf,
    svg: Option<PathBuf>,
    md: Option<PathBuf>,
    samples: Option<PathBuf>,
    replot: Option<PathBuf>,
}

fn parse() -> Result<(Option<(String, String)>, Args)> {
    let mut args = Args {
        entries: 2_000_000,
        runs: 3,
        threads: 1,
        engines: ENGINES.iter().map(|s| s.to_string()).collect(),
        groups: GROUPS.iter().map(|s| s.to_string()).collect(),
        dir: PathBuf::from("target/compare"),
        svg: None,
        md: None,
        samples: None,
        replot: None,
    };
    let mut child = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--entries" => args.entries = val()?.parse()?,
            "--runs" => args.runs = val()?.parse()?,
            "--threads" => args.threads = val()?.parse()?,
            "--engines" => args.engines = val()?.split(',').map(str::to_string).collect(),
            "--groups" => args.groups = val()?.split(',').map(str::to_string).collect(),
            "--dir" => args.dir = val()?.into(),
            "--svg" => args.svg = Some(val()?.into()),
            "--md" => args.md = Some(val()?.into()),
            "--samples" => args.samples = Some(val()?.into()),
            "--replot" => args.replot = Some(val()?.into()),
            "--child" => {
                let engine = val()?;
                child = Some((engine, it.next().ok_or("--child needs an engine and a group")?));
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if args.threads == 0 || args.runs == 0 {
        return Err("--threads and --runs must be at least 1".into());
    }
    Ok((child, args))
}

fn run_group<E: Engine>(group: &str, args: &Args) -> Result<()> {
    let (n, t, dir) = (args.entries, args.threads, args.dir.as_path());
    match group {
        "main" => workload::main_group::<E>(n, t, dir),
        "fillrandom" => workload::fillrandom::<E>(n, t, dir),
        "fillseq" => workload::fillseq::<E>(n, t, dir),
        "fillsync" => workload::fillsync::<E>(n, t, dir),
        "zset" => workload::zset::<E>(n, t, dir),
        other => Err(format!("unknown group {other}").into()),
    }
}

fn child(engine: &str, group: &str, args: &Args) -> Result<()> {
    match engine {
        "statespine" => run_group::<Statespine>(group, args),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => run_group::<Rocks>(group, args),
        "fjall" => run_group::<Fjall>(group, args),
        other => Err(format!("unknown engine {other}").into()),
    }
}

fn describe(engine: &str, threads: usize, zset: bool) -> String {
    let cfg = Config { threads, zset };
    match engine {
        "statespine" => Statespine::describe(&cfg),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Rocks::describe(&cfg),
        "fjall" => Fjall::describe(&cfg),
        other => format!("unknown engine {other}"),
    }
}

/// metric -> engine -> one value per run.
pub type Samples = BTreeMap<String, BTreeMap<String, Vec<f64>>>;

fn spawn(engine: &str, group: &str, run: usize, args: &Args, samples: &mut Samples) -> Result<()> {
    let dir = args.dir.join(format!("{engine}-{group}-{run}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let out = Command::new(std::env::current_exe()?)
        .args(["--child", engine, group])
        .args([
            "--entries",
            &args.entries.to_string(),
            "--threads",
            &args.threads.to_string(),
        ])
        .arg("--dir")
        .arg(&dir)
        .output()?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        return Err(format!(
            "{engine} {group} run {run} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let mut line_out = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut parts = line.split_whitespace();
        if let (Some("RESULT"), Some(m), Some(v)) = (parts.next(), parts.next(), parts.next()) {
            let v: f64 = v.parse()?;
            line_out.push(format!("{m}={}", report::short(v)));
            samples
                .entry(m.to_string())
                .or_default()
                .entry(engine.to_string())
                .or_default()
                .push(v);
        }
    }
    eprintln!("  run {run} {group:<8} {engine:<10} {}", line_out.join(" "));
    Ok(())
}

fn parent(args: &Args) -> Result<()> {
    if let Some(p) = &args.replot {
        let samples = report::parse_samples(&std::fs::read_to_string(p)?).ok_or("bad samples file")?;
        return write_report(args, &samples);
    }
    std::fs::create_dir_all(&args.dir)?;
    let mut samples = Samples::new();
    eprintln!(
        "{} entries, {} thread(s), {} run(s); engines alternate run by run",
        args.entries, args.threads, args.runs
    );
    for run in 0..args.runs {
        for group in &args.groups {
            let k = args.engines.len();
            for i in 0..k {
                let engine = &args.engines[(i + run) % k];
                spawn(engine, group, run, args, &mut samples)?;
            }
        }
    }
    if let Some(p) = &args.samples {
        std::fs::write(p, report::samples_tsv(&samples))?;
    }
    write_report(args, &samples)
}

fn write_report(args: &Args, samples: &Samples) -> Result<()> {
    let options: Vec<(String, String)> = args
        .engines
        .iter()
        .map(|e| {
            let zset = describe(e, args.threads, true);
            let kv = describe(e, args.threads, false);
            (
                e.clone(),
                if zset == kv {
                    kv
                } else {
                    format!("{kv}. Z-set group: {zset}")
                },
            )
        })
        .collect();
    let md = report::markdown(samples, &options, args.entries, args.threads, args.runs);
    println!("{md}");
    if let Some(p) = &args.md {
        std::fs::write(p, &md)?;
    }
    let svg_path = args.svg.clone().unwrap_or_else(|| default_svg(args.threads));
    std::fs::write(
        &svg_path,
        report::svg(samples, args.entries, args.threads, args.runs),
    )?;
    eprintln!("chart: {}", svg_path.display());
    Ok(())
}

fn default_svg(threads: usize) -> PathBuf {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    docs.join(format!("compare-{threads}t.svg"))
}

fn main() {
    let result = parse().and_then(|(child_of, args)| match child_of {
        Some((engine, group)) => child(&engine, &group, &args),
        None => parent(&args),
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
