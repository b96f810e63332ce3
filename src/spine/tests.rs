use super::*;
use crate::io::MemFs;

fn kv(memtable: usize) -> Spine {
    let opts = SpineOptions::new(RunMode::KeyValue)
        .memtable_size_bytes(memtable)
        .memory_budget_bytes(memtable * 4);
    Spine::create(Arc::new(MemFs::new()), "/s", opts).unwrap()
}

#[test]
fn writes_spill_to_runs_and_merge_down() {
    let mut s = kv(64 << 10);
    for i in 0..20_000u32 {
        s.put(&i.to_be_bytes(), &[i as u8; 40]).unwrap();
    }
    s.settle().unwrap();
    assert!(s.disk_size_bytes() > 0);
    assert!(s.stats().merges > 0);
    for i in (0..20_000u32).step_by(97) {
        assert_eq!(s.get(&i.to_be_bytes()).unwrap(), Some(&[i as u8; 40][..]));
    }
    let n = s.cursor().unwrap().count();
    assert_eq!(n, 20_000);
}
