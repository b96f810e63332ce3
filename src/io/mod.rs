//! The storage seam: every file-system operation statespine performs.
//!
//! Nothing above this layer touches `std::fs`. Three implementations stand behind
//! the [`Fs`] trait:
//! 1. [`StdFs`] — the real one (std + memmap2).
//! 2. [`MemFs`] — in memory, for tests; it keeps each file's *written* bytes apart
//!    from its *synced* bytes, so a test can build the disk a crash would leave.
//! 3. [`SimFs`] — the crash-simulating one: directory entries durable only
//!    once their directory is synced, faults at operation k, crash images.
//!
//! The trait is shaped by crash consistency: durability is always an explicit call (`sync_data`, `sync_file`, `sync_dir`),
//! never a side effect of `append`, `rename` or `hard_link`, so an implementation
//! can model exactly what a crash keeps.

pub(crate) mod header;
mod kill;
mod lock;
mod mapping;
mod mem;
mod overlay;
mod pool;
mod real;
#[cfg(any(test, feature = "sim"))]
mod sim;
mod write_behind;

use std::fmt::Debug;
use std::path::{Path, PathBuf};

pub(crate) use kill::kill_point;
pub use lock::LockGuard;
pub(crate) use lock::holder_description;
pub use mapping::Mapping;
pub(crate) use mapping::{prefetch, prefetch_slice, prefetch_value};
pub use mem::MemFs;
pub use overlay::OverlayFs;
#[doc(hidden)]
pub use pool::{Job, Pending, Pool};
pub use real::StdFs;
#[cfg(any(test, feature = "sim"))]
pub use sim::{CrashVariant, Errno, SimFs};
#[doc(hidden)]
pub use write_behind::WriteBehind;

use crate::Result;

/// A file system, as statespine needs it.
///
/// Paths are absolute or relative to the process's working directory, as in
/// `std::fs`. Every method that fails returns [`crate::Error::Io`] naming the
/// operation and the path.
pub trait Fs: Send + Sync + Debug {
    /// Creates a new file for appending; fails if it already exists.
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>>;
    /// Opens an existing file for appending at its end (WAL segments).
    fn open_append(&self, path: &Path) -> Result<Box<dyn WritableFile>>;
    /// Opens an existing file for positional reads and mapping.
    fn open(&self, path: &Path) -> Result<Box<dyn ReadableFile>>;
    /// Atomically renames `from` to `to`, replacing `to` if it exists. Durable
    /// only after [`Fs::sync_dir`] of both parents.
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Creates `link` as a new name of `original`'s contents. Durable only after
    /// [`Fs::sync_dir`] of `link`'s parent.
    fn hard_link(&self, original: &Path, link: &Path) -> Result<()>;
    /// Removes a file's name.
    fn remove_file(&self, path: &Path) -> Result<()>;
    /// Removes a directory and everything under it.
    fn remove_dir_all(&self, path: &Path) -> Result<()>;
    /// Creates a directory and any missing parents.
    fn create_dir_all(&self, path: &Path) -> Result<()>;
    /// Names of the entries in a directory, sorted.
    fn list(&self, dir: &Path) -> Result<Vec<String>>;
    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> Result<bool>;
    /// Makes a file's contents durable (fdatasync through a fresh handle).
    fn sync_file(&self, path: &Path) -> Result<()>;
    /// Makes a directory's entries (creates, renames, links, removals) durable.
    fn sync_dir(&self, dir: &Path) -> Result<()>;
    /// Takes an exclusive lock on the file at `path` (created if missing),
    /// held until the guard drops, and records `holder` in it. Fails with
    /// [`crate::Error::Locked`], naming the holder, while another guard of
    /// the same file lives, in this process or another (module `lock`).
    fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn LockGuard>>;
    /// Whether large sequential files (runs) should be written through a
    /// [`WriteBehind`] helper thread: true where `write` is a real system
    /// call. The in-memory file systems keep every operation on the caller's
    /// thread, so crash and fault tests stay deterministic.
    fn write_behind(&self) -> bool {
        false
    }
}

/// A file open for appending.
pub trait WritableFile: Send + Debug {
    /// Appends all of `buf` at the end of the file.
    fn append(&mut self, buf: &[u8]) -> Result<()>;
    /// Appends all of `buf` and leaves it empty (possibly another buffer of
    /// the same capacity: a [`WriteBehind`] file takes the full one).
    fn append_vec(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        self.append(buf)?;
        buf.clear();
        Ok(())
    }
    /// Waits until every append so far has reached the file system (not
    /// durability: see `sync_data`). Needed before the file is renamed or
    /// read when appends may be in flight on another thread.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    /// Asks for an fdatasync of everything appended so far, done later on a
    /// helper thread; the flag turns true once it succeeded. `None` where
    /// appends are synchronous: a caller that needs the bytes durable syncs
    /// them itself (a checkpoint does).
    fn sync_in_background(&mut self) -> Option<std::sync::Arc<std::sync::atomic::AtomicBool>> {
        None
    }
    /// Makes every byte appended so far durable (fdatasync).
    fn sync_data(&mut self) -> Result<()>;
    /// Truncates or extends the file to `len` bytes; appends continue at `len`.
    /// The new size is durable only after [`WritableFile::sync_data`].
    fn set_len(&mut self, len: u64) -> Result<()>;
    /// Current length in bytes (written, not necessarily durable).
    fn len(&self) -> u64;
    /// True when the file holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The path the file was opened with, for error messages.
    fn path(&self) -> &Path;
}

/// A file open for reading.
pub trait ReadableFile: Send + Sync + Debug {
    /// Length of the file in bytes, as the file system reports it now.
    fn size(&self) -> Result<u64>;
    /// Reads exactly `buf.len()` bytes at `offset`; a short file is an error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;
    /// Maps the first `len` bytes of the file read-only. The caller must have
    /// checked `len` against the file's own framing: mapping past the end of a
    /// file that shrank raises SIGBUS on access.
    fn map(&self, len: u64) -> Result<Mapping>;
    /// The path the file was opened with, for error messages.
    fn path(&self) -> &Path;
}

/// The parent directory of `path` (`.` for a bare name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates `dir` and any missing ancestors so that they survive a crash:
/// each directory it creates is made durable in its parent (a new
/// directory is an entry of its parent like any file). Directories that
/// already exist are left as they are.
pub fn create_dir_all_durable(fs: &dyn Fs, dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.as_os_str().is_empty() && !fs.exists(at)? {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(dir)?;
    // Outermost first: each new entry is durable before anything under it.
    for d in missing.iter().rev() {
        fs.sync_dir(&parent_dir(d))?;
    }
    Ok(())
}

/// The caller's `tracing` subscriber, if it has one, for a thread working on
/// its behalf (set there with `tracing::dispatcher::set_default`): its
/// events then land where the caller's do. None when no subscriber
/// listens, so that the thread still finds a global one set later.
pub(crate) fn caller_subscriber() -> Option<tracing::Dispatch> {
    tracing::dispatcher::get_default(|d| (!d.is::<tracing::subscriber::NoSubscriber>()).then(|| d.clone()))
}
