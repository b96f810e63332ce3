//! One checker for the fixed block that identifies every file statespine
//! writes: the header of a WAL segment and of a checkpoint manifest, the
//! footer of a run. Each holds a magic, a format version, maybe the oldest
//! reader version and feature bits, and a crc32c over the bytes before it.
//!
//! Every refusal follows one convention, whatever the file:
//! - `region` is the block's name (`"segment header"`, `"manifest header"`,
//!   `"footer"`);
//! - `offset` is where the block starts for a short block, a wrong magic or
//!   a checksum mismatch (a checksum cannot say which byte is wrong), and
//!   the field's own offset for a field that passes the checksum but holds a
//!   value no writer produces;
//! - `expected` is what a well-formed file holds there given its other
//!   bytes: for the checksum, the crc32c computed over the bytes it covers;
//!   `found` is what this file holds: the stored crc32c.

use std::path::Path;

use crate::{Error, Result};

/// What a file kind's header looks like. Offsets are from the block's start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderSpec {
    /// The block's name in errors.
    pub region: &'static str,
    /// The bytes it starts with.
    pub magic: &'static [u8],
    /// Its length.
    pub len: usize,
    /// Where its crc32c (u32) of every byte before it lies.
    pub crc_at: usize,
    /// Where the format version (u32) lies.
    pub version_at: usize,
    /// Where the oldest reader version (u32) lies; `None`: the format
    /// version is also the oldest reader's.
    pub min_reader_at: Option<usize>,
    /// The newest version this build reads.
    pub supported: u32,
    /// Incompatible feature bits, if the format has them.
    pub features: Option<FeatureBits>,
}

/// Where a header keeps its incompatible feature bits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FeatureBits {
    /// Their offset.
    pub at: usize,
    /// 4 or 8 bytes.
    pub width: usize,
    /// The bits this build understands.
    pub known: u64,
}

/// The fields every header has, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checked {
    /// The writer's format version.
    pub version: u32,
    /// The oldest reader version able to read the file.
    pub min_reader: u32,
    /// The incompatible feature bits (all known); 0 without any.
    pub features: u64,
}

/// Checks, in order: length, magic, checksum, versions, feature bits, of
/// the header at the start of `bytes`, found at `base` in the file at
/// `path`. See the module docs for what the errors say.
pub(crate) fn check_header(bytes: &[u8], base: u64, path: &Path, spec: &HeaderSpec) -> Result<Checked> {
    let bad = |at: usize, expected: String, found: String| {
        Error::corrupt(path, base + at as u64, spec.region, expected, found)
    };
    if bytes.len() < spec.len {
        let (want, got) = (spec.len, bytes.len());
        return Err(bad(0, format!("{want} bytes"), format!("{got} bytes")));
    }
    let b = &bytes[..spec.len];
    let magic = &b[..spec.magic.len()];
    if magic != spec.magic {
        let (want, got) = (bstr(spec.magic), bstr(magic));
        return Err(bad(0, format!("magic {want:?}"), format!("magic {got:?}")));
    }
    let stored = le_u32(b, spec.crc_at);
    let computed = crc32c::crc32c(&b[..spec.crc_at]);
    if !crc_matches(stored, computed) {
        return Err(bad(
            0,
            format!("crc32c {computed:#010x}"),
            format!("crc32c {stored:#010x}"),
        ));
    }
    let version = le_u32(b, spec.version_at);
    let min_reader = spec.min_reader_at.map_or(version, |at| le_u32(b, at));
    if version == 0 || min_reader == 0 || min_reader > version {
        return Err(bad(
            spec.version_at,
            "versions with 0 < min_reader_version <= format_version".into(),
            format!("{version} / {min_reader}"),
        ));
    }
    if min_reader > spec.supported {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            min_reader,
            supported: spec.supported,
        });
    }
    let features = spec.features.map_or(0, |f| match f.width {
        4 => u64::from(le_u32(b, f.at)),
        _ => le_u64(b, f.at),
    });
    let unknown = spec.features.map_or(0, |f| features & !f.known);
    if unknown != 0 {
        return Err(Error::UnsupportedFeatures {
            path: path.to_path_buf(),
            bits: unknown,
        });
    }
    Ok(Checked {
        version,
        min_reader,
        features,
    })
}

