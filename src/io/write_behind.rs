//! [`WriteBehind`]: a [`WritableFile`] whose appends are written by a helper
//! thread, so the thread that builds a run (the spine's owner, inside a
//! bounded `merge_step`) never sits in `write(2)`: copying into cold page-cache
//! pages, and dirty-page throttling, cost it nothing it did not ask for.
//!
//! 1. `append_vec` hands the caller's full buffer to the helper and gives it
//!    an empty one back (a recycled buffer once `DEPTH` are in flight: no
//!    allocation per call in steady state). At most `DEPTH` buffers are
//!    queued; a caller that gets ahead waits for the oldest to be written.
//! 2. The helper writes buffers in order. Its first error is kept and
//!    returned by the next `flush`, `sync_data` or `set_len`; appends after
//!    it are dropped (the file is garbage by then, and its writer fails).
//! 3. `flush` waits until every append so far reached the file system;
//!    `sync_data` does that and then syncs. Callers flush before they rename
//!    or read a file (`RunWriter::finish`).
//!
//! One helper thread per file: run files are megabytes, so spawning one
//! costs far less than writing it, and no file waits behind another's queue.
//! At most [`MAX_WRITE_BEHIND_THREADS`] run at once in the process
//! ([`WriteBehind::bounded`]): a file beyond that is written by its caller,
//! so a store with a hundred spines merging at once starts a fixed number.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::WritableFile;
use crate::{Error, Result};

/// Buffers in flight per file (each up to the writer's buffer size).
const DEPTH: usize = 4;

/// Write-behind threads alive at once, process-wide, at most.
pub const MAX_WRITE_BEHIND_THREADS: usize = 4;

/// Write-behind threads alive now.
static ALIVE: AtomicUsize = AtomicUsize::new(0);

/// A slot among [`MAX_WRITE_BEHIND_THREADS`], given back when dropped.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        ALIVE
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_WRITE_BEHIND_THREADS).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        ALIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

enum Msg {
    Append(Vec<u8>),
    /// Reply once everything before it is written (and synced, if asked).
    Barrier {
        sync: bool,
    },
    SetLen(u64),
    /// Sync when everything before it is written; then set the flag.
    SyncThen(Arc<AtomicBool>),
}

/// See the module docs.
#[derive(Debug)]
pub struct WriteBehind {
    path: PathBuf,
    len: u64,
    tx: Option<SyncSender<Msg>>,
    /// Written buffers coming back, emptied.
    spare: Receiver<Vec<u8>>,
    /// Replies to barriers.
    replies: Receiver<Result<()>>,
    /// Buffers handed out so far (at most `DEPTH` are ever made).
    made: usize,
}

fn helper_gone(path: &Path) -> Error {
    Error::io(
        "write-behind",
        path,
        std::io::Error::other("the writing thread is gone"),
    )
}

impl WriteBehind {
    /// `inner` behind a helper thread if one of the process's
    /// [`MAX_WRITE_BEHIND_THREADS`] is free, else `inner` itself, written by
    /// its caller.
    pub fn bounded(inner: Box<dyn WritableFile>) -> Result<Box<dyn WritableFile>> {
        match Slot::take() {
            Some(slot) => Ok(Box::new(WriteBehind::start(inner, Some(slot))?)),
            None => Ok(inner),
        }
    }

    /// Takes over `inner`; its appends from now on happen on a helper thread
    /// (outside the bound of [`WriteBehind::bounded`]).
    pub fn new(inner: Box<dyn WritableFile>) -> Result<WriteBehind> {
        WriteBehind::start(inner, None)
    }

    fn start(inner: Box<dyn WritableFile>, slot: Option<Slot>) -> Result<WriteBehind> {
        let path = inner.path().to_path_buf();
        let len = inner.len();
        let (tx, rx) = sync_channel::<Msg>(DEPTH);
        let (spare_tx, spare) = sync_channel::<Vec<u8>>(DEPTH + 1);
        let (reply_tx, replies) = sync_channel::<Result<()>>(1);
        std::thread::Builder::new()
            .name("statespine-wb".into())
            .spawn(move || {
                let _slot = slot;
                let mut file = inner;
                let mut failed: Option<Error> = None;
                for msg in rx {
                    match msg {
                        Msg::Append(mut buf) => {
                            if failed.is_none() {
                                failed = file.append(&buf).err();
                            }
                            buf.clear();
                            let _ = spare_tx.send(buf);
                        }
                        Msg::Barrier { sync } => {
                            let r = match failed.take() {
                                Some(e) => Err(e),
                                None if sync => file.sync_data(),
                                None => Ok(()),
                            };
                            let keep_failing = r.is_err();
                            if reply_tx.send(r).is_err() {
                                return;
                            }
                            if keep_failing {
                                // Nothing more reaches this file.
                                failed = Some(helper_gone(file.path()));
                            }
                        }
                        Msg::SetLen(n) => {
                            if failed.is_none() {
                                failed = file.set_len(n).err();
                            }
                        }
                        Msg::SyncThen(flag) => {
                            if failed.is_none() {
                                match file.sync_data() {
                                    Ok(()) => flag.store(true, Ordering::Release),
                                    Err(e) => failed = Some(e),
                                }
                            }
                        }
                    }
                }
            })
            .map_err(|e| Error::io("spawn write-behind thread", &path, e))?;
        Ok(WriteBehind {
            path,
            len,
            tx: Some(tx),
            spare,
            replies,
            made: 0,
        })
    }

