//! [`StateChangelogBuffer`]: a bounded single-producer, single-consumer ring
//! of variable-length change records.
//!
//! 1. Storage is one preallocated array of `AtomicU64` words (a power of two).
//!    A record is a 4-word header — `(record_bytes, key_len)`, `(spine, op)`,
//!    `epoch`, `weight` — then its key and value bytes packed into words.
//! 2. The producer writes a record's words with relaxed stores, then publishes
//!    it by storing `tail` (Release). The consumer loads `tail` (Acquire),
//!    copies the record out into its own scratch buffer, and frees the space
//!    by storing `head` (Release), which the producer loads (Acquire) before
//!    reusing it. Entries are bounded too: the consumer publishes `popped`.
//! 3. A record never straddles the end: if it does not fit before the end, the
//!    producer writes a one-word wrap marker and continues at word 0.
//! 4. Full is a signal: `try_push` returns it; `push` spins, then sleeps with a
//!    bounded exponential backoff, and counts how often it had to.
//!
//! No `unsafe`: relaxed word stores are plain moves on x86-64 and aarch64, and
//! the atomics make the ring checkable by loom (`--cfg loom`). A push copies
//! bytes and allocates nothing; a pop copies into a scratch buffer that is
//! reused across pops.

use super::record::{ChangeRecord, HEADER_WORDS, StateOp};
use super::sync::{Arc, AtomicU64, Ordering, pause};

/// First word of a wrap marker: the rest of the ring up to its end is unused.
const WRAP: u64 = u64::MAX;
/// First word of a record, reserved so a zeroed word is never a valid header.
const NO_RECORD: u64 = 0;

/// Why a push did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// No room right now (bytes or entries); try again after the consumer pops.
    Full,
    /// The record can never fit: larger than half the ring.
    TooLarge,
    /// The consumer is gone; nothing will ever pop.
    Closed,
}

#[derive(Debug)]
struct Shared {
    words: Box<[AtomicU64]>,
    mask: u64,
    capacity_entries: u64,
    /// Words written and published by the producer.
    tail: AtomicU64,
    /// Words consumed and freed by the consumer.
    head: AtomicU64,
    /// Records consumed.
    popped: AtomicU64,
    /// 1 once the producer is dropped, 2 once the consumer is (bit flags).
    closed: AtomicU64,
}

const PRODUCER_GONE: u64 = 1;
const CONSUMER_GONE: u64 = 2;

/// The ring, made with [`StateChangelogBuffer::with_capacity`] and used through
/// its two halves.
#[derive(Debug)]
pub struct StateChangelogBuffer;

impl StateChangelogBuffer {
    /// A ring of at least `capacity_bytes` (rounded up to a power of two,
    /// header words included) holding at most `capacity_entries` records. One
    /// record (32 bytes of header plus key and value, padded to 8) may use at
    /// most half the ring.
    pub fn with_capacity(
        capacity_bytes: usize,
        capacity_entries: usize,
    ) -> (ChangelogProducer, ChangelogConsumer) {
        let words = capacity_bytes
            .div_ceil(8)
            .max(2 * (HEADER_WORDS + 1))
            .next_power_of_two();
        let shared = Arc::new(Shared {
            words: (0..words).map(|_| AtomicU64::new(NO_RECORD)).collect(),
            mask: words as u64 - 1,
            capacity_entries: capacity_entries.max(1) as u64,
            tail: AtomicU64::new(0),
            head: AtomicU64::new(0),
            popped: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        });
        let producer = ChangelogProducer {
            shared: Arc::clone(&shared),
            tail: 0,
            pushed: 0,
            head_seen: 0,
            popped_seen: 0,
            full_events: 0,
        };
        let consumer = ChangelogConsumer {
            shared,
            head: 0,
            popped: 0,
            scratch: Vec::new(),
        };
        (producer, consumer)
    }
}

/// The producing half ("Ring 0", the shard's hot thread). `Send`, not `Clone`.
#[derive(Debug)]
pub struct ChangelogProducer {
    shared: Arc<Shared>,
    tail: u64,
    pushed: u64,
    /// Last `head` and `popped` read from the consumer (refreshed only when
    /// the cached values say the ring is full).
    head_seen: u64,
    popped_seen: u64,
    full_events: u64,
}

impl ChangelogProducer {
    /// Capacity in words of the ring.
    fn capacity_words(&self) -> u64 {
        self.shared.mask + 1
    }

