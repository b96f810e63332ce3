//! Named kill points for the kill -9 loop (`tests/kill9.rs`): where a crash
//! is most telling (inside a checkpoint's commit, retention, WAL
//! truncation, a merge's publication), the process may abort itself.
//!
//! They exist only in builds with the `kill-points` cargo feature, which the
//! kill -9 loop's child (`src/bin/stress.rs`) requires: a normal build has
//! none, whatever its environment says (`tests/kill_points.rs`). With the
//! feature, a point is armed when `STATESPINE_KILL_POINT` names it (or `*`
//! for all); then each pass aborts with probability `STATESPINE_KILL_PROB`
//! (default 0.05). Read once per process; a pass costs one relaxed load when
//! unarmed.

/// A place where the kill -9 loop may end the process (module docs). A
/// no-op without the `kill-points` feature.
#[inline(always)]
pub fn kill_point(name: &'static str) {
    #[cfg(feature = "kill-points")]
    armed::kill_point(name);
    #[cfg(not(feature = "kill-points"))]
    let _ = name;
}

#[cfg(feature = "kill-points")]
mod armed {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Config {
        point: String,
        /// Probability in parts per 2^32.
        threshold: u64,
    }

    static CONFIG: OnceLock<Option<Config>> = OnceLock::new();
    static STATE: AtomicU64 = AtomicU64::new(0x2545_F491_4F6C_DD1D);

    fn config() -> &'static Option<Config> {
        CONFIG.get_or_init(|| {
            let point = std::env::var("STATESPINE_KILL_POINT").ok()?;
            let prob: f64 = std::env::var("STATESPINE_KILL_PROB")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0.05);
            let seed = u64::from(std::process::id()) ^ 0x9E37_79B9_7F4A_7C15;
            STATE.store(seed, Ordering::Relaxed);
            Some(Config {
                point,
                threshold: (prob.clamp(0.0, 1.0) * f64::from(u32::MAX)) as u64,
            })
        })
    }

    #[inline]
    pub(super) fn kill_point(name: &'static str) {
        if let Some(c) = config()
            && (c.point == "*" || c.point == name)
        {
            let x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
            let x = (x ^ (x >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            if (x >> 32) < c.threshold {
                // No unwinding, no flushing: as abrupt as SIGKILL.
                std::process::abort();
            }
        }
    }
}
