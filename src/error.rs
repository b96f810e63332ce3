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

    /// The call is wrong: an argument outside what the API accepts, or a
    /// call the object's state does not allow (an epoch that does not
    /// increase, a position not written yet, a Z-set call on a key-value
    /// spine). Nothing was changed; fix the caller.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The call asks for something this store's configuration does not do
    /// (an epoch commit on a store without a write-ahead log, a WAL outside
    /// the store's directory). Nothing was changed.
    #[error("not supported: {0}")]
    NotSupported(String),

    /// A fixed capacity is used up (every LSN of the log, every spine
    /// number of a shard, 4 GiB of index in one run). Nothing was written;
    /// the store stays usable for everything else.
    #[error("{what}: the limit of {limit} is reached")]
    LimitReached {
        /// The capacity (`"LSNs"`, `"spines in a shard"`, ...).
        what: &'static str,
        /// Its size.
        limit: u64,
    },

    /// The store on disk does not match how it is being opened (another
    /// fingerprint, another shard count, a WAL the options turn off). Nothing
    /// was changed; open it with the options it was written with.
    #[error("{path}: {reason}", path = .path.display())]
    Incompatible {
        /// The store's directory, or the checkpoint that does not match.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },

    /// The epoch asked for cannot be recovered: it is not committed on every
    /// shard in the log, and no retained checkpoint holds it.
    #[error("epoch {epoch} cannot be recovered; these can: {recoverable:?}")]
    EpochNotRecoverable {
        /// The epoch asked for.
        epoch: u64,
        /// The epochs that can be, oldest first.
        recoverable: Vec<u64>,
    },

    /// The object answering the call has shut down (its shard was dropped,
    /// its merge thread stopped). Nothing was changed; retrying on this
    /// object cannot succeed, reopening can.
    #[error("{what} has shut down")]
    ShutDown {
        /// What is gone (`"shard 3"`, `"the merge thread"`).
        what: String,
    },

    /// A thread of the store panicked: a bug in statespine. What it had
    /// acknowledged is durable; reopen the store and report the panic.
    #[error("{thread} panicked (a bug: reopen the store, and please report it)")]
    Panicked {
        /// The thread (`"the drainer thread"`, `"a sync thread"`).
        thread: &'static str,
    },

    /// The store is open elsewhere, in this process or another: a store has
    /// one owner at a time. Nothing was opened.
    #[error("{path} is locked by {holder}: a store has one owner at a time", path = .path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as it recorded itself (`pid <n> on <host>`).
        holder: String,
    },

    /// A spine handle was used on a shard it does not belong to (another
    /// shard, or a shard of another open store). Nothing was written.
    #[error(
        "spine {spine} of shard {owner}{other} used on shard {shard}",
        other = if *.same_store { "" } else { " of another open store" }
    )]
    WrongShard {
        /// The spine's number in its own shard.
        spine: u32,
        /// The shard the handle belongs to.
        owner: u32,
        /// The shard it was used on.
        shard: u32,
        /// False when the handle comes from another open store.
        same_store: bool,
    },

    /// The shard has no such spine (it was dropped). Nothing was written.
    #[error("shard {shard} has no spine {spine} (dropped?)")]
    NoSuchSpine {
        /// The shard.
        shard: u32,
        /// The spine's number.
        spine: u32,
    },

    /// A spine exists under that name with the other mode.
    #[error("spine {name:?} exists as a {mode} spine")]
    WrongMode {
        /// The spine's name.
        name: String,
        /// Its mode (`"key-value"` or `"Z-set"`).
        mode: &'static str,
    },

    /// A key, value or name is larger than its documented limit. Nothing
    /// was written.
    #[error("{what} of {len} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// What was too large (`"key"`, `"value"`, `"spine name"`).
        what: &'static str,
        /// Its length.
        len: u64,
        /// The limit.
        limit: u64,
    },

    /// A request to an object store failed (the remote tier, feature
    /// `remote`); the next push or restore may succeed.
    #[error("{op} {url}: {source}")]
    Remote {
        /// The request (`"put"`, `"get"`, `"list"`, ...).
        op: &'static str,
        /// The object or prefix it addressed.
        url: String,
        /// What the object store said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Another writer claimed the remote store: this one may no longer
    /// push to it (nor, once it knows, commit), whatever it retries.
    #[error("{url}: fenced: writer epoch {writer_epoch} was superseded by writer epoch {by}")]
    Fenced {
        /// The remote store.
        url: String,
        /// This writer's epoch.
        writer_epoch: u64,
        /// The epoch of the writer that took over (0 if unknown).
        by: u64,
    },

    /// A wait ended before its condition held; retrying may succeed.
    #[error("{what}: not done after {after:?}")]
    TimedOut {
        /// What was waited for.
        what: String,
        /// How long.
        after: std::time::Duration,
    },
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

    /// True for a failed `fdatasync` or `fsync`: what it was to make
    /// durable may be lost while a retry reports success, so nothing may
    /// retry it (fail-stop).
    pub fn is_sync_failure(&self) -> bool {
        matches!(self, Error::Io { op, source, .. }
            if (op.starts_with("fdatasync") || op.starts_with("fsync"))
                && source.kind() != std::io::ErrorKind::NotFound)
    }

    /// What sort of error this is, for a caller deciding what to do next.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } | Error::Remote { .. } => ErrorKind::Io,
            Error::Fenced { .. } => ErrorKind::Fenced,
            Error::Corruption { .. } => ErrorKind::Corruption,
            Error::UnsupportedVersion { .. }
            | Error::UnsupportedFeatures { .. }
            | Error::Incompatible { .. }
            | Error::Locked { .. } => ErrorKind::Incompatible,
            Error::OutOfOrder { .. }
            | Error::InvalidArgument(_)
            | Error::NotSupported(_)
            | Error::WrongShard { .. }
            | Error::NoSuchSpine { .. }
            | Error::WrongMode { .. }
            | Error::EpochNotRecoverable { .. } => ErrorKind::Misuse,
            Error::TooLarge { .. } | Error::LimitReached { .. } => ErrorKind::Limit,
            Error::TimedOut { .. } => ErrorKind::Retry,
            Error::Poisoned { .. } | Error::ShutDown { .. } => ErrorKind::Reopen,
            Error::Panicked { .. } => ErrorKind::Bug,
        }
    }

    /// True for damaged bytes (checksum, framing, structure), as opposed to I/O
    /// failures or misuse.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}

