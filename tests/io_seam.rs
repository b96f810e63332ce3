//! The real and in-memory file systems behave alike behind the `Fs` seam, and
//! the in-memory one keeps written and synced bytes apart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use statespine::io::{Fs, MemFs, StdFs};

fn each_fs(test: impl Fn(&dyn Fs, &Path)) {
    let tmp = tempfile::tempdir().unwrap();
    test(&StdFs::new(), tmp.path());
    test(&MemFs::new(), Path::new("/mem"));
}

fn p(root: &Path, rel: &str) -> PathBuf {
    root.join(rel)
}

#[test]
fn create_append_read_map() {
    each_fs(|fs, root| {
        fs.create_dir_all(&p(root, "a/b")).unwrap();
        let f = p(root, "a/b/f");
        let mut w = fs.create(&f).unwrap();
        assert!(fs.create(&f).is_err(), "create must not clobber");
        w.append(b"hello ").unwrap();
        w.append(b"world").unwrap();
        assert_eq!(w.len(), 11);
        w.sync_data().unwrap();
        let r = fs.open(&f).unwrap();
        assert_eq!(r.size().unwrap(), 11);
        let mut buf = [0u8; 5];
        r.read_exact_at(&mut buf, 6).unwrap();
        assert_eq!(&buf, b"world");
        assert!(r.read_exact_at(&mut buf, 8).is_err(), "short read is an error");
        assert_eq!(&*r.map(11).unwrap(), b"hello world");
        assert_eq!(&*r.map(5).unwrap(), b"hello");
    });
}

#[test]
fn set_len_then_append_continues_at_the_new_end() {
    each_fs(|fs, root| {
        fs.create_dir_all(root).unwrap();
        let f = p(root, "wal");
        let mut w = fs.create(&f).unwrap();
        w.append(b"0123456789").unwrap();
        w.set_len(4).unwrap();
        w.append(b"xy").unwrap();
        drop(w);
        let mut w = fs.open_append(&f).unwrap();
        assert_eq!(w.len(), 6);
        w.append(b"z").unwrap();
        assert_eq!(&*fs.open(&f).unwrap().map(7).unwrap(), b"0123xyz");
    });
}

#[test]
fn rename_link_remove_list() {
    each_fs(|fs, root| {
        let d = p(root, "d");
        fs.create_dir_all(&d).unwrap();
        fs.create(&p(root, "d/tmp")).unwrap().append(b"data").unwrap();
        fs.rename(&p(root, "d/tmp"), &p(root, "d/run")).unwrap();
        assert!(!fs.exists(&p(root, "d/tmp")).unwrap());
        fs.hard_link(&p(root, "d/run"), &p(root, "d/link")).unwrap();
        assert!(fs.hard_link(&p(root, "d/run"), &p(root, "d/link")).is_err());
        fs.create_dir_all(&p(root, "d/sub")).unwrap();
        assert_eq!(fs.list(&d).unwrap(), vec!["link", "run", "sub"]);
        fs.remove_file(&p(root, "d/run")).unwrap();
        assert_eq!(&*fs.open(&p(root, "d/link")).unwrap().map(4).unwrap(), b"data");
        fs.sync_file(&p(root, "d/link")).unwrap();
        fs.sync_dir(&d).unwrap();
        fs.remove_dir_all(&d).unwrap();
        assert!(!fs.exists(&d).unwrap());
        assert!(fs.open(&p(root, "d/link")).is_err());
    });
}

#[test]
fn errors_name_the_operation_and_path() {
    each_fs(|fs, root| {
        let missing = p(root, "nope/x");
        let err = fs.open(&missing).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("open") && msg.contains("nope"), "{msg}");
        assert!(fs.create(&missing).is_err(), "parent must exist");
    });
}

#[test]
fn mem_crash_keeps_only_synced_bytes_and_shared_inodes() {
    let fs = MemFs::new();
    fs.create_dir_all(Path::new("/d")).unwrap();
    let mut w = fs.create(Path::new("/d/f")).unwrap();
    w.append(b"durable").unwrap();
    w.sync_data().unwrap();
    w.append(b" lost").unwrap();
    fs.hard_link(Path::new("/d/f"), Path::new("/d/g")).unwrap();
    let after = fs.crash();
    assert_eq!(after.read(Path::new("/d/f")).unwrap(), b"durable");
    assert_eq!(after.read(Path::new("/d/g")).unwrap(), b"durable");
    let mut w = after.open_append(Path::new("/d/f")).unwrap();
    w.append(b"!").unwrap();
    assert_eq!(
        after.read(Path::new("/d/g")).unwrap(),
        b"durable!",
        "links still share one inode"
    );
    assert_eq!(
        fs.read(Path::new("/d/f")).unwrap(),
        b"durable lost",
        "the original is untouched"
    );
}
