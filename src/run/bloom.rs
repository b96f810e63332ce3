//! Blocked bloom filter over the keys of a run (format/run.md, "Filter").
//!
//! 1. Hash the key once: `h = xxh3_64(key)`.
//! 2. Pick one 512-bit line: `line = ((h >> 32) * lines) >> 32`.
//! 3. Set (or test) `probes` bits inside that line: `x = h`, then per probe
//!    `x = x * PROBE_MUL (wrapping)`, bit = `x >> 55` (the top 9 bits).
//!
//! One line is one cache line, so a lookup costs one cache miss whatever the
//! probe count. At 10 bits per key and 7 probes the false-positive rate is about
//! 1% (measured in the tests below), a little above an unblocked filter's 0.8%.

use xxhash_rust::xxh3::xxh3_64;

/// Bytes in one filter line.
pub const LINE_BYTES: usize = 64;
const LINE_BITS: u64 = (LINE_BYTES * 8) as u64;
/// An odd 64-bit constant (2^64 / golden ratio): multiplying by it is a
/// bijection that moves entropy into the top bits.
const PROBE_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// Hash of a key, as the filter uses it.
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// Probes per key that minimise false positives for `bits_per_key`.
pub fn probes_for(bits_per_key: u8) -> u8 {
    // k = bits_per_key * ln 2, rounded, within 1..=16.
    let k = (f64::from(bits_per_key) * std::f64::consts::LN_2).round();
    k.clamp(1.0, f64::from(super::format::MAX_FILTER_PROBES)) as u8
}

#[inline]
fn line_of(h: u64, lines: usize) -> usize {
    (((h >> 32) * lines as u64) >> 32) as usize
}

/// The bit positions (0..512) a key with hash `h` sets in its line. Building
/// and querying share this one definition, so they cannot disagree.
#[inline]
fn probe_bits(h: u64, probes: u8) -> impl Iterator<Item = usize> {
    let mut x = h;
    (0..probes).map(move |_| {
        x = x.wrapping_mul(PROBE_MUL);
        (x >> 55) as usize
    })
}

fn lines_for(keys: u64, bits_per_key: u8) -> usize {
    (keys * u64::from(bits_per_key)).div_ceil(LINE_BITS) as usize
}

#[inline]
fn insert(filter: &mut [u8], h: u64, probes: u8) {
    let lines = filter.len() / LINE_BYTES;
    let line = &mut filter[line_of(h, lines) * LINE_BYTES..][..LINE_BYTES];
    for bit in probe_bits(h, probes) {
        line[bit / 8] |= 1 << (bit % 8);
    }
}

/// Builds a filter's bytes from the hashes of every distinct key.
pub fn build(hashes: &[u64], bits_per_key: u8, probes: u8) -> Vec<u8> {
    let mut out = vec![0u8; lines_for(hashes.len() as u64, bits_per_key) * LINE_BYTES];
    for &h in hashes {
        insert(&mut out, h, probes);
    }
    out
}

/// Builds a filter while keys stream in. Sized up front when the caller knows
/// an upper bound on the key count (a merge does: the sum of its inputs), so
/// finishing costs nothing; otherwise it keeps the hashes and sizes at the end.
/// An over-estimate only lowers the false-positive rate.
#[derive(Debug)]
pub(crate) enum Builder {
    Sized {
        bits: Vec<u8>,
        probes: u8,
    },
    Collecting {
        hashes: Vec<u64>,
        bits_per_key: u8,
        probes: u8,
    },
}

impl Builder {
    pub(crate) fn new(bits_per_key: u8, expected_keys: Option<u64>) -> Self {
        let probes = probes_for(bits_per_key);
        match expected_keys {
            Some(n) => Builder::Sized {
                bits: vec![0; lines_for(n.max(1), bits_per_key) * LINE_BYTES],
                probes,
            },
            None => Builder::Collecting {
                hashes: Vec::new(),
                bits_per_key,
                probes,
            },
        }
    }

    #[inline]
    pub(crate) fn add(&mut self, h: u64) {
        match self {
            Builder::Sized { bits, probes } => insert(bits, h, *probes),
            Builder::Collecting { hashes, .. } => hashes.push(h),
        }
    }

