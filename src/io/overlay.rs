//! [`OverlayFs`]: a copy-on-write file system over another, for reading a
//! store through the library's own recovery without changing it.
//!
//! Recovery writes: it deletes half-written checkpoints, sets damaged ones
//! aside, relinks the live run directories, trims a torn WAL tail, deletes
//! the checkpoints and WAL records newer than the epoch asked for, and takes
//! the directory's lock. A tool that wants to read a store *as recovery
//! would return it* (an epoch, a checkpoint) must run that exact code, or it
//! would answer from a state the store never recovers to; and it must not
//! change one byte of a store another process may have open. The overlay
//! gives both: every read goes to the base, every change stays in memory.
//!
//! 1. A read (`open`, `list`, `exists`) goes to the base, unless the path was
//!    written, created, renamed, linked or removed through the overlay.
//! 2. `create`, `create_dir_all` and appends land in an inner [`MemFs`] (the
//!    *upper* layer); a base file opened for appending is first copied up.
//! 3. A removal records a *whiteout*: the base path, and everything under
//!    it, is hidden from then on; the base keeps it.
//! 4. A hard link or rename of a base file makes an *alias*: a name in the
//!    overlay that reads the base file, with no copy (a renamed checkpoint
//!    directory of large runs costs nothing). The base file is never changed
//!    through the overlay, so an alias always reads the bytes the base holds.
//! 5. Syncs of base files and directories do nothing; `lock` is the upper
//!    layer's in-memory lock, so the base's lock file is never opened, and a
//!    store another process holds can still be read.
//!
//! Precedence, for every path: an upper file, then an alias, then an upper
//! directory, then the base unless whited out.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Fs, LockGuard, Mapping, MemFs, ReadableFile, WritableFile};
use crate::{Error, Result};

/// A copy-on-write [`Fs`] over `base` (module docs): reads fall through,
/// every change stays in memory, and the base is never written, renamed,
/// synced or locked.
///
/// ```
/// use std::path::Path;
/// use std::sync::Arc;
/// use statespine::io::{Fs, MemFs, OverlayFs};
///
/// let base = MemFs::new();
/// base.create_dir_all(Path::new("/db"))?;
/// base.write(Path::new("/db/a"), b"kept")?;
/// let overlay = OverlayFs::new(Arc::new(base.clone()));
/// overlay.remove_file(Path::new("/db/a"))?;
/// overlay.create(Path::new("/db/b"))?.append(b"new")?;
/// assert_eq!(overlay.list(Path::new("/db"))?, ["b"]);
/// assert_eq!(base.list(Path::new("/db"))?, ["a"]);
/// # Ok::<(), statespine::Error>(())
/// ```
#[derive(Debug)]
pub struct OverlayFs {
    base: Arc<dyn Fs>,
    upper: MemFs,
    state: Mutex<State>,
}

/// What the overlay changed besides the upper layer's files.
#[derive(Debug, Default)]
struct State {
    /// Base paths hidden, each with everything under it.
    whiteouts: BTreeSet<PathBuf>,
    /// Names in the overlay that read a base file: name to base path.
    aliases: BTreeMap<PathBuf, PathBuf>,
}

/// Where a path's contents come from.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    UpperFile,
    Alias(PathBuf),
    UpperDir,
    Base,
    Missing,
}

fn io_error(op: &'static str, path: &Path, kind: ErrorKind) -> Error {
    Error::io(op, path, std::io::Error::from(kind))
}

fn parent_of(path: &Path) -> Option<&Path> {
    path.parent().filter(|p| !p.as_os_str().is_empty())
}

