//! The three adapters.

pub mod fjall;
#[cfg(feature = "rocksdb")]
pub mod rocks;
pub mod statespine;
