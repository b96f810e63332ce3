//! `compact`, `gc` and `push`: the commands that write. Each opens the
//! store as its owner would (taking the directory's lock, so a store
//! another process has open is refused with the lock's error), does its
//! work, and closes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;
use statespine::checkpoint::CheckpointManifest;
use statespine::io::{Fs, StdFs};
use statespine::store::{CheckpointRequest, Options, RecoveredState, Store};
use statespine::{Compression, RunMode, SpineOptions};

use super::read::shard_count;
use super::{Failure, checkpoint_dirs};

/// Runs and bytes of the newest checkpoint of `store`.
fn newest_runs(fs: &dyn Fs, store: &Path) -> Result<(usize, u64, Option<u64>), Failure> {
    let dirs = checkpoint_dirs(fs, store)?;
    let newest: Option<&CheckpointManifest> = dirs.iter().rev().find_map(|(_, m)| m.as_ref());
    let runs = newest.map_or(0, |m| {
        m.shards
            .iter()
            .flat_map(|s| &s.spines)
            .map(|s| s.runs.len())
            .sum()
    });
    let bytes = newest.map_or(0, |m| {
        let all = m.shards.iter().flat_map(|s| &s.spines).flat_map(|s| &s.runs);
        all.map(|r| r.size).sum()
    });
    Ok((runs, bytes, newest.map(|m| m.epoch)))
}

/// The options to open the store at `store` as its owner would (it must be
/// one: a directory that is not would be made one), changing nothing its
/// owner relies on: the checkpoints it
/// commits carry the owner's fingerprint (the newest checkpoint's), it
/// retains every checkpoint retained now (and more than the default
/// three), and unless `discard` it first checks, read-only, that recovery
/// to the last committed epoch discards no durable write (an owner that
/// recovers with `RecoveryPoint::Latest` relies on those).
fn owner_options(fs: &dyn Fs, store: &Path, discard: bool) -> Result<Options, Failure> {
    let shards = shard_count(fs, store)?;
    let dirs = checkpoint_dirs(fs, store)?;
    let fingerprint = dirs
        .iter()
        .rev()
        .find_map(|(_, m)| m.as_ref())
        .map(|m| m.fingerprint.clone())
        .unwrap_or_default();
    if !discard {
        let probe = super::read::open_read_only(store, &super::read::At::default())?;
        let (n, epoch) = (probe.discarded_records, probe.epoch);
        drop(probe);
        if n > 0 {
            let what = format!(
                "{}: {n} durable write(s) after the last committed epoch {epoch} would be discarded; commit them from the store's owner, or pass --discard-uncommitted",
                store.display()
            );
            return Err(Failure(what, 2));
        }
    }
    Ok(Options::new(store)
        .shards(shards)
        .fingerprint(fingerprint)
        .max_retained((dirs.len() + 1).max(3))
        .worker_threads(1))
}

/// Opens the store as its owner would ([`owner_options`]), its spines with
/// `spine` options.
fn open(fs: &dyn Fs, store: &Path, spine: SpineOptions, discard: bool) -> Result<RecoveredState, Failure> {
    let opts = owner_options(fs, store, discard)?.spine_options(spine);
    let bar = super::progress::Shared::new("recover");
    let state = opts.on_progress(bar.recovery()).recover();
    bar.finish();
    Ok(state?)
}

/// What the last epoch recorded, for a checkpoint that adds no data: the
/// same offsets, connectors and operator states.
fn same_metadata(state: &RecoveredState) -> CheckpointRequest {
    CheckpointRequest {
        source_offsets: state.source_offsets.clone(),
        connectors: state.connectors.clone(),
        operators: state.operators.clone(),
    }
}

/// Opens the store, merges each spine into one run (`Shard::compact`), and
/// commits a checkpoint of the result (with the recovered epoch's metadata,
/// as the next epoch: epochs only increase), so the next open uses the
/// merged runs. The store does not record its spine options: merged runs
/// are written with the default run options, compressed with zstd at
/// `zstd` if given.
pub(super) fn compact(store: &Path, zstd: Option<i32>, discard: bool, as_json: bool) -> Result<u8, Failure> {
    let fs = StdFs::new();
    let (runs_before, bytes_before, _) = newest_runs(&fs, store)?;
    // A spine already one run is not rewritten, so its damage would pass
    // into the new checkpoint unread: check every byte first.
    if let Some((dir, _)) = checkpoint_dirs(&fs, store)?.last() {
        let report = statespine::validate_checkpoint(&fs, dir, statespine::ValidationDepth::Blocks);
        if let Some(problem) = report.problems.first() {
            let what = format!(
                "not compacting a damaged checkpoint: {problem} (statespine verify lists every problem)"
            );
            return Err(Failure(what, 1));
        }
    }
    let mut spine = SpineOptions::new(RunMode::KeyValue);
    if let Some(level) = zstd {
        spine = spine.compression(Compression::Zstd { level });
    }
    let state = open(&fs, store, spine, discard)?;
    let request = same_metadata(&state);
    let recovered = state.epoch;
    let mut st: Store = state.store;
    let mut shards = st.take_shards();
    for s in &mut shards {
        s.compact()?;
    }
    let epoch = st.next_epoch();
    let meta = st.shutdown(shards, epoch, request)?;
    let (runs_after, bytes_after, _) = newest_runs(&fs, store)?;
    let v = json!({
        "recovered_epoch": recovered,
        "checkpoint": meta.id.to_string(),
        "epoch": meta.epoch,
        "before": { "runs": runs_before, "bytes": bytes_before },
        "after": { "runs": runs_after, "bytes": bytes_after },
    });
    if as_json {
        println!("{v}");
    } else {
        println!(
            "compacted epoch {recovered} into checkpoint {} (epoch {}): {runs_before} runs, {bytes_before} bytes -> {runs_after} runs, {bytes_after} bytes",
            meta.id, meta.epoch
        );
    }
    Ok(0)
}

