//! Progress bars on stderr for the long commands: `verify --depth blocks`,
//! the recovery `get`, `scan`, `compact`, `gc` and `push` run at their
//! open, `restore` and `push`. Drawn from the library's callbacks
//! (`statespine::Progress`, `remote::Progress`); hidden when stderr is not
//! a terminal, so scripts and `--json` see nothing of them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use statespine::{Progress, ProgressPhase};

/// A bar over `total` bytes, labelled `what`; drawn only on a terminal.
pub(super) fn bytes_bar(what: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Each part's bytes done and total, by (phase, shard or checkpoint).
type Parts = BTreeMap<(u8, Option<u32>), (u64, u64)>;

/// One bar for an operation reported by several workers at once (the
/// shards of a recovery): its length is the sum of their totals, its
/// position the sum of what they have done, its label the phase last
/// reported.
#[derive(Clone)]
pub(super) struct Shared {
    bar: ProgressBar,
    parts: Arc<Mutex<Parts>>,
    /// Checkpoints recovery has started to validate: each its own part, so
    /// a fallback past a damaged one adds to the bar rather than resetting.
    validations: Arc<AtomicU32>,
}

impl Shared {
    pub(super) fn new(what: &str) -> Shared {
        Shared {
            bar: bytes_bar(what, 0),
            parts: Arc::default(),
            validations: Arc::default(),
        }
    }

    /// Sets part `key` to `done` of `total` and redraws.
    fn set(&self, key: (u8, Option<u32>), label: &str, done: u64, total: u64) {
        let Ok(mut parts) = self.parts.lock() else { return };
        parts.insert(key, (done, total));
        let (done, total) = parts.values().fold((0, 0), |(d, t), (a, b)| (d + a, t + b));
        self.bar.set_length(total);
        self.bar.set_position(done);
        self.bar.set_message(label.to_owned());
    }

    /// A callback for `Options::on_progress`.
    pub(super) fn recovery(&self) -> impl Fn(Progress) + Send + Sync + 'static {
        let me = self.clone();
        move |p: Progress| {
            let key = match p.phase {
                ProgressPhase::Validate => {
                    if p.done == 0 {
                        me.validations.fetch_add(1, Ordering::Relaxed);
                    }
                    (0, Some(me.validations.load(Ordering::Relaxed)))
                }
                ProgressPhase::Scan => (1, p.shard),
                _ => (2, p.shard),
            };
            me.set(key, p.phase.name(), p.done, p.total);
        }
    }

    /// A callback for `validate_checkpoint_with_progress` on the `n`th of
    /// several checkpoints.
    pub(super) fn validation(&self, n: u32) -> impl Fn(Progress) + '_ {
        move |p: Progress| self.set((0, Some(n)), "verify", p.done, p.total)
    }

    /// A callback for `remote::Remote::on_progress`.
    #[cfg(feature = "remote")]
    pub(super) fn remote(&self) -> impl Fn(statespine::remote::Progress) + Send + Sync + 'static {
        let me = self.clone();
        move |p: statespine::remote::Progress| {
            let label = format!("{:?}", p.operation).to_lowercase();
            me.set((3, None), &label, p.bytes_done, p.bytes_total);
        }
    }

    /// Removes the bar from the terminal.
    pub(super) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
