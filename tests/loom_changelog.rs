//! loom checks of the changelog ring: every interleaving (up to the preemption
//! bound loom is given) of one producer and one consumer.
//!
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --test loom_changelog`
//! (CI runs exactly this; `.ci/run`). Without `--cfg loom` this file is empty.
#![cfg(loom)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use loom::thread;
use statespine::changelog::{ChangeRecord, PushError, StateChangelogBuffer, StateOp};

fn rec(i: u8, value: &[u8]) -> ChangeRecord<'_> {
    ChangeRecord {
        spine: u32::from(i),
        epoch: u64::from(i) * 10,
        op: if i % 2 == 0 {
            StateOp::Put
        } else {
            StateOp::Update(-i64::from(i))
        },
        key: std::slice::from_ref(&VALUES[i as usize % VALUES.len()]),
        value,
    }
}

const VALUES: [u8; 4] = [b'a', b'b', b'c', b'd'];

/// Value bytes: record `i` carries `VALUE[..len]`, bytes that differ by position.
const VALUE: [u8; 128] = {
    let mut v = [0u8; 128];
    let mut i = 0;
    while i < v.len() {
        v[i] = (i as u8).wrapping_mul(7).wrapping_add(1);
        i += 1;
    }
    v
};

/// Pushes `n` records with the given value lengths from one thread (blocking
/// push), pops them on the other, and checks each arrives whole and in order.
fn transfer(cap_bytes: usize, cap_entries: usize, lengths: &'static [usize]) {
    loom::model(move || {
        let (mut p, mut c) = StateChangelogBuffer::with_capacity(cap_bytes, cap_entries);
        let producer = thread::spawn(move || {
            for (i, &len) in lengths.iter().enumerate() {
                p.push(&rec(i as u8, &VALUE[..len])).unwrap();
            }
        });
        let mut i = 0;
        while i < lengths.len() {
            match c.pop() {
                Some(r) => {
                    assert_eq!(r, rec(i as u8, &VALUE[..lengths[i]]), "record {i}");
                    i += 1;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert!(c.pop().is_none());
        assert!(c.is_finished());
    });
}

#[test]
fn push_pop_interleavings() {
    transfer(1 << 10, 4, &[0, 3, 8]);
}

#[test]
fn wrap_around_at_capacity_one_entry() {
    // 16 words; records of 5 words: the third wraps.
    transfer(128, 1, &[8, 8, 8]);
}

#[test]
fn wrap_around_at_capacity_two_to_four_entries() {
    for entries in 2..=4 {
        transfer(128, entries, &[1, 8, 3]);
    }
}

#[test]
fn variable_length_records_straddle_the_end() {
    // 16 words; lengths 17 (7 words), 0 (4 words), 24 (7 words): the last
    // cannot fit before the end and goes behind a wrap marker.
    transfer(128, 4, &[17, 0, 24]);
}

#[test]
fn the_producer_reuses_space_only_after_the_consumer_copied_it() {
    // 16 words, records of 8 (the most one may use): with two in flight the
    // ring is full, and the third lands on the first one's words.
    transfer(128, 2, &[31, 31, 31]);
}

#[test]
fn a_spilled_record_between_records_in_the_ring() {
    // 16 words: a record of at most 8 goes in the ring. Lengths 3 (5 words)
    // and 0 (4 words) do; 40 (1 + 40 bytes: 10 words) is spilled, and its
    // buffer must be on the side queue by the time its marker is seen.
    transfer(128, 4, &[3, 40, 0]);
}

#[test]
fn a_second_spilled_record_waits_for_the_first_to_be_popped() {
    // Spilled bytes stay within the ring's 128 bytes unless there is one:
    // two records of 101 bytes go one at a time, a third of 33 (the
    // smallest that spills) waits as well.
    transfer(128, 4, &[100, 100, 32]);
}

#[test]
fn full_and_empty_are_signals() {
    loom::model(|| {
        let (mut p, mut c) = StateChangelogBuffer::with_capacity(128, 1);
        assert!(c.pop().is_none());
        p.try_push(&rec(0, b"x")).unwrap();
        assert_eq!(p.try_push(&rec(1, b"y")), Err(PushError::Full));
        let consumer = thread::spawn(move || {
            loop {
                if let Some(r) = c.pop() {
                    assert_eq!(r.value, b"x");
                    return c;
                }
                thread::yield_now();
            }
        });
        let mut pushed = false;
        while !pushed {
            match p.try_push(&rec(1, b"y")) {
                Ok(()) => pushed = true,
                Err(PushError::Full) => thread::yield_now(),
                Err(e) => panic!("{e:?}"),
            }
        }
        let mut c = consumer.join().unwrap();
        assert_eq!(c.pop().map(|r| r.value.to_vec()), Some(b"y".to_vec()));
    });
}

#[test]
fn dropping_a_ring_that_holds_records() {
    // loom reports leaked or doubly freed `Arc`s; the ring's storage is plain
    // words, so records left inside need no cleanup of their own.
    loom::model(|| {
        let (mut p, c) = StateChangelogBuffer::with_capacity(256, 4);
        p.try_push(&rec(0, b"left")).unwrap();
        p.try_push(&rec(1, b"behind")).unwrap();
        let t = thread::spawn(move || drop(c));
        drop(p);
        t.join().unwrap();
    });
}
