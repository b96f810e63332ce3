//! Entries: what a run holds.

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
