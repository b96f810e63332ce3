//! Spine cursors both ways, and several at once.
//!
//! 1. A proptest against a `BTreeMap` model: random writes (puts, deletes,
//!    Z-set updates that cancel), seals, merge steps and flushes, so the
//!    view merges several runs, sealed memtables and the live memtable with
//!    tombstones and zero weights; then a random walk of forward and back
//!    steps and seeks over a random range or prefix, compared step by step.
//! 2. Cursors over two spines of one shard, and two over one spine, open at
//!    once while point reads run (the inner loop of a join).
//! 3. The run cursor underneath, walked back across blocks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use proptest::prelude::*;
use statespine::io::{Fs, MemFs};
use statespine::run::{EntryKind, EntryRef, Run, RunMode, RunOptions, RunWriter};
use statespine::spine::{Cursor, Spine, SpineOptions};
use statespine::store::Options;

#[derive(Debug, Clone)]
enum Write {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Update(Vec<u8>, Vec<u8>, i64),
    Seal,
    MergeStep(usize),
    Flush,
}

#[derive(Debug, Clone)]
enum Step {
    Advance,
    Prev,
    Seek(Vec<u8>),
    SeekBack(Vec<u8>),
    First,
    Last,
}

#[derive(Debug, Clone)]
enum Range {
    All,
    Bounds(Bound<Vec<u8>>, Bound<Vec<u8>>),
    Prefix(Vec<u8>),
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // Few distinct keys, with 0xff so that prefix ends are tested too.
    prop::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(0xff)], 0..4)
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        20 => (key(), prop::collection::vec(any::<u8>(), 0..24)).prop_map(|(k, v)| Write::Put(k, v)),
        8 => key().prop_map(Write::Delete),
        20 => (key(), prop::collection::vec(0u8..3, 0..2), -2i64..3).prop_map(|(k, v, w)| Write::Update(k, v, w)),
        1 => Just(Write::Seal),
        2 => prop_oneof![Just(1usize), Just(300), Just(1 << 20)].prop_map(Write::MergeStep),
        1 => Just(Write::Flush),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => Just(Step::Advance),
        8 => Just(Step::Prev),
        2 => key().prop_map(Step::Seek),
        2 => key().prop_map(Step::SeekBack),
        1 => Just(Step::First),
        1 => Just(Step::Last),
    ]
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        key().prop_map(Bound::Included),
        key().prop_map(Bound::Excluded),
    ]
}

fn range() -> impl Strategy<Value = Range> {
    prop_oneof![
        Just(Range::All),
        (bound(), bound()).prop_map(|(a, b)| Range::Bounds(a, b)),
        key().prop_map(Range::Prefix),
    ]
}

/// A visible entry: key, value, and weight (0 for key-value).
type Row = (Vec<u8>, Vec<u8>, i64);

fn row(e: EntryRef<'_>) -> Row {
    let w = match e.kind {
        EntryKind::Weight(w) => w,
        EntryKind::Put => 0,
        EntryKind::Delete => panic!("a cursor showed a tombstone: {e:?}"),
    };
    (e.key.to_vec(), e.value.to_vec(), w)
}

fn in_range(r: &Range, k: &[u8]) -> bool {
    match r {
        Range::All => true,
        Range::Prefix(p) => k.starts_with(p),
        Range::Bounds(a, b) => {
            let lo = match a {
                Bound::Included(a) => k >= a.as_slice(),
                Bound::Excluded(a) => k > a.as_slice(),
                Bound::Unbounded => true,
            };
            let hi = match b {
                Bound::Included(b) => k <= b.as_slice(),
                Bound::Excluded(b) => k < b.as_slice(),
                Bound::Unbounded => true,
            };
            lo && hi
        }
    }
}

fn open_cursor<'a>(s: &'a Spine, r: &Range) -> Cursor<'a> {
    match r {
        Range::All => s.cursor(),
        Range::Prefix(p) => s.prefix(p),
        Range::Bounds(a, b) => s.range((a.as_ref().map(Vec::as_slice), b.as_ref().map(Vec::as_slice))),
    }
    .unwrap()
}

fn spine(mode: RunMode) -> Spine {
    let opts = SpineOptions::new(mode)
        .memtable_size_bytes(256)
        .memory_budget_bytes(1024)
        .fan_in(2)
        .run_options(RunOptions::new(mode).block_size_bytes(64));
    Spine::create(Arc::new(MemFs::new()), "/s", opts).unwrap()
}

