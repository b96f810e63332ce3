//! [`SimFs`]: the crash-simulating file system (durability tests).
//!
//! Like a real one, it keeps directories as inodes: every directory holds
//! its *live* entries and the entries its last `fsync` made *durable*; every
//! file inode holds its *written* bytes and the bytes its last `fdatasync`
//! made *durable*. A create, rename, hard link or unlink changes the live
//! entries only; it survives a crash only once its directory is synced. A
//! renamed directory keeps its own entries, as an inode does.
//!
//! Faults on command, counted in operations (every call through [`Fs`],
//! [`WritableFile`] and [`ReadableFile`] is one):
//! - [`SimFs::fail_at`]: operation `k` fails once, or every operation from
//!   `k` on, with EIO or ENOSPC; an append at `k` may be short (half of it
//!   lands, then the error);
//! - a failed `fdatasync` leaves the unsynced pages clean but not durable: a
//!   later successful sync does not bring them back (ext4's behaviour);
//! - [`SimFs::crash_at`]: at operation `k` the machine stops: the durable
//!   state of that instant is kept and every later operation fails;
//!   [`SimFs::image`] then builds the disk a reboot finds, under a
//!   [`CrashVariant`];
//! - [`SimFs::flip_bit`], [`SimFs::lose_write`]: damage at rest.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Fs, Mapping, ReadableFile, WritableFile};
use crate::{Error, Result};

/// Bytes of a page, for the variants that keep or lose pages.
const PAGE: usize = 4096;
/// Bytes of a sector, for torn writes.
const SECTOR: usize = 512;

#[derive(Debug, Default, Clone)]
struct File {
    written: Vec<u8>,
    durable: Vec<u8>,
    /// Bytes from here to `lost_to` were dropped by a failed fsync: clean in
    /// the page cache, never durable.
    lost_from: usize,
    lost_to: usize,
}

type FileRef = Arc<Mutex<File>>;
type DirRef = Arc<Mutex<Dir>>;

#[derive(Debug, Clone)]
enum Node {
    File(FileRef),
    Dir(DirRef),
}

#[derive(Debug, Default)]
struct Dir {
    live: BTreeMap<String, Node>,
    durable: BTreeMap<String, Node>,
}

/// How a crash treats what was not made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashVariant {
    /// Everything unsynced is lost.
    DropUnsynced,
    /// A random subset of unsynced pages reached the disk (the file's length
    /// is the written or the durable one, at random).
    RandomPages,
    /// The unsynced tail was cut inside its last sector.
    TornSector,
    /// The unsynced tail reads as zeros.
    ZeroTail,
    /// The unsynced tail reads as garbage.
    GarbageTail,
    /// Every unsynced directory entry change persisted or not, each on its
    /// own coin; file data as in `DropUnsynced`.
    ReorderedEntries,
}

impl CrashVariant {
    /// Every variant.
    pub const ALL: [CrashVariant; 6] = [
        CrashVariant::DropUnsynced,
        CrashVariant::RandomPages,
        CrashVariant::TornSector,
        CrashVariant::ZeroTail,
        CrashVariant::GarbageTail,
        CrashVariant::ReorderedEntries,
    ];
}

/// An injected I/O error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    /// EIO.
    Eio,
    /// ENOSPC.
    Enospc,
}

