//! `statespine`: the operator's tool (feature `cli`). The commands that
//! look (info, checkpoints, verify, diff, dump, get, scan) are read-only:
//! they change no byte of the store and take no lock, so they are safe
//! beside a live store (`get` and `scan` run the library's recovery over a
//! copy-on-write overlay, `io::OverlayFs`: see `statespine/read.rs`). The
//! commands that write (compact, gc, push, restore) open the store as its
//! owner, taking its lock.
//!
//! ```text
//! statespine info STORE [--json]
//! statespine checkpoints STORE|URL [--json]
//! statespine verify STORE|CHECKPOINT [--depth manifest|footers|blocks] [--json]
//! statespine diff CHECKPOINT CHECKPOINT [--json]
//! statespine dump manifest CHECKPOINT [--json]
//! statespine dump run FILE [--limit N] [--json]
//! statespine dump wal SEGMENT [--limit N] [--json]
//! statespine get STORE KEY [--spine NAME] [--shard N] [--epoch E | --checkpoint ID] [--hex] [--json]
//! statespine scan STORE --spine NAME [--shard N] [--prefix P | --from A --to B] [--limit N]
//!                 [--epoch E | --checkpoint ID] [--hex] [--json]
//! statespine compact STORE [--json]                  (writes: takes the lock)
//! statespine gc STORE [--remote URL] [--json]        (writes: takes the lock)
//! statespine push STORE URL [--json]                 (feature `remote`; writes)
//! statespine restore URL STORE --shards N            (feature `remote`; writes STORE)
//! ```
//!
//! Exit codes: 0 clean, 1 damage found (`verify`, `dump wal`) or key not
//! found (`get`), 2 the path could not be read as a store or checkpoint,
//! or the command failed (one line on stderr, the library's error, naming
//! file and offset where it does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::sync::Arc;

use statespine::checkpoint::{
    CheckpointManifest, CheckpointStore, FileSystemCheckpointStore, MANIFEST_NAME, OperatorCheckpoint,
    ValidationDepth, ValidationReport, read_file, validate_checkpoint_with_progress,
};
use statespine::io::{Fs, StdFs};

// A bin target's root looks for modules beside it: they live in statespine/.
#[path = "statespine/maintain.rs"]
mod maintain;
#[path = "statespine/progress.rs"]
mod progress;
#[path = "statespine/read.rs"]
mod read;

