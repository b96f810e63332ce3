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
//! The items at the crate root are the whole of what a streaming engine
//! needs; `format/` in the repository specifies every byte the crate writes.
//!
//! Layers, lowest first (a lower layer never imports a higher one; `tests/tidy.rs`
//! checks it):
//!
//! | module | owns |
//! | --- | --- |
//! | [`io`] | the storage seam: every file-system call, real and in-memory |
//! | [`run`] | immutable run files: writer, zero-copy reader, index, filter |
//! | [`memtable`] | the mutable write buffer of one spine |
//! | [`spine`] | one sorted collection: memtable, levels of runs, merges, reads |
//! | [`changelog`] | the SPSC ring that carries every mutation off the hot thread |
//! | [`wal`] | the segmented write-ahead log of a shard; spec in `format/wal.md` |
//! | [`checkpoint`] | checkpoint directories, manifests, commit, validation |
//! | [`recovery`] | newest valid checkpoint + WAL replay, per shard in parallel |
//! | [`store`] | shards of named spines, the changelog drainer, the checkpoint coordinator |
//!
//! `unsafe` is denied everywhere except `io::mapping`, which maps files.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod changelog;
pub mod checkpoint;
mod error;
pub mod io;
pub mod memtable;
pub mod recovery;
pub mod run;
pub mod spine;
pub mod store;
pub mod wal;

pub use error::{Error, ErrorKind, Result};
pub use store::{
    CheckpointRequest, EpochCommitted, IncrementalCheckpointMetadata, KvSpine, Lsn, Options, RecoveredState,
    RecoveryPoint, Shard, SpineId, Store, SyncPolicy, ZSetSpine,
};

/// README.md's examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
