//! The ring's synchronisation primitives: std's, or loom's under `--cfg loom`
//! so `tests/loom_changelog.rs` can explore every interleaving.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

/// Locks `m`. A panic while it was held cannot have left the data half
/// changed (the ring's side queue only pushes and pops whole buffers), so a
/// poisoned lock is used as is.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Gives up the processor while waiting for the other side.
pub(crate) fn pause(round: u32) {
    #[cfg(loom)]
    {
        let _ = round;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        if round < SPIN_ROUNDS {
            std::hint::spin_loop();
        } else {
            // Bounded exponential backoff: 1 µs doubling to about 1 ms.
            let shift = (round - SPIN_ROUNDS).min(10);
            std::thread::sleep(std::time::Duration::from_micros(1 << shift));
        }
    }
}

/// Rounds of spinning before a waiting side starts to sleep: about the time
/// the other side needs to move one record.
#[cfg(not(loom))]
const SPIN_ROUNDS: u32 = 64;
