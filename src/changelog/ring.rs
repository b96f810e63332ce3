//! [`StateChangelogBuffer`]: a bounded single-producer, single-consumer ring
//! of variable-length change records, with a spill path for records too large
//! for it.
//!
//! 1. Storage is one preallocated array of `AtomicU64` words (a power of two).
//!    A record is a 5-word header — `(record_bytes, key_len)`, `(spine, op)`,
//!    `epoch`, `weight`, `lsn` — then its key and value bytes packed into
//!    words. The LSN is the shard's number for the record: the producer
//!    checks it follows the last one pushed, the consumer that it follows
//!    the last one popped, and the drainer can hold the WAL's count against
//!    it ([`ChangelogConsumer::pop_with_lsn`]), so two counters of one
//!    sequence cannot drift apart unnoticed.
//! 2. The producer writes a record's words with relaxed stores, then publishes
//!    it by storing `tail` (Release). The consumer loads `tail` (Acquire),
//!    copies the record out into its own scratch buffer, and frees the space
//!    by storing `head` (Release), which the producer loads (Acquire) before
//!    reusing it. Entries are bounded too: the consumer publishes `popped`.
//! 3. A record never straddles the end: if it does not fit before the end, the
//!    producer writes a one-word wrap marker and continues at word 0.
//! 4. A record of more than half the ring's words is *spilled*: the producer
//!    copies its key and value into one heap buffer, appends the buffer to a
//!    side queue (a mutex-guarded `VecDeque` in the shared state), and only
//!    then publishes a 5-word marker in the ring: the usual header, with
//!    [`SPILLED`] set in the op tag and no payload words. The consumer that
//!    sees a marker takes the front buffer of the side queue (the unlock
//!    before the `tail` store and the lock after the `tail` load order the two),
//!    so ring order is push order, spilled or not, and `pop` returns the same
//!    [`ChangeRecord`], borrowed from the buffer until the next pop.
//! 5. Spilled bytes are bounded too: the side queue admits a buffer while the
//!    spilled bytes not yet popped, this one included, stay within the ring's
//!    byte capacity — or when there are none, so that one record of any size
//!    up to [`MAX_PAYLOAD_BYTES`] always goes eventually. The consumer
//!    publishes the spilled bytes it popped (`spill_popped_bytes`, Release).
//! 6. Full is a signal: `try_push` returns it (ring bytes, entries or spill
//!    bytes short); `push` spins, then sleeps with a bounded exponential
//!    backoff, and counts how often it had to.
//!
//! Limits, per ring made by [`StateChangelogBuffer::with_capacity`] with a
//! capacity of `C` bytes after rounding (a power of two, at least 128):
//! - A record takes `40 + ⌈(key + value) / 8⌉ · 8` bytes. One of at most `C / 2`
//!   bytes goes in the ring; a larger one is spilled.
//! - `key.len() + value.len()` is at most [`MAX_PAYLOAD_BYTES`]
//!   (`u32::MAX - 40`, 4 GiB − 41 bytes: the header's 32-bit `record_bytes`);
//!   a larger record is refused with [`PushError::TooLarge`], the only cause
//!   of that error.
//! - Spilled buffers waiting in the side queue hold at most `C` bytes of key
//!   and value, or one record of any admitted size; the consumer holds the
//!   last one it popped besides.
//! - At most `capacity_entries` records are in flight, spilled ones included.
//!
//! No `unsafe`: relaxed word stores are plain moves on x86-64 and aarch64, and
//! the atomics make the ring checkable by loom (`--cfg loom`). A push that
//! fits the ring copies bytes and allocates nothing, and takes no lock; only a
//! spilled push allocates (its one buffer) and locks. A pop copies into a
//! scratch buffer that is reused across pops, or takes a spilled buffer whole.

use std::collections::VecDeque;

use super::record::{ChangeRecord, HEADER_WORDS, SPILLED, StateOp};
use super::sync::{Arc, AtomicU64, Mutex, Ordering, lock, pause};

/// First word of a wrap marker: the rest of the ring up to its end is unused.
const WRAP: u64 = u64::MAX;
/// First word of a record, reserved so a zeroed word is never a valid header.
const NO_RECORD: u64 = 0;

