//! Command-line tools of owamp-rs, compatible with perfSONAR owamp's.
//!
//! Each tool's logic lives in a module here so that it can be tested; the binaries in
//! `src/bin/` only call it.

pub mod config;
pub mod owstats;
pub mod sys;
