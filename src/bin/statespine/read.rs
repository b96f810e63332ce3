//! `get` and `scan`: a store's state as recovery would return it, read
//! without changing the store.
//!
//! 1. Count the store's shards (its newest checkpoint's manifest, else its
//!    `shards/` directories) and choose the recovery point: an epoch, a
//!    checkpoint's epoch, or the last committed one.
//! 2. Run the library's own recovery over an [`OverlayFs`] on the real
//!    file system: checkpoint selection, WAL replay up to the point, and
//!    the deletions and trims recovery makes all happen in memory, so the
//!    answer is exactly the state an open would return and the directory
//!    keeps every byte. The overlay takes no lock on the directory either:
//!    a store another process has open can be read.
//! 3. Look the key up in every shard's spines (or one), or merge the
//!    spine's cursors of every shard in key order.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use statespine::io::{Fs, OverlayFs, StdFs};
use statespine::store::{Options, RecoveredState, RecoveryPoint, Shard, SpineId};
use statespine::{Cursor, RunMode};

use super::{Failure, checkpoint_dirs, show};

/// Where to read the store: `--epoch`, `--checkpoint`, or the last
/// committed epoch.
#[derive(clap::Args, Clone, Debug, Default)]
pub(super) struct At {
    /// Read the state of this epoch (committed and still recoverable).
    #[arg(long, conflicts_with = "checkpoint")]
    pub(super) epoch: Option<u64>,
    /// Read the state of this retained checkpoint (its id, or its
    /// directory), i.e. of its epoch.
    #[arg(long)]
    pub(super) checkpoint: Option<String>,
}

/// Which keys `scan` reads.
#[derive(Debug, Default)]
pub(super) struct Range {
    pub(super) prefix: Option<String>,
    pub(super) from: Option<String>,
    pub(super) to: Option<String>,
}

/// The store's number of shards: its newest checkpoint's, else the
/// number of `shards/<n>` directories.
pub(super) fn shard_count(fs: &dyn Fs, store: &Path) -> Result<u32, Failure> {
    let dirs = checkpoint_dirs(fs, store)?;
    if let Some(m) = dirs.iter().rev().find_map(|(_, m)| m.as_ref()) {
        return Ok(m.shards.len() as u32);
    }
    let names = fs.list(&store.join("shards")).unwrap_or_default();
    let n = names.iter().filter(|n| n.parse::<u32>().is_ok()).count() as u32;
    if n == 0 {
        let what = format!(
            "{}: not a statespine store (no checkpoint, no shards)",
            store.display()
        );
        return Err(Failure(what, 2));
    }
    Ok(n)
}

/// The recovery point `at` asks for.
fn point(fs: &dyn Fs, store: &Path, at: &At) -> Result<RecoveryPoint, Failure> {
    if let Some(e) = at.epoch {
        return Ok(RecoveryPoint::Epoch(e));
    }
    let Some(wanted) = &at.checkpoint else {
        return Ok(RecoveryPoint::LastCommittedEpoch);
    };
    let name = Path::new(wanted)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    // Its id, a unique prefix of it, or its directory.
    let found: Vec<u64> = checkpoint_dirs(fs, store)?
        .into_iter()
        .filter_map(|(dir, m)| {
            let m = m?;
            let id = m.id.to_string();
            let hit = id.starts_with(wanted.as_str())
                || name.as_deref() == Some(id.as_str())
                || dir == Path::new(wanted);
            hit.then_some(m.epoch)
        })
        .collect();
    match found.as_slice() {
        [epoch] => Ok(RecoveryPoint::Epoch(*epoch)),
        [] => Err(Failure(
            format!(
                "{}: no retained checkpoint {wanted} (statespine checkpoints lists them)",
                store.display()
            ),
            2,
        )),
        _ => Err(Failure(
            format!("{}: {wanted} names several checkpoints", store.display()),
            2,
        )),
    }
}

