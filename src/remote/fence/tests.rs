//! Fencing against `object_store`'s in-memory store, and a wrapper that
//! loses the response of a create that landed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use uuid::Uuid;

use super::*;
use crate::ErrorKind;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn checkpoint(epoch: u64) -> RemoteCheckpoint {
    RemoteCheckpoint {
        id: Uuid::from_u128(epoch as u128),
        epoch,
        wall_time_ms: 0,
        pinned: false,
        objects: Vec::new(),
    }
}

fn memory() -> Remote {
    Remote::from_store(Arc::new(InMemory::new()), "stores/a").unwrap()
}

#[test]
fn a_claim_takes_the_next_number_as_its_epoch_and_commits_follow_it() {
    block_on(async {
        let remote = memory();
        assert_eq!(newest_manifest(&remote).await.unwrap(), (None, 0));
        let mut w = Writer::claim(remote.clone()).await.unwrap();
        assert_eq!((w.epoch(), w.manifest().seq), (1, 1));
        w.commit(vec![checkpoint(5)]).await.unwrap();
        w.commit(vec![checkpoint(5), checkpoint(6)]).await.unwrap();
        let (newest, top) = newest_manifest(&remote).await.unwrap();
        let newest = newest.unwrap();
        assert_eq!((newest.seq, newest.writer_epoch, top), (3, 1, 3));
        assert_eq!(newest.newest().unwrap().epoch, 6);
        // A new claim keeps what the store retains, under a higher epoch.
        let w2 = Writer::claim(remote).await.unwrap();
        assert_eq!((w2.epoch(), w2.manifest().checkpoints.len()), (4, 2));
    });
}

/// Two writers: the later claim wins; the earlier writer's next commit is
/// fenced, names the winner's epoch, and so is every commit after it.
#[test]
fn the_older_writer_is_fenced_for_good() {
    block_on(async {
        let remote = memory();
        let mut a = Writer::claim(remote.clone()).await.unwrap();
        a.commit(vec![checkpoint(1)]).await.unwrap();
        let mut b = Writer::claim(remote.clone()).await.unwrap();
        let e = a.commit(vec![checkpoint(2)]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Fenced);
        assert!(
            matches!(e, Error::Fenced { writer_epoch: 1, by, .. } if by == b.epoch()),
            "{e}"
        );
        assert_eq!(
            a.commit(vec![checkpoint(3)]).await.unwrap_err().kind(),
            ErrorKind::Fenced
        );
        b.commit(vec![checkpoint(1), checkpoint(4)]).await.unwrap();
        let newest = newest_manifest(&remote).await.unwrap().0.unwrap();
        assert_eq!(newest.writer_epoch, b.epoch());
        let epochs: Vec<u64> = newest.checkpoints.iter().map(|c| c.epoch).collect();
        assert_eq!(
            epochs,
            [1, 4],
            "the fenced writer's checkpoint never became visible"
        );
    });
}

/// Writers racing, interleaved at every await: in each round exactly one
/// commit of the number lands, and every loser is fenced.
#[test]
fn racing_writers_exactly_one_wins_each_number() {
    block_on(async {
        let remote = memory();
        let mut writers = Vec::new();
        for _ in 0..4 {
            writers.push(Writer::claim(remote.clone()).await.unwrap());
        }
        // Claims are serialized: every writer but the last is stale.
        let results =
            futures::future::join_all(writers.iter_mut().map(|w| w.commit(vec![checkpoint(9)]))).await;
        let won: Vec<bool> = results.iter().map(Result::is_ok).collect();
        assert_eq!(won, [false, false, false, true]);
        for r in &results[..3] {
            assert_eq!(r.as_ref().unwrap_err().kind(), ErrorKind::Fenced);
        }
    });
}

/// Two claims racing on the same number: both end up with distinct epochs,
/// the later one owns the store.
#[test]
fn racing_claims_get_distinct_epochs() {
    block_on(async {
        let remote = memory();
        let (a, b) = futures::join!(Writer::claim(remote.clone()), Writer::claim(remote.clone()));
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        assert_ne!(a.epoch(), b.epoch());
        let (old, new) = if a.epoch() < b.epoch() {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        assert_eq!(old.commit(vec![]).await.unwrap_err().kind(), ErrorKind::Fenced);
        new.commit(vec![]).await.unwrap();
    });
}

/// An object store whose create of a manifest lands but whose response is
/// lost (an error), `lose` times.
#[derive(Debug)]
struct LostResponses {
    inner: InMemory,
    lose: AtomicUsize,
}

impl std::fmt::Display for LostResponses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "lost-responses")
    }
}

#[async_trait]
impl ObjectStore for LostResponses {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let r = self.inner.put_opts(location, payload, opts).await?;
        let lose = self.lose.load(Ordering::SeqCst);
        if lose > 0 {
            self.lose.store(lose - 1, Ordering::SeqCst);
            return Err(object_store::Error::Generic {
                store: "lost-responses",
                source: "connection reset after the request was sent".into(),
            });
        }
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A commit whose create landed but whose answer was lost fails; retried,
/// the writer recognizes its own earlier success by its tag instead of
/// calling itself fenced, and the sequence has no gap and no duplicate.
#[test]
fn a_retried_commit_recognizes_its_own_success() {
    block_on(async {
        let store = Arc::new(LostResponses {
            inner: InMemory::new(),
            lose: AtomicUsize::new(0),
        });
        let remote = Remote::from_store(store.clone(), "s").unwrap();
        let mut w = Writer::claim(remote.clone()).await.unwrap();
        store.lose.store(1, Ordering::SeqCst);
        let e = w.commit(vec![checkpoint(1)]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        // Its create landed: number 2 holds checkpoint 1 under this writer.
        let there = newest_manifest(&remote).await.unwrap().0.unwrap();
        assert_eq!((there.seq, there.writer_epoch), (2, w.epoch()));
        // The next commit settles it as its own, then takes number 3.
        let m = w.commit(vec![checkpoint(1), checkpoint(2)]).await.unwrap();
        assert_eq!(m.seq, 3);
        assert_eq!(w.manifest().checkpoints.len(), 2);
    });
}

/// A damaged newest manifest is passed over for the newest whole one, but
/// still takes its number: the next claim writes above it.
#[test]
fn a_damaged_newest_manifest_is_passed_over_but_keeps_its_number() {
    block_on(async {
        let remote = memory();
        let mut w = Writer::claim(remote.clone()).await.unwrap();
        w.commit(vec![checkpoint(1)]).await.unwrap();
        let key = remote.path(&super::manifest_key(3));
        remote
            .object_store()
            .put(&key, PutPayload::from_static(b"SSPNREMO garbage"))
            .await
            .unwrap();
        let (newest, top) = newest_manifest(&remote).await.unwrap();
        assert_eq!((newest.unwrap().seq, top), (2, 3));
        let claimed = Writer::claim(remote.clone()).await.unwrap();
        assert_eq!((claimed.epoch(), claimed.manifest().checkpoints.len()), (4, 1));
        // The old writer's next number is taken by the damaged object: it
        // cannot tell who wrote it, and stops.
        assert_eq!(w.commit(vec![]).await.unwrap_err().kind(), ErrorKind::Fenced);
    });
}