#[derive(Parser)]
#[command(
    name = "statespine",
    version,
    about = "Look inside statespine stores, read them at an epoch, compact and push them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// What a store holds: its newest checkpoint's shards and spines (mode,
    /// runs, entries, bytes), each shard's WAL, the checkpoints retained and
    /// the lock's last holder.
    Info {
        /// The store directory.
        store: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The checkpoints a store retains, oldest first; given a bucket URL
    /// (feature `remote`), those its newest manifest retains.
    Checkpoints {
        /// The store directory, or a remote store's URL (`s3://...`).
        store: PathBuf,
        /// Show this checkpoint (its id, or a unique prefix of it) in full:
        /// every manifest field, its runs and its bytes.
        id: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Validates every retained checkpoint of a store, or one checkpoint
    /// directory. Exit code 0 clean, 1 damaged, 2 unreadable.
    Verify {
        /// A store directory or a checkpoint directory.
        path: PathBuf,
        /// How deep: the manifest and file sizes, plus run footers, or
        /// every byte.
        #[arg(long, value_enum, default_value = "footers")]
        depth: Depth,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Two checkpoints' runs: shared, added and removed, with their bytes
    /// (what an incremental checkpoint or push of the second wrote new).
    Diff {
        /// The older checkpoint directory.
        from: PathBuf,
        /// The newer checkpoint directory.
        to: PathBuf,
        /// Also the keys whose state differs (each checkpoint recovered
        /// read-only to its epoch), at most this many.
        #[arg(long, value_name = "LIMIT", num_args = 0..=1, require_equals = true, default_missing_value = "100")]
        keys: Option<u64>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Restores the newest remote checkpoint into an empty store
    /// directory (it writes, as compact, gc and push do), then checks it
    /// at blocks depth.
    #[cfg(feature = "remote")]
    Restore {
        /// The remote store's URL (configured from the AWS_*, GOOGLE_*,
        /// AZURE_* variables).
        url: String,
        /// The empty (or missing) store directory.
        store: PathBuf,
        /// The store's number of shards.
        #[arg(long)]
        shards: u32,
    },
    /// A key's value in the state recovery would return (the last
    /// committed epoch, or the one asked for), from every spine (or one)
    /// of every shard (or one). Read-only: recovery runs over an in-memory
    /// overlay, no byte of the store changes and no lock is taken. Exit
    /// code 1 if the key is not found.
    Get {
        /// The store directory.
        store: PathBuf,
        /// The key (UTF-8, or hex with --hex).
        key: String,
        /// Only this spine.
        #[arg(long)]
        spine: Option<String>,
        /// Only this shard.
        #[arg(long)]
        shard: Option<u32>,
        #[command(flatten)]
        at: read::At,
        /// Keys given in hex (`0x` optional).
        #[arg(long)]
        hex: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// A spine's entries in key order, merged over every shard (or one),
    /// in the state recovery would return. Read-only, as `get`.
    Scan {
        /// The store directory.
        store: PathBuf,
        /// The spine.
        #[arg(long)]
        spine: String,
        /// Only this shard.
        #[arg(long)]
        shard: Option<u32>,
        /// Only keys starting with this.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        prefix: Option<String>,
        /// Keys from this one (included).
        #[arg(long)]
        from: Option<String>,
        /// Keys before this one (excluded).
        #[arg(long)]
        to: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = u64::MAX)]
        limit: u64,
        #[command(flatten)]
        at: read::At,
        /// Keys given in hex (`0x` optional).
        #[arg(long)]
        hex: bool,
        /// Machine-readable output (one JSON object per line).
        #[arg(long)]
        json: bool,
    },
    /// Opens the store (taking its lock), merges each spine into one run
    /// and commits a checkpoint of the result (the recovered epoch's
    /// metadata, as the next epoch), so the next open uses the merged runs.
    /// Refuses if recovery would discard durable writes after the last
    /// committed epoch (see --discard-uncommitted).
    Compact {
        /// The store directory.
        store: PathBuf,
        /// Go on even if durable writes after the last committed epoch
        /// would be discarded (an owner recovering to the last committed
        /// epoch discards them anyway; one recovering to the latest write
        /// would lose them).
        #[arg(long)]
        discard_uncommitted: bool,
        /// Compress the merged runs with zstd at this level (1..=22); the
        /// store does not record its options, so without it they are not
        /// compressed.
        #[arg(long)]
        zstd: Option<i32>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Opens and closes the store (taking its lock): recovery removes
    /// half-written and retired checkpoints and unreferenced runs; says
    /// which files went. With --remote, also collects the bucket's garbage.
    Gc {
        /// The store directory.
        store: PathBuf,
        /// As for compact: go on even if durable writes after the last
        /// committed epoch would be discarded.
        #[arg(long)]
        discard_uncommitted: bool,
        /// A remote store's URL to collect too (feature `remote`).
        #[arg(long)]
        remote: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Opens the store pushing to a bucket (taking the lock, and fencing
    /// any other writer of the bucket), checkpoints it and waits for the
    /// push.
    #[cfg(feature = "remote")]
    Push {
        /// The store directory.
        store: PathBuf,
        /// The remote store's URL.
        url: String,
        /// As for compact: go on even if durable writes after the last
        /// committed epoch would be discarded.
        #[arg(long)]
        discard_uncommitted: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Prints a shell's completion script (`statespine completions bash >
    /// /etc/bash_completion.d/statespine`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Shows a file's contents.
    Dump {
        #[command(subcommand)]
        what: Dump,
    },
}

#[derive(Subcommand)]
enum Dump {
    /// A checkpoint's MANIFEST, every field.
    Manifest {
        /// The checkpoint directory (or its MANIFEST file).
        checkpoint: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// A run file's entries in key order (keys and values as UTF-8 where
    /// they are, else hex), every block checked as it is read.
    Run {
        /// The run file.
        file: PathBuf,
        /// At most this many entries.
        #[arg(long, default_value_t = u64::MAX)]
        limit: u64,
        /// Machine-readable output (one JSON object per line).
        #[arg(long)]
        json: bool,
    },
    /// A WAL segment's records: LSN, epoch, payload size, then how the
    /// records end (clean, a torn tail, or damage in the middle).
    Wal {
        /// The segment file.
        segment: PathBuf,
        /// At most this many records.
        #[arg(long, default_value_t = u64::MAX)]
        limit: u64,
        /// Machine-readable output (one JSON object per line).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Depth {
    Manifest,
    Footers,
    Blocks,
}

impl From<Depth> for ValidationDepth {
    fn from(d: Depth) -> Self {
        match d {
            Depth::Manifest => ValidationDepth::Manifest,
            Depth::Footers => ValidationDepth::Footers,
            Depth::Blocks => ValidationDepth::Blocks,
        }
    }
}

/// A failure that ends the command: its message and exit code.
struct Failure(String, u8);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string(), 2)
    }
}

/// Whatever panics (stdout closed under `| head`, a full disk, a broken
/// invariant) ends the tool with one line and no backtrace: quietly with
/// exit 0 for a reader that went away, else `statespine: ...` with exit 2.
fn one_line_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("an internal error");
        if msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        let at = info.location().map(|l| format!(" (at {l})")).unwrap_or_default();
        eprintln!("statespine: {}{at}", msg.replace('\n', "; "));
        std::process::exit(2);
    }));
}

fn main() -> ExitCode {
    one_line_panics();
    let cli = Cli::parse();
    let fs = StdFs::new();
    let result = match cli.command {
        Command::Info { store, json } => info(&fs, &store, json),
        Command::Checkpoints { store, id, json } => {
            match (store.to_str().filter(|s| s.contains("://")), id) {
                (Some(url), None) => remote::checkpoints(url, json),
                (Some(_), Some(_)) => Err(Failure(
                    "checkpoints URL ID: restore the store first, then show the checkpoint".into(),
                    2,
                )),
                (None, Some(id)) => show_checkpoint(&fs, &store, &id, json),
                (None, None) => checkpoints(&fs, &store, json),
            }
        }
        #[cfg(feature = "remote")]
        Command::Restore { url, store, shards } => remote::restore(&fs, &url, &store, shards),
        Command::Verify { path, depth, json } => verify(&fs, &path, depth.into(), json),
        Command::Diff { from, to, keys, json } => diff(&fs, &from, &to, keys, json),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "statespine", &mut std::io::stdout());
            Ok(0)
        }
        Command::Get {
            store,
            key,
            spine,
            shard,
            at,
            hex,
            json,
        } => read::get(&store, &key, spine.as_deref(), shard, &at, hex, json),
        Command::Scan {
            store,
            spine,
            shard,
            prefix,
            from,
            to,
            limit,
            at,
            hex,
            json,
        } => {
            let range = read::Range { prefix, from, to };
            read::scan(&store, &spine, shard, &range, limit, &at, hex, json)
        }
        Command::Compact {
            store,
            zstd,
            discard_uncommitted,
            json,
        } => maintain::compact(&store, zstd, discard_uncommitted, json),
        Command::Gc {
            store,
            remote,
            discard_uncommitted,
            json,
        } => maintain::gc(&store, remote.as_deref(), discard_uncommitted, json),
        #[cfg(feature = "remote")]
        Command::Push {
            store,
            url,
            discard_uncommitted,
            json,
        } => maintain::push(&store, &url, discard_uncommitted, json),
        Command::Dump { what } => match what {
            Dump::Manifest { checkpoint, json } => dump_manifest(&fs, &checkpoint, json),
            Dump::Run { file, limit, json } => dump_run(&fs, &file, limit, json),
            Dump::Wal { segment, limit, json } => dump_wal(&fs, &segment, limit, json),
        },
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure(message, code)) => {
            eprintln!("statespine: {message}");
            ExitCode::from(code)
        }
    }
}

