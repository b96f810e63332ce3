//! [`Helper`]: the opt-in background mode, one helper thread per spine.
//!
//! The owner hands each new [`Merge`] to the helper over a channel; the helper
//! advances all it holds round-robin, one budget slice each (the same `work`
//! calls `merge_step` makes), finishes them with `done`, and sends the output
//! back. The owner installs outputs when it next looks (`merge_step`, a seal,
//! or a write under backpressure), so it never waits for the helper unless it
//! is past its backpressure limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use super::batch::Batch;
use super::merge::{Merge, Output};
use crate::io::Fs;
use crate::{Error, Result};

/// A finished (or failed) merge, by id.
pub(crate) type Finished = (u64, Result<Output>);

/// What the owner sends the helper.
#[derive(Debug)]
enum Msg {
    /// A merge to run, by id.
    Merge(u64, Box<Merge>),
    /// Retired batches whose last references the helper should drop, so the
    /// owner never pays for unmapping memtables or unlinking run files.
    Drop(Vec<Batch>),
}

#[derive(Debug)]
pub(crate) struct Helper {
    to_helper: Option<Sender<Msg>>,
    from_helper: Receiver<Finished>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Helper {
    pub(crate) fn spawn(fs: Arc<dyn Fs>, budget: usize) -> Result<Helper> {
        let (to_helper, inbox) = mpsc::channel::<Msg>();
        let (outbox, from_helper) = mpsc::channel::<Finished>();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("statespine-merge".into())
            .spawn(move || run(&fs, budget, &inbox, &outbox, &stop2))
            .map_err(|e| Error::io("spawn merge thread", std::path::Path::new(""), e))?;
        Ok(Helper {
            to_helper: Some(to_helper),
            from_helper,
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn submit(&self, id: u64, merge: Merge) -> Result<()> {
        self.to_helper
            .as_ref()
            .and_then(|tx| tx.send(Msg::Merge(id, Box::new(merge))).ok())
            // It stops only when dropped, so a stopped helper has panicked.
            .ok_or(Error::Panicked {
                thread: "statespine-merge",
            })
    }

    /// Hands retired batches to the helper to drop. If the helper is gone they
    /// come back and drop here.
    pub(crate) fn bury(&self, retired: Vec<Batch>) {
        if let Some(tx) = &self.to_helper {
            let _ = tx.send(Msg::Drop(retired));
        }
    }

    /// A finished merge, if one is ready (never waits).
    pub(crate) fn try_finished(&self) -> Option<Finished> {
        self.from_helper.try_recv().ok()
    }

    /// A finished merge, waiting at most `timeout` (backpressure only).
    pub(crate) fn wait_finished(&self, timeout: Duration) -> Option<Finished> {
        self.from_helper.recv_timeout(timeout).ok()
    }
}

fn run(fs: &Arc<dyn Fs>, budget: usize, inbox: &Receiver<Msg>, outbox: &Sender<Finished>, stop: &AtomicBool) {
    let mut active: Vec<(u64, Merge)> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        if active.is_empty() {
            match inbox.recv() {
                Ok(Msg::Merge(id, m)) => active.push((id, *m)),
                Ok(Msg::Drop(retired)) => drop(retired),
                Err(_) => return,
            }
        }
        for msg in inbox.try_iter() {
            match msg {
                Msg::Merge(id, m) => active.push((id, *m)),
                Msg::Drop(retired) => drop(retired),
            }
        }
        let mut i = 0;
        while i < active.len() && !stop.load(Ordering::Acquire) {
            let mut left = budget;
            match active[i].1.work(&mut left) {
                Ok(false) => i += 1,
                Ok(true) => {
                    let (id, m) = active.swap_remove(i);
                    if outbox.send((id, m.done(fs))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let (id, _) = active.swap_remove(i);
                    if outbox.send((id, Err(e))).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Closing the inbox wakes a helper waiting for work.
        self.to_helper = None;
        if let Some(t) = self.thread.take() {
            // Unfinished merges drop with the thread, removing their temporary files.
            let _ = t.join();
        }
    }
}
