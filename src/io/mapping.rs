//! Read-only byte mappings: the one module of the crate allowed `unsafe`.
//!
//! A [`Mapping`] is either a real `mmap` of a file or a heap buffer (for
//! [`super::MemFs`]). Either way its first byte is aligned to at least
//! [`MAPPING_ALIGN`] bytes, which the run format relies on for rkyv archives
//! (format/run.md, "alignment").
//!
//! Why `unsafe` is needed: `memmap2::Mmap::map` is `unsafe` because the bytes of
//! a mapped file may change under the mapping if another party modifies or
//! truncates the file. statespine maps run files, which never change once
//! renamed into place, and WAL segments while it opens or replays a log, when
//! at most appends past the mapped length happen; callers check the length
//! against the file's own framing before mapping.
#![allow(unsafe_code)]

use std::fs::File;
use std::ops::Deref;
use std::path::Path;

use rkyv::util::AlignedVec;

use crate::{Error, Result};

/// Every mapping's base address is a multiple of this.
pub const MAPPING_ALIGN: usize = 16;

/// An immutable view of a file's bytes.
pub struct Mapping {
    inner: Inner,
}

enum Inner {
    Mmap(memmap2::Mmap),
    Heap(AlignedVec<MAPPING_ALIGN>),
}

impl Mapping {
    /// Maps `len` bytes of `file` read-only.
    pub(crate) fn map_file(file: &File, len: u64, path: &Path) -> Result<Mapping> {
        if len == 0 {
            // mmap(2) rejects a zero length; an empty heap buffer is the same view.
            return Ok(Mapping::from_bytes(&[]));
        }
        let len = usize::try_from(len).map_err(|_| {
            let why = format!("cannot map {len} bytes in this address space");
            Error::io(
                "mmap",
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
            )
        })?;
        // SAFETY: mapping is sound as long as the file is not modified or
        // truncated while mapped. Run files never change once renamed into
        // place; WAL segments are mapped only while a log is opened or
        // replayed, when at most appends past `len` happen (a torn tail is
        // cut after the scan); callers checked `len` against the file.
        let mmap = unsafe { memmap2::MmapOptions::new().len(len).map(file) }
            .map_err(|e| Error::io("mmap", path, e))?;
        Ok(Mapping {
            inner: Inner::Mmap(mmap),
        })
    }

    /// A heap copy of `bytes`, aligned like a mapping.
    pub fn from_bytes(bytes: &[u8]) -> Mapping {
        let mut buf = AlignedVec::<MAPPING_ALIGN>::with_capacity(bytes.len());
        buf.extend_from_slice(bytes);
        Mapping {
            inner: Inner::Heap(buf),
        }
    }
}

impl Deref for Mapping {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.inner {
            Inner::Mmap(m) => m,
            Inner::Heap(v) => v.as_slice(),
        }
    }
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            Inner::Mmap(_) => "mmap",
            Inner::Heap(_) => "heap",
        };
        f.debug_struct("Mapping")
            .field("kind", &kind)
            .field("len", &self.len())
            .finish()
    }
}

/// Bytes per cache line, the stride of [`prefetch`].
const CACHE_LINE_BYTES: usize = 64;

/// Hints the CPU to pull `bytes` into cache ahead of use. Scans call it on the
/// next block while they read the current one, hiding memory latency (measured
/// in `benches/run.rs`, scan; see docs/benchmarks.md).
#[inline]
pub fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(CACHE_LINE_BYTES) {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch is a hint that never faults and never changes
        // memory; the pointer comes from a live slice anyway. `_mm_prefetch`
        // needs SSE, which every x86_64 CPU has.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Hints the CPU to pull the cache line holding `value` ahead of use (for
/// walks whose next address is known a few steps early).
#[inline]
pub fn prefetch_value<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: as in `prefetch`: a hint on the address of a live reference;
        // it never faults and reads nothing architecturally.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(value).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// [`prefetch`] for the memory of a slice of any type.
#[inline]
pub fn prefetch_slice<T>(items: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let base = items.as_ptr().cast::<u8>();
        for off in (0..std::mem::size_of_val(items)).step_by(CACHE_LINE_BYTES) {
            // SAFETY: as in `prefetch`: a hint on an address inside a live
            // slice (`off` < its size); it never faults and reads nothing.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(off).cast::<i8>()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = items;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_changes_nothing() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        prefetch(&bytes);
        prefetch(&bytes[999..]);
        prefetch(&[]);
        prefetch_value(&bytes[3]);
        let words: Vec<u64> = (0..100).collect();
        prefetch_slice(&words);
        prefetch_slice::<u64>(&[]);
        assert_eq!(words.iter().sum::<u64>(), 4950);
        assert!(bytes.iter().enumerate().all(|(i, &b)| b == i as u8));
    }

    #[test]
    fn heap_mapping_is_aligned_and_equal() {
        for len in [0usize, 1, 15, 16, 17, 4096, 10_000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let m = Mapping::from_bytes(&bytes);
            assert_eq!(&*m, &bytes[..]);
            if len > 0 {
                assert_eq!(m.as_ptr() as usize % MAPPING_ALIGN, 0, "len {len}");
            }
        }
    }

    #[test]
    fn file_mapping_matches_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let m = Mapping::map_file(&file, 5000, &path).unwrap();
        assert_eq!(&*m, &bytes[..5000]);
        assert_eq!(m.as_ptr() as usize % MAPPING_ALIGN, 0);
        let empty = Mapping::map_file(&file, 0, &path).unwrap();
        assert!(empty.is_empty());
    }
}
