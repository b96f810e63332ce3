//! Typed spines (`Shard::create_typed`, `put_typed`, `get_typed`,
//! `delete_typed`, `range_typed`): key encodings sort as the keys do; a
//! typed spine reads back as a model map says (point reads, order, ranges),
//! before and after recovery; a warm typed put
//! allocates no more than the untyped put of the same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rkyv::{Archive, Serialize};
use statespine::io::MemFs;
use statespine::run::RunMode;
use statespine::spine::SpineOptions;
use statespine::store::{Key, Options, RecoveryPoint, encode_key};

#[path = "common/alloc.rs"]
mod alloc;
use alloc::allocations;

#[derive(Archive, Serialize, Debug, Clone, PartialEq)]
struct Account {
    owner: String,
    balance: i64,
    tags: Vec<u32>,
}

fn same_order<K: Key + Ord + std::fmt::Debug>(a: &K, b: &K) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.cmp(b), encode_key(a).cmp(&encode_key(b)), "{:?} vs {:?}", a, b);
    Ok(())
}

proptest! {
    /// Byte order of the encodings is value order, for every key type.
    #[test]
    fn byte_order_is_value_order(
        (u1, u2) in (any::<u32>(), any::<u32>()),
        (w1, w2) in (any::<u64>(), any::<u64>()),
        (i1, i2) in (any::<i32>(), any::<i32>()),
        (l1, l2) in (any::<i64>(), any::<i64>()),
        (s1, s2) in ("[a\\x00b]{0,6}", "[a\\x00b]{0,6}"),
        (v1, v2) in (prop::collection::vec(0..3u8, 0..6), prop::collection::vec(0..3u8, 0..6)),
    ) {
        same_order(&u1, &u2)?;
        same_order(&w1, &w2)?;
        same_order(&i1, &i2)?;
        same_order(&l1, &l2)?;
        same_order(&s1, &s2)?;
        same_order(&v1, &v2)?;
        // Tuples: a variable-length first part must not let the second
        // part leak into the comparison.
        same_order(&(s1.clone(), l1), &(s2.clone(), l2))?;
        same_order(&(v1.clone(), v2.clone()), &(v2.clone(), v1.clone()))?;
        same_order(&(i1, s1.clone()), &(i2, s2.clone()))?;
        same_order(&(v1.clone(), u1, s1.clone()), &(v2.clone(), u2, s2.clone()))?;
    }
}

#[test]
fn signed_keys_sort_negatives_first() {
    let mut keys = [i64::MAX, 0, -1, i64::MIN, 1, -300];
    let mut encoded: Vec<Vec<u8>> = keys.iter().map(encode_key).collect();
    keys.sort_unstable();
    encoded.sort_unstable();
    let want: Vec<Vec<u8>> = keys.iter().map(encode_key).collect();
    assert_eq!(encoded, want);
    // References and borrowed forms encode as what they refer to.
    assert_eq!(encode_key(&&b"ab"[..]), encode_key(&b"ab".to_vec()));
    assert_eq!(encode_key("ab"), encode_key(&String::from("ab")));
}

#[derive(Debug, Clone)]
enum Op {
    Put(String, i64, u8),
    Delete(String, i64),
}

fn account(n: u8) -> Account {
    Account {
        owner: format!("owner-{n}"),
        balance: i64::from(n) * 1_000 - 77,
        tags: (0..u32::from(n % 5)).collect(),
    }
}

