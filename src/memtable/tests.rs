use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Update(Vec<u8>, Vec<u8>, i64),
    Sort,
}

fn small_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u8..4, 0..3)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (small_bytes(), prop::collection::vec(any::<u8>(), 0..20)).prop_map(|(k, v)| Op::Put(k, v)),
        2 => small_bytes().prop_map(Op::Delete),
        4 => (small_bytes(), small_bytes(), -2i64..3).prop_map(|(k, v, w)| Op::Update(k, v, w)),
        1 => Just(Op::Sort),
    ]
}

fn kv_sorted(mt: &Memtable) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    (0..mt.sorted_len())
        .map(|i| {
            let e = mt.sorted_entry(i);
            let v = (e.kind == EntryKind::Put).then(|| e.value.to_vec());
            (e.key.to_vec(), v)
        })
        .collect()
}

proptest! {
    #[test]
    fn key_value_matches_a_btreemap(ops in prop::collection::vec(op(), 0..300)) {
        // A tiny budget makes the tables grow under the test.
        let mut mt = Memtable::new(RunMode::KeyValue, 64, 8);
        let mut model: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Put(k, v) => { mt.put(&k, &v).unwrap(); model.insert(k, Some(v)); }
                Op::Delete(k) => { mt.delete(&k).unwrap(); model.insert(k, None); }
                Op::Update(k, v, w) => prop_assert!(mt.update(&k, &v, w).is_err()),
                Op::Sort => {
                    mt.sort();
                    prop_assert_eq!(kv_sorted(&mt), model.clone().into_iter().collect::<Vec<_>>());
                }
            }
        }
        for (k, v) in &model {
            let e = mt.get_hashed(k, key_hash(k)).unwrap();
            prop_assert_eq!(e.value.as_ptr() as usize % 8, 0, "values are aligned in the arena");
            prop_assert_eq!((e.kind == EntryKind::Put).then(|| e.value.to_vec()), v.clone());
        }
        prop_assert!(mt.get_hashed(b"absent", key_hash(b"absent")).is_none());
        mt.sort();
        prop_assert_eq!(kv_sorted(&mt), model.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn zset_matches_a_hashmap(ops in prop::collection::vec(op(), 0..300)) {
        let mut mt = Memtable::new(RunMode::ZSet, 64, 8);
        let mut model: HashMap<(Vec<u8>, Vec<u8>), i64> = HashMap::new();
        for op in ops {
            match op {
                Op::Update(k, v, w) => {
                    mt.update(&k, &v, w).unwrap();
                    *model.entry((k, v)).or_default() += w;
                }
                Op::Put(k, v) => prop_assert!(mt.put(&k, &v).is_err()),
                Op::Delete(k) => prop_assert!(mt.delete(&k).is_err()),
                Op::Sort => mt.sort(),
            }
        }
        for ((k, v), w) in &model {
            let found: Vec<_> = mt.key_entries(k, key_hash(k)).filter(|e| e.value == v.as_slice()).collect();
            prop_assert_eq!(found.len(), 1);
            prop_assert_eq!(found[0].kind, EntryKind::Weight(*w));
        }
        mt.sort();
        let mut expect: Vec<_> = model.into_iter().collect();
        expect.sort();
        let got: Vec<_> = (0..mt.sorted_len())
            .map(|i| {
                let e = mt.sorted_entry(i);
                let EntryKind::Weight(w) = e.kind else { panic!("{e:?}") };
                ((e.key.to_vec(), e.value.to_vec()), w)
            })
            .collect();
        prop_assert_eq!(got, expect);
    }
}

#[test]
fn lower_bound_finds_the_first_key_at_or_after() {
    let mut mt = Memtable::new(RunMode::ZSet, 1 << 10, 8);
    for (k, v) in [(b"b", b"2"), (b"b", b"1"), (b"d", b"1"), (b"a", b"9")] {
        mt.update(k, v, 1).unwrap();
    }
    mt.sort();
    assert_eq!(mt.lower_bound(b"b"), 1);
    assert_eq!(mt.sorted_entry(1).value, b"1");
    assert_eq!(mt.lower_bound(b"c"), 3);
    assert_eq!(mt.lower_bound(b"e"), 4);
    assert!(mt.size_bytes() > 0);
}

#[test]
fn oversized_entries_are_too_large_not_misuse() {
    let mut mt = Memtable::new(RunMode::KeyValue, 1 << 10, 8);
    let huge = vec![0u8; crate::run::MAX_ENTRY_BYTES + 1];
    assert!(matches!(
        mt.put(&huge, b"v"),
        Err(Error::TooLarge { what: "key", .. })
    ));
    assert!(matches!(
        mt.put(b"k", &huge),
        Err(Error::TooLarge { what: "value", .. })
    ));
    assert!(matches!(mt.update(b"k", b"v", 1), Err(Error::InvalidArgument(_))));
    assert!(mt.is_empty());
}

#[test]
fn readers_share_the_sorted_view_and_a_write_renews_it() {
    let mut mt = Memtable::new(RunMode::KeyValue, 1 << 10, 8);
    mt.put(b"b", b"1").unwrap();
    mt.put(b"a", b"2").unwrap();
    let (x, y) = (mt.sorted(), mt.sorted());
    assert_eq!(x.as_ptr(), y.as_ptr(), "one view for every reader");
    assert!(mt.is_sorted());
    // An overwrite keeps the order: the view stays.
    mt.put(b"a", b"3").unwrap();
    assert!(mt.is_sorted());
    mt.put(b"c", b"4").unwrap();
    assert!(!mt.is_sorted());
    let keys: Vec<_> = (0..mt.sorted_len())
        .map(|i| mt.sorted_entry(i).key.to_vec())
        .collect();
    assert_eq!(keys, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(mt.sorted_entry(0).value, b"3");
}