#[derive(Debug, Default)]
struct Faults {
    ops: u64,
    fail_at: Option<(u64, bool, Errno)>,
    /// Operations of this name pass until the count reaches 1; that one fails.
    fail_named: Option<(&'static str, u32, Errno)>,
    crash_at: Option<u64>,
    /// The durable tree at the crash (a deep copy).
    frozen: Option<Tree>,
    dead: bool,
}

/// A deep copy of what is durable: names and bytes, plus the unsynced
/// remainder each variant draws from.
#[derive(Debug, Clone, Default)]
struct Tree {
    files: BTreeMap<PathBuf, (Vec<u8>, Vec<u8>)>,
    dirs: Vec<PathBuf>,
    /// Entries whose live and durable states differ: the path, and what a
    /// crash that persisted the change finds there (`None`: nothing).
    unsynced: Vec<(PathBuf, Option<Tree>)>,
}

/// The crash-simulating [`Fs`]. Cheap to clone: clones share the state.
#[derive(Debug, Clone)]
pub struct SimFs {
    root: DirRef,
    faults: Arc<Mutex<Faults>>,
    /// Serializes operations: an operation's check against the crash point
    /// and its effect happen together, as one instant.
    serial: Arc<Mutex<()>>,
    /// Held locks: not part of any image (a reboot releases them).
    locks: super::lock::LockTable,
}

impl Default for SimFs {
    fn default() -> Self {
        SimFs::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn err(op: &'static str, path: &Path, kind: ErrorKind) -> Error {
    Error::io(op, path, std::io::Error::from(kind))
}

fn errno(op: &'static str, path: &Path, e: Errno) -> Error {
    let io = match e {
        Errno::Eio => std::io::Error::other("injected EIO"),
        Errno::Enospc => std::io::Error::from(ErrorKind::StorageFull),
    };
    Error::io(op, path, io)
}

/// splitmix64: the variants' coins, reproducible from a seed.
fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut x = *seed;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn parts(path: &Path) -> Vec<String> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect()
}

impl SimFs {
    /// An empty file system whose root exists durably.
    pub fn new() -> SimFs {
        SimFs {
            root: DirRef::default(),
            faults: Arc::default(),
            serial: Arc::default(),
            locks: super::lock::LockTable::default(),
        }
    }

    /// Operation `k` (counting from 1) fails with `e`; with `sticky`, so
    /// does every later one.
    pub fn fail_at(&self, k: u64, sticky: bool, e: Errno) {
        lock(&self.faults).fail_at = Some((k, sticky, e));
    }

    /// The `nth` next operation named `op` (counting from 1; names as in
    /// the errors: `"hard link"`, `"create"`, `"rename"`, `"fdatasync"`,
    /// ...) fails once with `e`: a fault aimed at one step whatever the
    /// operation count.
    pub fn fail_named(&self, op: &'static str, nth: u32, e: Errno) {
        lock(&self.faults).fail_named = Some((op, nth, e));
    }

    /// Removes the injected failures (not a crash that happened).
    pub fn clear_faults(&self) {
        let mut f = lock(&self.faults);
        f.fail_at = None;
        f.fail_named = None;
    }

    /// The machine stops at operation `k`: see the module docs.
    pub fn crash_at(&self, k: u64) {
        lock(&self.faults).crash_at = Some(k);
    }

    /// Operations so far.
    pub fn ops(&self) -> u64 {
        lock(&self.faults).ops
    }

    /// True once a crash point was reached.
    pub fn crashed(&self) -> bool {
        lock(&self.faults).dead
    }

    /// Counts an operation and applies the faults; `Err` means it fails.
    fn op(&self, name: &'static str, path: &Path) -> Result<()> {
        let mut f = lock(&self.faults);
        if f.dead {
            return Err(errno(name, path, Errno::Eio));
        }
        f.ops += 1;
        if f.crash_at == Some(f.ops) {
            drop(f);
            let tree = self.snapshot();
            let mut f = lock(&self.faults);
            f.frozen = Some(tree);
            f.dead = true;
            return Err(errno(name, path, Errno::Eio));
        }
        if let Some((op, nth, e)) = &mut f.fail_named
            && *op == name
        {
            *nth -= 1;
            if *nth == 0 {
                let e = *e;
                f.fail_named = None;
                return Err(errno(name, path, e));
            }
        }
        match f.fail_at {
            Some((k, sticky, e)) if f.ops == k || (sticky && f.ops > k) => Err(errno(name, path, e)),
            _ => Ok(()),
        }
    }