fn options(fs: &Arc<MemFs>) -> Options {
    Options::new("/db")
        .recovery_point(RecoveryPoint::Latest)
        .fs(fs.clone())
        .spine_options(SpineOptions::new(RunMode::KeyValue).memtable_size_bytes(4 << 10))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// A typed spine against a BTreeMap: every read agrees, the spine's
    /// key order is the model's, before and after recovery.
    #[test]
    fn typed_spine_equals_the_model(ops in prop::collection::vec(
        prop_oneof![
            3 => ("[ab]{0,3}", -3..3i64, any::<u8>()).prop_map(|(s, i, n)| Op::Put(s, i, n)),
            1 => ("[ab]{0,3}", -3..3i64).prop_map(|(s, i)| Op::Delete(s, i)),
        ],
        1..200,
    )) {
        let fs = Arc::new(MemFs::new());
        let mut store = options(&fs).open().unwrap();
        let mut shard = store.take_shards().remove(0);
        let h = shard.create_typed::<(String, i64), Account>("accounts").unwrap();
        let mut model: BTreeMap<(String, i64), Account> = BTreeMap::new();
        for op in &ops {
            match op {
                Op::Put(s, i, n) => {
                    shard.put_typed(h, &(s.clone(), *i), &account(*n)).unwrap();
                    model.insert((s.clone(), *i), account(*n));
                }
                Op::Delete(s, i) => {
                    shard.delete_typed(h, &(s.clone(), *i)).unwrap();
                    model.remove(&(s.clone(), *i));
                }
            }
        }
        let check = |shard: &mut statespine::store::Shard| -> Result<(), TestCaseError> {
            let h = shard.typed::<(String, i64), Account>("accounts").unwrap();
            for op in &ops {
                let (Op::Put(s, i, _) | Op::Delete(s, i)) = op;
                let k = (s.clone(), *i);
                let got = shard.get_typed(h, &k).unwrap();
                match (got, model.get(&k)) {
                    (None, None) => {}
                    (Some(a), Some(m)) => {
                        prop_assert_eq!(a.owner.as_str(), m.owner.as_str());
                        prop_assert_eq!(a.balance.to_native(), m.balance);
                        prop_assert_eq!(a.tags.iter().map(|t| t.to_native()).collect::<Vec<_>>(), m.tags.clone());
                    }
                    (got, want) => prop_assert!(false, "{:?}: got {}, model {:?}", k, got.is_some(), want),
                }
            }
            let keys: Vec<Vec<u8>> = shard.cursor(h.kv()).unwrap().map(|e| e.unwrap().key.to_vec()).collect();
            let want: Vec<Vec<u8>> = model.keys().map(encode_key).collect();
            prop_assert_eq!(keys, want);
            // A typed range: the model's range, in order, values validated.
            let (lo, hi) = (("a".to_string(), -1i64), ("b".to_string(), 1i64));
            let got: Vec<(Vec<u8>, String)> = shard
                .range_typed(h, Bound::Included(&lo), Bound::Excluded(&hi))
                .unwrap()
                .map(|e| {
                    let (k, v) = e.unwrap();
                    (k.to_vec(), v.owner.to_string())
                })
                .collect();
            let want: Vec<(Vec<u8>, String)> = model
                .range(lo.clone()..hi.clone())
                .map(|(k, v)| (encode_key(k), v.owner.clone()))
                .collect();
            prop_assert_eq!(got, want);
            Ok(())
        };
        check(&mut shard)?;
        shard.wait_durable(shard.last_lsn(), Duration::from_secs(20)).unwrap();
        let image = Arc::new(fs.crash());
        drop((shard, store));
        let mut state = options(&image).recover().unwrap();
        let mut shard = state.store.take_shards().remove(0);
        check(&mut shard)?;
    }
}

/// Serializing into the shard's buffer costs no allocation once warm: a
/// typed put allocates no more than the untyped put of the same bytes.
#[test]
fn a_warm_typed_put_allocates_like_an_untyped_one() {
    let fs = Arc::new(MemFs::new());
    let mut store = Options::new("/db")
        .fs(fs)
        .spine_options(SpineOptions::new(RunMode::KeyValue).memtable_size_bytes(64 << 20))
        .open()
        .unwrap();
    let mut shard = store.take_shards().remove(0);
    let typed = shard.create_typed::<u64, Account>("typed").unwrap();
    let raw = shard.create_kv("raw").unwrap();
    let a = account(4);
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&a).unwrap();
    for k in 0..100u64 {
        shard.put_typed(typed, &k, &a).unwrap();
        shard.put(raw, &encode_key(&k), &bytes).unwrap();
    }
    let key = encode_key(&7u64);
    let before = allocations();
    for _ in 0..1_000 {
        shard.put(raw, &key, &bytes).unwrap();
    }
    let untyped = allocations() - before;
    let before = allocations();
    for _ in 0..1_000 {
        shard.put_typed(typed, &7u64, &a).unwrap();
    }
    let typed_allocs = allocations() - before;
    assert!(
        typed_allocs <= untyped + 4,
        "1,000 typed puts allocated {typed_allocs} times, untyped {untyped}"
    );
}
