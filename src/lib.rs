//! statespine: an embedded storage engine for the state of streaming operators.
//!
//! A per-thread, shared-nothing LSM "spine" of immutable sorted runs, merged
//! cooperatively by its owner, under a changelog and write-ahead log, with
//! incremental checkpoints by hard link. See `DESIGN.md` (shared) for the whole
//! picture and `format/` for every byte the crate writes.
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

/// README.md's examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
