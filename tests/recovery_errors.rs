//! What recovery says when it cannot do what it is asked: each refusal is an
//! error kind a caller can match on, naming what it needs to decide.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use statespine::io::MemFs;
use statespine::store::{CheckpointRequest, Options, RecoveryPoint, Shard};
use statespine::{Error, ErrorKind};

const WAIT: Duration = Duration::from_secs(10);

fn options(fs: &Arc<MemFs>, shards: u32) -> Options {
    Options::new("/db").fs(fs.clone()).shards(shards)
}

/// Two shards: a checkpoint of epoch 5, then a commit of epoch 7.
fn store_with_epochs_5_and_7(fs: &Arc<MemFs>) {
    let mut st = options(fs, 2).recover().unwrap();
    let mut shards = st.store.take_shards();
    for (i, s) in shards.iter_mut().enumerate() {
        let z = s.create_zset("count").unwrap();
        let lsn = s.update(z, format!("k{i}").as_bytes(), b"", 1).unwrap();
        s.wait_durable(lsn, WAIT).unwrap();
    }
    let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
    st.store
        .checkpoint_inline(&mut refs, 5, CheckpointRequest::default())
        .unwrap();
    let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
    st.store
        .commit_epoch_inline(&mut refs, 7, &CheckpointRequest::default())
        .unwrap();
}

#[test]
fn an_epoch_that_cannot_be_recovered_names_those_that_can_oldest_first() {
    let fs = Arc::new(MemFs::new());
    store_with_epochs_5_and_7(&fs);
    for missing in [4, 6, 9] {
        let err = options(&fs, 2)
            .recovery_point(RecoveryPoint::Epoch(missing))
            .recover()
            .unwrap_err();
        match &err {
            Error::EpochNotRecoverable { epoch, recoverable } => {
                assert_eq!(*epoch, missing);
                assert_eq!(recoverable, &[5, 7], "epoch {missing}");
            }
            other => panic!("epoch {missing}: {other}"),
        }
        assert_eq!(err.kind(), ErrorKind::Misuse);
    }
    // Nothing was changed: both epochs still recover. Recovering to 5
    // discards 7 for good, and the error then says so.
    let recover = |epoch| {
        options(&fs, 2)
            .recovery_point(RecoveryPoint::Epoch(epoch))
            .recover()
    };
    assert_eq!(recover(7).unwrap().epoch, 7);
    assert_eq!(recover(5).unwrap().epoch, 5);
    assert!(matches!(
        recover(7),
        Err(Error::EpochNotRecoverable { epoch: 7, recoverable }) if recoverable == [5]
    ));
}

#[test]
fn another_shard_count_or_fingerprint_is_incompatible_and_names_the_checkpoint() {
    let fs = Arc::new(MemFs::new());
    store_with_epochs_5_and_7(&fs);
    let err = options(&fs, 3).recover().unwrap_err();
    match &err {
        Error::Incompatible { path, reason } => {
            assert!(path.starts_with("/db/checkpoints"), "{err}");
            assert!(reason.contains("2 shards"), "{err}");
        }
        other => panic!("{other}"),
    }
    let err = options(&fs, 2)
        .fingerprint(b"another program".to_vec())
        .recover()
        .unwrap_err();
    match &err {
        Error::Incompatible { path, reason } => {
            assert!(path.starts_with("/db/checkpoints"), "{err}");
            assert!(reason.contains("fingerprint"), "{err}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(err.kind(), ErrorKind::Incompatible);
}