/// The store recovered to `at` through a copy-on-write overlay (module
/// docs): the real directory is neither changed nor locked.
pub(super) fn open_read_only(store: &Path, at: &At) -> Result<RecoveredState, Failure> {
    let fs = StdFs::new();
    let shards = shard_count(&fs, store)?;
    let point = point(&fs, store, at)?;
    let overlay = OverlayFs::new(Arc::new(StdFs::new()));
    let bar = super::progress::Shared::new("recover");
    let state = Options::new(store)
        .fs(Arc::new(overlay))
        .shards(shards)
        .recovery_point(point)
        .worker_threads(1)
        .merge_threads(1)
        .on_progress(bar.recovery())
        .recover();
    bar.finish();
    Ok(state?)
}

/// Bytes given on the command line: UTF-8, or hex with `--hex` (an
/// optional `0x` first).
fn bytes_of(what: &str, text: &str, hex: bool) -> Result<Vec<u8>, Failure> {
    if !hex {
        return Ok(text.as_bytes().to_vec());
    }
    let digits = text.strip_prefix("0x").unwrap_or(text);
    let bad = || Failure(format!("{what} {text:?}: not hex"), 2);
    if !digits.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| digits.get(i..i + 2).and_then(|d| u8::from_str_radix(d, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)
}

/// The shards `--shard` selects (all without it); a shard the store does
/// not have is an error.
fn selected(shards: &[Shard], only: Option<u32>) -> Result<Vec<&Shard>, Failure> {
    match only {
        None => Ok(shards.iter().collect()),
        Some(n) => match shards.iter().find(|s| s.id() == n) {
            Some(s) => Ok(vec![s]),
            None => Err(Failure(
                format!("no shard {n}: the store has {}", shards.len()),
                2,
            )),
        },
    }
}

/// What `get` found in one spine of one shard.
fn hits_in(shard: &Shard, name: &str, id: SpineId, key: &[u8]) -> Result<Vec<Value>, Failure> {
    let hit = |value: &[u8], weight: Option<i64>| {
        let mut v = json!({ "shard": shard.id(), "spine": name, "key": show(key), "value": show(value) });
        if let Some(w) = weight {
            v["weight"] = json!(w);
        }
        v
    };
    match id.kv() {
        Some(kv) => Ok(shard.get(kv, key)?.map(|v| hit(v, None)).into_iter().collect()),
        None => {
            let values = shard.spine(id)?.values(key)?;
            Ok(values.iter().map(|(v, w)| hit(v, Some(*w))).collect())
        }
    }
}

/// A line for a hit or a scanned entry.
fn text_line(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let mut line = format!(
        "shard {}  {}  {} = {}",
        v["shard"],
        s("spine"),
        s("key"),
        s("value")
    );
    if let Some(w) = v.get("weight") {
        line.push_str(&format!("  weight {w}"));
    }
    line
}

#[allow(clippy::too_many_arguments)]
pub(super) fn get(
    store: &Path,
    key: &str,
    spine: Option<&str>,
    shard: Option<u32>,
    at: &At,
    hex: bool,
    as_json: bool,
) -> Result<u8, Failure> {
    let key = bytes_of("key", key, hex)?;
    let state = open_read_only(store, at)?;
    let (epoch, checkpoint) = (state.epoch, state.checkpoint_id);
    let mut st = state.store;
    let shards = st.take_shards();
    let mut hits = Vec::new();
    let mut seen = false;
    for s in selected(&shards, shard)? {
        for (name, id) in s.spine_names() {
            if spine.is_none_or(|want| want == name) {
                seen = true;
                hits.extend(hits_in(s, &name, id, &key)?);
            }
        }
    }
    drop(shards);
    st.close()?;
    if let Some(name) = spine.filter(|_| !seen) {
        return Err(Failure(
            format!("{}: no spine {name:?} at epoch {epoch}", store.display()),
            2,
        ));
    }
    if as_json {
        let v = json!({ "epoch": epoch, "checkpoint": checkpoint.map(|c| c.to_string()), "key": show(&key), "hits": hits });
        println!("{v}");
    } else if hits.is_empty() {
        eprintln!("statespine: {} not found at epoch {epoch}", show(&key));
    } else {
        hits.iter().for_each(|h| println!("{}", text_line(h)));
    }
    Ok(u8::from(hits.is_empty()))
}

/// A cursor over `range` of one shard's spine.
fn cursor<'a>(s: &'a Shard, id: SpineId, range: &Range, hex: bool) -> Result<Cursor<'a>, Failure> {
    if let Some(p) = &range.prefix {
        return Ok(s.prefix(id, &bytes_of("prefix", p, hex)?)?);
    }
    let from = range
        .from
        .as_deref()
        .map(|f| bytes_of("from", f, hex))
        .transpose()?;
    let to = range.to.as_deref().map(|t| bytes_of("to", t, hex)).transpose()?;
    let lo = from.as_deref().map_or(Bound::Unbounded, Bound::Included);
    let hi = to.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    Ok(s.range(id, (lo, hi))?)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn scan(
    store: &Path,
    spine: &str,
    shard: Option<u32>,
    range: &Range,
    limit: u64,
    at: &At,
    hex: bool,
    as_json: bool,
) -> Result<u8, Failure> {
    let state = open_read_only(store, at)?;
    let epoch = state.epoch;
    let mut st = state.store;
    let shards = st.take_shards();
    let mut cursors = Vec::new();
    for s in selected(&shards, shard)? {
        if let Some(id) = s.spine_id(spine) {
            cursors.push((s.id(), id.mode(), cursor(s, id, range, hex)?));
        }
    }
    if cursors.is_empty() {
        return Err(Failure(
            format!("{}: no spine {spine:?} at epoch {epoch}", store.display()),
            2,
        ));
    }
    let mut shown = 0u64;
    // Every shard's cursor, merged in key order (then value, for Z-sets).
    while shown < limit {
        let next = cursors
            .iter_mut()
            .filter(|(_, _, c)| c.current().is_some())
            .min_by(|a, b| {
                let (x, y) = (a.2.current(), b.2.current());
                x.map(|e| (e.key, e.value)).cmp(&y.map(|e| (e.key, e.value)))
            });
        let Some((n, mode, c)) = next else { break };
        let Some(e) = c.current() else { break };
        let mut v = json!({ "shard": n, "spine": spine, "key": show(e.key), "value": show(e.value) });
        if *mode == RunMode::ZSet {
            v["weight"] = json!(c.weight());
        }
        println!("{}", if as_json { v.to_string() } else { text_line(&v) });
        c.advance()?;
        shown += 1;
    }
    drop(cursors);
    drop(shards);
    st.close()?;
    Ok(0)
}