    fn send(&mut self, msg: Msg) -> Result<()> {
        match &self.tx {
            Some(tx) => tx.send(msg).map_err(|_| helper_gone(&self.path)),
            None => Err(helper_gone(&self.path)),
        }
    }

    fn barrier(&mut self, sync: bool) -> Result<()> {
        self.send(Msg::Barrier { sync })?;
        self.replies.recv().map_err(|_| helper_gone(&self.path))?
    }

    /// An empty buffer with at least `capacity` bytes: a returned one, a new
    /// one while fewer than `DEPTH` exist, else the next one returned.
    fn empty_buffer(&mut self, capacity: usize) -> Result<Vec<u8>> {
        let buf = match self.spare.try_recv() {
            Ok(b) => b,
            Err(_) if self.made < DEPTH => {
                self.made += 1;
                Vec::with_capacity(capacity)
            }
            Err(_) => self.spare.recv().map_err(|_| helper_gone(&self.path))?,
        };
        Ok(buf)
    }
}

impl WritableFile for WriteBehind {
    fn append(&mut self, buf: &[u8]) -> Result<()> {
        let mut owned = self.empty_buffer(buf.len())?;
        owned.extend_from_slice(buf);
        self.len += buf.len() as u64;
        self.send(Msg::Append(owned))
    }

    fn append_vec(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        let empty = self.empty_buffer(buf.capacity())?;
        let full = std::mem::replace(buf, empty);
        self.len += full.len() as u64;
        self.send(Msg::Append(full))
    }

    fn flush(&mut self) -> Result<()> {
        self.barrier(false)
    }

    fn sync_data(&mut self) -> Result<()> {
        self.barrier(true)
    }

    fn sync_in_background(&mut self) -> Option<Arc<AtomicBool>> {
        let flag = Arc::new(AtomicBool::new(false));
        self.send(Msg::SyncThen(Arc::clone(&flag))).ok()?;
        Some(flag)
    }

    fn set_len(&mut self, len: u64) -> Result<()> {
        self.send(Msg::SetLen(len))?;
        self.len = len;
        self.barrier(false)
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        // Closing the queue lets the helper finish what it holds and exit.
        self.tx = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::io::{Fs, MemFs};

    #[test]
    fn appends_arrive_in_order_and_flush_waits_for_them() {
        let fs = MemFs::new();
        let path = Path::new("/f");
        let mut w = WriteBehind::new(fs.create(path).unwrap()).unwrap();
        let mut expect = Vec::new();
        for i in 0..100u32 {
            let mut buf = Vec::with_capacity(64);
            buf.extend_from_slice(&i.to_le_bytes().repeat(i as usize % 7 + 1));
            expect.extend_from_slice(&buf);
            if i % 2 == 0 {
                w.append_vec(&mut buf).unwrap();
                assert!(buf.is_empty(), "the caller gets an empty buffer back");
            } else {
                w.append(&buf).unwrap();
            }
        }
        assert_eq!(w.len(), expect.len() as u64);
        w.flush().unwrap();
        let mut got = vec![0u8; expect.len()];
        fs.open(path).unwrap().read_exact_at(&mut got, 0).unwrap();
        assert_eq!(got, expect);
        w.sync_data().unwrap();
        let synced = w.sync_in_background().unwrap();
        drop(w);
        // The helper finishes its queue after the file is dropped.
        let start = std::time::Instant::now();
        while !synced.load(Ordering::Acquire) {
            assert!(
                start.elapsed().as_secs() < 10,
                "the background sync never finished"
            );
            std::thread::yield_now();
        }
        assert_eq!(
            fs.crash().read(path).unwrap(),
            expect,
            "synced bytes survive a crash"
        );
    }

    #[test]
    fn a_failed_write_surfaces_at_the_next_flush() {
        let fs = MemFs::new();
        let path = Path::new("/f");
        let mut w = WriteBehind::new(fs.create(path).unwrap()).unwrap();
        w.append(b"before").unwrap();
        w.flush().unwrap();
        fs.fail_syncs(true);
        w.append(b"after").unwrap();
        let synced = w.sync_in_background().unwrap();
        assert!(w.sync_data().is_err(), "a failed sync is reported");
        assert!(w.flush().is_err(), "and the file stays failed");
        assert!(
            !synced.load(Ordering::Acquire),
            "a failed background sync never says synced"
        );
    }
}
