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
        any::<i64>().prop_map(StateOp::Update)
    ]
}

fn record() -> impl Strategy<Value = Owned> {
    (
        any::<u32>(),
        any::<u64>(),
        op(),
        prop::collection::vec(any::<u8>(), 0..40),
        prop::collection::vec(any::<u8>(), 0..60),
    )
}

proptest! {
    /// Interleaved pushes and pops in one thread behave like a bounded queue:
    /// every record comes out whole and in order, across many wrap-arounds;
    /// a push fails with `Full` exactly when the bytes or entries run out.
    #[test]
    fn behaves_like_a_bounded_queue(
        cap_bytes in 64usize..512,
        cap_entries in 1usize..6,
        steps in prop::collection::vec((any::<bool>(), record()), 1..400),
    ) {
        let (mut p, mut c) = StateChangelogBuffer::with_capacity(cap_bytes, cap_entries);
        let mut model: VecDeque<Owned> = VecDeque::new();
        for (push, r) in steps {
            if push {
                let rec = ChangeRecord { spine: r.0, epoch: r.1, op: r.2, key: &r.3, value: &r.4 };
                match p.try_push(&rec) {
                    Ok(()) => {
                        let ring = cap_bytes.div_ceil(8).max(10).next_power_of_two() * 8;
                        prop_assert!(32 + (r.3.len() + r.4.len()).div_ceil(8) * 8 <= ring / 2);
                        model.push_back(r);
                    }
                    Err(PushError::Full) => prop_assert!(!model.is_empty(), "an empty ring refused a record that fits"),
                    Err(PushError::TooLarge) => {
                        let ring = cap_bytes.div_ceil(8).max(10).next_power_of_two() * 8;
                        prop_assert!(32 + (r.3.len() + r.4.len()).div_ceil(8) * 8 > ring / 2);
                    }
                    Err(PushError::Closed) => prop_assert!(false, "closed"),
                }
                prop_assert!(model.len() <= cap_entries);
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
    let huge = vec![0u8; 2 << 10];
    let big = ChangeRecord { value: &huge, ..rec };
    assert_eq!(p.try_push(&big), Err(PushError::TooLarge));
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
