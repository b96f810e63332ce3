//! statespine: an embedded storage engine for the state of streaming operators.
//!
//! A store is a directory of N shared-nothing shards, each owned by one
//! worker thread. A shard holds named spines (sorted collections, key-value
//! or Z-set) and logs every write to its own write-ahead log; epochs commit
//! in the log, checkpoints materialize them, and recovery returns the newest
//! epoch committed on every shard, with the source offsets it recorded, so
//! a streaming engine that rewinds its sources there applies every input
//! exactly once.
//!
//! ```
//! use statespine::{CheckpointRequest, Options};
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path().join("db");
//!
//! // Open (or recover) a store of one shard, and write in epoch 1.
//! let mut store = Options::new(&dir).open()?;
//! let mut shard = store.take_shards().remove(0);
//! let latest = shard.create_kv("latest")?;
//! shard.put(latest, b"sensor-7", b"21.5")?;
//!
//! // Commit epoch 1 with the source's offset: durable in the log.
//! let mut request = CheckpointRequest::default();
//! request.source_offsets.insert("readings".into(), 1);
//! store.commit_epoch_inline(&mut [&mut shard], 1, &request)?;
//! shard.put(latest, b"sensor-7", b"22.0")?; // epoch 2, never committed
//! drop((shard, store)); // a crash, as far as the store can tell
//!
//! // Recover: epoch 1's state and offsets; epoch 2's write is gone.
//! let state = Options::new(&dir).recover()?;
//! assert_eq!((state.epoch, state.source_offsets["readings"]), (1, 1));
//! let mut store = state.store;
//! let shard = store.take_shards().remove(0);
//! let latest = shard.kv_spine("latest").expect("recovered");
//! assert_eq!(shard.get(latest, b"sensor-7")?, Some(&b"21.5"[..]));
//! # Ok::<(), statespine::Error>(())
//! ```
//!
//! The items at the crate root are what a streaming engine uses: the
//! [`Options`] builder, the [`Store`] and its [`Shard`]s with their spine
//! handles, cursors, write batches and typed spines, epoch commits and
//! checkpoints, and [`Error`] with its [`ErrorKind`]. [`io`] is the storage
//! seam ([`io::Fs`], the real [`io::StdFs`], the in-memory [`io::MemFs`]
//! for tests). `format/` in the repository specifies every byte the crate
//! writes.
//!
//! The layers underneath are modules of their own, lowest first (a lower
//! layer never imports a higher one): `io`, `run` (immutable run files),
//! `memtable`, `spine` (memtable over levels of runs, merges, reads),
//! `changelog` (the ring that carries mutations off the hot thread), `wal`,
//! `checkpoint`, `recovery`, `store`. All but `io` are hidden from these
//! docs: they are public for the crate's own tests, fuzzers, benchmarks and
//! tools, with no promise of stability.
//!
//! `unsafe` is denied everywhere except `io::mapping`, which maps files.
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[doc(hidden)]
pub mod changelog;
#[doc(hidden)]
pub mod checkpoint;
mod error;
pub mod io;
#[doc(hidden)]
pub mod memtable;
#[doc(hidden)]
pub mod recovery;
#[cfg(feature = "remote")]
pub mod remote;
#[doc(hidden)]
pub mod run;
#[doc(hidden)]
pub mod spine;
#[doc(hidden)]
pub mod store;
#[doc(hidden)]
pub mod wal;

pub use checkpoint::{
    ConnectorCheckpoint, EpochMetadata, Phase as ProgressPhase, Progress, ValidationDepth, ValidationReport,
    validate_checkpoint, validate_checkpoint_with_progress,
};
pub use error::{Error, ErrorKind, Result};
pub use run::{Compression, EntryRef, RunMode};
pub use spine::{Cursor, LevelShape, MergeMode, MergeStep, Spine, SpineOptions, SpineStats};
pub use store::{
    Answered, CheckpointCoordinator, CheckpointRequest, DEFAULT_MERGE_THREADS, DEFAULT_WORKER_THREADS,
    EpochCommitted, IncrementalCheckpointMetadata, Key, KvSpine, LatencyHistogram, Lsn, MAX_BATCH_BYTES,
    MAX_KEY_BYTES, MAX_SPINE_NAME_BYTES, MAX_VALUE_BYTES, MIN_WAL_SEGMENT_BYTES, Options, PUBLISH_INTERVAL,
    PendingCheckpoint, PendingCommit, RecoveredState, RecoveryFigures, RecoveryMode, RecoveryPoint, Shard,
    ShardPosition, ShardStats, SpineId, SpineReport, Store, StoreStats, SyncPolicy, TypedCursor, TypedSpine,
    Value, WriteBatch, ZSetSpine,
};

/// README.md's examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