/// The sort of an [`Error`]: what the caller can do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operating system refused or failed a call; the error says which
    /// and on what. A failed sync is fail-stop ([`Error::is_sync_failure`]).
    Io,
    /// Bytes on disk are damaged; the error names the file and offset.
    Corruption,
    /// The files are of another format version, program or configuration,
    /// or the store is owned by someone else: open it as it was written.
    Incompatible,
    /// The call was wrong; nothing changed. Fix the caller.
    Misuse,
    /// A size or capacity limit; nothing changed.
    Limit,
    /// A wait ran out; the same call may succeed later.
    Retry,
    /// The store or part of it stopped taking work (after a failed sync, or
    /// at shutdown); reopen to recover what is durable.
    Reopen,
    /// A bug in statespine (a panicked thread); reopen, and report it.
    Bug,
    /// Another process owns the remote store now ([`Error::Fenced`]):
    /// stop this one; the new owner carries on from the bucket.
    Fenced,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> PathBuf {
        PathBuf::from("/f")
    }

    fn check(cases: Vec<(Error, ErrorKind)>) {
        for (err, kind) in cases {
            assert_eq!(err.kind(), kind, "{err}");
        }
    }

    /// Every variant has the kind a caller acts on (the match in `kind` is
    /// exhaustive, so a new variant cannot go without one; these catch a
    /// wrong one). Errors of the files and the store.
    #[test]
    fn errors_of_the_files_have_their_kinds() {
        let io = std::io::Error::other("x");
        check(vec![
            (Error::io("open", &p(), io), ErrorKind::Io),
            (Error::corrupt(&p(), 0, "footer", "a", "b"), ErrorKind::Corruption),
            (
                Error::UnsupportedVersion {
                    path: p(),
                    found: 9,
                    min_reader: 9,
                    supported: 1,
                },
                ErrorKind::Incompatible,
            ),
            (
                Error::UnsupportedFeatures { path: p(), bits: 1 },
                ErrorKind::Incompatible,
            ),
            (
                Error::Incompatible {
                    path: p(),
                    reason: "shards".into(),
                },
                ErrorKind::Incompatible,
            ),
            (
                Error::Locked {
                    path: p(),
                    holder: "pid 1".into(),
                },
                ErrorKind::Incompatible,
            ),
            (
                Error::Poisoned {
                    path: p(),
                    cause: "x".into(),
                },
                ErrorKind::Reopen,
            ),
            (
                Error::ShutDown {
                    what: "shard 1".into(),
                },
                ErrorKind::Reopen,
            ),
            (
                Error::Panicked {
                    thread: "the drainer thread",
                },
                ErrorKind::Bug,
            ),
        ]);
        assert!(Error::io("fdatasync", &p(), std::io::Error::other("x")).is_sync_failure());
        assert!(!Error::io("write", &p(), std::io::Error::other("x")).is_sync_failure());
    }

    /// The same, for errors of a call.
    #[test]
    fn errors_of_a_call_have_their_kinds() {
        check(vec![
            (Error::OutOfOrder { path: p(), index: 1 }, ErrorKind::Misuse),
            (Error::InvalidArgument("x".into()), ErrorKind::Misuse),
            (Error::NotSupported("x".into()), ErrorKind::Misuse),
            (
                Error::WrongShard {
                    spine: 0,
                    owner: 0,
                    shard: 1,
                    same_store: true,
                },
                ErrorKind::Misuse,
            ),
            (Error::NoSuchSpine { shard: 0, spine: 0 }, ErrorKind::Misuse),
            (
                Error::WrongMode {
                    name: "s".into(),
                    mode: "Z-set",
                },
                ErrorKind::Misuse,
            ),
            (
                Error::EpochNotRecoverable {
                    epoch: 3,
                    recoverable: vec![1],
                },
                ErrorKind::Misuse,
            ),
            (
                Error::TooLarge {
                    what: "key",
                    len: 2,
                    limit: 1,
                },
                ErrorKind::Limit,
            ),
            (
                Error::LimitReached {
                    what: "LSNs",
                    limit: 1,
                },
                ErrorKind::Limit,
            ),
            (
                Error::TimedOut {
                    what: "cut".into(),
                    after: std::time::Duration::ZERO,
                },
                ErrorKind::Retry,
            ),
            (
                Error::Remote {
                    op: "put",
                    url: "s3://b/k".into(),
                    source: "refused".into(),
                },
                ErrorKind::Io,
            ),
            (
                Error::Fenced {
                    url: "s3://b".into(),
                    writer_epoch: 1,
                    by: 2,
                },
                ErrorKind::Fenced,
            ),
        ]);
    }
}