/// Applies the writes to a spine of `mode` and returns it with the rows a
/// cursor over everything must show, in order.
fn build(mode: RunMode, writes: &[Write]) -> (Spine, Vec<Row>) {
    let mut s = spine(mode);
    let mut kv = BTreeMap::<Vec<u8>, Vec<u8>>::new();
    let mut z = BTreeMap::<(Vec<u8>, Vec<u8>), i64>::new();
    for w in writes {
        match (w, mode) {
            (Write::Put(k, v), RunMode::KeyValue) => {
                s.put(k, v).unwrap();
                kv.insert(k.clone(), v.clone());
            }
            (Write::Delete(k), RunMode::KeyValue) => {
                s.delete(k).unwrap();
                kv.remove(k);
            }
            (Write::Update(k, v, w), RunMode::ZSet) => {
                s.update(k, v, *w).unwrap();
                *z.entry((k.clone(), v.clone())).or_default() += w;
            }
            (Write::Put(..) | Write::Delete(_), RunMode::ZSet) | (Write::Update(..), RunMode::KeyValue) => {}
            (Write::Seal, _) => s.seal().unwrap(),
            (Write::MergeStep(b), _) => {
                s.merge_step(*b).unwrap();
            }
            (Write::Flush, _) => s.flush().unwrap(),
        }
    }
    let rows = match mode {
        RunMode::KeyValue => kv.into_iter().map(|(k, v)| (k, v, 0)).collect(),
        RunMode::ZSet => z
            .into_iter()
            .filter(|&(_, w)| w != 0)
            .map(|((k, v), w)| (k, v, w))
            .collect(),
    };
    (s, rows)
}

