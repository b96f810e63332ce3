//! [`Pool`]: a fixed set of worker threads for blocking I/O fanned out side
//! by side (a round of `fdatasync`s over many files: the device and the file
//! system's journal merge concurrent syncs, where one after another each
//! pays the full latency). Threads are created once, so a round costs a
//! queue hand-off per job, not a thread start.
//!
//! [`Pool::run_all`] runs a batch and waits for all of it. Jobs own what
//! they touch (`'static`): the workers outlive any caller's borrow. A job
//! that panics yields [`Error::Panicked`] for its slot and the worker goes
//! on. A job must not wait on the pool it runs in (a full pool of waiters
//! would wait forever).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;

use crate::{Error, Result};

/// Threads of the process-wide pool [`Pool::shared`].
pub const SHARED_POOL_THREADS: usize = 16;

/// A batch job: runs, then reports through the channel it captured.
type Task = Box<dyn FnOnce() + Send + 'static>;

/// A job of [`Pool::run_all`].
pub type Job<T> = Box<dyn FnOnce() -> Result<T> + Send + 'static>;

/// A fixed set of worker threads. See the module docs.
#[derive(Debug)]
pub struct Pool {
    /// Taken only by drop, which closes it (a `Sender` is `Sync`).
    queue: Option<Sender<Task>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `size` worker threads (at least one), named `<name>-<i>`.
    pub fn new(size: usize, name: &str) -> Result<Pool> {
        let (tx, rx) = channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(size.max(1));
        for i in 0..size.max(1) {
            let rx = Arc::clone(&rx);
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || work(&rx))
                .map_err(|e| Error::io("spawn pool thread", Path::new(name), e))?;
            threads.push(thread);
        }
        Ok(Pool {
            queue: Some(tx),
            threads,
        })
    }

    /// The process-wide pool of [`SHARED_POOL_THREADS`] threads, started on
    /// first use: what the layers use when their caller passes no pool.
    pub fn shared() -> Result<Arc<Pool>> {
        static SHARED: OnceLock<Arc<Pool>> = OnceLock::new();
        Pool::once(&SHARED, SHARED_POOL_THREADS, "statespine-io")
    }

    /// The pool in `cell`, started with `size` threads on first use.
    pub(crate) fn once(cell: &'static OnceLock<Arc<Pool>>, size: usize, name: &str) -> Result<Arc<Pool>> {
        if let Some(p) = cell.get() {
            return Ok(Arc::clone(p));
        }
        let pool = Arc::new(Pool::new(size, name)?);
        // A racing first use may have won: its pool is kept, this one drops.
        Ok(Arc::clone(cell.get_or_init(|| pool)))
    }

    /// Worker threads.
    pub fn size(&self) -> usize {
        self.threads.len()
    }

    /// Runs every job, at most [`Self::size`] at a time, and waits for all
    /// of them; their results in the jobs' order. A job that panicked gives
    /// [`Error::Panicked`] naming `thread` (`"a sync thread"`). A single job
    /// runs on the caller's thread: a hand-off would only add latency.
    pub fn run_all<T: Send + 'static>(&self, thread: &'static str, jobs: Vec<Job<T>>) -> Vec<Result<T>> {
        if jobs.len() <= 1 {
            return jobs.into_iter().map(|job| guarded(thread, job)).collect();
        }
        let n = jobs.len();
        let (tx, rx) = channel::<(usize, Result<T>)>();
        for (i, job) in jobs.into_iter().enumerate() {
            let tx = tx.clone();
            // A send fails only if the batch stopped waiting, which it does
            // not before every result is in.
            self.submit(Box::new(move || drop(tx.send((i, guarded(thread, job))))));
        }
        drop(tx);
        let mut results: Vec<Option<Result<T>>> = (0..n).map(|_| None).collect();
        for (i, r) in rx.iter().take(n) {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(Error::Panicked { thread })))
            .collect()
    }
}

impl Pool {
    /// Queues `job` and returns at once: [`Pending::wait`] gives its result
    /// (background work: a merge, the janitor). A panic in it gives
    /// [`Error::Panicked`] naming `thread`.
    pub fn spawn<T: Send + 'static>(&self, thread: &'static str, job: Job<T>) -> Pending<T> {
        let (tx, rx) = channel();
        self.submit(Box::new(move || drop(tx.send(guarded(thread, job)))));
        Pending { rx, thread }
    }
}

impl Pool {
    /// Queues a task for the workers.
    fn submit(&self, task: Task) {
        let Some(queue) = &self.queue else {
            unreachable!("the queue closes only when the pool drops");
        };
        if queue.send(task).is_err() {
            unreachable!("pool workers outlive the pool's queue");
        }
    }
}

