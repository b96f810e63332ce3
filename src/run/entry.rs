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
