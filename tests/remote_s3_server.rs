//! The remote tier against a real S3 server (moto, started by
//! `.ci/s3-server`): the server honors the conditional writes fencing
//! stands on, and fencing holds over HTTP as it does in memory.
//!
//! Environment:
//! - `STATESPINE_S3_URL`: the bucket (`s3://statespine-test`); each test
//!   works under a fresh prefix in it. Unset: every test says it is skipped
//!   and passes,
//! - unless `STATESPINE_REQUIRE_S3=1` (CI sets it): then an unset URL fails
//!   every test, so CI cannot pass without the server.
//! - `STATESPINE_S3_ENDPOINT`: the server (default `http://127.0.0.1:9010`);
//!   credentials `test`/`test`, region `us-east-1`, plain HTTP.
//!
//! ```text
//! s3_env=$(.ci/s3-server) && eval "$s3_env"
//! STATESPINE_REQUIRE_S3=1 cargo test --features remote --test remote_s3_server
//! ```
#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::sync::{Arc, Barrier};

use statespine::remote::object_store::path::Path as ObjectPath;
use statespine::remote::object_store::{
    self, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};
use statespine::remote::{Remote, RemoteCheckpoint, Writer, newest_manifest};
use statespine::{Error, ErrorKind};
use uuid::Uuid;

/// The server when `STATESPINE_S3_ENDPOINT` is unset (`.ci/s3-server`'s default).
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:9010";

/// A remote store on the S3 server the environment names (module docs),
/// under a prefix of its own (`<test_name>-<uuid>`), so tests never see
/// each other's objects; `None`, after saying the test is skipped, if
/// there is no server (a panic instead under `STATESPINE_REQUIRE_S3=1`).
pub fn s3_remote(test_name: &str) -> Option<Remote> {
    let Some(url) = std::env::var("STATESPINE_S3_URL").ok().filter(|u| !u.is_empty()) else {
        if std::env::var("STATESPINE_REQUIRE_S3").is_ok_and(|v| v == "1") {
            panic!(
                "{test_name}: STATESPINE_REQUIRE_S3=1 but STATESPINE_S3_URL is unset \
                 (start a server: s3_env=$(.ci/s3-server) && eval \"$s3_env\")"
            );
        }
        println!("skipped {test_name}: STATESPINE_S3_URL is unset (.ci/s3-server starts a server)");
        return None;
    };
    let endpoint = std::env::var("STATESPINE_S3_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    let url = format!("{}/{test_name}-{}", url.trim_end_matches('/'), Uuid::new_v4());
    let options = [
        ("aws_endpoint", endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
        ("aws_region", "us-east-1"),
    ];
    Some(Remote::from_url_with(&url, options).unwrap())
}

/// The object path of `key` under `remote`'s prefix (the path of its URL).
pub fn object_path(remote: &Remote, key: &str) -> ObjectPath {
    let url = url::Url::parse(remote.url()).unwrap();
    let prefix = ObjectPath::from_url_path(url.path()).unwrap();
    key.split('/').fold(prefix, |p, part| p.join(part))
}

/// Runs `f` to completion on a runtime with IO and timers (the S3 client
/// needs both).
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A retained checkpoint with no objects: fencing only looks at numbers.
pub fn checkpoint(epoch: u64) -> RemoteCheckpoint {
    RemoteCheckpoint {
        id: Uuid::from_u128(u128::from(epoch)),
        epoch,
        wall_time_ms: 0,
        pinned: false,
        objects: Vec::new(),
    }
}

fn create() -> PutOptions {
    PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    }
}

fn update(version: UpdateVersion) -> PutOptions {
    PutOptions {
        mode: PutMode::Update(version),
        ..PutOptions::default()
    }
}

/// The two conditional writes the remote tier relies on, straight to the
/// server: a second create of a key is refused (the commit point), and so
/// is an update conditioned on a version that is no longer current.
#[test]
fn the_server_refuses_a_second_create_and_a_stale_update() {
    let Some(remote) = s3_remote("conditional-writes") else {
        return;
    };
    block_on(async {
        let store = remote.object_store();
        let path = object_path(&remote, "manifest/00000000000000000001");
        let first = store
            .put_opts(&path, PutPayload::from_static(b"first"), create())
            .await
            .unwrap();
        let e = store
            .put_opts(&path, PutPayload::from_static(b"second"), create())
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
            ),
            "a second create of the same key: {e:?}"
        );
        let got = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"first", "the refused create changed nothing");

        // An update against the current version lands...
        let v1 = UpdateVersion {
            e_tag: first.e_tag.clone(),
            version: first.version.clone(),
        };
        assert!(v1.e_tag.is_some(), "the server returns an ETag");
        let second = store
            .put_opts(&path, PutPayload::from_static(b"updated"), update(v1.clone()))
            .await
            .unwrap();
        assert_ne!(second.e_tag, first.e_tag);
        // ...and one against the version it replaced is refused.
        let e = store
            .put_opts(&path, PutPayload::from_static(b"stale"), update(v1))
            .await
            .unwrap_err();
        assert!(
            matches!(e, object_store::Error::Precondition { .. }),
            "an update of a stale version: {e:?}"
        );
        let got = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"updated", "the refused update changed nothing");

        // A create of another key still lands.
        let other = object_path(&remote, "manifest/00000000000000000002");
        store
            .put_opts(&other, PutPayload::from_static(b"x"), create())
            .await
            .unwrap();
    });
}

