//! Command-line tools of owamp-rs, compatible with perfSONAR owamp's.
//!
//! Each tool's logic lives in a module here so that it can be tested; the binaries in
//! `src/bin/` only call it.

pub mod args;
pub mod client;
pub mod config;
pub mod daemon;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod logging;
pub mod man;
pub mod metrics;
pub mod owampd;
pub mod owfetch;
pub mod owping;
pub mod owstats;
pub mod owup;
pub mod pfstore;
pub mod plot;
pub mod powstream;
pub mod progress;
pub mod prompt;
pub mod signals;
pub mod stamp;
pub mod sys;
pub mod twampd;
pub mod twping;
