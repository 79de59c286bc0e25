//! Command-line tools of owamp-rs, compatible with perfSONAR owamp's.
//!
//! Each tool's logic lives in a module here so that it can be tested; the binaries in
//! `src/bin/` only call it.

pub mod args;
pub mod client;
pub mod config;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod owampd;
pub mod owfetch;
pub mod owping;
pub mod owstats;
pub mod pfstore;
pub mod powstream;
pub mod prompt;
pub mod signals;
pub mod sys;
