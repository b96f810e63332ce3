//! [`MemFs`]: an in-memory file system for tests.
//!
//! Files are inodes shared by name (`Arc`), so a hard link and its original see
//! the same bytes and a rename keeps open handles valid, as on Linux. Each inode
//! keeps the bytes *written* apart from the bytes last made *durable* by a sync;
//! [`MemFs::crash`] builds the file system a power loss would leave for file
//! contents. (Directory entries are treated as durable at once here; the
//! crash-simulating file system of the durability work models them too.)

use std::collections::{BTreeSet, HashMap};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Fs, Mapping, ReadableFile, WritableFile};
use crate::{Error, Result};

#[derive(Debug, Default)]
struct Inode {
    written: Vec<u8>,
    durable: Vec<u8>,
}

type InodeRef = Arc<Mutex<Inode>>;

#[derive(Debug, Default)]
struct Tree {
    files: HashMap<PathBuf, InodeRef>,
    dirs: BTreeSet<PathBuf>,
}

impl Tree {
    fn dir_exists(&self, dir: &Path) -> bool {
        let s = dir.as_os_str();
        s.is_empty() || s == "." || s == "/" || self.dirs.contains(dir)
    }

    fn check_parent(&self, op: &'static str, path: &Path) -> Result<()> {
        match path.parent() {
            Some(parent) if !self.dir_exists(parent) => Err(not_found(op, path)),
            _ => Ok(()),
        }
    }
}

/// An in-memory [`Fs`]. Cheap to clone: clones share the same tree.
#[derive(Debug, Default, Clone)]
pub struct MemFs {
    tree: Arc<Mutex<Tree>>,
    /// Test hook: when set, `sync_data` fails (see [`MemFs::fail_syncs`]).
    fail_syncs: Arc<std::sync::atomic::AtomicBool>,
    /// Test hook: when set, `hard_link` fails with EXDEV, as across file
    /// systems (see [`MemFs::refuse_hard_links`]).
    refuse_links: Arc<std::sync::atomic::AtomicBool>,
    /// Held locks: not part of a crash image (a reboot releases them).
    locks: super::lock::LockTable,
}