/// One entry under a cursor: key, value, and weight for a Z-set.
type Entry = (Vec<u8>, Vec<u8>, Option<i64>);

fn entry_at(c: &Cursor<'_>, mode: RunMode) -> Option<Entry> {
    let e = c.current()?;
    let w = (mode == RunMode::ZSet).then(|| c.weight()).flatten();
    Some((e.key.to_vec(), e.value.to_vec(), w))
}

/// What differs between two cursors over the same spine: keys (key-value)
/// or (key, value) pairs (Z-set) present on one side only, or whose value
/// (weight) differs; at most `limit` of them.
fn spine_changes(
    before: Option<Cursor<'_>>,
    after: Option<Cursor<'_>>,
    mode: RunMode,
    limit: u64,
    out: &mut Vec<Value>,
    base: &Value,
) -> Result<(), Failure> {
    let (mut a, mut b) = (before, after);
    let order = |e: &Entry| match mode {
        RunMode::ZSet => (e.0.clone(), e.1.clone()),
        _ => (e.0.clone(), Vec::new()),
    };
    let shown = |e: Option<&Entry>| match (mode, e) {
        (_, None) => Value::Null,
        (RunMode::ZSet, Some(e)) => json!(e.2),
        (_, Some(e)) => json!(show(&e.1)),
    };
    while (out.len() as u64) < limit {
        let x = a.as_ref().and_then(|c| entry_at(c, mode));
        let y = b.as_ref().and_then(|c| entry_at(c, mode));
        let (step_a, step_b) = match (&x, &y) {
            (None, None) => break,
            (Some(_), None) => (true, false),
            (None, Some(_)) => (false, true),
            (Some(p), Some(q)) => match order(p).cmp(&order(q)) {
                std::cmp::Ordering::Less => (true, false),
                std::cmp::Ordering::Greater => (false, true),
                std::cmp::Ordering::Equal => (true, true),
            },
        };
        let (p, q) = (x.as_ref().filter(|_| step_a), y.as_ref().filter(|_| step_b));
        if p != q {
            let e = p
                .or(q)
                .map_or_else(Default::default, |e| (e.0.clone(), e.1.clone()));
            let mut v = base.clone();
            v["key"] = json!(show(&e.0));
            if mode == RunMode::ZSet {
                v["value"] = json!(show(&e.1));
            }
            v["before"] = shown(p);
            v["after"] = shown(q);
            out.push(v);
        }
        for (step, c) in [(step_a, &mut a), (step_b, &mut b)] {
            if let (true, Some(c)) = (step, c.as_mut()) {
                c.advance()?;
            }
        }
    }
    Ok(())
}