    /// Appends a record, or says why not. Never waits, never allocates.
    #[inline]
    pub fn try_push(&mut self, rec: &ChangeRecord<'_>) -> Result<(), PushError> {
        let payload = rec.key.len() + rec.value.len();
        let words = (HEADER_WORDS + payload.div_ceil(8)) as u64;
        let cap = self.capacity_words();
        // At most half the ring: then a record plus the wrap waste before it
        // (less than one record) always fits an empty ring.
        if words > cap / 2 || payload > u32::MAX as usize - HEADER_WORDS * 8 {
            return Err(PushError::TooLarge);
        }
        let offset = self.tail & self.shared.mask;
        let to_end = cap - offset;
        let need = if words > to_end { to_end + words } else { words };
        if !self.has_room(need) {
            if self.shared.closed.load(Ordering::Acquire) & CONSUMER_GONE != 0 {
                return Err(PushError::Closed);
            }
            return Err(PushError::Full);
        }
        let mut at = self.tail;
        if words > to_end {
            self.store(at, WRAP);
            at += to_end;
        }
        self.store(
            at,
            (HEADER_WORDS as u64 * 8 + payload as u64) | ((rec.key.len() as u64) << 32),
        );
        self.store(at + 1, u64::from(rec.spine) | (u64::from(rec.op.tag()) << 32));
        self.store(at + 2, rec.epoch);
        self.store(at + 3, rec.op.weight() as u64);
        self.store_bytes(at + HEADER_WORDS as u64, rec.key, rec.value);
        self.tail = at + words;
        self.pushed += 1;
        self.shared.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Stores `a` then `b` as one byte stream in words from `w`, the last
    /// word zero-padded.
    #[inline]
    fn store_bytes(&self, mut w: u64, a: &[u8], b: &[u8]) {
        let mut chunks = a.chunks_exact(8);
        for c in &mut chunks {
            self.store(w, u64::from_le_bytes(c.try_into().unwrap_or_default()));
            w += 1;
        }
        let rem = chunks.remainder();
        let mut b = b;
        if !rem.is_empty() {
            // Top up the key's last partial word with the value's first bytes.
            let mut word = [0u8; 8];
            word[..rem.len()].copy_from_slice(rem);
            let take = (8 - rem.len()).min(b.len());
            word[rem.len()..rem.len() + take].copy_from_slice(&b[..take]);
            b = &b[take..];
            self.store(w, u64::from_le_bytes(word));
            w += 1;
        }
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            self.store(w, u64::from_le_bytes(c.try_into().unwrap_or_default()));
            w += 1;
        }
        let rem = chunks.remainder();
        if !rem.is_empty() {
            let mut word = [0u8; 8];
            word[..rem.len()].copy_from_slice(rem);
            self.store(w, u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn store(&self, pos: u64, word: u64) {
        self.shared.words[(pos & self.shared.mask) as usize].store(word, Ordering::Relaxed);
    }

    fn has_room(&mut self, need: u64) -> bool {
        let cap = self.capacity_words();
        let fits = |p: &Self| {
            p.tail + need - p.head_seen <= cap && p.pushed - p.popped_seen < p.shared.capacity_entries
        };
        if fits(self) {
            return true;
        }
        self.popped_seen = self.shared.popped.load(Ordering::Acquire);
        self.head_seen = self.shared.head.load(Ordering::Acquire);
        fits(self)
    }

    /// Appends a record, waiting while the ring is full: spinning first, then
    /// sleeping with a bounded backoff. Errors only if the record can never
    /// fit or the consumer is gone.
    pub fn push(&mut self, rec: &ChangeRecord<'_>) -> Result<(), PushError> {
        let mut round = 0;
        loop {
            match self.try_push(rec) {
                Err(PushError::Full) => {
                    if round == 0 {
                        self.full_events += 1;
                    }
                    pause(round);
                    round = round.saturating_add(1);
                }
                other => return other,
            }
        }
    }

    /// Pushes that found the ring full and had to wait.
    pub fn full_events(&self) -> u64 {
        self.full_events
    }

    /// Records pushed so far.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }
}

impl Drop for ChangelogProducer {
    fn drop(&mut self) {
        self.shared.closed.fetch_or(PRODUCER_GONE, Ordering::AcqRel);
    }
}

/// The consuming half ("Ring 1", the drainer). `Send`, not `Clone`.
#[derive(Debug)]
pub struct ChangelogConsumer {
    shared: Arc<Shared>,
    head: u64,
    popped: u64,
    /// The current record's key and value, copied out of the ring.
    scratch: Vec<u8>,
}

impl ChangelogConsumer {
    #[inline]
    fn load(&self, pos: u64) -> u64 {
        self.shared.words[(pos & self.shared.mask) as usize].load(Ordering::Relaxed)
    }

    /// The oldest record, copied out of the ring (which frees its space at
    /// once), or `None` when the ring is empty. The record borrows the
    /// consumer's scratch buffer until the next pop.
    pub fn pop(&mut self) -> Option<ChangeRecord<'_>> {
        let tail = self.shared.tail.load(Ordering::Acquire);
        if self.head == tail {
            return None;
        }
        let cap = self.shared.mask + 1;
        let mut at = self.head;
        let mut w0 = self.load(at);
        if w0 == WRAP {
            at += cap - (at & self.shared.mask);
            w0 = self.load(at);
        }
        let record_bytes = (w0 & 0xffff_ffff) as usize;
        let key_len = (w0 >> 32) as usize;
        let w1 = self.load(at + 1);
        let epoch = self.load(at + 2);
        let weight = self.load(at + 3) as i64;
        let payload = record_bytes.saturating_sub(HEADER_WORDS * 8);
        let words = payload.div_ceil(8) as u64;
        self.scratch.clear();
        for i in 0..words {
            self.scratch
                .extend_from_slice(&self.load(at + HEADER_WORDS as u64 + i).to_le_bytes());
        }
        self.scratch.truncate(payload);
        self.head = at + HEADER_WORDS as u64 + words;
        self.popped += 1;
        self.shared.head.store(self.head, Ordering::Release);
        self.shared.popped.store(self.popped, Ordering::Release);
        let key_len = key_len.min(payload);
        let (key, value) = self.scratch.split_at(key_len);
        Some(ChangeRecord {
            spine: w1 as u32,
            epoch,
            op: StateOp::from_tag((w1 >> 32) as u32, weight),
            key,
            value,
        })
    }

    /// True once the producer is dropped and every record it pushed popped.
    pub fn is_finished(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire) & PRODUCER_GONE != 0
            && self.shared.tail.load(Ordering::Acquire) == self.head
    }

    /// Records popped so far.
    pub fn popped(&self) -> u64 {
        self.popped
    }
}

impl Drop for ChangelogConsumer {
    fn drop(&mut self) {
        self.shared.closed.fetch_or(CONSUMER_GONE, Ordering::AcqRel);
    }
}
