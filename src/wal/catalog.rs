//! The spine catalog's records in a shard's WAL: a put of
//! `name -> (id, mode)` on the reserved spine [`CATALOG_SPINE`] creates a
//! spine, a delete of `name` drops it (`format/wal.md`).

use crate::run::RunMode;

/// The spine id of catalog records in a shard's WAL.
pub const CATALOG_SPINE: u32 = u32::MAX;

/// The value of a catalog put: spine id (u32 LE) and mode byte.
pub fn encode_catalog_value(id: u32, mode: RunMode) -> [u8; 5] {
    let b = id.to_le_bytes();
    [b[0], b[1], b[2], b[3], mode.to_byte()]
}

/// Parses [`encode_catalog_value`]'s bytes.
pub fn decode_catalog_value(v: &[u8]) -> Option<(u32, RunMode)> {
    let [a, b, c, d, m] = *v else { return None };
    Some((u32::from_le_bytes([a, b, c, d]), RunMode::from_byte(m)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_values_round_trip_and_refuse_other_lengths_and_modes() {
        for mode in [RunMode::KeyValue, RunMode::ZSet] {
            let v = encode_catalog_value(0x0102_0304, mode);
            assert_eq!(decode_catalog_value(&v), Some((0x0102_0304, mode)));
        }
        assert_eq!(decode_catalog_value(&[1, 2, 3, 4]), None);
        assert_eq!(decode_catalog_value(&[1, 2, 3, 4, 1, 0]), None);
        assert_eq!(decode_catalog_value(&[1, 2, 3, 4, 9]), None);
    }
}
