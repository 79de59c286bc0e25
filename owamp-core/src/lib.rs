//! owamp-core: a sans-IO implementation of OWAMP, the One-Way Active Measurement Protocol
//! (RFC 4656).
//!
//! The crate never reads a clock, touches a socket or draws randomness on its own: the caller
//! passes the time and a random number generator in, and carries out the actions the state
//! machines return.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod connection;
pub mod control;
pub mod crypto;
pub mod io;
pub mod owp;
pub mod policy;
pub mod session;
pub mod stats;
pub mod time;
pub mod wire;

/// The `rand_core` the state machines take their RNG from (`RngCore + CryptoRng`): use this
/// re-export so that the versions match.
pub use rand_core;
