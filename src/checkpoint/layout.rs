//! Where a store's files live (`format/checkpoint.md`, "Layout"), and the
//! names runs take inside a checkpoint directory.

use std::path::PathBuf;

/// The layout of one store directory.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The store's root directory.
    pub root: PathBuf,
}

impl Layout {
    /// `<root>/LOCK`: held by the one process that has the store open.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("LOCK")
    }
    /// `<root>/checkpoints`.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    /// `<root>/shards/<n>`.
    pub fn shard(&self, n: u32) -> PathBuf {
        self.root.join("shards").join(n.to_string())
    }
    /// `<root>/shards/<n>/wal`.
    pub fn wal(&self, n: u32) -> PathBuf {
        self.shard(n).join("wal")
    }
    /// `<root>/shards/<n>/runs`.
    pub fn runs(&self, n: u32) -> PathBuf {
        self.shard(n).join("runs")
    }
    /// `<root>/shards/<n>/runs/<spine id>`.
    pub fn spine(&self, n: u32, id: u32) -> PathBuf {
        self.runs(n).join(id.to_string())
    }
}

/// Name of a run's link in a checkpoint directory:
/// `<shard>-<spine id>-<run file name>`. One flat directory holds the runs
/// of every shard and spine, so the name carries where the run lives.
pub fn checkpoint_run_name(shard: u32, spine: u32, run_file: &str) -> String {
    format!("{shard}-{spine}-{run_file}")
}

/// The live run file name a [`checkpoint_run_name`] stands for: the part
/// after the last `-` (run file names hold none), or the whole name.
pub fn live_run_name(link: &str) -> &str {
    link.rsplit_once('-').map_or(link, |(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_run_name_gives_back_its_live_name() {
        let run = crate::run::format::run_file_name(42);
        let link = checkpoint_run_name(3, 7, &run);
        assert_eq!(link, format!("3-7-{run}"));
        assert_eq!(live_run_name(&link), run);
        assert_eq!(live_run_name(&run), run);
    }
}
