//! owamp-os: what OWAMP (RFC 4656) needs from the operating system, for any runtime.
//!
//! The sans-IO owamp-core makes every protocol decision and touches no OS resource. This crate
//! holds the pieces that do, without threads or an async runtime, so that the blocking adapter
//! (owamp-std) and the async one (owamp-tokio) share them:
//!
//! - [`clock`]: the system clock as OWAMP timestamps, and its kernel error estimate.
//! - [`net`]: UDP test sockets with DSCP, kernel receive timestamps and TTL delivery; socket
//!   set-up, `recvmsg` and control-message parsing usable with any readiness mechanism.
//! - [`rng`]: the operating system's random generator for the control state machines.
//! - [`store`]: where a server keeps the sessions it received ([`store::SessionStore`]), in
//!   memory or as perfSONAR-compatible `.owp` files, which [`owp_file`] writes atomically.
//! - [`hierarchy`]: perfSONAR owampd's layout of a server's sessions: a directory per limits
//!   class, a catalog of links by SID, rebuilt at start-up.
//! - [`host`]: a core connection hosted with its test sockets, for either adapter's loop.
//! - [`client_records`]: where a client's fetched and received records go, in memory or
//!   into `.owp` files as they come.
//! - [`timing`]: sending on time cheaply: a spin window learnt from observed wake-ups, the
//!   thread's timer slack, a nanosecond timer descriptor for runtimes with a coarse timer.
//!
//! # Reading the clock
//!
//! ```
//! use owamp_os::clock::{Clock, SystemClock};
//!
//! let clock = SystemClock::new();
//! let now = clock.now(); // an OwampTime
//! let estimate = clock.error_estimate(); // S bit clear unless the kernel says synchronized
//! assert!(estimate.is_valid());
//! # let _ = now;
//! ```
#![warn(missing_docs)]

pub mod client_records;
pub mod clock;
pub mod hierarchy;
pub mod host;
pub mod net;
pub mod owp_file;
pub mod progress;
pub mod rng;
pub mod store;
pub mod timing;

#[cfg(test)]
mod test_support;
