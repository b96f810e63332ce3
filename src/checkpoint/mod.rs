//! Checkpoints: UUID-named directories under `checkpoints/`, each holding a
//! [`CheckpointManifest`] and hard links to every run its cut needs
//! (`format/checkpoint.md`, `format/manifest.md`).
//!
//! A run already linked by an earlier checkpoint is linked again, never
//! copied: only runs written since the last checkpoint are new bytes, and
//! only they are synced. The file system's link count is each run's
//! reference count: a checkpoint owns one link per run it needs, the live
//! spine another, and a run's bytes go when the last link does — so keeping
//! the newest N checkpoints is deleting whole directories, with no file list
//! to diff.

pub(crate) mod build;
mod commit;
mod dir;
mod layout;
mod manifest;
mod progress;
pub(crate) mod retention;
mod validate;

pub use commit::{
    COMMIT_RECORD_VERSION, COMMIT_SPINE, EpochMetadata, append_shard_offsets, commit_key, decode_commit_key,
    decode_commit_value, encode_commit_value,
};
pub use dir::{
    CheckpointStore, CommitReport, DAMAGED_DIR_SUFFIX, FileSystemCheckpointStore, PreparedCheckpoint,
    RunLink, TMP_DIR_SUFFIX, copy_file, read_file,
};
pub use layout::{Layout, checkpoint_run_name, live_run_name};
pub use manifest::{
    CheckpointManifest, ConnectorCheckpoint, FLAG_RUNS_COPIED, MANIFEST_HEADER_LEN, MANIFEST_MAGIC,
    MANIFEST_NAME, MANIFEST_VERSION, OperatorCheckpoint, RunEntry, ShardManifest, SpineManifest,
};
// The remote tier's manifest uses the same bounds-checked encoding.
#[cfg(feature = "remote")]
pub(crate) use manifest::{Reader, put_bytes, put_u32, put_u64, with_header};
pub(crate) use progress::Meter;
pub use progress::{PROGRESS_STEP_BYTES, Phase, Progress, ProgressFn};
pub(crate) use validate::validate_keeping_runs;
pub use validate::{
    ValidationDepth, ValidationReport, validate_checkpoint, validate_checkpoint_with_progress,
};
