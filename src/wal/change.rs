//! The WAL payload of one changelog record (`format/wal.md`, "Changelog
//! payload"): spine, op, weight, key length, key, value.

use std::path::Path;

use crate::changelog::{ChangeRecord, StateOp};
use crate::{Error, Result};

/// Bytes of the payload before the key.
pub const CHANGE_HEADER_LEN: usize = 17;

/// Appends the payload of `rec` (without its epoch, which the frame holds).
pub fn encode_change(out: &mut Vec<u8>, rec: &ChangeRecord<'_>) {
    let (op, weight) = match rec.op {
        StateOp::Put => (1u8, 0i64),
        StateOp::Delete => (2, 0),
        StateOp::Update(w) => (3, w),
    };
    out.extend_from_slice(&rec.spine.to_le_bytes());
    out.push(op);
    out.extend_from_slice(&weight.to_le_bytes());
    out.extend_from_slice(&(rec.key.len() as u32).to_le_bytes());
    out.extend_from_slice(rec.key);
    out.extend_from_slice(rec.value);
}

/// Parses a payload back into a record of epoch `epoch`. `path` and `at` name
/// where the payload came from, for the error.
pub fn decode_change<'a>(payload: &'a [u8], epoch: u64, path: &Path, at: u64) -> Result<ChangeRecord<'a>> {
    let bad = |what: String| Error::corrupt(path, at, "changelog payload", "a change record", what);
    if payload.len() < CHANGE_HEADER_LEN {
        return Err(bad(format!("{} bytes", payload.len())));
    }
    let spine = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
    let mut w = [0u8; 8];
    w.copy_from_slice(&payload[5..13]);
    let weight = i64::from_le_bytes(w);
    let op = match (payload[4], weight) {
        (1, 0) => StateOp::Put,
        (2, 0) => StateOp::Delete,
        (3, w) => StateOp::Update(w),
        (op, w) => return Err(bad(format!("op {op} with weight {w}"))),
    };
    let key_len = u32::from_le_bytes([payload[13], payload[14], payload[15], payload[16]]) as usize;
    let rest = &payload[CHANGE_HEADER_LEN..];
    if key_len > rest.len() {
        return Err(bad(format!("a {key_len}-byte key in {} bytes", rest.len())));
    }
    let (key, value) = rest.split_at(key_len);
    if op == StateOp::Delete && !value.is_empty() {
        return Err(bad(format!("a delete with a {}-byte value", value.len())));
    }
    Ok(ChangeRecord {
        spine,
        epoch,
        op,
        key,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let p = Path::new("/x.wal");
        for op in [StateOp::Put, StateOp::Delete, StateOp::Update(-5)] {
            let value: &[u8] = if op == StateOp::Delete { b"" } else { b"value" };
            let rec = ChangeRecord {
                spine: 3,
                epoch: 9,
                op,
                key: b"key",
                value,
            };
            let mut buf = Vec::new();
            encode_change(&mut buf, &rec);
            assert_eq!(decode_change(&buf, 9, p, 0).unwrap(), rec);
            // Cut anywhere before the key's end: the payload is refused.
            for cut in 0..CHANGE_HEADER_LEN + 3 {
                assert!(decode_change(&buf[..cut], 9, p, 0).is_err(), "cut at {cut}");
            }
        }
        let mut buf = Vec::new();
        encode_change(
            &mut buf,
            &ChangeRecord {
                spine: 0,
                epoch: 0,
                op: StateOp::Put,
                key: b"k",
                value: b"",
            },
        );
        buf[4] = 9;
        assert!(decode_change(&buf, 0, p, 0).unwrap_err().is_corruption());
    }
}
