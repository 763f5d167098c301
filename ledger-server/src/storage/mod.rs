//! RocksDB storage of the state and the snapshot file format.

pub mod engine;
pub mod snapshot_file;
pub mod snapshot_handle;
pub mod state_store;
