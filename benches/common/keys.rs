//! The workload keys shared by the spine benchmark and its table:
//! 16-byte pseudo-random keys, a pure function of their index, so reads can
//! name a present key (`key(i)`, `i < n`) or an absent one (`key(n + i)`).

/// splitmix64's finalizer: a bijection that scatters consecutive inputs.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The `i`-th key.
pub fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&mix(i).to_be_bytes());
    k[8..].copy_from_slice(&mix(i ^ 0x5555).to_be_bytes());
    k
}