fn not_found(op: &'static str, path: &Path) -> Error {
    Error::io(op, path, std::io::Error::from(ErrorKind::NotFound))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemFs {
    /// An empty file system.
    pub fn new() -> MemFs {
        MemFs::default()
    }

    /// Makes every later `sync_data` fail with EIO (or succeed again). Like
    /// ext4 after a failed writeback, the bytes are then neither durable nor
    /// retried: a later successful sync makes durable only what it writes.
    pub fn fail_syncs(&self, fail: bool) {
        self.fail_syncs.store(fail, std::sync::atomic::Ordering::SeqCst);
    }

    /// Makes every later `hard_link` fail as it does across file systems
    /// (EXDEV), or succeed again.
    pub fn refuse_hard_links(&self, refuse: bool) {
        self.refuse_links
            .store(refuse, std::sync::atomic::Ordering::SeqCst);
    }

    /// The file system a power loss would leave: every file holds only the bytes
    /// its last sync made durable.
    pub fn crash(&self) -> MemFs {
        let tree = lock(&self.tree);
        let mut files = HashMap::new();
        // Names that share an inode must keep sharing one after the crash.
        let mut copies: HashMap<*const Mutex<Inode>, InodeRef> = HashMap::new();
        for (path, inode) in &tree.files {
            let copy = copies
                .entry(Arc::as_ptr(inode))
                .or_insert_with(|| {
                    let durable = lock(inode).durable.clone();
                    Arc::new(Mutex::new(Inode {
                        written: durable.clone(),
                        durable,
                    }))
                })
                .clone();
            files.insert(path.clone(), copy);
        }
        MemFs {
            fail_syncs: Arc::default(),
            refuse_links: Arc::default(),
            locks: super::lock::LockTable::default(),
            tree: Arc::new(Mutex::new(Tree {
                files,
                dirs: tree.dirs.clone(),
            })),
        }
    }

    /// The written bytes of a file (test helper).
    pub fn read(&self, path: &Path) -> Result<Vec<u8>> {
        let inode = self.inode("read", path)?;
        let bytes = lock(&inode).written.clone();
        Ok(bytes)
    }

    /// Replaces a file's contents, written and durable (test helper for
    /// damaging files at rest).
    pub fn write(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let mut tree = lock(&self.tree);
        tree.check_parent("write", path)?;
        let inode = Inode {
            written: bytes.to_vec(),
            durable: bytes.to_vec(),
        };
        tree.files.insert(path.to_path_buf(), Arc::new(Mutex::new(inode)));
        Ok(())
    }

    fn inode(&self, op: &'static str, path: &Path) -> Result<InodeRef> {
        lock(&self.tree)
            .files
            .get(path)
            .cloned()
            .ok_or_else(|| not_found(op, path))
    }
}

impl Fs for MemFs {
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let mut tree = lock(&self.tree);
        tree.check_parent("create", path)?;
        if tree.files.contains_key(path) || tree.dirs.contains(path) {
            return Err(Error::io(
                "create",
                path,
                std::io::Error::from(ErrorKind::AlreadyExists),
            ));
        }
        let inode = InodeRef::default();
        tree.files.insert(path.to_path_buf(), inode.clone());
        Ok(Box::new(MemWritable {
            inode,
            path: path.to_path_buf(),
            fail_syncs: Arc::clone(&self.fail_syncs),
        }))
    }

    fn open_append(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let inode = self.inode("open for append", path)?;
        Ok(Box::new(MemWritable {
            inode,
            path: path.to_path_buf(),
            fail_syncs: Arc::clone(&self.fail_syncs),
        }))
    }

    fn open(&self, path: &Path) -> Result<Box<dyn ReadableFile>> {
        let inode = self.inode("open", path)?;
        Ok(Box::new(MemReadable {
            inode,
            path: path.to_path_buf(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let mut tree = lock(&self.tree);
        tree.check_parent("rename", to)?;
        if tree.dirs.contains(from) {
            // A directory moves with everything under it (`to` must not exist).
            if tree.dirs.contains(to) || tree.files.contains_key(to) {
                return Err(Error::io(
                    "rename",
                    to,
                    std::io::Error::from(ErrorKind::AlreadyExists),
                ));
            }
            let moved = |p: &Path| to.join(p.strip_prefix(from).unwrap_or(p));
            let files: Vec<PathBuf> = tree
                .files
                .keys()
                .filter(|p| p.starts_with(from))
                .cloned()
                .collect();
            for p in files {
                if let Some(inode) = tree.files.remove(&p) {
                    tree.files.insert(moved(&p), inode);
                }
            }
            let dirs: Vec<PathBuf> = tree
                .dirs
                .iter()
                .filter(|p| p.starts_with(from))
                .cloned()
                .collect();
            for p in dirs {
                tree.dirs.remove(&p);
                tree.dirs.insert(moved(&p));
            }
            return Ok(());
        }
        let inode = tree.files.remove(from).ok_or_else(|| not_found("rename", from))?;
        tree.files.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn hard_link(&self, original: &Path, link: &Path) -> Result<()> {
        if self.refuse_links.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::io(
                "hard link",
                link,
                std::io::Error::from(ErrorKind::CrossesDevices),
            ));
        }
        let mut tree = lock(&self.tree);
        tree.check_parent("hard link", link)?;
        if tree.files.contains_key(link) {
            return Err(Error::io(
                "hard link",
                link,
                std::io::Error::from(ErrorKind::AlreadyExists),
            ));
        }
        let inode = tree
            .files
            .get(original)
            .cloned()
            .ok_or_else(|| not_found("hard link", original))?;
        tree.files.insert(link.to_path_buf(), inode);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        lock(&self.tree)
            .files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found("remove", path))
    }

    fn remove_dir_all(&self, path: &Path) -> Result<()> {
        let mut tree = lock(&self.tree);
        if !tree.dirs.contains(path) {
            return Err(not_found("remove dir", path));
        }
        tree.files.retain(|p, _| !p.starts_with(path));
        tree.dirs.retain(|p| !p.starts_with(path));
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> Result<()> {
        let mut tree = lock(&self.tree);
        for ancestor in path.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                tree.dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let tree = lock(&self.tree);
        if !tree.dir_exists(dir) {
            return Err(not_found("list", dir));
        }
        let children = tree.files.keys().chain(tree.dirs.iter());
        let mut names: Vec<String> = children
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        let tree = lock(&self.tree);
        Ok(tree.files.contains_key(path) || tree.dirs.contains(path))
    }

    fn sync_file(&self, path: &Path) -> Result<()> {
        let inode = self.inode("fdatasync", path)?;
        let mut inode = lock(&inode);
        inode.durable = inode.written.clone();
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        if lock(&self.tree).dir_exists(dir) {
            Ok(())
        } else {
            Err(not_found("fsync dir", dir))
        }
    }

    fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn super::LockGuard>> {
        self.locks.lock(path, holder)
    }
}

#[derive(Debug)]
struct MemWritable {
    inode: InodeRef,
    path: PathBuf,
    fail_syncs: Arc<std::sync::atomic::AtomicBool>,
}

impl WritableFile for MemWritable {
    fn append(&mut self, buf: &[u8]) -> Result<()> {
        lock(&self.inode).written.extend_from_slice(buf);
        Ok(())
    }

    fn sync_data(&mut self) -> Result<()> {
        if self.fail_syncs.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::io(
                "fdatasync",
                &self.path,
                std::io::Error::other("injected EIO"),
            ));
        }
        let mut inode = lock(&self.inode);
        inode.durable = inode.written.clone();
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> Result<()> {
        let len = usize::try_from(len).map_err(|_| {
            let why = format!("{len} bytes do not fit in memory");
            Error::io(
                "set_len",
                &self.path,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
            )
        })?;
        lock(&self.inode).written.resize(len, 0);
        Ok(())
    }

    fn len(&self) -> u64 {
        lock(&self.inode).written.len() as u64
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug)]
struct MemReadable {
    inode: InodeRef,
    path: PathBuf,
}

impl ReadableFile for MemReadable {
    fn size(&self) -> Result<u64> {
        Ok(lock(&self.inode).written.len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let inode = lock(&self.inode);
        let src = usize::try_from(offset)
            .ok()
            .and_then(|start| inode.written.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| Error::io("read", &self.path, std::io::Error::from(ErrorKind::UnexpectedEof)))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn map(&self, len: u64) -> Result<Mapping> {
        let inode = lock(&self.inode);
        let bytes = usize::try_from(len)
            .ok()
            .and_then(|len| inode.written.get(..len))
            .ok_or_else(|| Error::io("mmap", &self.path, std::io::Error::from(ErrorKind::UnexpectedEof)))?;
        Ok(Mapping::from_bytes(bytes))
    }

    fn path(&self) -> &Path {
        &self.path
    }
}
