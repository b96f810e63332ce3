//! The one error type of the crate.
//!
//! Corruption always names the file, the byte offset, the region being read, what
//! was expected and what was found: an operator reading the message at 3 a.m.
//! should know which file to look at and where, without a debugger.

use std::path::{Path, PathBuf};

/// Result alias used throughout statespine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in statespine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("{op} {path}: {source}", path = .path.display())]
    Io {
        /// The operation that failed (`"open"`, `"fdatasync"`, ...).
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// Bytes read back from storage are not what was written.
    #[error(
        "corrupt {path} at offset {offset}: {region}: expected {expected}, found {found}",
        path = .path.display()
    )]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset in the file where the damaged structure starts.
        offset: u64,
        /// The structure being read (`"footer"`, `"data block"`, ...).
        region: &'static str,
        /// What a well-formed file holds there.
        expected: String,
        /// What this file holds there.
        found: String,
    },

    /// The file was written by a newer, incompatible version of the format.
    #[error(
        "{path}: format version {found} needs a reader of version >= {min_reader}, this build reads up to {supported}",
        path = .path.display()
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version recorded in the file.
        found: u32,
        /// The oldest reader version the file says it can be read by.
        min_reader: u32,
        /// The newest version this build understands.
        supported: u32,
    },

    /// The file uses an incompatible feature this build does not know.
    #[error("{path}: unknown incompatible feature bits {bits:#x}", path = .path.display())]
    UnsupportedFeatures {
        /// The file.
        path: PathBuf,
        /// The unknown bits.
        bits: u64,
    },

    /// Entries were pushed to a run writer out of order, or duplicated.
    #[error(
        "{path}: entry {index} is not strictly greater than the one before it",
        path = .path.display()
    )]
    OutOfOrder {
        /// The run being written.
        path: PathBuf,
        /// Zero-based position of the offending entry.
        index: u64,
    },

    /// A write-ahead log refused work after an earlier write or sync failed:
    /// what it had acknowledged stays durable, but nothing more is, and no
    /// retry may pretend otherwise (fail-stop). Reopen to recover.
    #[error("{path}: poisoned by an earlier failure: {cause}", path = .path.display())]
    Poisoned {
        /// The log's directory.
        path: PathBuf,
        /// The failure that poisoned it.
        cause: String,
    },

    /// An argument is outside what the API accepts.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Builds an [`Error::Io`].
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Builds an [`Error::Corruption`].
    pub(crate) fn corrupt(
        path: &Path,
        offset: u64,
        region: &'static str,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            path: path.to_path_buf(),
            offset,
            region,
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// True for damaged bytes (checksum, framing, structure), as opposed to I/O
    /// failures or misuse.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}