    fn dir(&self, path: &Path, op: &'static str) -> Result<DirRef> {
        let mut d = Arc::clone(&self.root);
        for p in parts(path) {
            let child = match lock(&d).live.get(&p) {
                Some(Node::Dir(c)) => Arc::clone(c),
                _ => return Err(err(op, path, ErrorKind::NotFound)),
            };
            d = child;
        }
        Ok(d)
    }

    /// The parent directory and the last name of `path`.
    fn parent(&self, path: &Path, op: &'static str) -> Result<(DirRef, String)> {
        let mut ps = parts(path);
        let name = ps.pop().ok_or_else(|| err(op, path, ErrorKind::InvalidInput))?;
        let parent: PathBuf = ps.iter().collect();
        Ok((self.dir(&parent, op)?, name))
    }

    fn file(&self, path: &Path, op: &'static str) -> Result<FileRef> {
        let (d, name) = self.parent(path, op)?;
        match lock(&d).live.get(&name) {
            Some(Node::File(f)) => Ok(Arc::clone(f)),
            _ => Err(err(op, path, ErrorKind::NotFound)),
        }
    }

    /// Deep copy of the durable tree and of what differs from it.
    fn snapshot(&self) -> Tree {
        let mut t = Tree::default();
        walk(&self.root, Path::new("/"), &mut t);
        t
    }

    /// The disk a reboot after the crash finds (or, with no crash, after a
    /// power loss now), under `variant`, with coins drawn from `seed`.
    pub fn image(&self, variant: CrashVariant, seed: u64) -> SimFs {
        let tree = lock(&self.faults)
            .frozen
            .clone()
            .unwrap_or_else(|| self.snapshot());
        let mut seed = seed;
        let fs = SimFs::new();
        let mut files = tree.files.clone();
        let mut dirs = tree.dirs.clone();
        if variant == CrashVariant::ReorderedEntries {
            for (path, live) in &tree.unsynced {
                if next(&mut seed).is_multiple_of(2) {
                    continue;
                }
                dirs.retain(|d| !d.starts_with(path));
                files.retain(|p, _| !p.starts_with(path));
                if let Some(sub) = live {
                    dirs.extend(sub.dirs.iter().cloned());
                    files.extend(sub.files.clone());
                }
            }
        }
        dirs.sort();
        for d in &dirs {
            let _ = fs.make_dirs(d, true);
        }
        for (path, (durable, written)) in files {
            let bytes = apply(variant, &durable, &written, &mut seed);
            if fs.make_dirs(&crate::io::parent_dir(&path), true).is_ok() {
                let _ = fs.put(&path, &bytes, true);
            }
        }
        fs
    }

    /// Creates `dir` and its ancestors; `durable` records them as synced.
    fn make_dirs(&self, dir: &Path, durable: bool) -> Result<()> {
        let mut d = Arc::clone(&self.root);
        for p in parts(dir) {
            let child = {
                let mut g = lock(&d);
                let c = match g.live.get(&p) {
                    Some(Node::Dir(c)) => Arc::clone(c),
                    Some(Node::File(_)) => return Err(err("create dir", dir, ErrorKind::AlreadyExists)),
                    None => DirRef::default(),
                };
                g.live.insert(p.clone(), Node::Dir(Arc::clone(&c)));
                if durable {
                    g.durable.insert(p.clone(), Node::Dir(Arc::clone(&c)));
                }
                c
            };
            d = child;
        }
        Ok(())
    }

    /// Sets a file's bytes (`durable`: written and durable).
    fn put(&self, path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
        let (d, name) = self.parent(path, "write")?;
        let f = FileRef::new(Mutex::new(File {
            written: bytes.to_vec(),
            durable: if durable { bytes.to_vec() } else { Vec::new() },
            ..File::default()
        }));
        let mut g = lock(&d);
        g.live.insert(name.clone(), Node::File(Arc::clone(&f)));
        if durable {
            g.durable.insert(name, Node::File(f));
        }
        Ok(())
    }