/// The result of a job [`Pool::spawn`] queued.
#[derive(Debug)]
pub struct Pending<T> {
    rx: Receiver<Result<T>>,
    thread: &'static str,
}

impl<T> Pending<T> {
    /// Waits for the job's result.
    pub fn wait(self) -> Result<T> {
        self.rx
            .recv()
            .unwrap_or(Err(Error::Panicked { thread: self.thread }))
    }
}

/// Runs `job`, turning a panic into [`Error::Panicked`].
fn guarded<T>(thread: &'static str, job: Job<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(job)).unwrap_or(Err(Error::Panicked { thread }))
}

/// A worker: runs tasks until the queue closes.
fn work(rx: &Mutex<Receiver<Task>>) {
    loop {
        let task = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match task {
            // Tasks catch their jobs' panics: a worker never unwinds.
            Ok(task) => task(),
            Err(_) => return,
        }
    }
}

impl Drop for Pool {
    /// Closes the queue and joins every worker (queued jobs run first).
    fn drop(&mut self) {
        drop(self.queue.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn runs_every_job_on_at_most_size_threads_and_keeps_order() {
        let pool = Pool::new(3, "test-pool").unwrap();
        let busy = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<Job<(usize, std::thread::ThreadId)>> = (0..40usize)
            .map(|i| {
                let (busy, most) = (Arc::clone(&busy), Arc::clone(&most));
                Box::new(move || {
                    let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                    busy.fetch_sub(1, Ordering::SeqCst);
                    Ok((i, std::thread::current().id()))
                }) as Job<_>
            })
            .collect();
        let results = pool.run_all("a test thread", jobs);
        let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            results.iter().map(|r| r.0).collect::<Vec<_>>(),
            (0..40).collect::<Vec<_>>()
        );
        let threads: HashSet<_> = results.iter().map(|r| r.1).collect();
        assert!(threads.len() <= 3, "{} threads for a pool of 3", threads.len());
        assert!(!threads.contains(&std::thread::current().id()));
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert_eq!(pool.size(), 3);
    }

    #[test]
    fn a_panicking_job_is_an_error_and_the_pool_stays_usable() {
        let pool = Pool::new(2, "test-pool").unwrap();
        for _ in 0..2 {
            let jobs: Vec<Job<u32>> = vec![
                Box::new(|| Ok(1)),
                Box::new(|| panic!("a job's bug")),
                Box::new(|| Ok(3)),
            ];
            let results = pool.run_all("a test thread", jobs);
            assert_eq!(*results[0].as_ref().unwrap(), 1);
            assert!(matches!(
                results[1],
                Err(Error::Panicked {
                    thread: "a test thread"
                })
            ));
            assert_eq!(*results[2].as_ref().unwrap(), 3);
        }
        let one: Vec<Job<u32>> = vec![Box::new(|| panic!("inline"))];
        assert!(matches!(
            pool.run_all("inline", one)[0],
            Err(Error::Panicked { thread: "inline" })
        ));
        let more: Vec<Job<u32>> = (0..10u32).map(|i| Box::new(move || Ok(i)) as Job<u32>).collect();
        assert_eq!(
            pool.run_all("t", more)
                .into_iter()
                .map(Result::unwrap)
                .sum::<u32>(),
            45
        );
    }

    #[test]
    fn drop_joins_the_threads() {
        static EXITED: AtomicUsize = AtomicUsize::new(0);
        struct OnExit;
        impl Drop for OnExit {
            fn drop(&mut self) {
                EXITED.fetch_add(1, Ordering::SeqCst);
            }
        }
        thread_local! { static GUARD: std::cell::RefCell<Option<OnExit>> = const { std::cell::RefCell::new(None) }; }
        let pool = Pool::new(4, "test-pool").unwrap();
        // All four wait for each other: each worker takes one and leaves a
        // guard that counts when its thread ends.
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let jobs: Vec<Job<()>> = (0..4)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                Box::new(move || {
                    GUARD.with(|g| *g.borrow_mut() = Some(OnExit));
                    barrier.wait();
                    Ok(())
                }) as Job<()>
            })
            .collect();
        assert!(pool.run_all("t", jobs).iter().all(Result::is_ok));
        assert_eq!(EXITED.load(Ordering::SeqCst), 0);
        drop(pool);
        assert_eq!(
            EXITED.load(Ordering::SeqCst),
            4,
            "every worker ended before drop returned"
        );
    }
}