/// Two writers over HTTP: the later claim wins; the earlier writer's next
/// commit is fenced, names the winner's epoch, and so is every commit after
/// it; the winner commits and its manifest is the newest.
#[test]
fn the_older_writer_is_fenced_for_good() {
    let Some(remote) = s3_remote("fenced-for-good") else {
        return;
    };
    block_on(async {
        assert_eq!(newest_manifest(&remote).await.unwrap(), (None, 0));
        let mut a = Writer::claim(remote.clone()).await.unwrap();
        assert_eq!((a.epoch(), a.manifest().seq), (1, 1));
        a.commit(vec![checkpoint(1)]).await.unwrap();
        assert_eq!(a.manifest().seq, 2);

        let mut b = Writer::claim(remote.clone()).await.unwrap();
        assert_eq!(b.epoch(), 3, "the claim takes the number after A's commit");
        assert_eq!(
            b.manifest().checkpoints,
            [checkpoint(1)],
            "a claim keeps what the store retains"
        );

        let e = a.commit(vec![checkpoint(1), checkpoint(2)]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Fenced, "{e}");
        assert!(
            matches!(
                e,
                Error::Fenced {
                    writer_epoch: 1,
                    by: 3,
                    ..
                }
            ),
            "{e}"
        );
        for n in 3..5 {
            let e = a.commit(vec![checkpoint(n)]).await.unwrap_err();
            assert!(matches!(e, Error::Fenced { by: 3, .. }), "{e}");
        }

        b.commit(vec![checkpoint(1), checkpoint(4)]).await.unwrap();
        b.commit(vec![checkpoint(4)]).await.unwrap();
        let (newest, top) = newest_manifest(&remote).await.unwrap();
        let newest = newest.unwrap();
        assert_eq!((newest.seq, newest.writer_epoch, top), (5, 3, 5));
        assert_eq!(
            newest.checkpoints,
            [checkpoint(4)],
            "the fenced writer's checkpoints never became visible"
        );
    });
}

/// Four writers claiming at once, each from its own thread and HTTP
/// client: every claim lands, each under its own epoch, and only the
/// highest may commit.
#[test]
fn racing_claims_from_threads_get_distinct_epochs() {
    const WRITERS: usize = 4;
    let Some(remote) = s3_remote("racing-claims") else {
        return;
    };
    let start = Arc::new(Barrier::new(WRITERS));
    let threads: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (remote, start) = (remote.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                block_on(Writer::claim(remote)).unwrap()
            })
        })
        .collect();
    let mut writers: Vec<Writer> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    writers.sort_by_key(Writer::epoch);
    let epochs: Vec<u64> = writers.iter().map(Writer::epoch).collect();
    assert_eq!(epochs, [1, 2, 3, 4], "one manifest per claim, no number twice");

    block_on(async {
        let (_, top) = newest_manifest(&remote).await.unwrap();
        assert_eq!(top, 4);
        let (newest, older) = writers.split_last_mut().unwrap();
        for w in older {
            let e = w.commit(vec![checkpoint(9)]).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Fenced, "epoch {}: {e}", w.epoch());
        }
        let m = newest.commit(vec![checkpoint(9)]).await.unwrap();
        assert_eq!((m.seq, m.writer_epoch), (5, 4));
    });
}

/// A store pushes checkpoints over HTTP (a run large enough for a
/// multipart upload among them), another machine restores the newest, and
/// gets every key back at the checkpoint's epoch and offsets.
#[test]
fn a_store_pushed_over_http_restores_on_another_machine() {
    use statespine::io::MemFs;
    use statespine::store::{CheckpointRequest, Options, Shard};
    let Some(remote) = s3_remote("roundtrip") else {
        return;
    };
    let remote = remote.part_size(5 << 20);
    let fs = Arc::new(MemFs::new());
    let mut store = Options::new("/db").fs(fs).push_to(remote.clone()).open().unwrap();
    let mut shard: Shard = store.take_shards().remove(0);
    let kv = shard.create_kv("kv").unwrap();
    // ~12 MiB of values, flushed into runs: the big ones go up in parts.
    let value = vec![7u8; 1000];
    for i in 0..12_000u32 {
        shard.put(kv, &i.to_be_bytes(), &value).unwrap();
    }
    shard.flush_all().unwrap();
    let mut request = CheckpointRequest::default();
    request.source_offsets.insert("bids".into(), 12_000);
    store
        .checkpoint_inline(&mut [&mut shard], 1, request.clone())
        .unwrap();
    shard.put(kv, b"late", b"after the checkpoint").unwrap();
    request.source_offsets.insert("bids".into(), 12_001);
    store.checkpoint_inline(&mut [&mut shard], 2, request).unwrap();
    let pushed = store
        .wait_pushed(std::time::Duration::from_secs(120))
        .unwrap()
        .unwrap();
    assert_eq!(pushed.epoch, 2);
    drop((shard, store));

    let state = Options::new("/db")
        .fs(Arc::new(MemFs::new()))
        .restore_from(remote)
        .recover()
        .unwrap();
    assert_eq!((state.epoch, state.source_offsets["bids"]), (2, 12_001));
    let mut store = state.store;
    let shard = store.take_shards().remove(0);
    let kv = shard.kv_spine("kv").unwrap();
    for i in 0..12_000u32 {
        assert_eq!(
            shard.get(kv, &i.to_be_bytes()).unwrap(),
            Some(&value[..]),
            "key {i}"
        );
    }
    assert_eq!(
        shard.get(kv, b"late").unwrap(),
        Some(&b"after the checkpoint"[..])
    );
}
