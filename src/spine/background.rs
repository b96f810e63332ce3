//! [`Helper`]: the opt-in background mode, merges run on a shared, bounded
//! pool of merge threads ([`crate::io::Pool`]), not a thread per spine.
//!
//! The owner hands each new [`Merge`] to the helper, which queues it on the
//! pool as one job: a worker advances it in budget slices (the same `work`
//! calls `merge_step` makes), finishes it with `done`, and sends the output
//! back. The owner installs outputs when it next looks (`merge_step`, a seal,
//! or a write under backpressure), so it never waits for the pool unless it
//! is past its backpressure limit. Dropping the helper stops its merges at
//! their next slice and waits for their jobs to end, so their temporary files
//! are gone when the spine is.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use super::batch::Batch;
use super::merge::{Merge, Output};
use crate::io::{Fs, Pool};
use crate::{Error, Result};

/// A finished (or failed) merge, by id.
pub(crate) type Finished = (u64, Result<Output>);

/// Threads of a merge pool: the process-wide one spines use when their
/// owner gave them none ([`crate::spine::Spine::set_merge_pool`]), and a
/// store's by default.
pub const DEFAULT_MERGE_THREADS: usize = 2;

/// The process-wide merge pool, started on first use.
fn default_pool() -> Result<Arc<Pool>> {
    static POOL: OnceLock<Arc<Pool>> = OnceLock::new();
    Pool::once(&POOL, DEFAULT_MERGE_THREADS, "statespine-merge")
}

/// Jobs of one helper still queued or running.
#[derive(Debug, Default)]
struct InFlight {
    count: Mutex<usize>,
    zero: Condvar,
}

impl InFlight {
    /// Counts a job in; the guard counts it out when dropped, even by a
    /// panic, so a helper's drop never waits for a job that is gone.
    fn add(self: &Arc<Self>) -> JobGuard {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        JobGuard(Arc::clone(self))
    }
    fn done(&self) {
        let mut n = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        *n -= 1;
        if *n == 0 {
            self.zero.notify_all();
        }
    }
    fn wait_zero(&self) {
        let mut n = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        while *n > 0 {
            n = self.zero.wait(n).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// One job of a helper in flight, until dropped.
struct JobGuard(Arc<InFlight>);

impl Drop for JobGuard {
    fn drop(&mut self) {
        self.0.done();
    }
}

#[derive(Debug)]
pub(crate) struct Helper {
    fs: Arc<dyn Fs>,
    budget: usize,
    /// Set by the owner, or the process-wide pool at the first merge.
    pool: OnceLock<Arc<Pool>>,
    outbox: Sender<Finished>,
    from_pool: Receiver<Finished>,
    stop: Arc<AtomicBool>,
    in_flight: Arc<InFlight>,
}

impl Helper {
    /// A helper; its merges go to the pool [`Helper::set_pool`] gives, or
    /// else to the process-wide merge pool, started at the first merge.
    pub(crate) fn new(fs: Arc<dyn Fs>, budget: usize) -> Helper {
        let (outbox, from_pool) = mpsc::channel::<Finished>();
        Helper {
            fs,
            budget,
            pool: OnceLock::new(),
            outbox,
            from_pool,
            stop: Arc::new(AtomicBool::new(false)),
            in_flight: Arc::new(InFlight::default()),
        }
    }

    /// Runs later merges on `pool` (those queued stay where they are).
    pub(crate) fn set_pool(&mut self, pool: Arc<Pool>) {
        self.pool = OnceLock::from(pool);
    }

    fn pool(&self) -> Result<&Arc<Pool>> {
        if let Some(p) = self.pool.get() {
            return Ok(p);
        }
        let p = default_pool()?;
        Ok(self.pool.get_or_init(|| p))
    }

    pub(crate) fn submit(&self, id: u64, mut merge: Merge) -> Result<()> {
        let (fs, budget) = (Arc::clone(&self.fs), self.budget);
        let (outbox, stop) = (self.outbox.clone(), Arc::clone(&self.stop));
        let guard = self.in_flight.add();
        let job = move || {
            let _guard = guard;
            let run = AssertUnwindSafe(|| {
                loop {
                    if stop.load(Ordering::Acquire) {
                        // Dropping the merge removes its temporary file.
                        return None;
                    }
                    let mut left = budget;
                    match merge.work(&mut left) {
                        Ok(false) => continue,
                        Ok(true) => return Some(merge.done(&fs)),
                        Err(e) => return Some(Err(e)),
                    }
                }
            });
            // A merge that panicked (a bug) is answered as failed, so the
            // owner never waits for it.
            let result = catch_unwind(run).unwrap_or(Some(Err(Error::Panicked {
                thread: "a merge thread",
            })));
            if let Some(result) = result {
                let _ = outbox.send((id, result));
            }
            Ok(())
        };
        // The result travels through the outbox.
        drop(self.pool()?.spawn("a merge thread", Box::new(job)));
        Ok(())
    }

    /// Drops retired batches (their last references: unmapping memtables,
    /// unlinking run files) on the pool, off the owner's thread.
    pub(crate) fn bury(&self, retired: Vec<Batch>) {
        let Ok(pool) = self.pool() else {
            return; // No thread to spare: they drop here.
        };
        let guard = self.in_flight.add();
        drop(pool.spawn(
            "a merge thread",
            Box::new(move || {
                drop((retired, guard));
                Ok(())
            }),
        ));
    }

    /// A finished merge, if one is ready (never waits).
    pub(crate) fn try_finished(&self) -> Option<Finished> {
        self.from_pool.try_recv().ok()
    }

    /// A finished merge, waiting at most `timeout` (backpressure only).
    pub(crate) fn wait_finished(&self, timeout: Duration) -> Option<Finished> {
        self.from_pool.recv_timeout(timeout).ok()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Queued jobs see the flag when they start, running ones at their
        // next slice; unfinished merges drop with them.
        self.in_flight.wait_zero();
    }
}
