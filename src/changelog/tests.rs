use std::collections::VecDeque;

use proptest::prelude::*;

use super::*;

type Owned = (u32, u64, StateOp, Vec<u8>, Vec<u8>);

fn owned(r: &ChangeRecord<'_>) -> Owned {
    (r.spine, r.epoch, r.op, r.key.to_vec(), r.value.to_vec())
}

fn op() -> impl Strategy<Value = StateOp> {
    prop_oneof![
        Just(StateOp::Put),
        Just(StateOp::Delete),
        Just(StateOp::Batch),
        any::<i64>().prop_map(StateOp::Update)
    ]
}

fn record() -> impl Strategy<Value = Owned> {
    (
        any::<u32>(),
        any::<u64>(),
        op(),
        prop::collection::vec(any::<u8>(), 0..40),
        // Up to three times the largest ring of the queue test: some records
        // fit, some spill. Pattern bytes: random ones cost seconds to draw.
        (0usize..1536, any::<u64>()).prop_map(|(len, seed)| pattern(seed, len)),
    )
}

/// Bytes of the ring `with_capacity(cap_bytes, _)` makes.
fn ring_bytes(cap_bytes: usize) -> usize {
    cap_bytes.div_ceil(8).max(12).next_power_of_two() * 8
}

/// True if a record of `payload` key and value bytes is too large for a
/// ring of `ring` bytes and takes the spill path.
fn spills(payload: usize, ring: usize) -> bool {
    40 + payload.div_ceil(8) * 8 > ring / 2
}

proptest! {
    /// Interleaved pushes and pops in one thread behave like a bounded queue:
    /// every record comes out whole and in order, across many wrap-arounds,
    /// in the ring or spilled; a push fails with `Full` only while records
    /// are in flight, and never with `TooLarge`.
    #[test]
    fn behaves_like_a_bounded_queue(
        cap_bytes in 64usize..512,
        cap_entries in 1usize..6,
        steps in prop::collection::vec((any::<bool>(), record()), 1..400),
    ) {
        let (mut p, mut c) = StateChangelogBuffer::with_capacity(cap_bytes, cap_entries);
        let ring = ring_bytes(cap_bytes);
        let mut model: VecDeque<Owned> = VecDeque::new();
        let mut spilled = 0;
        for (push, r) in steps {
            if push {
                let rec = ChangeRecord { spine: r.0, epoch: r.1, op: r.2, key: &r.3, value: &r.4 };
                match p.try_push(&rec) {
                    Ok(()) => {
                        spilled += u64::from(spills(r.3.len() + r.4.len(), ring));
                        model.push_back(r);
                    }
                    Err(PushError::Full) => prop_assert!(!model.is_empty(), "an empty ring refused a record"),
                    Err(e) => prop_assert!(false, "{e:?}"),
                }
                prop_assert!(model.len() <= cap_entries);
                prop_assert_eq!(p.spilled(), spilled);
            } else {
                let got = c.pop().map(|r| owned(&r));
                prop_assert_eq!(got, model.pop_front());
            }
        }
        while let Some(want) = model.pop_front() {
            prop_assert_eq!(c.pop().map(|r| owned(&r)), Some(want));
        }
        prop_assert!(c.pop().is_none());
    }
}

#[test]
fn a_full_ring_accepts_again_after_a_pop() {
    let (mut p, mut c) = StateChangelogBuffer::with_capacity(1 << 10, 2);
    let rec = ChangeRecord {
        spine: 1,
        epoch: 2,
        op: StateOp::Put,
        key: b"k",
        value: b"v",
    };
    p.try_push(&rec).unwrap();
    p.try_push(&rec).unwrap();
    assert_eq!(p.try_push(&rec), Err(PushError::Full));
    assert_eq!(c.pop().map(|r| r.key.to_vec()), Some(b"k".to_vec()));
    p.try_push(&rec).unwrap();
    // Out of entries: a record that would spill waits like any other.
    let huge = vec![0u8; 2 << 10];
    let big = ChangeRecord { value: &huge, ..rec };
    assert_eq!(p.try_push(&big), Err(PushError::Full));
    assert_eq!(p.spilled(), 0);
    drop(c);
    assert_eq!(p.push(&rec), Err(PushError::Closed));
}

