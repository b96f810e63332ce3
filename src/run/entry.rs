//! Entries: what a run holds, and the order they are held in.

use super::format::RunMode;

/// Kind byte of a put in a key-value block (0 is reserved as invalid).
pub(crate) const KIND_PUT: u8 = 1;
/// Kind byte of a delete (tombstone) in a key-value block.
pub(crate) const KIND_DELETE: u8 = 2;

/// What an entry says about its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// The key maps to the value (key-value runs).
    Put,
    /// The key was deleted; a tombstone, with an empty value (key-value runs).
    Delete,
    /// The `(key, value)` pair has this non-zero multiplicity (Z-set runs).
    Weight(i64),
}

/// One entry, borrowed zero-copy from a run (or from the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryRef<'a> {
    /// The key bytes.
    pub key: &'a [u8],
    /// The value bytes (empty for a delete).
    pub value: &'a [u8],
    /// Put, delete or weight.
    pub kind: EntryKind,
}

/// The one order of entries in a run, a memtable and every merged view:
/// by key (key-value), or by key then value (Z-set), both byte-wise. A run
/// holds its entries strictly increasing in it.
#[inline(always)]
pub fn entry_cmp(
    mode: RunMode,
    a_key: &[u8],
    a_value: &[u8],
    b_key: &[u8],
    b_value: &[u8],
) -> std::cmp::Ordering {
    let by_key = key_cmp(a_key, b_key);
    match mode {
        RunMode::KeyValue => by_key,
        RunMode::ZSet => by_key.then_with(|| key_cmp(a_value, b_value)),
    }
}

impl EntryRef<'_> {
    /// [`entry_cmp`] of two entries.
    #[inline(always)]
    pub fn cmp_in(&self, mode: RunMode, other: &EntryRef<'_>) -> std::cmp::Ordering {
        entry_cmp(mode, self.key, self.value, other.key, other.value)
    }
}

/// The first 8 bytes of a key as a big-endian integer, zero-padded:
/// `key_prefix(a) < key_prefix(b)` implies `a < b`, so sorting or searching by
/// it first agrees with byte order wherever it does not tie.
#[inline]
pub fn key_prefix(key: &[u8]) -> u64 {
    let mut p = [0u8; 8];
    let n = key.len().min(8);
    p[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(p)
}

/// Byte-wise (lexicographic) order of keys, as `a.cmp(b)`, but without a
/// call into `memcmp` for the common case: the first 8 bytes compared as one
/// big-endian integer decide most comparisons of distinct keys.
#[inline]
pub fn key_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    if let (Some(pa), Some(pb)) = (a.first_chunk::<8>(), b.first_chunk::<8>()) {
        let (x, y) = (u64::from_be_bytes(*pa), u64::from_be_bytes(*pb));
        if x != y {
            return x.cmp(&y);
        }
        return a[8..].cmp(&b[8..]);
    }
    a.cmp(b)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn key_cmp_is_byte_order(a in prop::collection::vec(any::<u8>(), 0..20), b in prop::collection::vec(any::<u8>(), 0..20)) {
            prop_assert_eq!(super::key_cmp(&a, &b), a.cmp(&b));
            let c = [&a[..], &b[..]].concat();
            prop_assert_eq!(super::key_cmp(&a, &c), a.as_slice().cmp(&c));
        }
    }
}
