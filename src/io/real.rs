//! [`StdFs`]: the real file system, through `std::fs` and memmap2.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Fs, Mapping, ReadableFile, WritableFile};
use crate::{Error, Result};

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

impl StdFs {
    /// The real file system.
    pub fn new() -> StdFs {
        StdFs
    }
}

impl Fs for StdFs {
    fn write_behind(&self) -> bool {
        true
    }

    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        // Append mode: every write lands at the current end, also after set_len.
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io("create", path, e))?;
        Ok(Box::new(StdWritable {
            file,
            path: path.to_path_buf(),
            len: 0,
        }))
    }

    fn open_append(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io("open for append", path, e))?;
        let len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
        Ok(Box::new(StdWritable {
            file,
            path: path.to_path_buf(),
            len,
        }))
    }

    fn open(&self, path: &Path) -> Result<Box<dyn ReadableFile>> {
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        Ok(Box::new(StdReadable {
            file,
            path: path.to_path_buf(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        std::fs::rename(from, to).map_err(|e| Error::io("rename", from, e))
    }

    fn hard_link(&self, original: &Path, link: &Path) -> Result<()> {
        std::fs::hard_link(original, link).map_err(|e| Error::io("hard link", link, e))
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        std::fs::remove_file(path).map_err(|e| Error::io("remove", path, e))
    }

    fn remove_dir_all(&self, path: &Path) -> Result<()> {
        std::fs::remove_dir_all(path).map_err(|e| Error::io("remove dir", path, e))
    }

    fn create_dir_all(&self, path: &Path) -> Result<()> {
        std::fs::create_dir_all(path).map_err(|e| Error::io("create dir", path, e))
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
            let entry = entry.map_err(|e| Error::io("list", dir, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("stat", path, e)),
        }
    }

    fn sync_file(&self, path: &Path) -> Result<()> {
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        file.sync_data().map_err(|e| Error::io("fdatasync", path, e))
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        let file = File::open(dir).map_err(|e| Error::io("open dir", dir, e))?;
        file.sync_all().map_err(|e| Error::io("fsync dir", dir, e))
    }

    fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn super::LockGuard>> {
        super::lock::lock_std(path, holder)
    }
}

#[derive(Debug)]
struct StdWritable {
    file: File,
    path: PathBuf,
    len: u64,
}

impl WritableFile for StdWritable {
    fn append(&mut self, buf: &[u8]) -> Result<()> {
        self.file
            .write_all(buf)
            .map_err(|e| Error::io("write", &self.path, e))?;
        self.len += buf.len() as u64;
        Ok(())
    }

    fn sync_data(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("fdatasync", &self.path, e))
    }

    fn set_len(&mut self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| Error::io("set_len", &self.path, e))?;
        // Files are opened in append mode, so the next write lands at `len`.
        self.len = len;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug)]
struct StdReadable {
    file: File,
    path: PathBuf,
}

impl ReadableFile for StdReadable {
    fn size(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| Error::io("stat", &self.path, e))?
            .len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| Error::io("read", &self.path, e))
    }

    fn map(&self, len: u64) -> Result<Mapping> {
        Mapping::map_file(&self.file, len, &self.path)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}