#[test]
fn two_threads_move_a_million_records_in_order() {
    let (mut p, mut c) = StateChangelogBuffer::with_capacity(4 << 10, 64);
    let n = 1_000_000u64;
    let producer = std::thread::spawn(move || {
        let value = [7u8; 100];
        for i in 0..n {
            let key = i.to_be_bytes();
            let len = (i % 101) as usize;
            let rec = ChangeRecord {
                spine: (i % 3) as u32,
                epoch: i / 1000,
                op: StateOp::Update(i as i64),
                key: &key,
                value: &value[..len],
            };
            p.push(&rec).unwrap();
        }
        p.full_events()
    });
    let mut next = 0u64;
    while !c.is_finished() {
        while let Some(r) = c.pop() {
            assert_eq!(r.key, next.to_be_bytes());
            assert_eq!(r.value.len(), (next % 101) as usize);
            assert!(r.value.iter().all(|&b| b == 7));
            assert_eq!(
                (r.spine, r.epoch, r.op),
                ((next % 3) as u32, next / 1000, StateOp::Update(next as i64))
            );
            next += 1;
        }
        std::hint::spin_loop();
    }
    assert_eq!(next, n);
    let full = producer.join().unwrap();
    assert!(full <= n);
}

/// `len` bytes that differ by record and by position, so a record that came
/// out shifted, truncated or swapped with another does not compare equal.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn owned_record(i: u64, key_len: usize, value_len: usize) -> Owned {
    let op = match i % 3 {
        0 => StateOp::Put,
        1 => StateOp::Delete,
        _ => StateOp::Update(-(i as i64)),
    };
    (
        i as u32,
        i / 2,
        op,
        pattern(2 * i, key_len),
        pattern(2 * i + 1, value_len),
    )
}

fn change(o: &Owned) -> ChangeRecord<'_> {
    ChangeRecord {
        spine: o.0,
        epoch: o.1,
        op: o.2,
        key: &o.3,
        value: &o.4,
    }
}