/// The checkpoint directories of the store at `store`, oldest first by
/// epoch; a directory that is not a store is an error.
fn checkpoint_dirs(fs: &dyn Fs, store: &Path) -> Result<Vec<(PathBuf, Option<CheckpointManifest>)>, Failure> {
    let dir = store.join("checkpoints");
    if !fs.exists(&dir)? {
        let what = format!(
            "{}: not a statespine store (no checkpoints directory)",
            store.display()
        );
        return Err(Failure(what, 2));
    }
    // The directory exists: opening it as the checkpoint store creates
    // nothing, and lists only checkpoints (no `.tmp` or `.damaged` ones).
    let checkpoints = FileSystemCheckpointStore::new(Arc::new(StdFs::new()), &dir)?;
    let mut out: Vec<(PathBuf, Option<CheckpointManifest>)> = Vec::new();
    for id in checkpoints.list()? {
        out.push((checkpoints.checkpoint_dir(id), checkpoints.load_manifest(id).ok()));
    }
    out.sort_by_key(|(p, m)| (m.as_ref().map_or(u64::MAX, |m| m.epoch), p.clone()));
    Ok(out)
}

/// The MANIFEST of checkpoint directory `dir`; an error names the file.
fn read_manifest(fs: &dyn Fs, dir: &Path) -> statespine::Result<CheckpointManifest> {
    let file = dir.join(MANIFEST_NAME);
    CheckpointManifest::decode(&read_file(fs, &file)?, &file)
}

/// Bytes of the files in `dir`.
fn dir_bytes(fs: &dyn Fs, dir: &Path) -> u64 {
    let names = fs.list(dir).unwrap_or_default();
    names
        .iter()
        .filter_map(|n| fs.open(&dir.join(n)).and_then(|f| f.size()).ok())
        .sum()
}

/// Milliseconds since the Unix epoch as a UTC time, `2026-12-02 18:20:01`
/// (the civil calendar from a day count: H. Hinnant's `civil_from_days`).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}")
}

