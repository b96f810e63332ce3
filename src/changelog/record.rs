//! [`ChangeRecord`]: one complete, replayable state mutation.

/// Words of a record's header in the ring: `(record_bytes, key_len)`,
/// `(spine, op)`, `epoch`, `weight`, `lsn`.
pub(crate) const HEADER_WORDS: usize = 5;

/// Flag in a header's op tag: the record's key and value are not in the ring
/// but in a buffer of the ring's side queue (`ring`'s module docs, step 4).
/// Op tags are 1 to 4, so the top bit is free.
pub(crate) const SPILLED: u32 = 1 << 31;

/// What a mutation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateOp {
    /// Set the key to the value (key-value spines).
    Put,
    /// Delete the key (key-value spines).
    Delete,
    /// Add this weight to `(key, value)` (Z-set spines).
    Update(i64),
    /// Several writes of one shard, applied together or not at all: the
    /// record's value holds them (`format/wal.md`, "Write batches"), its
    /// spine is 0 and its key empty.
    Batch,
}

impl StateOp {
    pub(crate) fn tag(self) -> u32 {
        match self {
            StateOp::Put => 1,
            StateOp::Delete => 2,
            StateOp::Update(_) => 3,
            StateOp::Batch => 4,
        }
    }

    pub(crate) fn weight(self) -> i64 {
        match self {
            StateOp::Update(w) => w,
            StateOp::Put | StateOp::Delete | StateOp::Batch => 0,
        }
    }

    /// The op of a tag and weight; unknown tags read as `Put` only if the
    /// ring was corrupted in memory, which its single writer rules out.
    pub(crate) fn from_tag(tag: u32, weight: i64) -> StateOp {
        match tag {
            2 => StateOp::Delete,
            3 => StateOp::Update(weight),
            4 => StateOp::Batch,
            _ => StateOp::Put,
        }
    }
}

/// One mutation of one spine: enough to replay it from the log alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChangeRecord<'a> {
    /// Which spine of the shard.
    pub spine: u32,
    /// The epoch the mutation belongs to.
    pub epoch: u64,
    /// Put, delete or weighted update.
    pub op: StateOp,
    /// The key bytes.
    pub key: &'a [u8],
    /// The value bytes (empty for a delete).
    pub value: &'a [u8],
}