/// Most bytes of key and value in one record: the header's `record_bytes`
/// field (header included) is 32 bits. The ring refuses larger records with
/// [`PushError::TooLarge`]; every smaller one goes, through the spill path if
/// it does not fit the ring.
pub const MAX_PAYLOAD_BYTES: usize = u32::MAX as usize - HEADER_WORDS * 8;

/// Buffers the side queue is made with room for, so that spilling never grows
/// it: a spilled payload exceeds `C / 2 - 32` bytes, and the queue admits a
/// second one only within `C` bytes in all, so it holds at most
/// `C / (C / 2 - 31)` of them: 3 for the smallest ring (`C` = 128), 2 from
/// `C` = 256 on.
const SPILL_QUEUE_SLOTS: usize = 4;

/// Why a push did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// No room right now (ring bytes, entries, or spill bytes); try again
    /// after the consumer pops.
    Full,
    /// The record can never be carried: its key and value together exceed
    /// [`MAX_PAYLOAD_BYTES`].
    TooLarge,
    /// The consumer is gone; nothing will ever pop.
    Closed,
}

struct Shared {
    words: Box<[AtomicU64]>,
    mask: u64,
    capacity_entries: u64,
    /// Bytes of spilled key and value the side queue may hold (the ring's
    /// byte capacity), unless it holds none.
    spill_budget_bytes: u64,
    /// Words written and published by the producer.
    tail: AtomicU64,
    /// Words consumed and freed by the consumer.
    head: AtomicU64,
    /// Records consumed.
    popped: AtomicU64,
    /// Spilled key and value bytes the consumer took off the side queue.
    spill_popped_bytes: AtomicU64,
    /// Buffers of spilled records, in push order: each is pushed before its
    /// marker is published, and popped when its marker is.
    spilled: Mutex<VecDeque<Box<[u8]>>>,
    /// 1 once the producer is dropped, 2 once the consumer is (bit flags).
    closed: AtomicU64,
}

impl std::fmt::Debug for Shared {
    /// The positions, not the ring's words or the spilled bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("capacity_words", &(self.mask + 1))
            .field("capacity_entries", &self.capacity_entries)
            .field("tail", &self.tail.load(Ordering::Relaxed))
            .field("head", &self.head.load(Ordering::Relaxed))
            .field("popped", &self.popped.load(Ordering::Relaxed))
            .field(
                "spill_popped_bytes",
                &self.spill_popped_bytes.load(Ordering::Relaxed),
            )
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

const PRODUCER_GONE: u64 = 1;
const CONSUMER_GONE: u64 = 2;

/// The ring, made with [`StateChangelogBuffer::with_capacity`] and used through
/// its two halves.
#[derive(Debug)]
pub struct StateChangelogBuffer;

impl StateChangelogBuffer {
    /// A ring of at least `capacity_bytes` (rounded up to a power of two of at
    /// least 128 bytes, header words included) holding at most
    /// `capacity_entries` records (at least 1).
    ///
    /// Limits (module docs): a record (40 bytes of header plus key and value,
    /// padded to 8) of at most half the ring goes in the ring; a larger one is
    /// spilled to one heap buffer, and spilled buffers waiting for the
    /// consumer hold at most the ring's byte capacity, or one record of any
    /// size. Key and value together may take up to [`MAX_PAYLOAD_BYTES`]
    /// (4 GiB − 41 bytes); only a larger record is [`PushError::TooLarge`].
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
            spill_budget_bytes: words as u64 * 8,
            tail: AtomicU64::new(0),
            head: AtomicU64::new(0),
            popped: AtomicU64::new(0),
            spill_popped_bytes: AtomicU64::new(0),
            spilled: Mutex::new(VecDeque::with_capacity(SPILL_QUEUE_SLOTS)),
            closed: AtomicU64::new(0),
        });
        let producer = ChangelogProducer {
            shared: Arc::clone(&shared),
            tail: 0,
            pushed: 0,
            head_seen: 0,
            popped_seen: 0,
            spill_pushed_bytes: 0,
            spill_popped_seen: 0,
            full_events: 0,
            spilled: 0,
            last_lsn: 0,
        };
        let consumer = ChangelogConsumer {
            shared,
            head: 0,
            popped: 0,
            spill_popped_bytes: 0,
            scratch: Vec::new(),
            spilled: None,
            last_lsn: 0,
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
    /// Spilled key and value bytes pushed to the side queue.
    spill_pushed_bytes: u64,
    /// Last `spill_popped_bytes` read from the consumer (refreshed only when
    /// the cached value says the spill budget is spent).
    spill_popped_seen: u64,
    full_events: u64,
    spilled: u64,
    /// The LSN of the last record pushed.
    last_lsn: u64,
}