impl OverlayFs {
    /// An overlay over `base` with no changes yet.
    pub fn new(base: Arc<dyn Fs>) -> OverlayFs {
        OverlayFs {
            base,
            upper: MemFs::new(),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn hidden(s: &State, path: &Path) -> bool {
        path.ancestors().any(|a| s.whiteouts.contains(a))
    }

    fn base_has(&self, s: &State, path: &Path) -> Result<bool> {
        Ok(!Self::hidden(s, path) && self.base.exists(path)?)
    }

    fn find(&self, s: &State, path: &Path) -> Result<Found> {
        if self.upper.open(path).is_ok() {
            return Ok(Found::UpperFile);
        }
        if let Some(target) = s.aliases.get(path) {
            return Ok(Found::Alias(target.clone()));
        }
        if self.upper.exists(path)? {
            return Ok(Found::UpperDir);
        }
        if self.base_has(s, path)? {
            return Ok(Found::Base);
        }
        Ok(Found::Missing)
    }

    /// Whether `path` is a directory in the overlay's view.
    fn is_dir(&self, s: &State, path: &Path) -> Result<bool> {
        Ok(match self.find(s, path)? {
            Found::UpperDir => true,
            Found::Base => self.base.list(path).is_ok(),
            _ => false,
        })
    }

    /// Makes sure `path`'s parent exists in the upper layer (a base
    /// directory gets an upper twin, whose base entries stay visible).
    fn upper_parent(&self, s: &State, op: &'static str, path: &Path) -> Result<()> {
        let Some(parent) = parent_of(path) else {
            return Ok(());
        };
        if self.upper.exists(parent)? && !s.aliases.contains_key(parent) {
            return Ok(());
        }
        if !self.is_dir(s, parent)? {
            return Err(io_error(op, path, ErrorKind::NotFound));
        }
        self.upper.create_dir_all(parent)
    }

    /// `path` no longer names anything in the upper layer or the aliases:
    /// hides the base's file or directory there too.
    fn hide_base(&self, s: &mut State, path: &Path) -> Result<()> {
        if self.base_has(s, path)? {
            s.whiteouts.insert(path.to_path_buf());
        }
        Ok(())
    }

    /// Frees the name `to` for a file renamed or linked there.
    fn clear_name(&self, s: &mut State, to: &Path) {
        s.aliases.remove(to);
        if self.upper.open(to).is_ok() {
            let _ = self.upper.remove_file(to);
        }
    }

    /// Copies the base file `from` into the upper layer as `to`.
    fn copy_up(&self, from: &Path, to: &Path) -> Result<()> {
        let file = self.base.open(from)?;
        let len =
            usize::try_from(file.size()?).map_err(|_| io_error("copy up", from, ErrorKind::OutOfMemory))?;
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, 0)?;
        if let Some(parent) = parent_of(to) {
            self.upper.create_dir_all(parent)?;
        }
        self.upper.write(to, &bytes)
    }

    /// Names in `dir`, the union of both layers minus whiteouts.
    fn list_locked(&self, s: &State, dir: &Path) -> Result<Vec<String>> {
        let mut names = BTreeSet::new();
        let mut found = false;
        if self.upper.exists(dir)?
            && let Ok(upper) = self.upper.list(dir)
        {
            found = true;
            names.extend(upper);
        }
        if self.base_has(s, dir)? {
            match self.base.list(dir) {
                Ok(base) => {
                    found = true;
                    names.extend(base.into_iter().filter(|n| !Self::hidden(s, &dir.join(n))));
                }
                Err(e) if !found => return Err(e),
                Err(_) => {}
            }
        }
        let aliased = s.aliases.keys().filter(|p| p.parent() == Some(dir));
        names.extend(
            aliased
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned()),
        );
        if !found {
            return Err(io_error("list", dir, ErrorKind::NotFound));
        }
        Ok(names.into_iter().collect())
    }

    /// Moves the directory `from` to `to`: upper files move, base files
    /// become aliases, and the base directory is hidden.
    fn rename_dir(&self, s: &mut State, from: &Path, to: &Path) -> Result<()> {
        self.upper.create_dir_all(to)?;
        for name in self.list_locked(s, from)? {
            let (f, t) = (from.join(&name), to.join(&name));
            match self.find(s, &f)? {
                Found::UpperFile => self.upper.rename(&f, &t)?,
                Found::Alias(target) => {
                    s.aliases.remove(&f);
                    s.aliases.insert(t, target);
                }
                Found::UpperDir => self.rename_dir(s, &f, &t)?,
                Found::Base if self.base.list(&f).is_ok() => self.rename_dir(s, &f, &t)?,
                Found::Base => {
                    s.aliases.insert(t, f);
                }
                Found::Missing => {}
            }
        }
        if self.upper.exists(from)? {
            self.upper.remove_dir_all(from)?;
        }
        self.hide_base(s, from)
    }
}

