//! The level arithmetic of the merge policy (see the `spine` module docs).

/// Level of a disk run of `bytes`: the smallest `L >= 1` with
/// `bytes <= base * fan_in^(L-1)`, where `base = 2 * fan_in * memtable`
/// (twice what merging `fan_in` full memtables produces, so such a merge
/// lands in level 1 even with per-entry overhead).
pub(crate) fn level_for_size(bytes: u64, memtable_bytes: usize, fan_in: usize) -> usize {
    let fan_in = fan_in as u64;
    let mut cap = 2 * fan_in * memtable_bytes as u64;
    let mut level = 1;
    while bytes > cap {
        cap = cap.saturating_mul(fan_in);
        level += 1;
    }
    level
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_fan_in_apart() {
        let mt = 1 << 20;
        assert_eq!(level_for_size(0, mt, 4), 1);
        assert_eq!(level_for_size(8 << 20, mt, 4), 1);
        assert_eq!(level_for_size((8 << 20) + 1, mt, 4), 2);
        assert_eq!(level_for_size(32 << 20, mt, 4), 2);
        assert_eq!(level_for_size(33 << 20, mt, 4), 3);
        assert!(
            level_for_size(u64::MAX, mt, 4) < 64,
            "saturates instead of looping"
        );
    }
}
