//! Object keys, relative to a remote store's prefix (`format/remote.md`).
//!
//! Data objects live under the writer epoch that uploaded them, so two
//! writers (one fenced and not yet aware of it) never write the same key,
//! and a key, once written, always holds the same bytes.

use uuid::Uuid;

/// The manifest sequence's directory (with its separator).
pub const MANIFEST_DIR: &str = "manifest/";

/// The key of manifest number `seq`.
pub fn manifest_key(seq: u64) -> String {
    format!("{MANIFEST_DIR}{seq:020}")
}

/// The number a manifest key stands for (`None` for any other key).
pub fn parse_manifest_key(key: &str) -> Option<u64> {
    let digits = key.strip_prefix(MANIFEST_DIR)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// A run file of a checkpoint (its link name there), uploaded by writer
/// epoch `writer`.
pub fn run_key(writer: u64, name: &str) -> String {
    format!("w{writer:020}/runs/{name}")
}

/// Records `first..=last` of a shard's WAL, from one local segment: a
/// segment of its own (the local segment's header with `first` as its
/// first LSN, then the records' frames as they are).
pub fn wal_key(writer: u64, shard: u32, first: u64, last: u64) -> String {
    format!("w{writer:020}/wal/{shard}/{first:020}-{last:020}.wal")
}

/// `(writer, shard, first, last)` of a [`wal_key`].
pub fn parse_wal_key(key: &str) -> Option<(u64, u32, u64, u64)> {
    let rest = key.strip_prefix('w')?;
    let (writer, rest) = rest.split_once("/wal/")?;
    let (shard, rest) = rest.split_once('/')?;
    let (first, last) = rest.strip_suffix(".wal")?.split_once('-')?;
    Some((
        writer.parse().ok()?,
        shard.parse().ok()?,
        first.parse().ok()?,
        last.parse().ok()?,
    ))
}

/// A file of checkpoint `id` itself (its manifest, side files).
pub fn checkpoint_key(writer: u64, id: Uuid, name: &str) -> String {
    format!("w{writer:020}/ck/{id}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_keys_sort_by_number_and_parse_back() {
        assert_eq!(parse_manifest_key(&manifest_key(12)), Some(12));
        assert!(manifest_key(9) < manifest_key(10));
        for bad in [
            "manifest/12",
            "manifest/0000000000000000001x",
            "w1/manifest/00000000000000000001",
        ] {
            assert_eq!(parse_manifest_key(bad), None, "{bad}");
        }
        assert_eq!(parse_wal_key(&wal_key(3, 1, 10, 20)), Some((3, 1, 10, 20)));
        assert_eq!(parse_wal_key(&run_key(3, "x.wal")), None);
    }
}
