//! owamp-std: runs OWAMP (RFC 4656) with blocking std sockets and threads on top of the
//! sans-IO owamp-core.
//!
//! - [`clock`]: the system clock as OWAMP timestamps and its kernel error estimate.
//! - [`net`]: UDP test sockets with DSCP, kernel receive timestamps and TTL delivery.
//! - [`rng`]: the operating system's random generator for the control state machines.
//! - [`endpoint`]: one test session's sender or receiver on its own thread.
//! - [`control`]: a control connection's driver, the client (owping) and the server (owampd).
//!
//! The adapter makes no protocol decision: every Output of the core's state machines is
//! carried out as `owamp_core::io` describes.
#![warn(missing_docs)]

pub mod clock;
pub mod control;
pub mod endpoint;
pub mod net;
pub mod rng;
