//! The WAL payload of one changelog record (`format/wal.md`, "Changelog
//! payload"): spine, op, weight, key length, key, value; and the entries of
//! a write batch, the value of one record of op 4 ("Write batches").

use std::path::Path;

use crate::changelog::{ChangeRecord, StateOp};
use crate::io::header::{le_u32, le_u64};
use crate::{Error, Result};

/// Bytes of the payload before the key.
pub const CHANGE_HEADER_LEN: usize = 17;

/// Appends the payload of `rec` (without its epoch, which the frame holds).
pub fn encode_change(out: &mut Vec<u8>, rec: &ChangeRecord<'_>) {
    let (op, weight) = op_code(rec.op);
    out.extend_from_slice(&rec.spine.to_le_bytes());
    out.push(op);
    out.extend_from_slice(&weight.to_le_bytes());
    out.extend_from_slice(&(rec.key.len() as u32).to_le_bytes());
    out.extend_from_slice(rec.key);
    out.extend_from_slice(rec.value);
}

fn op_code(op: StateOp) -> (u8, i64) {
    match op {
        StateOp::Put => (1, 0),
        StateOp::Delete => (2, 0),
        StateOp::Update(w) => (3, w),
        StateOp::Batch => (4, 0),
    }
}

/// The op of a code and weight, if they go together.
fn op_of(code: u8, weight: i64) -> Option<StateOp> {
    match (code, weight) {
        (1, 0) => Some(StateOp::Put),
        (2, 0) => Some(StateOp::Delete),
        (3, w) => Some(StateOp::Update(w)),
        (4, 0) => Some(StateOp::Batch),
        _ => None,
    }
}

/// Parses a payload back into a record of epoch `epoch`. `path` and `at` name
/// where the payload came from, for the error.
pub fn decode_change<'a>(payload: &'a [u8], epoch: u64, path: &Path, at: u64) -> Result<ChangeRecord<'a>> {
    let bad = |what: String| Error::corrupt(path, at, "changelog payload", "a change record", what);
    if payload.len() < CHANGE_HEADER_LEN {
        return Err(bad(format!("{} bytes", payload.len())));
    }
    let (spine, op_byte, weight, key_len) = read_header(payload);
    let Some(op) = op_of(op_byte, weight) else {
        return Err(bad(format!("op {op_byte} with weight {weight}")));
    };
    let rest = &payload[CHANGE_HEADER_LEN..];
    if key_len > rest.len() {
        return Err(bad(format!("a {key_len}-byte key in {} bytes", rest.len())));
    }
    let (key, value) = rest.split_at(key_len);
    if op == StateOp::Delete && !value.is_empty() {
        return Err(bad(format!("a delete with a {}-byte value", value.len())));
    }
    if op == StateOp::Batch && (spine != 0 || !key.is_empty()) {
        return Err(bad(format!("a batch of spine {spine} with a {key_len}-byte key")));
    }
    Ok(ChangeRecord {
        spine,
        epoch,
        op,
        key,
        value,
    })
}

/// Bytes of a batch's entry count.
pub const BATCH_HEADER_LEN: usize = 4;
/// Bytes of a batch entry before its key: spine, op, weight, key length,
/// value length.
pub const BATCH_ENTRY_HEADER_LEN: usize = 21;

/// Starts a batch's value in `out` (emptied): an entry count of 0.
pub fn begin_batch(out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&0u32.to_le_bytes());
}

/// Appends one entry to the batch `out` holds and counts it. An entry is a
/// single write (`op` put, delete or update), never a batch.
pub fn push_batch_entry(out: &mut Vec<u8>, spine: u32, op: StateOp, key: &[u8], value: &[u8]) {
    assert!(
        out.len() >= BATCH_HEADER_LEN && op != StateOp::Batch,
        "a batch entry outside a batch, or a batch inside one"
    );
    let (code, weight) = op_code(op);
    out.extend_from_slice(&spine.to_le_bytes());
    out.push(code);
    out.extend_from_slice(&weight.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let count = u32::from_le_bytes([out[0], out[1], out[2], out[3]]) + 1;
    out[..BATCH_HEADER_LEN].copy_from_slice(&count.to_le_bytes());
}

/// The entries of a batch's value, each as a record of epoch `epoch`, in
/// order. Check the whole batch with [`check_batch`] before applying any
/// of it: this iterator stops at the first damaged entry.
#[derive(Debug, Clone)]
pub struct BatchEntries<'a> {
    rest: &'a [u8],
    left: u32,
    epoch: u64,
}

impl<'a> Iterator for BatchEntries<'a> {
    type Item = ChangeRecord<'a>;

