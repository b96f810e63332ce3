//! The `statespine` tool against a healthy store and its damaged twin:
//! exit codes, `--json` parsed back, one-line errors, and that a read-only
//! command changes no byte of the store.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use statespine::store::{CheckpointRequest, Options};

/// Held while a child process is spawned, and while a store is closed
/// for someone else to open: a child forked while the store is open holds
/// a copy of its lock's file descriptor (and so its `flock`) until it
/// execs, so a close racing a spawn in another test would leave the lock
/// held for a moment after the store is gone.
static SPAWN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn spawning() -> std::sync::MutexGuard<'static, ()> {
    SPAWN.lock().unwrap_or_else(|p| p.into_inner())
}

fn tool(args: &[&str]) -> Output {
    let child = {
        let _spawning = spawning();
        Command::new(env!("CARGO_BIN_EXE_statespine"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    child.wait_with_output().unwrap()
}

/// Drops `x` (a store, its shards) where no child is being spawned (see
/// [`SPAWN`]).
fn close<T>(x: T) {
    let _spawning = spawning();
    drop(x);
}

/// A store with two checkpoints (epochs 1 and 2) and every run flushed
/// into the checkpoint of its epoch (eagerly: none deferred to the next
/// cut for being young, whatever the machine's load).
fn store(dir: &Path) {
    let mut store = Options::new(dir).shards(2).eager_run_sync(true).open().unwrap();
    let mut shards = store.take_shards();
    for epoch in 1..=2u64 {
        for s in &mut shards {
            let kv = match s.kv_spine("kv") {
                Some(kv) => kv,
                None => s.create_kv("kv").unwrap(),
            };
            for i in 0..500u32 {
                s.put(kv, &i.to_be_bytes(), format!("{epoch}-{i}").as_bytes())
                    .unwrap();
            }
            s.flush_all().unwrap();
        }
        let mut req = CheckpointRequest::default();
        req.source_offsets.insert("bids".into(), epoch * 10);
        let mut refs: Vec<_> = shards.iter_mut().collect();
        store.checkpoint_inline(&mut refs, epoch, req).unwrap();
    }
    let _spawning = spawning();
    drop(shards);
    store.close().unwrap();
}

/// Every file under `dir` with its bytes.
fn image(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_tool_lists_verifies_and_dumps_without_changing_a_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    store(&dir);
    let before = image(&dir);
    let d = dir.to_str().unwrap();

    let out = tool(&["checkpoints", d, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let listed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let epochs: Vec<u64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, [1, 2]);
    assert_eq!(listed[1]["source_offsets"]["bids"], 20);
    // The oldest's runs are all new; the newest's are those epoch 2 wrote.
    let m0 = json_of(&tool(&[
        "dump",
        "manifest",
        &format!("{d}/checkpoints/{}", listed[0]["id"].as_str().unwrap()),
        "--json",
    ]));
    let run_bytes: u64 = m0["shards"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["spines"].as_array().unwrap())
        .flat_map(|sp| sp["runs"].as_array().unwrap())
        .map(|r| r["size"].as_u64().unwrap())
        .sum();
    assert_eq!(listed[0]["new_bytes"].as_u64(), Some(run_bytes), "{listed}");
    let new1 = listed[1]["new_bytes"].as_u64().unwrap();
    assert!(
        new1 > 0 && new1 < listed[1]["bytes"].as_u64().unwrap(),
        "{listed}"
    );
    assert!(listed[1]["runs"].as_u64().unwrap() >= 2);
    assert!(tool(&["checkpoints", d]).status.success());
    // One checkpoint in full, named by a prefix of its id.
    let id = listed[1]["id"].as_str().unwrap();
    let out = tool(&["checkpoints", d, &id[..8], "--json"]);
    assert!(out.status.success(), "{out:?}");
    let full: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (full["id"].as_str(), &full["epoch"]),
        (Some(id), &listed[1]["epoch"])
    );
    assert_eq!(full["summary"]["runs"], listed[1]["runs"]);
    assert!(full["shards"].as_array().is_some_and(|s| !s.is_empty()), "{full}");
    let out = tool(&["checkpoints", d, "ffffffff-no-such"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("statespine: "),
        "{out:?}"
    );

    let out = tool(&["verify", d, "--depth", "blocks", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["damaged"], 0);
    assert_eq!(report["checkpoints"].as_array().unwrap().len(), 2);

    let newest = listed[1]["id"].as_str().unwrap();
    let ck = dir.join("checkpoints").join(newest);
    let out = tool(&["dump", "manifest", ck.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{out:?}");
    let m: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (m["epoch"].as_u64(), m["shards"].as_array().map(Vec::len)),
        (Some(2), Some(2))
    );
    assert!(
        tool(&["dump", "manifest", ck.join("MANIFEST").to_str().unwrap()])
            .status
            .success()
    );

    let out = tool(&["info", d, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let info: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(info["epochs"], serde_json::json!([1, 2]));
    assert_eq!(info["wal"].as_array().unwrap().len(), 2, "{info}");
    // Each shard's WAL ends with the commit record of checkpoint 2's cut.
    assert_eq!(info["last_committed_epoch"], 2, "{info}");
    for w in info["wal"].as_array().unwrap() {
        assert_eq!(w["last_commit_epoch"], 2, "{info}");
        assert!(
            w["last_lsn"].as_u64().unwrap() >= 1000,
            "500 puts a round, two rounds: {info}"
        );
    }
    let spines = info["spines"].as_array().unwrap();
    assert_eq!(spines.len(), 2);
    assert!(
        spines
            .iter()
            .all(|s| s["name"] == "kv" && s["entries_in_runs"].as_u64().unwrap() >= 500)
    );
    assert!(info["lock_last_holder"].as_str().unwrap().starts_with("pid "));
    assert!(tool(&["info", d]).status.success());

    let run = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "run"))
        .unwrap();
    let out = tool(&["dump", "run", run.to_str().unwrap(), "--json", "--limit", "3"]);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["kind"], "Put");
    assert!(lines[0]["value"].as_str().unwrap().contains('-'), "{}", lines[0]);
    let wal = dir.join("shards/0/wal");
    let seg = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let out = tool(&["dump", "wal", seg.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["shard"], 0);
    assert_eq!(
        last["records"].as_u64().unwrap() as usize,
        text.lines().count() - 1
    );

    let older = dir.join("checkpoints").join(listed[0]["id"].as_str().unwrap());
    let out = tool(&["diff", older.to_str().unwrap(), ck.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{out:?}");
    let diff: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let runs = |what: &str| diff[what]["runs"].as_u64().unwrap();
    assert!(runs("added") > 0, "{diff}");
    assert_eq!(
        runs("shared") + runs("added"),
        listed[1]["runs"].as_u64().unwrap(),
        "{diff}"
    );
    assert_eq!(
        runs("shared") + runs("removed"),
        listed[0]["runs"].as_u64().unwrap(),
        "{diff}"
    );
    // Keys changed: every key of both shards got a new value in epoch 2.
    let args = [
        "diff",
        older.to_str().unwrap(),
        ck.to_str().unwrap(),
        "--keys=3",
        "--json",
    ];
    let diff: serde_json::Value = serde_json::from_str(&stdout(&tool(&args))).unwrap();
    let keys = diff["keys_changed"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "{diff}");
    assert_eq!(
        (&keys[0]["key"], &keys[0]["before"], &keys[0]["after"]),
        (
            &serde_json::json!("0x00000000"),
            &serde_json::json!("1-0"),
            &serde_json::json!("2-0")
        ),
        "{diff}"
    );
    let args = [
        "diff",
        ck.to_str().unwrap(),
        ck.to_str().unwrap(),
        "--keys",
        "--json",
    ];
    let same: serde_json::Value = serde_json::from_str(&stdout(&tool(&args))).unwrap();
    assert_eq!(same["keys_changed"], serde_json::json!([]), "{same}");

    for shell in ["bash", "zsh", "fish"] {
        let out = tool(&["completions", shell]);
        assert!(out.status.success() && stdout(&out).contains("verify"), "{shell}");
    }
    let help = stdout(&tool(&["--help"]));
    for cmd in ["info", "checkpoints", "verify", "diff", "dump"] {
        assert!(help.contains(cmd), "{help}");
    }

    assert!(image(&dir) == before, "a read-only command changed the store");
}

#[test]
fn damage_is_exit_code_1_and_an_unreadable_path_is_2_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    store(&dir);
    let d = dir.to_str().unwrap();
    let listed: serde_json::Value =
        serde_json::from_str(&stdout(&tool(&["checkpoints", d, "--json"]))).unwrap();
    let ck = dir.join("checkpoints").join(listed[1]["id"].as_str().unwrap());
    let older = dir.join("checkpoints").join(listed[0]["id"].as_str().unwrap());
    // Flip a byte in the middle of the largest run only the newest
    // checkpoint holds (a shared run is one file, linked in both).
    let run = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "run"))
        .filter(|p| !older.join(p.file_name().unwrap()).exists())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&run).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x40;
    std::fs::write(&run, bytes).unwrap();

    let out = tool(&["verify", ck.to_str().unwrap(), "--depth", "blocks"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    let name = run.file_name().unwrap().to_str().unwrap();
    assert!(text.contains(name) && text.contains("1 damaged"), "{text}");
    let out = tool(&["verify", d, "--depth", "blocks", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["damaged"].as_u64(), Some(1), "{report}");
    // compact checks every byte first, and refuses, changing nothing.
    let before = image(&dir);
    let out = tool(&["compact", d]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(name) && err.lines().count() == 1, "{err}");
    assert!(image(&dir) == before, "a refused compact changed the store");

    // A damaged MANIFEST: dump says where, in one line.
    let manifest = ck.join("MANIFEST");
    let mut bytes = std::fs::read(&manifest).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&manifest, bytes).unwrap();
    let out = tool(&["dump", "manifest", ck.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("MANIFEST") && !err.contains("panicked"), "{err}");

    for args in [["verify", "/no/such/store"], ["checkpoints", "/no/such/store"]] {
        let out = tool(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("statespine: ") && err.contains("/no/such/store"),
            "{err}"
        );
    }
}

/// A bucket URL: its checkpoints listed, and restored into an empty
/// directory that then verifies clean; a directory holding a store is
/// refused.
#[cfg(feature = "remote")]
#[test]
fn the_tool_lists_and_restores_a_bucket() {
    use statespine::remote::Remote;
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let url = format!("file://{}", bucket.display());
    let dir = tmp.path().join("db");
    {
        let mut store = Options::new(&dir)
            .shards(2)
            .push_to(Remote::from_url(&url).unwrap())
            .open()
            .unwrap();
        let mut shards = store.take_shards();
        for s in &mut shards {
            let kv = s.create_kv("kv").unwrap();
            s.put(kv, b"k", b"v").unwrap();
        }
        let mut refs: Vec<_> = shards.iter_mut().collect();
        store
            .checkpoint_inline(&mut refs, 7, CheckpointRequest::default())
            .unwrap();
        store.wait_pushed(std::time::Duration::from_secs(30)).unwrap();
        close((shards, store));
    }
    let out = tool(&["checkpoints", &url, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let listed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(listed["checkpoints"][0]["epoch"], 7, "{listed}");

    let target = tmp.path().join("restored");
    let t = target.to_str().unwrap();
    let out = tool(&["restore", &url, t, "--shards", "2"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("recovered epoch 7"), "{}", stdout(&out));
    let out = tool(&["restore", &url, t, "--shards", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// The key of entry `i` of [`epochs_store`], and its shard.
fn key(i: u32) -> (String, usize) {
    (format!("k{i}"), (i % 2) as usize)
}

/// A store of two shards with a key-value spine `kv` and a Z-set `zs`:
/// epoch 1 checkpointed (`k<i>` = `v1-<i>`), epoch 2 committed in the WAL
/// only (`v2-<i>`), epoch 3 written and durable but never committed
/// (`v3-<i>`), then a crash. Returns the epoch-1 checkpoint's id.
fn epochs_store(dir: &Path) -> String {
    use statespine::store::Lsn;
    let mut store = Options::new(dir).shards(2).open().unwrap();
    let mut shards = store.take_shards();
    let mut id = String::new();
    for epoch in 1..=3u64 {
        for i in 0..20u32 {
            let (k, n) = key(i);
            let s = &mut shards[n];
            let kv = s.create_kv("kv").unwrap();
            let zs = s.create_zset("zs").unwrap();
            s.put(kv, k.as_bytes(), format!("v{epoch}-{i}").as_bytes())
                .unwrap();
            s.update(zs, k.as_bytes(), b"seen", 1).unwrap();
        }
        let mut req = CheckpointRequest::default();
        req.source_offsets.insert("bids".into(), epoch * 10);
        let mut refs: Vec<_> = shards.iter_mut().collect();
        match epoch {
            1 => id = store.checkpoint_inline(&mut refs, 1, req).unwrap().id.to_string(),
            2 => drop(store.commit_epoch_inline(&mut refs, 2, &req).unwrap()),
            _ => {
                for s in &shards {
                    let last: Lsn = s.last_lsn();
                    s.wait_durable(last, std::time::Duration::from_secs(10)).unwrap();
                }
            }
        }
    }
    close((shards, store)); // a crash, as far as the store can tell
    id
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_str(&stdout(out)).unwrap()
}

/// `statespine get` and `scan` return the state recovery would, at the
/// last committed epoch, an older one or a checkpoint's, and the store
/// keeps every byte.
#[test]
fn get_and_scan_read_an_epoch_without_changing_a_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let ck = epochs_store(&dir);
    let before = image(&dir);
    let d = dir.to_str().unwrap();

    let got = json_of(&tool(&["get", d, "k3", "--spine", "kv", "--json"]));
    assert_eq!(got["epoch"], 2, "the last committed epoch: {got}");
    assert_eq!(got["hits"][0]["value"], "v2-3", "{got}");
    assert_eq!(got["hits"][0]["shard"], 1, "{got}");
    let got = json_of(&tool(&[
        "get", d, "k3", "--spine", "kv", "--epoch", "1", "--json",
    ]));
    assert_eq!(
        (got["epoch"].as_u64(), got["hits"][0]["value"].as_str()),
        (Some(1), Some("v1-3"))
    );
    let got = json_of(&tool(&[
        "get",
        d,
        "k3",
        "--spine",
        "kv",
        "--checkpoint",
        &ck,
        "--json",
    ]));
    assert_eq!(got["hits"][0]["value"], "v1-3", "{got}");
    let ck_dir = dir.join("checkpoints").join(&ck);
    let got = json_of(&tool(&[
        "get",
        d,
        "k3",
        "--checkpoint",
        ck_dir.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(got["hits"].as_array().unwrap().len(), 2, "kv and zs: {got}");
    let got = json_of(&tool(&["get", d, "6b33", "--hex", "--spine", "zs", "--json"]));
    assert_eq!(got["hits"][0]["value"], "seen");
    assert_eq!(got["hits"][0]["weight"], 2, "two epochs of +1: {got}");
    let out = tool(&["get", d, "k3", "--spine", "kv"]);
    assert!(stdout(&out).contains("v2-3"), "{out:?}");
    let out = tool(&["get", d, "nokey"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = tool(&["get", d, "k3", "--epoch", "9"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);

    let lines = |out: Output| -> Vec<serde_json::Value> {
        assert!(out.status.success(), "{out:?}");
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = lines(tool(&["scan", d, "--spine", "kv", "--json"]));
    let keys: Vec<&str> = all.iter().map(|v| v["key"].as_str().unwrap()).collect();
    let mut sorted: Vec<String> = (0..20).map(|i| key(i).0).collect();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert!(
        all.iter()
            .all(|v| v["value"].as_str().unwrap().starts_with("v2-"))
    );
    let old = lines(tool(&[
        "scan", d, "--spine", "kv", "--epoch", "1", "--prefix", "k1", "--json",
    ]));
    assert_eq!(old.len(), 11, "k1 and k10..k19");
    assert!(
        old.iter()
            .all(|v| v["value"].as_str().unwrap().starts_with("v1-"))
    );
    let some = lines(tool(&[
        "scan", d, "--spine", "zs", "--from", "k1", "--to", "k2", "--limit", "3", "--json",
    ]));
    let keys: Vec<&str> = some.iter().map(|v| v["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["k1", "k10", "k11"]);
    assert_eq!(some[0]["weight"], 2);
    let one = lines(tool(&["scan", d, "--spine", "kv", "--shard", "0", "--json"]));
    assert_eq!(one.len(), 10);
    assert!(tool(&["scan", d, "--spine", "kv"]).status.success());
    assert_eq!(tool(&["scan", d, "--spine", "nope"]).status.code(), Some(2));

    assert!(image(&dir) == before, "get or scan changed the store");
}

/// A store another process holds open (its lock taken, a later epoch
/// committed) is read all the same, without a byte changed; a command
/// that takes the lock is refused with the lock's error, in one line.
#[test]
fn get_reads_a_store_whose_lock_is_held() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    epochs_store(&dir);
    let mut store = Options::new(&dir).shards(2).open().unwrap();
    let mut shards = store.take_shards();
    let kv = shards[1].kv_spine("kv").unwrap();
    shards[1].put(kv, b"k3", b"live").unwrap();
    let mut refs: Vec<_> = shards.iter_mut().collect();
    store
        .commit_epoch_inline(&mut refs, 5, &CheckpointRequest::default())
        .unwrap();
    let before = image(&dir);
    let d = dir.to_str().unwrap();

    let got = json_of(&tool(&["get", d, "k3", "--spine", "kv", "--json"]));
    assert_eq!(
        (got["epoch"].as_u64(), got["hits"][0]["value"].as_str()),
        (Some(5), Some("live"))
    );
    let got = json_of(&tool(&[
        "get", d, "k3", "--spine", "kv", "--epoch", "2", "--json",
    ]));
    assert_eq!(got["hits"][0]["value"], "v2-3", "{got}");
    assert!(image(&dir) == before, "get changed a live store");

    for args in [["compact", d], ["gc", d]] {
        let out = tool(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("statespine: ") && err.contains("locked"), "{err}");
    }
    // The live store goes on.
    shards[1].put(kv, b"k3", b"later").unwrap();
    let mut refs: Vec<_> = shards.iter_mut().collect();
    store
        .commit_epoch_inline(&mut refs, 6, &CheckpointRequest::default())
        .unwrap();
}

/// Runs of the newest checkpoint, from `checkpoints --json`.
fn newest_runs(d: &str) -> u64 {
    let listed = json_of(&tool(&["checkpoints", d, "--json"]));
    let all = listed.as_array().unwrap();
    all.last().unwrap()["runs"].as_u64().unwrap()
}

/// `compact` merges what flushes piled up and checkpoints the result: fewer
/// runs, the same state, a store that verifies clean.
#[test]
fn compact_merges_runs_into_a_new_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    {
        // The widest fan-in: six flushes make six runs, none merged.
        let spine = statespine::SpineOptions::new(statespine::RunMode::KeyValue).fan_in(16);
        // Every run in the checkpoint, however young (none left to the WAL).
        let mut store = Options::new(&dir)
            .shards(2)
            .spine_options(spine)
            .eager_run_sync(true)
            .open()
            .unwrap();
        let mut shards = store.take_shards();
        for round in 0..6u32 {
            for s in &mut shards {
                let kv = s.create_kv("kv").unwrap();
                for i in 0..300u32 {
                    s.put(kv, &i.to_be_bytes(), format!("{round}-{i}").as_bytes())
                        .unwrap();
                }
                s.flush_all().unwrap();
            }
        }
        let mut req = CheckpointRequest::default();
        req.source_offsets.insert("bids".into(), 77);
        let mut refs: Vec<_> = shards.iter_mut().collect();
        store.checkpoint_inline(&mut refs, 1, req).unwrap();
        close((shards, store));
    }
    let d = dir.to_str().unwrap();
    let before = newest_runs(d);
    assert_eq!(before, 12, "six runs a shard");
    let report = json_of(&tool(&["compact", d, "--json"]));
    assert_eq!(report["before"]["runs"], before, "{report}");
    let after = newest_runs(d);
    assert_eq!(report["after"]["runs"], after, "{report}");
    assert_eq!(after, 2, "one run a shard: {report}");
    assert_eq!(report["epoch"], 2, "{report}");

    let out = tool(&["verify", d, "--depth", "blocks"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let state = Options::new(&dir).shards(2).recover().unwrap();
    assert_eq!((state.epoch, state.source_offsets["bids"]), (2, 77));
    let shards = { state.store }.take_shards();
    for s in &shards {
        let kv = s.kv_spine("kv").unwrap();
        assert_eq!(s.get(kv, &7u32.to_be_bytes()).unwrap(), Some(&b"5-7"[..]));
    }
    drop(shards);
    assert!(tool(&["compact", d]).status.success());
}

/// `gc` removes what recovery removes (a half-written checkpoint, a run
/// no checkpoint holds) and says so; a second run finds nothing.
#[test]
fn gc_reports_what_it_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    store(&dir);
    let half = dir.join("checkpoints/0b5e1c7a-0000-4000-8000-000000000000.tmp");
    std::fs::create_dir_all(&half).unwrap();
    std::fs::write(half.join("MANIFEST"), vec![7u8; 100]).unwrap();
    let spine_dir = std::fs::read_dir(dir.join("shards/0/runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let orphan = spine_dir.join("999999999999.run");
    std::fs::write(&orphan, vec![1u8; 1000]).unwrap();
    let d = dir.to_str().unwrap();

    let report = json_of(&tool(&["gc", d, "--json"]));
    let removed: Vec<&str> = report["removed_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        removed.contains(&half.join("MANIFEST").to_str().unwrap()),
        "{report}"
    );
    assert!(removed.contains(&orphan.to_str().unwrap()), "{report}");
    assert!(report["removed_bytes"].as_u64().unwrap() >= 1100, "{report}");
    assert!(!orphan.exists() && !half.exists());
    let again = json_of(&tool(&["gc", d, "--json"]));
    assert_eq!(again["removed_files"], serde_json::json!([]), "{again}");
    let out = tool(&["gc", d]);
    assert!(stdout(&out).contains("0 file(s)"), "{out:?}");
    assert_eq!(
        json_of(&tool(&["info", d, "--json"]))["epochs"],
        serde_json::json!([1, 2])
    );
}

/// Damage, a foreign directory and a missing one: exit code 2 and one
/// line, the library's error naming the file (and offset), never a panic.
#[test]
fn a_damaged_or_foreign_store_is_one_line_and_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    epochs_store(&dir);
    // Damage in the middle of shard 0's log: records follow it, so it is
    // not a torn tail.
    let wal = dir.join("shards/0/wal");
    let seg = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&seg, bytes).unwrap();
    let before = image(&dir);
    let d = dir.to_str().unwrap();
    let foreign = Path::new(env!("CARGO_MANIFEST_DIR")).join("format/golden/v1");
    let f = foreign.to_str().unwrap();

    let cases: [(&[&str], &str); 5] = [
        (&["get", d, "k3"], ".wal"),
        (&["scan", d, "--spine", "kv"], ".wal"),
        (&["get", f, "k"], f),
        (&["scan", f, "--spine", "kv"], f),
        (&["get", "/no/such/store", "k"], "/no/such/store"),
    ];
    for (args, names) in cases {
        let out = tool(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("statespine: ") && err.contains(names),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let err = String::from_utf8_lossy(&tool(&["get", d, "k3"]).stderr).into_owned();
    assert!(err.contains("offset"), "{err}");
    assert!(image(&dir) == before, "a refused command changed the store");
    // A command that writes fails the same way (it takes the lock first).
    let out = tool(&["compact", d]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(".wal") && err.contains("offset"), "{err}");
}

fn golden(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("format/golden")
        .join(path)
        .display()
        .to_string()
}

/// The committed golden files through the tool: the good ones dump with
/// exit code 0, every damaged twin gives a line naming its file.
#[test]
fn the_golden_files_dump_and_their_damaged_twins_are_named() {
    let out = tool(&["dump", "run", &golden("v1/kv.run"), "--json"]);
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(lines.len(), 201);
    assert_eq!(lines[0]["value"], "the empty key");
    let out = tool(&["dump", "run", &golden("v1/zset-zstd.run")]);
    assert!(
        out.status.success() && stdout(&out).contains("user/039"),
        "{out:?}"
    );
    let out = tool(&["dump", "run", &golden("v1/kv.damaged.run")]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("kv.damaged.run at offset") && !err.contains("panicked"),
        "{err}"
    );

    let m = json_of(&tool(&["dump", "manifest", &golden("manifest-v1"), "--json"]));
    assert_eq!(m["epoch"], 42, "{m}");
    // The golden manifest alone (its runs are not committed): verify
    // names each missing file, exit code 1.
    let out = tool(&["verify", &golden("manifest-v1")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).contains("0-0-000000000007.run"), "{out:?}");
    // Its damaged twin: one byte flipped in a copy.
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(golden("manifest-v1/MANIFEST")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(tmp.path().join("MANIFEST"), bytes).unwrap();
    for args in [["dump", "manifest"], ["verify", "--depth=manifest"]] {
        let out = tool(&[args[0], args[1], tmp.path().to_str().unwrap()]);
        let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        assert!(matches!(out.status.code(), Some(1 | 2)), "{args:?}: {out:?}");
        assert!(text.contains("MANIFEST") && !text.contains("panicked"), "{text}");
    }

    let seg = "00000000000000000001.wal";
    let out = tool(&["dump", "wal", &golden(&format!("wal-v1/good/{seg}")), "--json"]);
    let last: serde_json::Value = serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        (last["records"].as_u64(), last["tail"].as_str()),
        (Some(5), Some("Clean"))
    );
    let out = tool(&["dump", "wal", &golden(&format!("wal-v1/torn/{seg}"))]);
    assert_eq!(out.status.code(), Some(0), "a torn tail is no damage: {out:?}");
    assert!(stdout(&out).contains("a torn tail from byte"), "{out:?}");
    let out = tool(&["dump", "wal", &golden(&format!("wal-v1/corrupt/{seg}"))]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    let line = text.lines().last().unwrap();
    assert!(
        line.contains(&format!("corrupt/{seg}")) && line.contains("DAMAGED at byte"),
        "{text}"
    );

    for args in [["info", "v1"], ["checkpoints", "v1"], ["verify", "v1"]] {
        let out = tool(&[args[0], &golden(args[1])]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("golden/v1"), "{err}");
    }
}

/// `push` checkpoints a store into a bucket (which then lists it), and
/// `gc --remote` collects the bucket too.
#[cfg(feature = "remote")]
#[test]
fn push_sends_a_checkpoint_and_gc_collects_the_bucket() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let url = format!("file://{}", bucket.display());
    let dir = tmp.path().join("db");
    store(&dir);
    let d = dir.to_str().unwrap();
    let report = json_of(&tool(&["push", d, &url, "--json"]));
    assert_eq!(report["epoch"], 3, "{report}");
    assert!(report["uploaded_objects"].as_u64().unwrap() > 0, "{report}");
    let listed = json_of(&tool(&["checkpoints", &url, "--json"]));
    assert_eq!(listed["checkpoints"][0]["epoch"], 3, "{listed}");
    assert_eq!(
        json_of(&tool(&["info", d, "--json"]))["source_offsets"]["bids"],
        20
    );
    let out = tool(&["push", d, &url]);
    assert!(stdout(&out).contains("epoch 4"), "{out:?}");
    let gc = json_of(&tool(&["gc", d, "--remote", &url, "--json"]));
    assert!(gc["remote"]["listed"].as_u64().unwrap() > 0, "{gc}");
}

/// The commands that write leave the owner what it relies on: its
/// fingerprint (the next open with it works), every checkpoint it retains,
/// and durable writes past the last commit (refused unless asked).
#[test]
fn writing_commands_keep_what_the_owner_relies_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let owner = || Options::new(&dir).fingerprint(*b"job v3").max_retained(6);
    {
        let mut store = owner().eager_run_sync(true).open().unwrap();
        let mut shards = store.take_shards();
        let kv = shards[0].create_kv("kv").unwrap();
        for epoch in 1..=5u64 {
            shards[0].put(kv, b"k", &epoch.to_be_bytes()).unwrap();
            let mut refs: Vec<_> = shards.iter_mut().collect();
            store
                .checkpoint_inline(&mut refs, epoch, CheckpointRequest::default())
                .unwrap();
        }
        // Durable, never committed: an owner recovering to the latest
        // write relies on it.
        let lsn = shards[0].put(kv, b"late", b"1").unwrap();
        shards[0]
            .wait_durable(lsn, std::time::Duration::from_secs(10))
            .unwrap();
        close((shards, store));
    }
    let d = dir.to_str().unwrap();
    let before = image(&dir);
    for cmd in ["compact", "gc"] {
        let out = tool(&[cmd, d]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--discard-uncommitted") && err.lines().count() == 1,
            "{err}"
        );
    }
    assert!(image(&dir) == before, "a refused command changed the store");

    let out = tool(&["compact", d, "--discard-uncommitted", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let listed = json_of(&tool(&["checkpoints", d, "--json"]));
    let epochs: Vec<u64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, [1, 2, 3, 4, 5, 6], "every checkpoint kept");
    let state = owner().recover().expect("the owner's fingerprint was kept");
    assert_eq!(state.epoch, 6);
    let shards = { state.store }.take_shards();
    let kv = shards[0].kv_spine("kv").unwrap();
    assert_eq!(shards[0].get(kv, b"k").unwrap(), Some(&5u64.to_be_bytes()[..]));
    assert_eq!(shards[0].get(kv, b"late").unwrap(), None, "discarded, as asked");
    close(shards);
}