impl Fs for OverlayFs {
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let s = self.state();
        if self.find(&s, path)? != Found::Missing {
            return Err(io_error("create", path, ErrorKind::AlreadyExists));
        }
        self.upper_parent(&s, "create", path)?;
        self.upper.create(path)
    }

    fn open_append(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let mut s = self.state();
        match self.find(&s, path)? {
            Found::UpperFile => {}
            Found::Alias(target) => {
                self.copy_up(&target, path)?;
                s.aliases.remove(path);
            }
            Found::Base => self.copy_up(path, path)?,
            Found::UpperDir | Found::Missing => {
                return Err(io_error("open for append", path, ErrorKind::NotFound));
            }
        }
        self.upper.open_append(path)
    }

    fn open(&self, path: &Path) -> Result<Box<dyn ReadableFile>> {
        let s = self.state();
        match self.find(&s, path)? {
            Found::UpperFile => self.upper.open(path),
            Found::Alias(target) => Ok(Box::new(Aliased {
                inner: self.base.open(&target)?,
                path: path.to_path_buf(),
            })),
            Found::Base => self.base.open(path),
            Found::UpperDir | Found::Missing => Err(io_error("open", path, ErrorKind::NotFound)),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let mut s = self.state();
        let found = self.find(&s, from)?;
        if found == Found::Missing {
            return Err(io_error("rename", from, ErrorKind::NotFound));
        }
        self.upper_parent(&s, "rename", to)?;
        match found {
            Found::UpperFile => {
                s.aliases.remove(to);
                self.upper.rename(from, to)?;
            }
            Found::Alias(target) => {
                self.clear_name(&mut s, to);
                s.aliases.remove(from);
                s.aliases.insert(to.to_path_buf(), target);
            }
            Found::Base if self.base.list(from).is_err() => {
                self.clear_name(&mut s, to);
                s.aliases.insert(to.to_path_buf(), from.to_path_buf());
            }
            Found::Base | Found::UpperDir => {
                if self.find(&s, to)? != Found::Missing && !self.list_locked(&s, to)?.is_empty() {
                    return Err(io_error("rename", to, ErrorKind::DirectoryNotEmpty));
                }
                return self.rename_dir(&mut s, from, to);
            }
            Found::Missing => unreachable!("checked above"),
        }
        // The name `from` is gone: a base file under it stays hidden.
        self.hide_base(&mut s, from)
    }

    fn hard_link(&self, original: &Path, link: &Path) -> Result<()> {
        let mut s = self.state();
        if self.find(&s, link)? != Found::Missing {
            return Err(io_error("hard link", link, ErrorKind::AlreadyExists));
        }
        self.upper_parent(&s, "hard link", link)?;
        match self.find(&s, original)? {
            Found::UpperFile => self.upper.hard_link(original, link),
            Found::Alias(target) => {
                s.aliases.insert(link.to_path_buf(), target);
                Ok(())
            }
            Found::Base if self.base.list(original).is_err() => {
                s.aliases.insert(link.to_path_buf(), original.to_path_buf());
                Ok(())
            }
            _ => Err(io_error("hard link", original, ErrorKind::NotFound)),
        }
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        let mut s = self.state();
        match self.find(&s, path)? {
            Found::UpperFile => self.upper.remove_file(path)?,
            Found::Alias(_) => {
                s.aliases.remove(path);
            }
            Found::Base if self.base.list(path).is_err() => {}
            _ => return Err(io_error("remove", path, ErrorKind::NotFound)),
        }
        self.hide_base(&mut s, path)
    }

    fn remove_dir_all(&self, path: &Path) -> Result<()> {
        let mut s = self.state();
        if !self.is_dir(&s, path)? {
            return Err(io_error("remove dir", path, ErrorKind::NotFound));
        }
        if self.upper.exists(path)? {
            self.upper.remove_dir_all(path)?;
        }
        s.aliases.retain(|p, _| !p.starts_with(path));
        self.hide_base(&mut s, path)
    }

    fn create_dir_all(&self, path: &Path) -> Result<()> {
        let _s = self.state();
        self.upper.create_dir_all(path)
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let s = self.state();
        self.list_locked(&s, dir)
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        let s = self.state();
        Ok(self.find(&s, path)? != Found::Missing)
    }

    fn sync_file(&self, path: &Path) -> Result<()> {
        let s = self.state();
        match self.find(&s, path)? {
            Found::UpperFile => self.upper.sync_file(path),
            // The base's bytes are as durable as the base made them.
            Found::Alias(_) | Found::Base => Ok(()),
            Found::UpperDir | Found::Missing => Err(io_error("fdatasync", path, ErrorKind::NotFound)),
        }
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        let s = self.state();
        if self.is_dir(&s, dir)? || dir.as_os_str().is_empty() {
            Ok(())
        } else {
            Err(io_error("fsync dir", dir, ErrorKind::NotFound))
        }
    }

    fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn LockGuard>> {
        // In memory: the base's lock file is neither created nor locked.
        self.upper.lock(path, holder)
    }

    fn write_behind(&self) -> bool {
        false
    }
}