/// Whether a stored checksum matches the computed one. Under `cargo fuzz`
/// (`--cfg fuzzing`) every checksum passes, so the fuzzer can reach the parsers
/// behind them instead of stopping at the first crc32c (the checksums
/// themselves are covered by the corruption tests).
#[inline]
pub(crate) fn crc_matches(stored: u32, computed: u32) -> bool {
    cfg!(fuzzing) || stored == computed
}

#[inline]
pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

#[inline]
pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Renders bytes for an error message: printable ASCII as is, the rest escaped.
pub(crate) fn bstr(b: &[u8]) -> String {
    b.iter()
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: HeaderSpec = HeaderSpec {
        region: "test header",
        magic: b"MAGI",
        len: 24,
        crc_at: 20,
        version_at: 4,
        min_reader_at: Some(8),
        supported: 2,
        features: Some(FeatureBits {
            at: 12,
            width: 8,
            known: 1,
        }),
    };

    fn header(version: u32, min_reader: u32, features: u64) -> Vec<u8> {
        let mut b = b"MAGI".to_vec();
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&min_reader.to_le_bytes());
        b.extend_from_slice(&features.to_le_bytes());
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    fn corruption(e: Error) -> (u64, &'static str, String, String) {
        match e {
            Error::Corruption {
                offset,
                region,
                expected,
                found,
                ..
            } => (offset, region, expected, found),
            other => panic!("not a corruption: {other}"),
        }
    }

    #[test]
    fn a_sound_header_gives_its_fields() {
        let p = Path::new("f");
        let c = check_header(&header(2, 1, 1), 0, p, &SPEC).unwrap();
        assert_eq!((c.version, c.min_reader, c.features), (2, 1, 1));
    }

    #[test]
    fn each_refusal_follows_the_convention() {
        let p = Path::new("f");
        let e = check_header(&header(2, 1, 0)[..10], 100, p, &SPEC).unwrap_err();
        assert_eq!(
            corruption(e),
            (100, "test header", "24 bytes".into(), "10 bytes".into())
        );
        let mut b = header(2, 1, 0);
        b[1] = b'X';
        let (at, region, expected, _) = corruption(check_header(&b, 100, p, &SPEC).unwrap_err());
        assert_eq!(
            (at, region, expected.as_str()),
            (100, "test header", "magic \"MAGI\"")
        );
        let mut b = header(2, 1, 0);
        b[5] ^= 1;
        let computed = crc32c::crc32c(&b[..20]);
        let stored = le_u32(&b, 20);
        let e = check_header(&b, 100, p, &SPEC).unwrap_err();
        assert_eq!(
            corruption(e),
            (
                100,
                "test header",
                format!("crc32c {computed:#010x}"),
                format!("crc32c {stored:#010x}")
            )
        );
        let (at, ..) = corruption(check_header(&header(1, 2, 0), 100, p, &SPEC).unwrap_err());
        assert_eq!(at, 104, "a field that passed the checksum is named by its offset");
        assert!(matches!(
            check_header(&header(3, 3, 0), 0, p, &SPEC),
            Err(Error::UnsupportedVersion {
                found: 3,
                min_reader: 3,
                supported: 2,
                ..
            })
        ));
        assert!(
            check_header(&header(3, 2, 0), 0, p, &SPEC).is_ok(),
            "a newer compatible version"
        );
        assert!(matches!(
            check_header(&header(2, 1, 6), 0, p, &SPEC),
            Err(Error::UnsupportedFeatures { bits: 6, .. })
        ));
    }
}
