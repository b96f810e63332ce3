//! The changelog: every state mutation leaves the shard's hot thread through
//! a lock-free ring ([`StateChangelogBuffer`]), to be drained into the
//! write-ahead log by another thread.
//!
//! | module | owns |
//! | --- | --- |
//! | `record` | [`ChangeRecord`] and [`StateOp`]: a complete, replayable mutation |
//! | `ring` | the SPSC ring, its producer and consumer halves, and the spill path for records too large for it |
//! | `sync` | atomics from std, or from loom under `--cfg loom` |

mod record;
mod ring;
mod sync;

pub use record::{ChangeRecord, StateOp};
pub use ring::{ChangelogConsumer, ChangelogProducer, MAX_PAYLOAD_BYTES, PushError, StateChangelogBuffer};

#[cfg(all(test, not(loom)))]
mod tests;
