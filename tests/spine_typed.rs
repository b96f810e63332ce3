//! `get_archived` hands out rkyv archives borrowed from the memtable or the
//! mapped run, for values written with rkyv; damaged values are errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use rkyv::{Archive, Serialize};
use statespine::io::MemFs;
use statespine::run::RunMode;
use statespine::spine::{Spine, SpineOptions};

#[derive(Archive, Serialize, Debug, PartialEq)]
struct Account {
    id: u64,
    balance: i64,
    owner: String,
}

#[test]
fn archived_values_read_in_place_from_memtable_and_runs() {
    let opts = SpineOptions::new(RunMode::KeyValue).memtable_size_bytes(8 << 10);
    let mut s = Spine::create(Arc::new(MemFs::new()), "/t", opts).unwrap();
    for id in 0..2_000u64 {
        let a = Account {
            id,
            balance: id as i64 * 10 - 5,
            owner: format!("owner-{id}"),
        };
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&a).unwrap();
        s.put(&id.to_be_bytes(), &bytes).unwrap();
        if id == 1_000 {
            s.settle().unwrap();
        }
    }
    assert!(s.disk_size_bytes() > 0, "some values live in runs");
    for id in [0u64, 999, 1_000, 1_999] {
        let a = s
            .get_archived::<ArchivedAccount>(&id.to_be_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(a.id, id);
        assert_eq!(a.balance, id as i64 * 10 - 5);
        assert_eq!(a.owner.as_str(), format!("owner-{id}"));
    }
    assert!(
        s.get_archived::<ArchivedAccount>(&5_000u64.to_be_bytes())
            .unwrap()
            .is_none()
    );
    s.put(b"junk", &[0xff; 3]).unwrap();
    assert!(s.get_archived::<ArchivedAccount>(b"junk").is_err());
}