fn summary(fs: &dyn Fs, dir: &Path, m: &CheckpointManifest) -> Value {
    let runs: usize = m
        .shards
        .iter()
        .flat_map(|s| &s.spines)
        .map(|s| s.runs.len())
        .sum();
    json!({
        "id": m.id.to_string(),
        "epoch": m.epoch,
        "wall_time_ms": m.wall_time_ms,
        "time_utc": utc(m.wall_time_ms),
        "bytes": dir_bytes(fs, dir),
        "runs": runs,
        "shard_cut_lsns": m.shards.iter().map(|s| s.cut_lsn).collect::<Vec<_>>(),
        "source_offsets": m.source_offsets,
    })
}

fn checkpoints(fs: &dyn Fs, store: &Path, as_json: bool) -> Result<u8, Failure> {
    let dirs = checkpoint_dirs(fs, store)?;
    // New bytes: those of runs the checkpoint before did not hold (what an
    // incremental checkpoint wrote; the oldest counts all of its runs).
    let mut before = BTreeMap::new();
    let listed: Vec<Value> = dirs
        .iter()
        .map(|(dir, m)| match m {
            Some(m) => {
                let runs = run_files(m);
                let new: u64 = runs.iter().filter(|(n, _)| !before.contains_key(*n)).map(|(_, s)| s).sum();
                before = runs;
                let mut v = summary(fs, dir, m);
                v["new_bytes"] = json!(new);
                v
            }
            None => json!({ "path": dir.display().to_string(), "error": "MANIFEST unreadable (statespine verify says why)" }),
        })
        .collect();
    if as_json {
        println!("{}", Value::Array(listed));
        return Ok(0);
    }
    println!(
        "{:<36}  {:>8}  {:<19}  {:>12}  {:>12}  {:>5}  source offsets",
        "id", "epoch", "time (UTC)", "bytes", "new bytes", "runs"
    );
    for v in &listed {
        if let Some(e) = v.get("error") {
            println!("{}  {e}", v["path"].as_str().unwrap_or("?"));
            continue;
        }
        println!(
            "{:<36}  {:>8}  {:<19}  {:>12}  {:>12}  {:>5}  {}",
            v["id"].as_str().unwrap_or("?"),
            v["epoch"].to_string(),
            v["time_utc"].as_str().unwrap_or("?"),
            v["bytes"].to_string(),
            v["new_bytes"].to_string(),
            v["runs"].to_string(),
            v["source_offsets"]
        );
    }
    Ok(0)
}

fn report_json(r: &ValidationReport) -> Value {
    json!({
        "path": r.path.display().to_string(),
        "depth": format!("{:?}", r.depth),
        "epoch": r.manifest.as_ref().map(|m| m.epoch),
        "runs_checked": r.runs_checked,
        "valid": r.is_valid(),
        "problems": r.problems.iter().map(|p| json!({ "kind": format!("{:?}", p.kind()), "error": p.to_string() })).collect::<Vec<_>>(),
    })
}

fn verify(fs: &dyn Fs, path: &Path, depth: ValidationDepth, as_json: bool) -> Result<u8, Failure> {
    let dirs: Vec<PathBuf> = if fs.exists(&path.join(MANIFEST_NAME))? {
        vec![path.to_path_buf()]
    } else {
        checkpoint_dirs(fs, path)?.into_iter().map(|(p, _)| p).collect()
    };
    let bar = progress::Shared::new("verify");
    let reports: Vec<ValidationReport> = dirs
        .iter()
        .zip(0..)
        .map(|(d, n)| validate_checkpoint_with_progress(fs, d, depth, &bar.validation(n)))
        .collect();
    bar.finish();
    let damaged = reports.iter().filter(|r| !r.is_valid()).count();
    if as_json {
        let all: Vec<Value> = reports.iter().map(report_json).collect();
        println!("{}", json!({ "checkpoints": all, "damaged": damaged }));
    } else {
        for r in &reports {
            println!("{r}");
        }
        println!("{} checkpoint(s) checked, {damaged} damaged", reports.len());
    }
    Ok(u8::from(damaged > 0))
}

fn operator_json(op: &OperatorCheckpoint) -> Value {
    match op {
        OperatorCheckpoint::Inline(b) => json!({ "inline_bytes": b.len() }),
        OperatorCheckpoint::File { file, len, crc32c } => {
            json!({ "file": file, "len": len, "crc32c": crc32c })
        }
    }
}

