//! The store's directory lock: one owner at a time, as two writers of one
//! log or checkpoint directory would each overwrite what the other made
//! durable.
//!
//! [`Fs::lock`](super::Fs::lock) takes an exclusive lock on a file and
//! returns a guard that holds it until dropped. On a real file system it is
//! an advisory `flock` (std's `File::try_lock`) on an open file description,
//! so a second open from another process *or from another thread of this
//! one* is refused, and the kernel releases it when the process dies, kill -9
//! included: a crash never leaves a stale lock behind. The file names its
//! holder (process id and host) for the error a second opener gets; its
//! contents are information only, never trusted for the decision.

use std::collections::HashMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{Error, Result};

/// Holds a lock taken by [`Fs::lock`](super::Fs::lock) until dropped.
pub trait LockGuard: Send + Sync + Debug {}

/// Who holds a lock, as written into the lock file: `pid <n> on <host>`.
pub fn holder_description() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    if host.is_empty() {
        format!("pid {}", std::process::id())
    } else {
        format!("pid {} on {host}", std::process::id())
    }
}

#[derive(Debug)]
struct StdLock {
    /// The open file description the `flock` belongs to: closing it unlocks.
    _file: File,
}

impl LockGuard for StdLock {}

/// [`super::StdFs`]'s lock: `flock(LOCK_EX | LOCK_NB)` on `path`.
pub(super) fn lock_std(path: &Path, holder: &str) -> Result<Box<dyn LockGuard>> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io("open lock file", path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut held_by = String::new();
            let _ = file.read_to_string(&mut held_by);
            return Err(Error::Locked {
                path: path.to_path_buf(),
                holder: held_by.trim().to_owned(),
            });
        }
        Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
    }
    // Information for the next opener; not synced, never trusted.
    let note = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(holder.as_bytes()));
    note.map_err(|e| Error::io("write lock file", path, e))?;
    Ok(Box::new(StdLock { _file: file }))
}

/// The locks of an in-memory file system: path to holder. A crash image
/// starts with none, as a rebooted machine does.
#[derive(Debug, Default, Clone)]
pub(super) struct LockTable(Arc<Mutex<HashMap<PathBuf, String>>>);

fn table(m: &Mutex<HashMap<PathBuf, String>>) -> MutexGuard<'_, HashMap<PathBuf, String>> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug)]
struct TableLock {
    table: LockTable,
    path: PathBuf,
}

impl LockGuard for TableLock {}

impl Drop for TableLock {
    fn drop(&mut self) {
        table(&self.table.0).remove(&self.path);
    }
}

impl LockTable {
    /// Takes `path`, or says who holds it.
    pub(super) fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn LockGuard>> {
        let mut t = table(&self.0);
        if let Some(held_by) = t.get(path) {
            return Err(Error::Locked {
                path: path.to_path_buf(),
                holder: held_by.clone(),
            });
        }
        t.insert(path.to_path_buf(), holder.to_owned());
        Ok(Box::new(TableLock {
            table: self.clone(),
            path: path.to_path_buf(),
        }))
    }
}