/// Walks a cursor and the model side by side. The model's position is an
/// index into `rows`: -1 before the start, `rows.len()` past the end.
fn walk(s: &Spine, all: &[Row], r: &Range, steps: &[Step]) -> Result<(), TestCaseError> {
    let rows: Vec<&Row> = all.iter().filter(|x| in_range(r, &x.0)).collect();
    let len = rows.len() as isize;
    let mut c = open_cursor(s, r);
    let mut pos: isize = 0;
    for (n, st) in std::iter::once(None).chain(steps.iter().map(Some)).enumerate() {
        match st {
            None => {}
            Some(Step::Advance) => {
                c.advance().unwrap();
                pos = (pos + 1).min(len);
            }
            Some(Step::Prev) => {
                c.prev().unwrap();
                pos = (pos - 1).max(-1);
            }
            Some(Step::Seek(k)) => {
                c.seek(k).unwrap();
                pos = rows.partition_point(|x| x.0 < *k) as isize;
            }
            Some(Step::SeekBack(k)) => {
                c.seek_back(k).unwrap();
                pos = rows.partition_point(|x| x.0 <= *k) as isize - 1;
            }
            Some(Step::First) => {
                c.seek_to_first().unwrap();
                pos = 0;
            }
            Some(Step::Last) => {
                c.seek_to_last().unwrap();
                pos = len - 1;
            }
        }
        let want = usize::try_from(pos)
            .ok()
            .and_then(|p| rows.get(p))
            .copied()
            .cloned();
        prop_assert_eq!(
            c.current().map(row),
            want,
            "after step {} ({:?}) of {:?}",
            n,
            st,
            steps
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn key_value_cursors_walk_both_ways_like_a_btreemap(
        writes in prop::collection::vec(write(), 0..400),
        ranges in prop::collection::vec((range(), prop::collection::vec(step(), 0..60)), 1..6),
    ) {
        let (s, rows) = build(RunMode::KeyValue, &writes);
        for (r, steps) in &ranges {
            walk(&s, &rows, r, steps)?;
        }
        // Backward from the end over everything equals the reversed model.
        let mut c = s.cursor().unwrap();
        c.seek_to_last().unwrap();
        let mut back = Vec::new();
        while let Some(e) = c.current() {
            back.push(row(e));
            c.prev().unwrap();
        }
        back.reverse();
        prop_assert_eq!(back, rows);
    }

    #[test]
    fn zset_cursors_walk_both_ways_like_a_btreemap(
        writes in prop::collection::vec(write(), 0..400),
        ranges in prop::collection::vec((range(), prop::collection::vec(step(), 0..60)), 1..6),
    ) {
        let (s, rows) = build(RunMode::ZSet, &writes);
        for (r, steps) in &ranges {
            walk(&s, &rows, r, steps)?;
        }
    }
}

#[test]
fn a_walk_back_crosses_every_kind_of_batch() {
    let mut s = spine(RunMode::KeyValue);
    let mut model = BTreeMap::new();
    for i in 0..3000u32 {
        let k = (i * 7919 % 1000).to_be_bytes();
        if i % 5 == 4 {
            s.delete(&k).unwrap();
            model.remove(&k[..]);
        } else {
            s.put(&k, &i.to_le_bytes()).unwrap();
            model.insert(k.to_vec(), i.to_le_bytes().to_vec());
        }
        if i % 700 == 0 {
            s.merge_step(1 << 20).unwrap();
        }
    }
    assert!(s.batch_count() > 1, "{:?}", s.levels());
    let mut c = s.cursor().unwrap();
    c.seek_to_last().unwrap();
    let mut back = Vec::new();
    while let Some(e) = c.current() {
        back.push((e.key.to_vec(), e.value.to_vec()));
        c.prev().unwrap();
    }
    back.reverse();
    assert_eq!(back, model.into_iter().collect::<Vec<_>>());
}

#[test]
fn cursors_of_one_shard_are_open_at_once_as_in_a_join() {
    let fs = Arc::new(MemFs::new());
    let opts = SpineOptions::new(RunMode::KeyValue)
        .memtable_size_bytes(4 << 10)
        .memory_budget_bytes(16 << 10)
        .fan_in(3);
    let mut store = Options::new("/store")
        .fs(fs.clone() as Arc<dyn Fs>)
        .shards(1)
        .spine_options(opts)
        .open()
        .unwrap();
    let mut shard = store.take_shards().pop().unwrap();
    let (a, b) = (shard.create_kv("a").unwrap(), shard.create_kv("b").unwrap());
    let (mut ma, mut mb) = (BTreeMap::new(), BTreeMap::new());
    for i in 0..2000u32 {
        // `a` keys are customer ids; `b` keys are `customer id, order id`.
        let cust = (i % 300).to_be_bytes();
        shard.put(a, &cust, &i.to_le_bytes()).unwrap();
        ma.insert(cust.to_vec(), i.to_le_bytes().to_vec());
        let order = [&cust[..], &i.to_be_bytes()].concat();
        shard.put(b, &order, b"o").unwrap();
        mb.insert(order, b"o".to_vec());
        if i % 9 == 0 {
            let gone = [&cust[..], &(i / 2).to_be_bytes()].concat();
            shard.delete(b, &gone).unwrap();
            mb.remove(&gone);
        }
    }
    shard.flush_all().unwrap();
    for i in 0..50u32 {
        // Some of each in the live memtable too.
        let order = [&(i % 300).to_be_bytes()[..], &(5000 + i).to_be_bytes()].concat();
        shard.put(b, &order, b"new").unwrap();
        mb.insert(order, b"new".to_vec());
    }

    let shard = &shard;
    let mut joined = Vec::new();
    let mut outer = shard.cursor(a).unwrap();
    // A second cursor over the same spine, one entry ahead of the first.
    let mut ahead = shard.cursor(a).unwrap();
    ahead.advance().unwrap();
    while let Some(ea) = outer.current() {
        assert_eq!(shard.get(a, ea.key).unwrap(), Some(ea.value));
        for eb in shard.prefix(b, ea.key).unwrap() {
            let eb = eb.unwrap();
            joined.push((ea.key.to_vec(), eb.key.to_vec(), eb.value.to_vec()));
        }
        outer.advance().unwrap();
        assert_eq!(outer.key(), ahead.key());
        ahead.advance().unwrap();
    }
    let want: Vec<_> = ma
        .keys()
        .flat_map(|ka| {
            mb.range(ka.clone()..)
                .take_while(move |(kb, _)| kb.starts_with(ka))
                .map(move |(kb, v)| (ka.clone(), kb.clone(), v.clone()))
        })
        .collect();
    assert!(want.len() > 1500);
    assert_eq!(joined, want);
}

#[test]
fn a_run_cursor_walks_back_across_blocks() {
    let fs = MemFs::new();
    let opts = RunOptions::new(RunMode::KeyValue).block_size_bytes(64);
    let mut w = RunWriter::create(Arc::new(fs.clone()), "/r.run", opts).unwrap();
    let keys: Vec<[u8; 4]> = (0..500u32).map(|i| (i * 2).to_be_bytes()).collect();
    for k in &keys {
        w.put(k, k).unwrap();
    }
    let meta = w.finish().unwrap();
    assert!(meta.block_count > 10);
    let run = Run::open(&fs, &meta.path).unwrap();
    let mut c = run.cursor_last().unwrap();
    for k in keys.iter().rev() {
        assert_eq!(c.key(), Some(&k[..]));
        c.prev().unwrap();
    }
    assert!(c.is_exhausted());
    c.advance().unwrap();
    assert_eq!(c.key(), Some(&keys[0][..]));
    // Largest key <= an absent key, and <= a present one.
    assert_eq!(
        run.seek_back(&101u32.to_be_bytes()).unwrap().key(),
        Some(&100u32.to_be_bytes()[..])
    );
    assert_eq!(
        run.seek_back(&100u32.to_be_bytes()).unwrap().key(),
        Some(&100u32.to_be_bytes()[..])
    );
    assert!(run.seek_back(b"").unwrap().is_exhausted());
    let mut past = run.seek(&[0xff; 5]).unwrap();
    assert!(past.is_exhausted());
    past.prev().unwrap();
    assert_eq!(past.key(), Some(&keys[499][..]));
}
