//! [`validate_checkpoint`]: how sound a checkpoint directory is, at a chosen
//! depth, as a report of everything wrong with it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::dir::read_file;
use super::manifest::{CheckpointManifest, MANIFEST_NAME, OperatorCheckpoint};
use super::progress::{Meter, Phase, Progress};
use crate::io::Fs;
use crate::run::Run;
use crate::{Error, Result};

/// How deep [`validate_checkpoint`] looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ValidationDepth {
    /// The manifest's checksums and structure, and that every file it names
    /// exists with its recorded size.
    Manifest,
    /// Plus every run's footer, index and filter checksums, and its content
    /// checksum and entry count against the manifest (no data block read).
    Footers,
    /// Plus every data block's checksum and the side files' checksums: reads
    /// every byte.
    Blocks,
}

/// What [`validate_checkpoint`] found.
#[derive(Debug)]
pub struct ValidationReport {
    /// The checkpoint directory.
    pub path: PathBuf,
    /// The depth checked.
    pub depth: ValidationDepth,
    /// The manifest, if it could be read.
    pub manifest: Option<CheckpointManifest>,
    /// Run files checked.
    pub runs_checked: usize,
    /// Every problem found (empty when the checkpoint is sound).
    pub problems: Vec<Error>,
}

impl ValidationReport {
    /// True when nothing is wrong.
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first problem, as an error (for callers that stop at one). A
    /// report [`validate_checkpoint`] made always holds a manifest or a
    /// problem (an unreadable manifest is one); a hand-built report with
    /// neither is the caller's mistake.
    pub fn into_result(mut self) -> Result<CheckpointManifest> {
        if self.problems.is_empty()
            && let Some(m) = self.manifest
        {
            return Ok(m);
        }
        Err(self.problems.drain(..).next().unwrap_or_else(|| {
            Error::InvalidArgument(format!(
                "validation report of {} holds neither a manifest nor a problem",
                self.path.display()
            ))
        }))
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({:?}): {} runs checked, ",
            self.path.display(),
            self.depth,
            self.runs_checked
        )?;
        if self.problems.is_empty() {
            return write!(f, "valid");
        }
        write!(f, "{} problem(s)", self.problems.len())?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Checks the checkpoint in directory `dir` down to `depth`.
pub fn validate_checkpoint(fs: &dyn Fs, dir: &Path, depth: ValidationDepth) -> ValidationReport {
    validate_checkpoint_with_progress(fs, dir, depth, &|_| {})
}

/// [`validate_checkpoint`], telling `progress` how many bytes of the run
/// files the manifest names are checked ([`Phase::Validate`]): `done == 0`
/// once the manifest is read, then as runs are checked (at
/// [`ValidationDepth::Blocks`] also within a run, every
/// [`crate::checkpoint::PROGRESS_STEP_BYTES`] or so), and last `done ==
/// total`, the runs' bytes, whatever was found wrong. A manifest that
/// cannot be read reports nothing.
pub fn validate_checkpoint_with_progress(
    fs: &dyn Fs,
    dir: &Path,
    depth: ValidationDepth,
    progress: &dyn Fn(Progress),
) -> ValidationReport {
    validate_keeping_runs(fs, dir, depth, progress).0
}

/// [`validate_checkpoint_with_progress`], also returning the runs it opened
/// (at `Footers` depth and deeper), by file name: recovery serves them
/// instead of opening each run a second time.
pub(crate) fn validate_keeping_runs(
    fs: &dyn Fs,
    dir: &Path,
    depth: ValidationDepth,
    progress: &dyn Fn(Progress),
) -> (ValidationReport, BTreeMap<String, Run>) {
    let mut opened = BTreeMap::new();
    let mut report = ValidationReport {
        path: dir.to_path_buf(),
        depth,
        manifest: None,
        runs_checked: 0,
        problems: Vec::new(),
    };
    let path = dir.join(MANIFEST_NAME);
    let manifest = match read_file(fs, &path).and_then(|b| CheckpointManifest::decode(&b, &path)) {
        Ok(m) => {
            // Paired with the commit's check: what was read writes bytes that
            // read back as it. (Not byte equality: a damaged manifest may be
            // non-canonical, say unsorted names, and must not panic.)
            debug_assert_eq!(
                CheckpointManifest::decode(&m.encode(), &path).ok().as_ref(),
                Some(&m),
                "{}: the manifest read does not survive being written again",
                path.display()
            );
            m
        }
        Err(e) => {
            report.problem(&path, e);
            return (report, opened);
        }
    };
    if let Some(e) = duplicate_run(&manifest, &path) {
        report.problem(&path, e);
    }
    let runs = || {
        manifest
            .shards
            .iter()
            .flat_map(|s| &s.spines)
            .flat_map(|sp| sp.runs.iter().map(move |r| (sp, r)))
    };
    let total = runs().map(|(_, r)| r.size).sum();
    let mut meter = Meter::start(progress, Phase::Validate, None, total);
    for (spine, entry) in runs() {
        let path = dir.join(&entry.file);
        report.runs_checked += 1;
        let base = meter.done();
        let mut within = |bytes: u64| meter.set(base + bytes.min(entry.size));
        match check_run(fs, &path, entry, spine.mode, depth, &mut within) {
            Ok(Some(run)) => {
                opened.insert(entry.file.clone(), run);
            }
            Ok(None) => {}
            Err(e) => report.problem(&path, e),
        }
        meter.set(base + entry.size);
    }
    for op in manifest.operators.values() {
        if let OperatorCheckpoint::File { file, len, crc32c } = op {
            let path = dir.join(file);
            if let Err(e) = check_side_file(fs, &path, *len, *crc32c, depth) {
                report.problem(&path, e);
            }
        }
    }
    meter.finish();
    report.manifest = Some(manifest);
    (report, opened)
}

impl ValidationReport {
    /// Notes what is wrong with `file`, and says so.
    fn problem(&mut self, file: &Path, e: Error) {
        tracing::warn!(
            checkpoint = %self.path.display(),
            file = %file.display(),
            depth = ?self.depth,
            reason = %e,
            "checkpoint validation failed"
        );
        self.problems.push(e);
    }
}

/// A run the manifest names twice: damage, as no commit writes one.
fn duplicate_run(m: &CheckpointManifest, path: &Path) -> Option<Error> {
    let mut seen = std::collections::BTreeSet::new();
    let runs = m.shards.iter().flat_map(|s| &s.spines).flat_map(|sp| &sp.runs);
    let dup = runs.map(|r| r.file.as_str()).find(|f| !seen.insert(*f))?;
    Some(Error::corrupt(
        path,
        0,
        "manifest run list",
        "each run named once",
        format!("{dup} named twice"),
    ))
}

fn check_size(fs: &dyn Fs, path: &Path, len: u64) -> Result<()> {
    let size = fs.open(path)?.size()?;
    if size != len {
        return Err(Error::corrupt(
            path,
            size,
            "file length",
            format!("{len} bytes (manifest)"),
            format!("{size}"),
        ));
    }
    Ok(())
}

fn check_run(
    fs: &dyn Fs,
    path: &Path,
    entry: &super::manifest::RunEntry,
    mode: crate::run::RunMode,
    depth: ValidationDepth,
    progress: &mut dyn FnMut(u64),
) -> Result<Option<Run>> {
    check_size(fs, path, entry.size)?;
    if depth == ValidationDepth::Manifest {
        return Ok(None);
    }
    let run = Run::open(fs, path)?;
    let meta = run.meta();
    let mismatch = |region: &'static str, expected: String, found: String| {
        Error::corrupt(path, meta.file_len, region, expected, found)
    };
    if meta.body_crc32c != entry.crc32c {
        return Err(mismatch(
            "run content checksum",
            format!("{:#010x} (manifest)", entry.crc32c),
            format!("{:#010x}", meta.body_crc32c),
        ));
    }
    if meta.entry_count != entry.entries {
        return Err(mismatch(
            "run entry count",
            format!("{} (manifest)", entry.entries),
            meta.entry_count.to_string(),
        ));
    }
    if meta.mode != mode {
        return Err(mismatch(
            "run mode",
            format!("{mode:?} (manifest)"),
            format!("{:?}", meta.mode),
        ));
    }
    if depth == ValidationDepth::Blocks {
        run.verify_with_progress(progress)?;
    }
    Ok(Some(run))
}

fn check_side_file(fs: &dyn Fs, path: &Path, len: u64, crc: u32, depth: ValidationDepth) -> Result<()> {
    check_size(fs, path, len)?;
    if depth == ValidationDepth::Blocks {
        let found = crc32c::crc32c(&read_file(fs, path)?);
        if found != crc {
            return Err(Error::corrupt(
                path,
                0,
                "operator side file checksum",
                format!("{crc:#010x}"),
                format!("{found:#010x}"),
            ));
        }
    }
    Ok(())
}