/// The store a checkpoint directory belongs to (`<store>/checkpoints/<id>`).
fn store_of(checkpoint: &Path) -> Result<&Path, Failure> {
    checkpoint
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "checkpoints"))
        .and_then(Path::parent)
        .ok_or_else(|| {
            let what = format!(
                "{}: not a checkpoint of a store (<store>/checkpoints/<id>)",
                checkpoint.display()
            );
            Failure(what, 2)
        })
}

/// The keys whose state differs between checkpoints `from` and `to` (each
/// recovered read-only to its epoch, WAL replay included), spine by spine
/// and shard by shard; at most `limit`.
pub(super) fn changed_keys(from: &Path, to: &Path, limit: u64) -> Result<Vec<Value>, Failure> {
    let at = |ck: &Path| At {
        epoch: None,
        checkpoint: Some(ck.display().to_string()),
    };
    let (mut sa, mut sb) = (
        open_read_only(store_of(from)?, &at(from))?.store,
        open_read_only(store_of(to)?, &at(to))?.store,
    );
    let (xa, xb) = (sa.take_shards(), sb.take_shards());
    if xa.len() != xb.len() {
        let what = format!(
            "{} has {} shards, {} has {}: not checkpoints of one store",
            from.display(),
            xa.len(),
            to.display(),
            xb.len()
        );
        return Err(Failure(what, 2));
    }
    let mut out = Vec::new();
    for (a, b) in xa.iter().zip(&xb) {
        let mut names: Vec<String> = a.spine_names().into_iter().map(|(n, _)| n).collect();
        names.extend(b.spine_names().into_iter().map(|(n, _)| n));
        names.sort();
        names.dedup();
        for name in names {
            let (ia, ib) = (a.spine_id(&name), b.spine_id(&name));
            let mode = ia.or(ib).map_or(RunMode::KeyValue, SpineId::mode);
            let base = json!({ "shard": a.id(), "spine": name });
            let ca = ia.filter(|i| i.mode() == mode).map(|i| a.cursor(i)).transpose()?;
            let cb = ib.filter(|i| i.mode() == mode).map(|i| b.cursor(i)).transpose()?;
            spine_changes(ca, cb, mode, limit, &mut out, &base)?;
        }
    }
    drop((xa, xb));
    sa.close()?;
    sb.close()?;
    Ok(out)
}