impl ChangelogProducer {
    /// Capacity in words of the ring.
    fn capacity_words(&self) -> u64 {
        self.shared.mask + 1
    }

    /// Appends a record numbered one past the last one pushed (1 for the
    /// first), or says why not ([`ChangelogProducer::try_push_at`]).
    #[inline]
    pub fn try_push(&mut self, rec: &ChangeRecord<'_>) -> Result<(), PushError> {
        self.try_push_at(self.last_lsn + 1, rec)
    }

    /// Appends a record numbered `lsn`, or says why not. Never waits.
    /// Allocates nothing for a record that fits the ring; a larger one is
    /// spilled (module docs, step 4) into one buffer.
    ///
    /// # Panics
    ///
    /// If `lsn` does not follow the last record pushed: the caller's count
    /// of its log and the ring's disagree, and the WAL would number the
    /// records differently from the writes.
    #[inline]
    pub fn try_push_at(&mut self, lsn: u64, rec: &ChangeRecord<'_>) -> Result<(), PushError> {
        assert!(
            self.pushed == 0 || lsn == self.last_lsn + 1,
            "changelog: a record numbered LSN {lsn} after LSN {}: the writer's count and the ring's disagree",
            self.last_lsn
        );
        let payload = rec.key.len() + rec.value.len();
        let words = (HEADER_WORDS + payload.div_ceil(8)) as u64;
        let cap = self.capacity_words();
        // At most half the ring: then a record plus the wrap waste before it
        // (less than one record) always fits an empty ring. A larger one
        // takes the spill path, which refuses one over MAX_PAYLOAD_BYTES.
        if words > cap / 2 || payload > MAX_PAYLOAD_BYTES {
            return self.try_push_spilled(lsn, rec, payload);
        }
        // Nobody will pop: say so at once, not only once the ring is full
        // (a record pushed now would never be logged). Relaxed: a push
        // racing the consumer's drop is lost either way.
        if self.shared.closed.load(Ordering::Relaxed) & CONSUMER_GONE != 0 {
            return Err(PushError::Closed);
        }
        let at = self.reserve(words)?;
        self.store_header(at, lsn, rec, payload, 0);
        self.store_bytes(at + HEADER_WORDS as u64, rec.key, rec.value);
        self.publish(at, words);
        self.last_lsn = lsn;
        Ok(())
    }

    /// Step 4 of the module docs: the buffer goes on the side queue, then its
    /// marker is published in the ring.
    #[cold]
    #[inline(never)]
    fn try_push_spilled(
        &mut self,
        lsn: u64,
        rec: &ChangeRecord<'_>,
        payload: usize,
    ) -> Result<(), PushError> {
        if payload > MAX_PAYLOAD_BYTES {
            return Err(PushError::TooLarge);
        }
        // Copying a large record for a consumer that is gone would be waste.
        if self.consumer_gone() {
            return Err(PushError::Closed);
        }
        let words = HEADER_WORDS as u64;
        let at = self.reserve(words)?;
        if !self.has_spill_room(payload as u64) {
            return Err(PushError::Full);
        }
        let mut buf = Vec::with_capacity(payload);
        buf.extend_from_slice(rec.key);
        buf.extend_from_slice(rec.value);
        // Before the marker's Release store of `tail`: a consumer that sees
        // the marker finds the buffer.
        lock(&self.shared.spilled).push_back(buf.into_boxed_slice());
        self.spill_pushed_bytes += payload as u64;
        self.spilled += 1;
        self.store_header(at, lsn, rec, payload, SPILLED);
        self.publish(at, words);
        self.last_lsn = lsn;
        Ok(())
    }

