//! [`WriteBatch`]: writes to any spines of one shard, logged as one record
//! and applied all or none ([`crate::store::Shard::write`]).

use std::ops::Range;

use super::shard::{KvSpine, SpineId, ZSetSpine};
use crate::changelog::StateOp;
use crate::wal::{begin_batch, push_batch_entry};

/// Most bytes a batch's log record may take (its entries, with their
/// headers): what one value may take, since the record travels the same
/// way as one.
pub const MAX_BATCH_BYTES: usize = super::shard::MAX_VALUE_BYTES;

/// One write of a batch: the handle (checked at [`crate::store::Shard::write`]),
/// and where its key and value are in the batch's record.
#[derive(Debug, Clone)]
pub(crate) struct BatchOp {
    pub(crate) id: SpineId,
    pub(crate) op: StateOp,
    pub(crate) key: Range<usize>,
    pub(crate) value: Range<usize>,
}

/// Writes to one shard's spines, made with [`crate::store::Shard::batch`]
/// and applied by [`crate::store::Shard::write`]: checked whole first (a
/// refused batch changes nothing), then logged as one record with one
/// [`crate::store::Lsn`], then applied in order. Recovery replays all of it
/// or none.
///
/// ```
/// # use std::sync::Arc;
/// # use statespine::io::MemFs;
/// # use statespine::store::Options;
/// let mut store = Options::new("/db").fs(Arc::new(MemFs::new())).open()?;
/// let mut shard = store.take_shards().remove(0);
/// let (orders, totals) = (shard.create_kv("orders")?, shard.create_zset("totals")?);
/// let mut batch = shard.batch();
/// batch.put(orders, b"o-17", b"pear x3").update(totals, b"pear", b"", 3);
/// let lsn = shard.write(batch)?;
/// assert_eq!(shard.get(orders, b"o-17")?, Some(&b"pear x3"[..]));
/// assert_eq!(lsn, shard.last_lsn());
/// # Ok::<(), statespine::Error>(())
/// ```
#[derive(Debug)]
pub struct WriteBatch {
    pub(crate) ops: Vec<BatchOp>,
    /// The log record's value, built as writes are added
    /// (`format/wal.md`, "Write batches").
    pub(crate) record: Vec<u8>,
}

impl Default for WriteBatch {
    fn default() -> Self {
        let mut record = Vec::new();
        begin_batch(&mut record);
        WriteBatch {
            ops: Vec::new(),
            record,
        }
    }
}

impl WriteBatch {
    /// An empty batch. [`crate::store::Shard::batch`] hands out one whose
    /// buffers are reused from the last batch written.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    fn push(&mut self, id: SpineId, op: StateOp, key: &[u8], value: &[u8]) -> &mut Self {
        let start = self.record.len() + crate::wal::BATCH_ENTRY_HEADER_LEN;
        push_batch_entry(&mut self.record, id.index(), op, key, value);
        let key_end = start + key.len();
        self.ops.push(BatchOp {
            id,
            op,
            key: start..key_end,
            value: key_end..key_end + value.len(),
        });
        self
    }

    /// Sets `key` to `value` in a key-value spine.
    pub fn put(&mut self, id: KvSpine, key: &[u8], value: &[u8]) -> &mut Self {
        self.push(id.id(), StateOp::Put, key, value)
    }

    /// Deletes `key` from a key-value spine.
    pub fn delete(&mut self, id: KvSpine, key: &[u8]) -> &mut Self {
        self.push(id.id(), StateOp::Delete, key, &[])
    }

    /// Adds `weight` to `(key, value)` in a Z-set spine.
    pub fn update(&mut self, id: ZSetSpine, key: &[u8], value: &[u8], weight: i64) -> &mut Self {
        self.push(id.id(), StateOp::Update(weight), key, value)
    }

    /// Writes in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True if the batch holds no write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Bytes of the batch's log record so far (at most [`MAX_BATCH_BYTES`]).
    pub fn size_bytes(&self) -> usize {
        self.record.len()
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.ops.clear();
        begin_batch(&mut self.record);
    }

    /// The key and value of `op`.
    pub(crate) fn bytes(&self, op: &BatchOp) -> (&[u8], &[u8]) {
        (&self.record[op.key.clone()], &self.record[op.value.clone()])
    }
}