    pub(crate) fn probes(&self) -> u8 {
        match self {
            Builder::Sized { probes, .. } | Builder::Collecting { probes, .. } => *probes,
        }
    }

    /// The filter bytes; empty when no key was added.
    pub(crate) fn finish(self, keys: u64) -> Vec<u8> {
        match self {
            Builder::Sized { bits, .. } if keys > 0 => bits,
            Builder::Sized { .. } => Vec::new(),
            Builder::Collecting {
                hashes,
                bits_per_key,
                probes,
            } => build(&hashes, bits_per_key, probes),
        }
    }
}

/// A filter borrowed from a validated frame.
#[derive(Debug, Clone, Copy)]
pub struct FilterView<'a> {
    bytes: &'a [u8],
    probes: u8,
}

impl<'a> FilterView<'a> {
    /// `bytes.len()` must be a multiple of [`LINE_BYTES`] (checked at open).
    pub fn new(bytes: &'a [u8], probes: u8) -> Self {
        FilterView { bytes, probes }
    }

    /// Starts loading the line a key with hash `h` maps to.
    #[inline]
    pub fn prefetch(&self, h: u64) {
        let lines = self.bytes.len() / LINE_BYTES;
        if lines > 0 {
            crate::io::prefetch(&self.bytes[line_of(h, lines) * LINE_BYTES..][..1]);
        }
    }

    /// False means the key is certainly absent.
    #[inline]
    pub fn may_contain_hash(&self, h: u64) -> bool {
        let lines = self.bytes.len() / LINE_BYTES;
        if lines == 0 {
            return false;
        }
        let line = &self.bytes[line_of(h, lines) * LINE_BYTES..][..LINE_BYTES];
        probe_bits(h, self.probes).all(|bit| line[bit / 8] & (1 << (bit % 8)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&i.to_be_bytes());
        k[8..].copy_from_slice(&i.wrapping_mul(0x1234_5678_9abc_def1).to_le_bytes());
        k
    }

    #[test]
    fn no_false_negatives_and_about_one_percent_false_positives() {
        let n = 100_000u64;
        let hashes: Vec<u64> = (0..n).map(|i| key_hash(&key(i))).collect();
        let probes = probes_for(10);
        assert_eq!(probes, 7);
        let bytes = build(&hashes, 10, probes);
        let f = FilterView::new(&bytes, probes);
        for &h in &hashes {
            assert!(f.may_contain_hash(h));
        }
        let absent = 200_000u64;
        let fp = (n..n + absent)
            .filter(|&i| f.may_contain_hash(key_hash(&key(i))))
            .count();
        let rate = fp as f64 / absent as f64;
        assert!(rate < 0.015, "false-positive rate {rate}");
        assert!(rate > 0.002, "suspiciously low false-positive rate {rate}");
    }

    #[test]
    fn a_presized_builder_agrees_with_build() {
        let hashes: Vec<u64> = (0..5000).map(|i| key_hash(&key(i))).collect();
        let mut b = Builder::new(10, Some(5000));
        hashes.iter().for_each(|&h| b.add(h));
        assert_eq!(b.finish(5000), build(&hashes, 10, 7));
        // Under-estimated: more keys than planned still never give a false negative.
        let mut b = Builder::new(10, Some(10));
        hashes.iter().for_each(|&h| b.add(h));
        let bytes = b.finish(5000);
        assert!(
            hashes
                .iter()
                .all(|&h| FilterView::new(&bytes, 7).may_contain_hash(h))
        );
        assert!(Builder::new(10, Some(10)).finish(0).is_empty());
    }

    #[test]
    fn empty_filter_contains_nothing() {
        let bytes = build(&[], 10, 7);
        assert!(bytes.is_empty());
        assert!(!FilterView::new(&bytes, 7).may_contain_hash(key_hash(b"x")));
    }

    #[test]
    fn probe_count_follows_bits_per_key() {
        assert_eq!(probes_for(1), 1);
        assert_eq!(probes_for(20), 14);
        assert_eq!(probes_for(255), 16);
    }
}