/// A base file read under another name (an alias): its reads are the
/// base's, its path the overlay's, as a hard link's would be.
#[derive(Debug)]
struct Aliased {
    inner: Box<dyn ReadableFile>,
    path: PathBuf,
}

impl ReadableFile for Aliased {
    fn size(&self) -> Result<u64> {
        self.inner.size()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.inner.read_exact_at(buf, offset)
    }

    fn map(&self, len: u64) -> Result<Mapping> {
        self.inner.map(len)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn read(fs: &dyn Fs, path: &str) -> Vec<u8> {
        let f = fs.open(Path::new(path)).unwrap();
        let mut buf = vec![0; f.size().unwrap() as usize];
        f.read_exact_at(&mut buf, 0).unwrap();
        buf
    }

    /// A base with `/db/a` ("alpha") and `/db/sub/b` ("beta"), and an
    /// overlay over it.
    fn setup() -> (MemFs, OverlayFs) {
        let base = MemFs::new();
        base.create_dir_all(Path::new("/db/sub")).unwrap();
        base.write(Path::new("/db/a"), b"alpha").unwrap();
        base.write(Path::new("/db/sub/b"), b"beta").unwrap();
        let overlay = OverlayFs::new(Arc::new(base.clone()));
        (base, overlay)
    }

    fn ls(fs: &dyn Fs, dir: &str) -> Vec<String> {
        fs.list(Path::new(dir)).unwrap()
    }

    #[test]
    fn reads_fall_through_to_the_base() {
        let (_, o) = setup();
        assert_eq!(read(&o, "/db/a"), b"alpha");
        assert_eq!(read(&o, "/db/sub/b"), b"beta");
        assert!(o.exists(Path::new("/db/sub")).unwrap());
        assert!(!o.exists(Path::new("/db/c")).unwrap());
        assert_eq!(ls(&o, "/db"), ["a", "sub"]);
        assert!(o.open(Path::new("/db/c")).is_err());
        assert!(o.list(Path::new("/nowhere")).is_err());
    }

    #[test]
    fn writes_do_not_reach_the_base() {
        let (base, o) = setup();
        let mut f = o.create(Path::new("/db/sub/c")).unwrap();
        f.append(b"gamma").unwrap();
        f.sync_data().unwrap();
        o.create_dir_all(Path::new("/db/new/deep")).unwrap();
        o.sync_dir(Path::new("/db/new")).unwrap();
        assert_eq!(read(&o, "/db/sub/c"), b"gamma");
        assert!(o.create(Path::new("/db/a")).is_err(), "a base file exists");
        assert!(o.create(Path::new("/db/missing/x")).is_err(), "no parent");
        assert_eq!(ls(&base, "/db/sub"), ["b"]);
        assert!(!base.exists(Path::new("/db/new")).unwrap());
        let _held = o.lock(Path::new("/db/LOCK"), "overlay").unwrap();
        assert!(!base.exists(Path::new("/db/LOCK")).unwrap());
        // The base's own lock is free: the overlay never took it.
        drop(base.lock(Path::new("/db/LOCK"), "owner").unwrap());
        assert!(o.lock(Path::new("/db/LOCK"), "again").is_err());
    }

    #[test]
    fn a_removal_hides_a_base_file_and_directory() {
        let (base, o) = setup();
        o.remove_file(Path::new("/db/a")).unwrap();
        assert!(!o.exists(Path::new("/db/a")).unwrap());
        assert!(o.open(Path::new("/db/a")).is_err());
        assert!(o.remove_file(Path::new("/db/a")).is_err());
        assert_eq!(ls(&o, "/db"), ["sub"]);
        o.remove_dir_all(Path::new("/db/sub")).unwrap();
        assert!(!o.exists(Path::new("/db/sub/b")).unwrap());
        // Made again, the directory is empty: the base's entries stay hidden.
        o.create_dir_all(Path::new("/db/sub")).unwrap();
        assert!(ls(&o, "/db/sub").is_empty());
        o.create(Path::new("/db/a")).unwrap().append(b"new").unwrap();
        assert_eq!(read(&o, "/db/a"), b"new");
        assert_eq!(read(&base, "/db/a"), b"alpha");
        assert_eq!(ls(&base, "/db/sub"), ["b"]);
    }

    #[test]
    fn a_renamed_base_file_reads_under_its_new_name_only() {
        let (base, o) = setup();
        o.rename(Path::new("/db/a"), Path::new("/db/sub/a2")).unwrap();
        assert_eq!(read(&o, "/db/sub/a2"), b"alpha");
        assert_eq!(
            o.open(Path::new("/db/sub/a2")).unwrap().path(),
            Path::new("/db/sub/a2")
        );
        assert!(!o.exists(Path::new("/db/a")).unwrap());
        assert_eq!(ls(&o, "/db/sub"), ["a2", "b"]);
        // Over an existing name, as rename(2) does.
        o.rename(Path::new("/db/sub/a2"), Path::new("/db/sub/b")).unwrap();
        assert_eq!(read(&o, "/db/sub/b"), b"alpha");
        assert_eq!(ls(&o, "/db/sub"), ["b"]);
        assert_eq!(ls(&base, "/db"), ["a", "sub"]);
        assert_eq!(read(&base, "/db/sub/b"), b"beta");
    }

    #[test]
    fn a_renamed_directory_takes_both_layers_along() {
        let (base, o) = setup();
        o.create(Path::new("/db/sub/c"))
            .unwrap()
            .append(b"gamma")
            .unwrap();
        o.rename(Path::new("/db/sub"), Path::new("/db/moved")).unwrap();
        assert_eq!(ls(&o, "/db"), ["a", "moved"]);
        assert_eq!(ls(&o, "/db/moved"), ["b", "c"]);
        assert_eq!(read(&o, "/db/moved/b"), b"beta");
        assert_eq!(read(&o, "/db/moved/c"), b"gamma");
        o.remove_dir_all(Path::new("/db/moved")).unwrap();
        assert_eq!(ls(&o, "/db"), ["a"]);
        assert_eq!(ls(&base, "/db/sub"), ["b"]);
    }

    #[test]
    fn an_append_to_a_base_file_copies_it_up() {
        let (base, o) = setup();
        let mut f = o.open_append(Path::new("/db/a")).unwrap();
        assert_eq!(f.len(), 5);
        f.append(b"-more").unwrap();
        f.set_len(7).unwrap();
        f.sync_data().unwrap();
        assert_eq!(read(&o, "/db/a"), b"alpha-m");
        assert_eq!(read(&base, "/db/a"), b"alpha");
        o.sync_file(Path::new("/db/a")).unwrap();
        o.sync_file(Path::new("/db/sub/b")).unwrap();
    }

    #[test]
    fn a_listing_is_the_union_of_both_layers() {
        let (_, o) = setup();
        o.create(Path::new("/db/c")).unwrap();
        o.create_dir_all(Path::new("/db/d")).unwrap();
        o.hard_link(Path::new("/db/sub/b"), Path::new("/db/e")).unwrap();
        assert_eq!(ls(&o, "/db"), ["a", "c", "d", "e", "sub"]);
        o.remove_file(Path::new("/db/a")).unwrap();
        assert_eq!(ls(&o, "/db"), ["c", "d", "e", "sub"]);
    }

    #[test]
    fn a_hard_link_of_a_base_file_reads_it_without_a_copy() {
        let (base, o) = setup();
        o.create_dir_all(Path::new("/live")).unwrap();
        o.hard_link(Path::new("/db/sub/b"), Path::new("/live/b")).unwrap();
        assert!(o.hard_link(Path::new("/db/a"), Path::new("/live/b")).is_err());
        assert!(o.hard_link(Path::new("/db/zz"), Path::new("/live/z")).is_err());
        assert_eq!(read(&o, "/live/b"), b"beta");
        // A link of the link, and the original removed: both still read.
        o.hard_link(Path::new("/live/b"), Path::new("/live/b2")).unwrap();
        o.remove_file(Path::new("/db/sub/b")).unwrap();
        assert_eq!(read(&o, "/live/b2"), b"beta");
        assert_eq!(ls(&o, "/live"), ["b", "b2"]);
        // Appending to a link copies it up; the base file is unchanged.
        o.open_append(Path::new("/live/b")).unwrap().append(b"!").unwrap();
        assert_eq!(read(&o, "/live/b"), b"beta!");
        assert_eq!(read(&o, "/live/b2"), b"beta");
        assert!(!base.exists(Path::new("/live")).unwrap());
        assert_eq!(read(&base, "/db/sub/b"), b"beta");
        o.remove_file(Path::new("/live/b2")).unwrap();
        assert_eq!(ls(&o, "/live"), ["b"]);
    }
}