fn manifest_json(m: &CheckpointManifest) -> Value {
    let shards: Vec<Value> = m
        .shards
        .iter()
        .map(|s| {
            let spines: Vec<Value> = s
                .spines
                .iter()
                .map(|sp| {
                    let runs: Vec<Value> = sp
                        .runs
                        .iter()
                        .map(|r| json!({ "file": r.file, "size": r.size, "crc32c": r.crc32c, "entries": r.entries }))
                        .collect();
                    json!({ "id": sp.id, "name": sp.name, "mode": format!("{:?}", sp.mode), "covered_lsn": sp.covered_lsn, "runs": runs })
                })
                .collect();
            json!({ "shard": s.shard, "cut_lsn": s.cut_lsn, "replay_from": s.replay_from(), "next_spine_id": s.next_spine_id, "spines": spines })
        })
        .collect();
    let connectors: serde_json::Map<String, Value> = m
        .connectors
        .iter()
        .map(|(k, c)| {
            (
                k.clone(),
                json!({ "state_bytes": c.state.len(), "prepared_transactions": c.prepared_transactions }),
            )
        })
        .collect();
    let operators: serde_json::Map<String, Value> = m
        .operators
        .iter()
        .map(|(k, o)| (k.clone(), operator_json(o)))
        .collect();
    json!({
        "id": m.id.to_string(),
        "epoch": m.epoch,
        "wall_time_ms": m.wall_time_ms,
        "fingerprint_bytes": m.fingerprint.len(),
        "runs_copied": m.runs_copied,
        "source_offsets": m.source_offsets,
        "shards": shards,
        "connectors": connectors,
        "operators": operators,
    })
}

/// One checkpoint of `store` in full: its summary (bytes, runs) and every
/// field of its manifest.
fn show_checkpoint(fs: &dyn Fs, store: &Path, id: &str, as_json: bool) -> Result<u8, Failure> {
    let dirs = checkpoint_dirs(fs, store)?;
    let found: Vec<_> = dirs
        .iter()
        .filter(|(d, _)| {
            d.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(id))
        })
        .collect();
    let (dir, m) = match found.as_slice() {
        [one] => one,
        [] => return Err(Failure(format!("{}: no checkpoint {id}", store.display()), 2)),
        _ => {
            return Err(Failure(
                format!("{}: {id} names several checkpoints", store.display()),
                2,
            ));
        }
    };
    let m = match m {
        Some(m) => m.clone(),
        None => read_manifest(fs, dir)?,
    };
    let mut v = manifest_json(&m);
    v["summary"] = summary(fs, dir, &m);
    v["path"] = json!(dir.display().to_string());
    if as_json {
        println!("{v}");
    } else {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(0)
}