    /// Where a record of `words` words goes: at `tail`, or at word 0 of the
    /// next lap if it would straddle the end (then [`Self::publish`] writes
    /// the wrap marker). `Full` or `Closed` if there is no room.
    #[inline]
    fn reserve(&mut self, words: u64) -> Result<u64, PushError> {
        let to_end = self.capacity_words() - (self.tail & self.shared.mask);
        let need = if words > to_end { to_end + words } else { words };
        if !self.has_room(need) {
            if self.consumer_gone() {
                return Err(PushError::Closed);
            }
            return Err(PushError::Full);
        }
        Ok(if words > to_end {
            self.tail + to_end
        } else {
            self.tail
        })
    }

    /// Stores the header words at `at`; `flags` go into the op tag.
    #[inline]
    fn store_header(&self, at: u64, lsn: u64, rec: &ChangeRecord<'_>, payload: usize, flags: u32) {
        self.store(
            at,
            (HEADER_WORDS as u64 * 8 + payload as u64) | ((rec.key.len() as u64) << 32),
        );
        self.store(
            at + 1,
            u64::from(rec.spine) | (u64::from(rec.op.tag() | flags) << 32),
        );
        self.store(at + 2, rec.epoch);
        self.store(at + 3, rec.op.weight() as u64);
        self.store(at + 4, lsn);
    }

    /// Publishes the record of `words` words written at `at` (behind a wrap
    /// marker if `at` is past `tail`): everything up to its end becomes
    /// visible to the consumer (Release).
    #[inline]
    fn publish(&mut self, at: u64, words: u64) {
        if at != self.tail {
            self.store(self.tail, WRAP);
        }
        self.tail = at + words;
        self.pushed += 1;
        self.shared.tail.store(self.tail, Ordering::Release);
    }

    fn consumer_gone(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire) & CONSUMER_GONE != 0
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

    /// True if `bytes` more spilled bytes fit the spill budget (module docs,
    /// step 5): always when none are in flight.
    fn has_spill_room(&mut self, bytes: u64) -> bool {
        let budget = self.shared.spill_budget_bytes;
        let fits = |p: &Self| {
            let in_flight = p.spill_pushed_bytes - p.spill_popped_seen;
            in_flight == 0 || in_flight + bytes <= budget
        };
        if fits(self) {
            return true;
        }
        self.spill_popped_seen = self.shared.spill_popped_bytes.load(Ordering::Acquire);
        fits(self)
    }

    /// Appends a record, waiting while the ring (or, for a spilled record,
    /// the spill budget) is full: spinning first, then sleeping with a
    /// bounded backoff. Errors only if the record can never be carried
    /// ([`PushError::TooLarge`]) or the consumer is gone.
    pub fn push(&mut self, rec: &ChangeRecord<'_>) -> Result<(), PushError> {
        self.push_at(self.last_lsn + 1, rec)
    }