/// Every file under `dir`, with its size.
fn files(fs: &dyn Fs, dir: &Path, out: &mut BTreeMap<PathBuf, u64>) {
    for name in fs.list(dir).unwrap_or_default() {
        let p = dir.join(name);
        if fs.list(&p).is_ok() {
            files(fs, &p, out);
        } else {
            let size = fs.open(&p).and_then(|f| f.size()).unwrap_or(0);
            out.insert(p, size);
        }
    }
}

/// Opens and closes the store: recovery deletes half-written and retired
/// checkpoints, run files no checkpoint or live spine holds, and what lies
/// in the WAL past the last committed epoch; then reports the names that
/// went (a name's bytes: a run linked in several places counts once per
/// name) and, with `--remote`, collects the bucket's garbage.
pub(super) fn gc(store: &Path, remote: Option<&str>, discard: bool, as_json: bool) -> Result<u8, Failure> {
    let fs = StdFs::new();
    if let Some(url) = remote {
        // Before anything is removed: a URL that cannot be used fails first.
        super::remote::check_url(url)?;
    }
    let mut before = BTreeMap::new();
    files(&fs, store, &mut before);
    let state = open(&fs, store, SpineOptions::new(RunMode::KeyValue), discard)?;
    let (epoch, removed_checkpoints) = (state.epoch, state.removed_checkpoints.len());
    let mut st = state.store;
    drop(st.take_shards());
    st.close()?;
    let mut after = BTreeMap::new();
    files(&fs, store, &mut after);
    let gone: Vec<(&PathBuf, &u64)> = before.iter().filter(|(p, _)| !after.contains_key(*p)).collect();
    let bytes: u64 = gone.iter().map(|(_, b)| **b).sum();
    let remote = match remote {
        Some(url) => Some(super::remote::collect(url)?),
        None => None,
    };
    let names: Vec<String> = gone.iter().map(|(p, _)| p.display().to_string()).collect();
    let v = json!({ "epoch": epoch, "removed_files": names, "removed_bytes": bytes,
        "removed_checkpoints": removed_checkpoints, "remote": remote });
    if as_json {
        println!("{v}");
        return Ok(0);
    }
    for n in &names {
        println!("removed {n}");
    }
    println!(
        "{}: {} file(s), {bytes} bytes removed; epoch {epoch}",
        store.display(),
        names.len()
    );
    if let Some(r) = &remote {
        println!("remote: {r}");
    }
    Ok(0)
}

/// The push report as JSON.
#[cfg(feature = "remote")]
fn push_json(r: &statespine::remote::PushReport) -> serde_json::Value {
    json!({ "checkpoint": r.checkpoint.to_string(), "epoch": r.epoch, "manifest_seq": r.manifest_seq,
        "objects": r.objects, "uploaded_objects": r.uploaded_objects, "uploaded_bytes": r.uploaded_bytes,
        "total_bytes": r.total_bytes, "duration_ms": r.duration.as_millis() as u64 })
}

/// Opens the store pushing to `url` (which fences any other writer of that
/// bucket), takes a checkpoint of the recovered epoch's state and metadata
/// (as the next epoch), and waits for its push.
#[cfg(feature = "remote")]
pub(super) fn push(store: &Path, url: &str, discard: bool, as_json: bool) -> Result<u8, Failure> {
    use statespine::remote::Remote;
    let fs = StdFs::new();
    let bar = super::progress::Shared::new("push");
    let state = owner_options(&fs, store, discard)?
        .push_to(Remote::from_url(url)?.on_progress(bar.remote()))
        .on_progress(bar.recovery())
        .recover()?;
    let request = same_metadata(&state);
    let mut st = state.store;
    let mut shards = st.take_shards();
    let epoch = st.next_epoch();
    let mut refs: Vec<_> = shards.iter_mut().collect();
    st.checkpoint_inline(&mut refs, epoch, request)?;
    let report = st.wait_pushed(std::time::Duration::from_secs(24 * 3600));
    bar.finish();
    let report = report?;
    drop(shards);
    st.close()?;
    let Some(r) = report else {
        return Err(Failure(format!("{url}: nothing was pushed"), 2));
    };
    if as_json {
        println!("{}", push_json(&r));
    } else {
        println!(
            "pushed checkpoint {} of epoch {} to {url}: manifest {}, {} objects ({} uploaded, {} bytes of {}) in {:?}",
            r.checkpoint,
            r.epoch,
            r.manifest_seq,
            r.objects,
            r.uploaded_objects,
            r.uploaded_bytes,
            r.total_bytes,
            r.duration
        );
    }
    Ok(0)
}
