//! The checks behind owamp-rs's fuzz targets, one function per target.
//!
//! Each `fuzz_targets/<name>.rs` calls the function of the same name here. The functions need
//! no fuzzing runtime, so the replay tests (`tests/replay.rs`, and the workspace's smoke test)
//! run them on the committed seeds and regression inputs with a stable toolchain.
#![forbid(unsafe_code)]

pub mod checks;

pub use checks::*;