    fn next(&mut self) -> Option<ChangeRecord<'a>> {
        if self.left == 0 {
            return None;
        }
        let (rec, rest) = split_entry(self.rest, self.epoch).ok()?;
        self.rest = rest;
        self.left -= 1;
        Some(rec)
    }
}

/// The 17-byte header a change record and a batch entry share: spine, op
/// byte, weight, key length (`format/wal.md`, "Change records").
fn read_header(b: &[u8]) -> (u32, u8, i64, usize) {
    (le_u32(b, 0), b[4], le_u64(b, 5) as i64, le_u32(b, 13) as usize)
}

/// The first entry of `b` and what follows it, or what is wrong with it.
fn split_entry(b: &[u8], epoch: u64) -> std::result::Result<(ChangeRecord<'_>, &[u8]), String> {
    if b.len() < BATCH_ENTRY_HEADER_LEN {
        return Err(format!("an entry header in {} bytes", b.len()));
    }
    let (spine, op_byte, weight, key_len) = read_header(b);
    let op = op_of(op_byte, weight)
        .filter(|&op| op != StateOp::Batch)
        .ok_or_else(|| format!("entry op {op_byte} with weight {weight}"))?;
    let value_len = le_u32(b, 17) as usize;
    let body = &b[BATCH_ENTRY_HEADER_LEN..];
    if key_len.saturating_add(value_len) > body.len() {
        return Err(format!(
            "a {key_len}-byte key and {value_len}-byte value in {} bytes",
            body.len()
        ));
    }
    if op == StateOp::Delete && value_len != 0 {
        return Err(format!("a delete with a {value_len}-byte value"));
    }
    let (key, rest) = body.split_at(key_len);
    let (value, rest) = rest.split_at(value_len);
    Ok((
        ChangeRecord {
            spine,
            epoch,
            op,
            key,
            value,
        },
        rest,
    ))
}

/// Checks a batch's value whole (every entry well formed, the count right,
/// nothing after the last) and returns its entries. `path` and `at` name
/// where it came from, for the error.
pub fn check_batch<'a>(value: &'a [u8], epoch: u64, path: &Path, at: u64) -> Result<BatchEntries<'a>> {
    let bad = |what: String| Error::corrupt(path, at, "write batch", "a batch of change records", what);
    if value.len() < BATCH_HEADER_LEN {
        return Err(bad(format!("{} bytes", value.len())));
    }
    let count = le_u32(value, 0);
    let mut rest = &value[BATCH_HEADER_LEN..];
    for i in 0..count {
        rest = split_entry(rest, epoch)
            .map_err(|e| bad(format!("entry {i} of {count}: {e}")))?
            .1;
    }
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after entry {count}", rest.len())));
    }
    Ok(BatchEntries {
        rest: &value[BATCH_HEADER_LEN..],
        left: count,
        epoch,
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

    #[test]
    fn batches_round_trip_and_damage_is_refused() {
        let p = Path::new("/x.wal");
        let entries = [
            (1, StateOp::Put, &b"a"[..], &b"1"[..]),
            (2, StateOp::Update(-3), b"zz", b"v"),
            (1, StateOp::Delete, b"a", b""),
        ];
        let mut value = Vec::new();
        begin_batch(&mut value);
        for &(spine, op, key, v) in &entries {
            push_batch_entry(&mut value, spine, op, key, v);
        }
        let rec = ChangeRecord {
            spine: 0,
            epoch: 4,
            op: StateOp::Batch,
            key: b"",
            value: &value,
        };
        let mut payload = Vec::new();
        encode_change(&mut payload, &rec);
        let back = decode_change(&payload, 4, p, 0).unwrap();
        assert_eq!(back, rec);
        let got: Vec<_> = check_batch(back.value, 4, p, 0)
            .unwrap()
            .map(|r| (r.spine, r.op, r.key, r.value))
            .collect();
        assert_eq!(got, entries);
        // Every cut short of the whole, and anything after it, is damage.
        for cut in 0..value.len() {
            assert!(check_batch(&value[..cut], 4, p, 0).is_err(), "cut at {cut}");
        }
        let mut longer = value.clone();
        longer.push(0);
        assert!(check_batch(&longer, 4, p, 0).unwrap_err().is_corruption());
        // A batch inside a batch is not a thing.
        let mut nested = value.clone();
        nested[BATCH_HEADER_LEN + 4] = 4;
        nested[BATCH_HEADER_LEN + 5..BATCH_HEADER_LEN + 13].copy_from_slice(&0i64.to_le_bytes());
        assert!(check_batch(&nested, 4, p, 0).is_err());
    }
}