    /// The written bytes of a file (test helper).
    pub fn read(&self, path: &Path) -> Result<Vec<u8>> {
        let f = self.file(path, "read")?;
        let bytes = lock(&f).written.clone();
        Ok(bytes)
    }

    /// Flips bit `bit` of a file at rest (written and durable bytes).
    pub fn flip_bit(&self, path: &Path, bit: u64) -> Result<()> {
        let f = self.file(path, "flip bit")?;
        let mut g = lock(&f);
        let (byte, mask) = ((bit / 8) as usize, 1u8 << (bit % 8));
        let File { written, durable, .. } = &mut *g;
        for b in [written, durable] {
            if let Some(x) = b.get_mut(byte) {
                *x ^= mask;
            }
        }
        Ok(())
    }

    /// A write that never reached the disk: `len` bytes at `offset` read as
    /// zeros, written and durable.
    pub fn lose_write(&self, path: &Path, offset: u64, len: u64) -> Result<()> {
        let f = self.file(path, "lose write")?;
        let mut g = lock(&f);
        let File { written, durable, .. } = &mut *g;
        for b in [written, durable] {
            let end = (offset + len).min(b.len() as u64) as usize;
            let start = (offset as usize).min(end);
            b[start..end].fill(0);
        }
        Ok(())
    }
}

/// Adds what a crash finds of `node` at `path` (its durable contents).
fn walk_node(node: &Node, path: PathBuf, t: &mut Tree) {
    match node {
        Node::File(f) => {
            let f = lock(f);
            t.files.insert(path, (f.durable.clone(), written_after_loss(&f)));
        }
        Node::Dir(c) => {
            t.dirs.push(path.clone());
            walk(c, &path, t);
        }
    }
}

fn walk(d: &DirRef, at: &Path, t: &mut Tree) {
    let g = lock(d);
    for (name, node) in &g.durable {
        walk_node(node, at.join(name), t);
    }
    for (name, node) in &g.live {
        let same = match (node, g.durable.get(name)) {
            (Node::File(a), Some(Node::File(b))) => Arc::ptr_eq(a, b),
            (Node::Dir(a), Some(Node::Dir(b))) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if !same {
            let mut sub = Tree::default();
            walk_node(node, at.join(name), &mut sub);
            t.unsynced.push((at.join(name), Some(sub)));
        }
    }
    for name in g.durable.keys() {
        if !g.live.contains_key(name) {
            t.unsynced.push((at.join(name), None));
        }
    }
}

/// What a crash may still find of the written bytes: a failed fsync's lost
/// pages read as what was durable there before (here: zeros).
fn written_after_loss(f: &File) -> Vec<u8> {
    let mut w = f.written.clone();
    let end = f.lost_to.min(w.len());
    if f.lost_from < end {
        w[f.lost_from..end].fill(0);
    }
    w
}

/// The bytes of a file after a crash under `variant`.
fn apply(variant: CrashVariant, durable: &[u8], written: &[u8], seed: &mut u64) -> Vec<u8> {
    // Unsynced bytes: where `written` differs from `durable` (appends, and
    // overwrites in place).
    if written == durable {
        return durable.to_vec();
    }
    let common = durable.iter().zip(written).take_while(|(a, b)| a == b).count();
    let mut out = durable.to_vec();
    match variant {
        CrashVariant::DropUnsynced | CrashVariant::ReorderedEntries => {}
        CrashVariant::RandomPages => {
            let len = if next(seed).is_multiple_of(2) {
                written.len()
            } else {
                durable.len()
            };
            out.resize(len, 0);
            let mut p = common / PAGE * PAGE;
            while p < len {
                let end = (p + PAGE).min(len);
                if next(seed).is_multiple_of(2) && p < written.len() {
                    let w = end.min(written.len());
                    out[p..w].copy_from_slice(&written[p..w]);
                }
                p = end;
            }
        }
        CrashVariant::TornSector => {
            if written.len() > common {
                let last = (written.len() - 1) / SECTOR * SECTOR;
                let keep = last.max(common) + (next(seed) as usize % SECTOR);
                let keep = keep.min(written.len());
                out = written[..keep].to_vec();
            }
        }
        CrashVariant::ZeroTail | CrashVariant::GarbageTail => {
            out = written.to_vec();
            for (i, b) in out.iter_mut().enumerate().skip(common) {
                *b = if variant == CrashVariant::ZeroTail {
                    0
                } else {
                    (next(seed) >> (i % 8)) as u8
                };
            }
        }
    }
    out
}

impl Fs for SimFs {
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let _serial = lock(&self.serial);
        self.op("create", path)?;
        let (d, name) = self.parent(path, "create")?;
        let f = FileRef::default();
        {
            let mut g = lock(&d);
            if g.live.contains_key(&name) {
                return Err(err("create", path, ErrorKind::AlreadyExists));
            }
            g.live.insert(name, Node::File(Arc::clone(&f)));
        }
        Ok(Box::new(SimWritable {
            fs: self.clone(),
            file: f,
            path: path.to_path_buf(),
        }))
    }

    fn open_append(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let _serial = lock(&self.serial);
        self.op("open for append", path)?;
        Ok(Box::new(SimWritable {
            fs: self.clone(),
            file: self.file(path, "open for append")?,
            path: path.to_path_buf(),
        }))
    }

    fn open(&self, path: &Path) -> Result<Box<dyn ReadableFile>> {
        let _serial = lock(&self.serial);
        self.op("open", path)?;
        Ok(Box::new(SimReadable {
            fs: self.clone(),
            file: self.file(path, "open")?,
            path: path.to_path_buf(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let _serial = lock(&self.serial);
        self.op("rename", from)?;
        let (fd, fname) = self.parent(from, "rename")?;
        let (td, tname) = self.parent(to, "rename")?;
        let node = lock(&fd)
            .live
            .remove(&fname)
            .ok_or_else(|| err("rename", from, ErrorKind::NotFound))?;
        let mut g = lock(&td);
        if matches!((&node, g.live.get(&tname)), (Node::Dir(_), Some(_))) {
            drop(g);
            lock(&fd).live.insert(fname, node);
            return Err(err("rename", to, ErrorKind::AlreadyExists));
        }
        g.live.insert(tname, node);
        Ok(())
    }

    fn hard_link(&self, original: &Path, link: &Path) -> Result<()> {
        let _serial = lock(&self.serial);
        self.op("hard link", link)?;
        let f = self.file(original, "hard link")?;
        let (d, name) = self.parent(link, "hard link")?;
        let mut g = lock(&d);
        if g.live.contains_key(&name) {
            return Err(err("hard link", link, ErrorKind::AlreadyExists));
        }
        g.live.insert(name, Node::File(f));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        let _serial = lock(&self.serial);
        self.op("remove", path)?;
        let (d, name) = self.parent(path, "remove")?;
        match lock(&d).live.remove(&name) {
            Some(Node::File(_)) => Ok(()),
            _ => Err(err("remove", path, ErrorKind::NotFound)),
        }
    }

    fn remove_dir_all(&self, path: &Path) -> Result<()> {
        let _serial = lock(&self.serial);
        self.op("remove dir", path)?;
        let (d, name) = self.parent(path, "remove dir")?;
        match lock(&d).live.remove(&name) {
            Some(Node::Dir(_)) => Ok(()),
            _ => Err(err("remove dir", path, ErrorKind::NotFound)),
        }
    }

    fn create_dir_all(&self, path: &Path) -> Result<()> {
        let _serial = lock(&self.serial);
        self.op("create dir", path)?;
        self.make_dirs(path, false)
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let _serial = lock(&self.serial);
        self.op("list", dir)?;
        let d = self.dir(dir, "list")?;
        let names = lock(&d).live.keys().cloned().collect();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        let _serial = lock(&self.serial);
        self.op("exists", path)?;
        let Ok((d, name)) = self.parent(path, "exists") else {
            return Ok(parts(path).is_empty());
        };
        Ok(lock(&d).live.contains_key(&name))
    }

    fn sync_file(&self, path: &Path) -> Result<()> {
        let _serial = lock(&self.serial);
        let f = self.file(path, "fdatasync")?;
        sync(self, &f, path)
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        let _serial = lock(&self.serial);
        self.op("fsync dir", dir)?;
        let d = self.dir(dir, "fsync dir")?;
        let mut g = lock(&d);
        g.durable = g.live.clone();
        Ok(())
    }

    /// Not an operation of the fault model: a lock changes nothing on disk.
    fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn super::LockGuard>> {
        self.locks.lock(path, holder)
    }
}

fn sync(fs: &SimFs, f: &FileRef, path: &Path) -> Result<()> {
    if let Err(e) = fs.op("fdatasync", path) {
        // The kernel marks the pages clean anyway: they are lost.
        let mut f = lock(f);
        let (from, to) = (f.durable.len(), f.written.len());
        if from < to {
            f.lost_from = from;
            f.lost_to = to;
        }
        return Err(e);
    }
    let mut f = lock(f);
    f.durable = written_after_loss(&f);
    Ok(())
}

#[derive(Debug)]
struct SimWritable {
    fs: SimFs,
    file: FileRef,
    path: PathBuf,
}

impl WritableFile for SimWritable {
    fn append(&mut self, buf: &[u8]) -> Result<()> {
        let serial = Arc::clone(&self.fs.serial);
        let _serial = lock(&serial);
        if let Err(e) = self.fs.op("write", &self.path) {
            // A short write: half of it lands before the error.
            if !self.fs.crashed() {
                lock(&self.file).written.extend_from_slice(&buf[..buf.len() / 2]);
            }
            return Err(e);
        }
        lock(&self.file).written.extend_from_slice(buf);
        Ok(())
    }

    fn sync_data(&mut self) -> Result<()> {
        let serial = Arc::clone(&self.fs.serial);
        let _serial = lock(&serial);
        sync(&self.fs, &self.file, &self.path)
    }

    fn set_len(&mut self, len: u64) -> Result<()> {
        let serial = Arc::clone(&self.fs.serial);
        let _serial = lock(&serial);
        self.fs.op("truncate", &self.path)?;
        lock(&self.file).written.resize(len as usize, 0);
        Ok(())
    }

    fn len(&self) -> u64 {
        lock(&self.file).written.len() as u64
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug)]
struct SimReadable {
    fs: SimFs,
    file: FileRef,
    path: PathBuf,
}

impl ReadableFile for SimReadable {
    fn size(&self) -> Result<u64> {
        Ok(lock(&self.file).written.len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let serial = Arc::clone(&self.fs.serial);
        let _serial = lock(&serial);
        self.fs.op("read", &self.path)?;
        let f = lock(&self.file);
        let src = usize::try_from(offset)
            .ok()
            .and_then(|s| f.written.get(s..s.checked_add(buf.len())?))
            .ok_or_else(|| err("read", &self.path, ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn map(&self, len: u64) -> Result<Mapping> {
        let serial = Arc::clone(&self.fs.serial);
        let _serial = lock(&serial);
        self.fs.op("mmap", &self.path)?;
        let f = lock(&self.file);
        let bytes = usize::try_from(len)
            .ok()
            .and_then(|l| f.written.get(..l))
            .ok_or_else(|| err("mmap", &self.path, ErrorKind::UnexpectedEof))?;
        Ok(Mapping::from_bytes(bytes))
    }

    fn path(&self) -> &Path {
        &self.path
    }
}