fn dump_manifest(fs: &dyn Fs, path: &Path, as_json: bool) -> Result<u8, Failure> {
    let dir = if path.file_name().is_some_and(|n| n == MANIFEST_NAME) {
        path.parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    } else {
        path.to_path_buf()
    };
    let m = read_manifest(fs, &dir)?;
    let v = manifest_json(&m);
    if as_json {
        println!("{v}");
    } else {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(0)
}

/// Each shard's WAL: segments, bytes and first LSN (from the names).
fn wal_json(fs: &dyn Fs, store: &Path) -> Vec<Value> {
    let shards = store.join("shards");
    let mut names = fs.list(&shards).unwrap_or_default();
    names.sort_by_key(|n| n.parse::<u32>().unwrap_or(u32::MAX));
    names
        .iter()
        .filter_map(|n| {
            let wal = shards.join(n).join("wal");
            let segs = statespine::wal::format::list_segments(fs, &wal).ok()?;
            let bytes: u64 = segs
                .iter()
                .filter_map(|(_, s)| fs.open(&wal.join(s)).and_then(|f| f.size()).ok())
                .sum();
            // Newest segment first, back until both are found (a fresh
            // segment holds no record yet).
            let (mut last_lsn, mut last_commit) = (None, None);
            for (_, s) in segs.iter().rev() {
                if last_lsn.is_some() && last_commit.is_some() {
                    break;
                }
                let (l, c) = last_of_segment(fs, &wal.join(s)).unwrap_or((None, None));
                last_lsn = last_lsn.or(l);
                last_commit = last_commit.or(c);
            }
            Some(json!({ "shard": n.parse::<u32>().ok(), "segments": segs.len(), "bytes": bytes, "first_lsn": segs.first().map(|s| s.0),
                "last_lsn": last_lsn, "last_commit_epoch": last_commit }))
        })
        .collect()
}

/// The LSN of the last valid record of a WAL segment, and the epoch of the
/// last epoch-commit record in it (one read of the segment; `None` where
/// it holds none, or cannot be read).
fn last_of_segment(fs: &dyn Fs, segment: &Path) -> Option<(Option<u64>, Option<u64>)> {
    use statespine::wal::{decode_change, format::SegmentHeader, segment::scan};
    let f = fs.open(segment).ok()?;
    let bytes = f.map(f.size().ok()?).ok()?;
    let h = SegmentHeader::decode(&bytes, segment).ok()?;
    let (mut last, mut commit) = (None, None);
    scan(&bytes, &h, |fr| {
        last = Some(fr.lsn);
        let rec = decode_change(fr.payload, fr.epoch, segment, 0);
        if rec.is_ok_and(|r| r.spine == statespine::checkpoint::COMMIT_SPINE) {
            commit = Some(fr.epoch);
        }
    });
    Some((last, commit))
}

fn spines_json(m: &CheckpointManifest) -> Vec<Value> {
    let mut out = Vec::new();
    for s in &m.shards {
        for sp in &s.spines {
            let bytes: u64 = sp.runs.iter().map(|r| r.size).sum();
            let entries: u64 = sp.runs.iter().map(|r| r.entries).sum();
            out.push(
                json!({ "shard": s.shard, "name": sp.name, "mode": format!("{:?}", sp.mode),
                "runs": sp.runs.len(), "entries_in_runs": entries, "bytes": bytes }),
            );
        }
    }
    out
}

fn info(fs: &dyn Fs, store: &Path, as_json: bool) -> Result<u8, Failure> {
    let dirs = checkpoint_dirs(fs, store)?;
    let newest = dirs.iter().rev().find_map(|(_, m)| m.as_ref());
    let lock = read_file(fs, &store.join("LOCK")).unwrap_or_default();
    let lock = String::from_utf8_lossy(&lock);
    let wal = wal_json(fs, store);
    // Committed on every shard: the oldest of the shards' last commits
    // (each read from its newest segment).
    let commits: Option<Vec<u64>> = wal.iter().map(|w| w["last_commit_epoch"].as_u64()).collect();
    let committed = commits.and_then(|c| c.into_iter().min());
    let v = json!({
        "last_committed_epoch": committed.or(newest.map(|m| m.epoch)),
        "store": store.display().to_string(),
        "checkpoints": dirs.len(),
        "epochs": dirs.iter().filter_map(|(_, m)| m.as_ref().map(|m| m.epoch)).collect::<Vec<_>>(),
        "newest_checkpoint": newest.map(|m| m.id.to_string()),
        "source_offsets": newest.map(|m| m.source_offsets.clone()),
        "spines": newest.map(spines_json).unwrap_or_default(),
        "wal": wal,
        "lock_last_holder": lock.trim(),
    });
    if as_json {
        println!("{v}");
    } else {
        print_info(&v);
    }
    Ok(0)
}

/// Prints `rows` as a table, one column per (heading, JSON field, width):
/// strings left-aligned, numbers (and null) right-aligned.
fn print_table(columns: &[(&str, &str, usize)], rows: &[Value]) {
    let cell = |v: &Value, w: usize| match v {
        Value::String(s) => format!("{s:<w$}"),
        other => format!("{:>w$}", other.to_string()),
    };
    // Each heading aligned as its column's values are.
    let head: Vec<String> = columns
        .iter()
        .map(|(h, f, w)| match rows.first().map(|r| &r[*f]) {
            Some(Value::String(_)) => format!("{h:<w$}"),
            _ => format!("{h:>w$}"),
        })
        .collect();
    println!("{}", head.join("  ").trim_end());
    for r in rows {
        let cells: Vec<String> = columns.iter().map(|(_, f, w)| cell(&r[*f], *w)).collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

/// `info` for a person: a few lines, then a table of spines and of WALs.
fn print_info(v: &Value) {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    println!("store        {}", text(&v["store"]));
    println!("committed    epoch {}", v["last_committed_epoch"]);
    println!(
        "checkpoints  {} retained, epochs {}",
        v["checkpoints"], v["epochs"]
    );
    println!("newest       {}", text(&v["newest_checkpoint"]));
    println!("offsets      {}", v["source_offsets"]);
    println!("lock         last held by {}", text(&v["lock_last_holder"]));
    println!();
    let spines = [
        ("shard", "shard", 5),
        ("spine", "name", 24),
        ("mode", "mode", 8),
        ("runs", "runs", 4),
    ];
    let sizes = [("entries", "entries_in_runs", 12), ("bytes", "bytes", 14)];
    print_table(
        &[&spines[..], &sizes[..]].concat(),
        v["spines"].as_array().map_or(&[], Vec::as_slice),
    );
    println!();
    let wal = [
        ("shard", "shard", 5),
        ("segments", "segments", 8),
        ("first lsn", "first_lsn", 10),
        ("last lsn", "last_lsn", 10),
        ("last commit", "last_commit_epoch", 12),
        ("wal bytes", "bytes", 14),
    ];
    print_table(&wal, v["wal"].as_array().map_or(&[], Vec::as_slice));
}

/// Bytes as text where they are UTF-8 without control characters, else hex.
fn show(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(t) if !t.chars().any(char::is_control) => t.to_string(),
        _ => format!("0x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
    }
}

fn dump_run(fs: &dyn Fs, file: &Path, limit: u64, as_json: bool) -> Result<u8, Failure> {
    let run = statespine::run::Run::open(fs, file)?;
    if !as_json {
        println!("{}: {:?}, {} entries", file.display(), run.mode(), run.len());
    }
    for e in run.iter().take(usize::try_from(limit).unwrap_or(usize::MAX)) {
        let e = e?;
        let kind = format!("{:?}", e.kind);
        if as_json {
            println!(
                "{}",
                json!({ "key": show(e.key), "value": show(e.value), "kind": kind })
            );
        } else {
            println!("{}  {kind}  {}", show(e.key), show(e.value));
        }
    }
    Ok(0)
}

fn dump_wal(fs: &dyn Fs, segment: &Path, limit: u64, as_json: bool) -> Result<u8, Failure> {
    use statespine::wal::{format::SegmentHeader, segment::scan};
    let f = fs.open(segment)?;
    let bytes = f.map(f.size()?)?;
    let h = SegmentHeader::decode(&bytes, segment)?;
    let mut shown = 0u64;
    let end = scan(&bytes, &h, |fr| {
        if shown < limit {
            shown += 1;
            let v = json!({ "lsn": fr.lsn, "epoch": fr.epoch, "payload_bytes": fr.payload.len() });
            if as_json {
                println!("{v}");
            } else {
                println!("lsn {}  epoch {}  {} bytes", fr.lsn, fr.epoch, fr.payload.len());
            }
        }
    });
    use statespine::wal::segment::Tail;
    let kind = match end.tail {
        Tail::Clean => "Clean",
        Tail::Torn { .. } => "Torn",
        Tail::Corrupt { .. } => "Corrupt",
    };
    let tail = match end.tail {
        Tail::Clean => "clean".to_owned(),
        Tail::Torn { at } => format!("a torn tail from byte {at} (a crash mid-write: recovery cuts it)"),
        Tail::Corrupt {
            at,
            next_at,
            next_lsn,
        } => format!(
            "DAMAGED at byte {at}: a valid record (LSN {next_lsn}) follows at byte {next_at}, so this is not a torn tail"
        ),
    };
    if as_json {
        println!(
            "{}",
            json!({ "shard": h.shard_id, "first_lsn": h.first_lsn, "records": end.records, "end": end.end,
                "tail": kind, "detail": tail })
        );
    } else {
        println!(
            "{}: shard {}, first LSN {}, {} records ending at byte {}: {tail}",
            segment.display(),
            h.shard_id,
            h.first_lsn,
            end.records,
            end.end
        );
    }
    Ok(u8::from(!matches!(end.tail, Tail::Clean | Tail::Torn { .. })))
}

/// A checkpoint's runs by their name in its directory, with their sizes.
fn run_files(m: &CheckpointManifest) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for s in &m.shards {
        for sp in &s.spines {
            for r in &sp.runs {
                let name = statespine::checkpoint::checkpoint_run_name(s.shard, sp.id, &r.file);
                out.insert(name, r.size);
            }
        }
    }
    out
}

fn diff(fs: &dyn Fs, from: &Path, to: &Path, keys: Option<u64>, as_json: bool) -> Result<u8, Failure> {
    let (a, b) = (read_manifest(fs, from)?, read_manifest(fs, to)?);
    let (ra, rb) = (run_files(&a), run_files(&b));
    let side = |names: Vec<(&String, &u64)>| {
        json!({ "runs": names.len(), "bytes": names.iter().map(|(_, s)| **s).sum::<u64>(),
            "names": names.iter().map(|(n, _)| (*n).clone()).collect::<Vec<_>>() })
    };
    let v = json!({
        "from": { "id": a.id.to_string(), "epoch": a.epoch },
        "to": { "id": b.id.to_string(), "epoch": b.epoch },
        "shared": side(rb.iter().filter(|(n, _)| ra.contains_key(*n)).collect()),
        "added": side(rb.iter().filter(|(n, _)| !ra.contains_key(*n)).collect()),
        "removed": side(ra.iter().filter(|(n, _)| !rb.contains_key(*n)).collect()),
    });
    let mut v = v;
    let changed = keys
        .map(|limit| read::changed_keys(from, to, limit))
        .transpose()?;
    if let Some(c) = &changed {
        v["keys_changed"] = json!(c);
    }
    if as_json {
        println!("{v}");
        return Ok(0);
    }
    println!("epoch {} -> epoch {}", a.epoch, b.epoch);
    for what in ["shared", "added", "removed"] {
        println!("{what:>8}: {} runs, {} bytes", v[what]["runs"], v[what]["bytes"]);
    }
    for c in changed.iter().flatten() {
        let value = c
            .get("value")
            .map(|v| format!(" {}", v.as_str().unwrap_or("")))
            .unwrap_or_default();
        println!(
            "shard {}  {}  {}{value}: {} -> {}",
            c["shard"],
            c["spine"].as_str().unwrap_or(""),
            c["key"].as_str().unwrap_or(""),
            c["before"],
            c["after"]
        );
    }
    Ok(0)
}

/// The commands on a bucket URL (feature `remote`).
#[cfg(feature = "remote")]
mod remote {
    use std::path::Path;

    use serde_json::{Value, json};
    use statespine::io::Fs;
    use statespine::remote::{Remote, newest_manifest};
    use statespine::store::Options;

    use super::Failure;

    pub(super) fn checkpoints(url: &str, as_json: bool) -> Result<u8, Failure> {
        let remote = Remote::from_url(url)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (m, top) = rt.block_on(newest_manifest(&remote))?;
        let Some(m) = m else {
            return Err(Failure(format!("{url}: no remote checkpoint (no manifest)"), 2));
        };
        let listed: Vec<Value> = m
            .checkpoints
            .iter()
            .map(|c| {
                json!({ "id": c.id.to_string(), "epoch": c.epoch, "wall_time_ms": c.wall_time_ms,
                    "bytes": c.bytes(), "objects": c.objects.len(), "pinned": c.pinned })
            })
            .collect();
        if as_json {
            println!(
                "{}",
                json!({ "manifest_seq": m.seq, "top_seq": top, "writer_epoch": m.writer_epoch, "checkpoints": listed })
            );
            return Ok(0);
        }
        println!(
            "{url}: manifest {} (of {top}) by writer epoch {}",
            m.seq, m.writer_epoch
        );
        for c in &listed {
            println!(
                "{}  epoch {:>8}  {:>12} bytes  {:>5} objects{}",
                c["id"].as_str().unwrap_or("?"),
                c["epoch"],
                c["bytes"],
                c["objects"],
                if c["pinned"] == true { "  pinned" } else { "" }
            );
        }
        Ok(0)
    }

    /// Fails as `collect` would on a URL it cannot use, touching nothing.
    pub(super) fn check_url(url: &str) -> Result<(), Failure> {
        Remote::from_url(url).map(drop).map_err(Failure::from)
    }

    /// Collects the garbage of the bucket at `url`.
    pub(super) fn collect(url: &str) -> Result<Value, Failure> {
        let remote = Remote::from_url(url)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let r = rt.block_on(statespine::remote::collect(&remote))?;
        Ok(
            json!({ "url": url, "listed": r.listed, "manifests_deleted": r.manifests_deleted,
            "objects_deleted": r.objects_deleted, "bytes_deleted": r.bytes_deleted }),
        )
    }

    pub(super) fn restore(fs: &dyn Fs, url: &str, store: &Path, shards: u32) -> Result<u8, Failure> {
        if fs.exists(&store.join("checkpoints"))? || fs.exists(&store.join("shards"))? {
            let what = format!(
                "{}: holds a store already; restore needs an empty directory",
                store.display()
            );
            return Err(Failure(what, 2));
        }
        let bar = super::progress::Shared::new("restore");
        let remote = Remote::from_url(url)?.on_progress(bar.remote());
        let state = Options::new(store)
            .shards(shards)
            .restore_from(remote)
            .on_progress(bar.recovery())
            .recover();
        bar.finish();
        let state = state?;
        let r = state
            .restored
            .clone()
            .ok_or_else(|| Failure(format!("{url}: no remote checkpoint"), 2))?;
        println!(
            "restored checkpoint {} of epoch {} ({} objects, {} bytes) into {}; recovered epoch {}",
            r.checkpoint,
            r.epoch,
            r.objects,
            r.bytes,
            store.display(),
            state.epoch
        );
        drop(state);
        super::verify(fs, store, statespine::checkpoint::ValidationDepth::Blocks, false)
    }
}

#[cfg(not(feature = "remote"))]
mod remote {
    use super::Failure;

    pub(super) fn checkpoints(url: &str, _: bool) -> Result<u8, Failure> {
        Err(Failure(
            format!("{url}: bucket URLs need the remote feature (--features cli,remote)"),
            2,
        ))
    }

    pub(super) fn collect(url: &str) -> Result<serde_json::Value, Failure> {
        checkpoints(url, false).map(|_| serde_json::Value::Null)
    }

    pub(super) fn check_url(url: &str) -> Result<(), Failure> {
        checkpoints(url, false).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_times_are_civil_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_796_236_801_999), "2026-12-02 18:40:01");
        assert_eq!(utc(4_107_542_399_000), "2100-02-28 23:59:59");
    }
}