/// Pushes `records` with `push` on one thread and pops them on another,
/// checking each against the model in order; returns the producer's spill
/// count.
fn transfer(cap_bytes: usize, cap_entries: usize, records: Vec<Owned>) -> u64 {
    let (mut p, mut c) = StateChangelogBuffer::with_capacity(cap_bytes, cap_entries);
    let mut model: VecDeque<Owned> = records.iter().cloned().collect();
    let producer = std::thread::spawn(move || {
        for r in &records {
            assert_eq!(p.push(&change(r)), Ok(()));
        }
        p.spilled()
    });
    while !c.is_finished() {
        while let Some(r) = c.pop() {
            let want = model.pop_front();
            assert_eq!(Some(owned(&r)), want, "{} left", model.len());
        }
        std::thread::yield_now();
    }
    assert!(model.is_empty(), "{} records never came out", model.len());
    assert!(c.pop().is_none());
    producer.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

#[test]
fn records_of_1_4_and_100_ring_sizes_come_out_in_order_between_small_ones() {
    let ring = 1 << 10;
    let mut records = Vec::new();
    for (i, value_len) in [0, ring, 3, 4 * ring, 100, 100 * ring, 7, ring, 4 * ring, 0]
        .into_iter()
        .enumerate()
    {
        records.push(owned_record(i as u64, 1 + i % 9, value_len));
    }
    // Between each pair, a run of small records that wraps the ring.
    let mut interleaved = Vec::new();
    for (i, r) in records.into_iter().enumerate() {
        for j in 0..40u64 {
            interleaved.push(owned_record(1000 * (i as u64 + 1) + j, 8, (j % 50) as usize));
        }
        interleaved.push(r);
    }
    assert_eq!(transfer(ring, 16, interleaved), 5);
}

#[test]
fn the_largest_record_that_fits_stays_in_the_ring_and_one_byte_more_spills() {
    // 1 KiB = 128 words; half is 64, so 59 words of key and value: 472 bytes.
    let (mut p, mut c) = StateChangelogBuffer::with_capacity(1 << 10, 16);
    for (value_len, spilled) in [(456, 0), (457, 1), (449, 1), (464, 2)] {
        let r = owned_record(value_len as u64, 16, value_len);
        p.try_push(&change(&r)).unwrap();
        assert_eq!(p.spilled(), spilled, "a {}-byte record", 16 + value_len);
        assert_eq!(c.pop().map(|got| owned(&got)), Some(r));
    }
    assert!(c.pop().is_none());
}

#[test]
fn spilled_bytes_are_bounded_until_the_consumer_pops() {
    // 1 KiB ring: the spilled bytes in flight stay within 1 KiB, unless a
    // single record is.
    let (mut p, mut c) = StateChangelogBuffer::with_capacity(1 << 10, 16);
    let big = owned_record(1, 8, 4 << 10);
    let big2 = owned_record(2, 8, 4 << 10);
    let small = owned_record(3, 8, 10);
    p.try_push(&change(&big)).unwrap();
    assert_eq!(p.try_push(&change(&big2)), Err(PushError::Full));
    // Small records still go meanwhile, and keep their place.
    p.try_push(&change(&small)).unwrap();
    assert_eq!(p.try_push(&change(&big2)), Err(PushError::Full));
    assert_eq!(c.pop().map(|r| owned(&r)), Some(big));
    p.try_push(&change(&big2)).unwrap();
    assert_eq!(c.pop().map(|r| owned(&r)), Some(small));
    assert_eq!(c.pop().map(|r| owned(&r)), Some(big2));
    assert_eq!(p.spilled(), 2);

    // The edge of the budget: 512 + 512 bytes fill it exactly; then 481
    // more (the smallest spill) wait until 512 are popped.
    let half = [owned_record(4, 12, 500), owned_record(5, 12, 500)];
    p.try_push(&change(&half[0])).unwrap();
    p.try_push(&change(&half[1])).unwrap();
    let least = owned_record(6, 1, 480);
    assert_eq!(p.try_push(&change(&least)), Err(PushError::Full));
    assert_eq!(c.pop().map(|r| owned(&r)), Some(half[0].clone()));
    p.try_push(&change(&least)).unwrap();
    assert_eq!(c.pop().map(|r| owned(&r)), Some(half[1].clone()));
    assert_eq!(c.pop().map(|r| owned(&r)), Some(least));
    assert!(c.pop().is_none());
    assert_eq!(p.spilled(), 5);
}

#[test]
fn a_spilled_record_to_a_closed_ring_is_refused_and_a_finished_one_drains() {
    let big = owned_record(1, 8, 4 << 10);
    let small = owned_record(2, 8, 10);
    let (mut p, c) = StateChangelogBuffer::with_capacity(1 << 10, 16);
    drop(c);
    assert_eq!(p.try_push(&change(&big)), Err(PushError::Closed));
    assert_eq!(p.push(&change(&big)), Err(PushError::Closed));
    assert_eq!(p.spilled(), 0);

    // The producer leaves with a spilled record in flight: it still comes out.
    let (mut p, mut c) = StateChangelogBuffer::with_capacity(1 << 10, 16);
    p.push(&change(&small)).unwrap();
    p.push(&change(&big)).unwrap();
    drop(p);
    assert!(!c.is_finished());
    assert_eq!(c.pop().map(|r| owned(&r)), Some(small));
    assert_eq!(c.pop().map(|r| owned(&r)), Some(big));
    assert!(c.is_finished());

    // And a ring dropped with spilled buffers inside frees them.
    let (mut p, c) = StateChangelogBuffer::with_capacity(1 << 10, 16);
    p.push(&change(&owned_record(3, 8, 4 << 10))).unwrap();
    drop((p, c));
}

/// The one hard limit: key and value together up to `MAX_PAYLOAD_BYTES`
/// (4 GiB − 41). Checked without copying 4 GiB: a ring whose consumer is
/// gone says `Closed` to a record it would carry, `TooLarge` to one it never
/// could. The bytes are zeroed pages the OS maps on first touch, and nothing
/// touches them.
#[cfg(target_pointer_width = "64")]
#[test]
fn key_and_value_may_take_up_to_max_payload_bytes() {
    assert_eq!(MAX_PAYLOAD_BYTES, 4_294_967_255);
    let half = 1usize << 31;
    let zeros = vec![0u8; half];
    let (mut p, c) = StateChangelogBuffer::with_capacity(1 << 10, 16);
    drop(c);
    let rec = |key_len: usize, value_len: usize| ChangeRecord {
        spine: 0,
        epoch: 0,
        op: StateOp::Put,
        key: &zeros[..key_len],
        value: &zeros[..value_len],
    };
    let rest = MAX_PAYLOAD_BYTES - half;
    assert_eq!(p.try_push(&rec(half, rest)), Err(PushError::Closed));
    assert_eq!(p.try_push(&rec(half, rest + 1)), Err(PushError::TooLarge));
    assert_eq!(p.push(&rec(half, rest + 1)), Err(PushError::TooLarge));
    assert_eq!(p.try_push(&rec(rest, half)), Err(PushError::Closed));
    assert_eq!(p.try_push(&rec(rest + 1, half)), Err(PushError::TooLarge));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A producer thread pushes (waiting when full) records of random sizes,
    /// from empty to several times the ring, and a consumer thread pops them:
    /// they come out exactly as the model queue says, spilled or not.
    #[test]
    fn two_threads_move_records_of_any_size_in_order(
        ring_shift in 7u32..12,
        cap_entries in 1usize..8,
        sizes in prop::collection::vec((0usize..64, 0usize..4, 0usize..1024), 1..80),
    ) {
        let ring = 1usize << ring_shift;
        let records: Vec<Owned> = sizes
            .iter()
            .enumerate()
            .map(|(i, &(key_len, rings, bytes))| {
                // Up to four ring sizes, weighted toward the edges.
                owned_record(i as u64, key_len, rings * ring + bytes * ring / 1024)
            })
            .collect();
        let want = records.iter().filter(|r| spills(r.3.len() + r.4.len(), ring)).count();
        prop_assert_eq!(transfer(ring, cap_entries, records), want as u64);
    }
}

/// The LSN a record is pushed with comes out with it, in the ring or
/// spilled, and unnumbered pushes continue the count.
#[test]
fn records_carry_their_lsn() {
    let (mut p, mut c) = StateChangelogBuffer::with_capacity(1 << 10, 16);
    let big = vec![7u8; 4 << 10];
    let rec = |value: &'static [u8]| ChangeRecord {
        spine: 1,
        epoch: 2,
        op: StateOp::Put,
        key: b"k",
        value,
    };
    p.push_at(41, &rec(b"a")).unwrap();
    let spilled = ChangeRecord {
        value: &big,
        ..rec(b"")
    };
    p.push_at(42, &spilled).unwrap();
    p.push(&rec(b"c")).unwrap();
    assert_eq!(p.last_lsn(), 43);
    for want in 41..=43 {
        assert_eq!(c.pop_with_lsn().map(|(lsn, _)| lsn), Some(want));
        assert_eq!(c.last_lsn(), want);
    }
    assert!(c.pop().is_none());
}

/// A writer that skips an LSN is a bug the ring refuses to carry on.
#[test]
#[should_panic(expected = "the writer's count and the ring's disagree")]
fn a_gap_in_the_lsns_pushed_panics() {
    let (mut p, _c) = StateChangelogBuffer::with_capacity(1 << 10, 16);
    let rec = ChangeRecord {
        spine: 1,
        epoch: 2,
        op: StateOp::Put,
        key: b"k",
        value: b"v",
    };
    p.push_at(5, &rec).unwrap();
    p.push_at(7, &rec).unwrap();
}
