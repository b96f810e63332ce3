//! The inputs of the golden WAL segments (`format/golden/wal-v1/`), shared by
//! their generator and `tests/wal_golden.rs`.

use statespine::changelog::{ChangeRecord, StateOp};
use statespine::wal::encode_change;
use statespine::wal::format::{SegmentHeader, encode_frame};

/// A fixed segment id, so the golden bytes are reproducible.
pub const SEGMENT_ID: u64 = 0x5EED_0F60_1DE5_0001;
/// Shard of the golden log.
pub const SHARD_ID: u32 = 3;
/// The one segment's file name (first LSN 1).
pub const SEGMENT_NAME: &str = "00000000000000000001.wal";

/// The records of the good segment: (epoch, change).
pub fn records() -> Vec<(u64, ChangeRecord<'static>)> {
    vec![
        (
            1,
            ChangeRecord {
                spine: 0,
                epoch: 1,
                op: StateOp::Put,
                key: b"apple",
                value: b"red",
            },
        ),
        (
            1,
            ChangeRecord {
                spine: 0,
                epoch: 1,
                op: StateOp::Delete,
                key: b"banana",
                value: b"",
            },
        ),
        (
            2,
            ChangeRecord {
                spine: 1,
                epoch: 2,
                op: StateOp::Update(3),
                key: b"k",
                value: b"v1",
            },
        ),
        (
            2,
            ChangeRecord {
                spine: 1,
                epoch: 2,
                op: StateOp::Update(-1),
                key: b"k",
                value: b"v2",
            },
        ),
        (
            3,
            ChangeRecord {
                spine: 0,
                epoch: 3,
                op: StateOp::Put,
                key: b"",
                value: &[0xff; 40],
            },
        ),
    ]
}

/// The bytes of the good segment.
pub fn good() -> Vec<u8> {
    let header = SegmentHeader {
        shard_id: SHARD_ID,
        segment_id: SEGMENT_ID,
        first_lsn: 1,
    };
    let mut out = header.encode().to_vec();
    let mut payload = Vec::new();
    for (i, (epoch, rec)) in records().iter().enumerate() {
        payload.clear();
        encode_change(&mut payload, rec);
        encode_frame(&mut out, SEGMENT_ID, i as u64 + 1, *epoch, &payload);
    }
    out
}

/// Offset of the third record's frame in the good segment.
pub fn third_record_offset() -> usize {
    let mut at = 64;
    for (_, rec) in records().iter().take(2) {
        let mut payload = Vec::new();
        encode_change(&mut payload, rec);
        at += 24 + payload.len();
    }
    at
}

/// The torn twin: the good segment plus the first 30 bytes of a sixth record.
pub fn torn() -> Vec<u8> {
    let mut out = good();
    let mut frame = Vec::new();
    encode_frame(&mut frame, SEGMENT_ID, 6, 4, b"a record cut short by a crash");
    out.extend_from_slice(&frame[..30]);
    out
}

/// The damaged twin: bit 0 of the third record's first payload byte flipped.
pub fn corrupt() -> Vec<u8> {
    let mut out = good();
    out[third_record_offset() + 24] ^= 1;
    out
}