    /// [`ChangelogProducer::push`] of a record numbered `lsn` (panics as
    /// [`ChangelogProducer::try_push_at`] does).
    pub fn push_at(&mut self, lsn: u64, rec: &ChangeRecord<'_>) -> Result<(), PushError> {
        let mut round = 0;
        loop {
            match self.try_push_at(lsn, rec) {
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

    /// Pushes that found the ring (or the spill budget) full and had to wait.
    pub fn full_events(&self) -> u64 {
        self.full_events
    }

    /// Records pushed so far.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// The LSN of the last record pushed (0 before any).
    pub fn last_lsn(&self) -> u64 {
        self.last_lsn
    }

    /// Records pushed so far that were too large for the ring and went
    /// through the spill path (one allocation each).
    pub fn spilled(&self) -> u64 {
        self.spilled
    }
}

impl Drop for ChangelogProducer {
    fn drop(&mut self) {
        self.shared.closed.fetch_or(PRODUCER_GONE, Ordering::AcqRel);
    }
}

/// The consuming half ("Ring 1", the drainer). `Send`, not `Clone`.
pub struct ChangelogConsumer {
    shared: Arc<Shared>,
    head: u64,
    popped: u64,
    /// Spilled key and value bytes taken off the side queue.
    spill_popped_bytes: u64,
    /// The current record's key and value, copied out of the ring.
    scratch: Vec<u8>,
    /// The current record's key and value, if it was spilled.
    spilled: Option<Box<[u8]>>,
    /// The LSN of the last record popped.
    last_lsn: u64,
}

impl std::fmt::Debug for ChangelogConsumer {
    /// The positions and buffer sizes, not the bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangelogConsumer")
            .field("shared", &self.shared)
            .field("head", &self.head)
            .field("popped", &self.popped)
            .field("spill_popped_bytes", &self.spill_popped_bytes)
            .field("scratch_capacity", &self.scratch.capacity())
            .field("spilled_len", &self.spilled.as_ref().map(|b| b.len()))
            .field("last_lsn", &self.last_lsn)
            .finish()
    }
}

impl ChangelogConsumer {
    #[inline]
    fn load(&self, pos: u64) -> u64 {
        self.shared.words[(pos & self.shared.mask) as usize].load(Ordering::Relaxed)
    }

    /// The oldest record, or `None` when the ring is empty. A record in the
    /// ring is copied out (which frees its space at once) into the consumer's
    /// scratch buffer; a spilled one is taken off the side queue whole. Either
    /// way the record borrows the consumer until the next pop, which also
    /// frees a spilled buffer.
    pub fn pop(&mut self) -> Option<ChangeRecord<'_>> {
        self.pop_with_lsn().map(|(_, rec)| rec)
    }

    /// [`ChangelogConsumer::pop`], with the LSN the writer gave the record:
    /// the number the WAL must give it too.
    pub fn pop_with_lsn(&mut self) -> Option<(u64, ChangeRecord<'_>)> {
        // The last record's spilled buffer, if any, is not needed any more.
        self.spilled = None;
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
        let lsn = self.load(at + 4);
        // The producer checked the numbers it took; a gap here is the ring
        // losing or repeating a record.
        assert!(
            self.popped == 0 || lsn == self.last_lsn + 1,
            "changelog: popped LSN {lsn} after LSN {}",
            self.last_lsn
        );
        self.last_lsn = lsn;
        let tag = (w1 >> 32) as u32;
        let payload = record_bytes.saturating_sub(HEADER_WORDS * 8);
        let bytes: &[u8] = if tag & SPILLED != 0 {
            self.take_spilled(payload);
            self.head = at + HEADER_WORDS as u64;
            self.spilled.as_deref().unwrap_or_default()
        } else {
            let words = payload.div_ceil(8) as u64;
            self.scratch.clear();
            for i in 0..words {
                self.scratch
                    .extend_from_slice(&self.load(at + HEADER_WORDS as u64 + i).to_le_bytes());
            }
            self.scratch.truncate(payload);
            self.head = at + HEADER_WORDS as u64 + words;
            &self.scratch
        };
        self.popped += 1;
        self.shared.head.store(self.head, Ordering::Release);
        self.shared.popped.store(self.popped, Ordering::Release);
        let key_len = key_len.min(bytes.len());
        let (key, value) = bytes.split_at(key_len);
        Some((
            lsn,
            ChangeRecord {
                spine: w1 as u32,
                epoch,
                op: StateOp::from_tag(tag & !SPILLED, weight),
                key,
                value,
            },
        ))
    }

    /// Takes the front buffer of the side queue, of `payload` bytes, into
    /// `self.spilled`, and publishes that its bytes left the spill budget.
    #[cold]
    #[inline(never)]
    fn take_spilled(&mut self, payload: usize) {
        let buf = lock(&self.shared.spilled).pop_front();
        // The producer pushes the buffer before it publishes the marker.
        assert!(buf.is_some(), "changelog: a spill marker without its buffer");
        let buf = buf.unwrap_or_default();
        assert_eq!(
            buf.len(),
            payload,
            "changelog: a spilled buffer of the wrong size"
        );
        self.spill_popped_bytes += buf.len() as u64;
        self.shared
            .spill_popped_bytes
            .store(self.spill_popped_bytes, Ordering::Release);
        self.spilled = Some(buf);
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

    /// The LSN the writer gave the record last popped (0 before any).
    pub fn last_lsn(&self) -> u64 {
        self.last_lsn
    }
}

impl Drop for ChangelogConsumer {
    fn drop(&mut self) {
        self.shared.closed.fetch_or(CONSUMER_GONE, Ordering::AcqRel);
    }
}
