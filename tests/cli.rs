//! The `statespine` tool against a healthy store and its damaged twin:
//! exit codes, `--json` parsed back, one-line errors, and that a read-only
//! command changes no byte of the store.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use statespine::store::{CheckpointRequest, Options};

fn tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_statespine"))
        .args(args)
        .output()
        .unwrap()
}

/// A store with two checkpoints (epochs 1 and 2) and every run flushed.
fn store(dir: &Path) {
    let mut store = Options::new(dir).shards(2).open().unwrap();
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
    assert!(listed[1]["runs"].as_u64().unwrap() >= 2);
    assert!(tool(&["checkpoints", d]).status.success());

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
