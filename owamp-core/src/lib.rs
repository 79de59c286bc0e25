//! owamp-core: a sans-IO implementation of OWAMP, the One-Way Active Measurement Protocol
//! (RFC 4656).
//!
//! The crate never reads a clock, touches a socket or draws randomness on its own: the caller
//! passes the time and a random number generator in, and carries out the actions the state
//! machines return.
//!
//! # The contract
//!
//! A host drives one [`connection::ClientConnection`] or [`connection::ServerConnection`] per
//! control connection: it feeds in octets, datagrams and time (`handle_*`), sends the test
//! packets [`poll_transmit`](connection::Connection::poll_transmit) builds, carries out what
//! [`poll_output`](connection::Connection::poll_output) asks (control octets, test sockets to
//! open or close, received sessions to keep, events), and waits at most until
//! [`poll_timeout`](connection::Connection::poll_timeout). The connection owns the control
//! state machine and every test session; see [`connection`] for the whole contract and
//! `examples/std_sockets.rs` for a host over std sockets.
//!
//! Here a client and a server set up a connection in memory, the octets of each handed to the
//! other, with a fixed clock:
//!
//! ```
//! use owamp_core::connection::{
//!     ClientConnection, ClientEvent, ControlAction, Output, ServerConnection,
//! };
//! use owamp_core::control::{ClientConfig, ServerConfig};
//! use owamp_core::policy::AllowAll;
//! use owamp_core::time::OwampTime;
//! use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
//!
//! let now = OwampTime::from_parts(3_900_000_000, 0);
//! let (c_addr, s_addr) = ("127.0.0.1:40000".parse()?, "127.0.0.1:861".parse()?);
//! let rng = |seed| ChaCha20Rng::seed_from_u64(seed); // use the OS generator for real
//! let mut client = ClientConnection::client(now, ClientConfig::default(), rng(1));
//! let mut server =
//!     ServerConnection::server(now, ServerConfig::default(), AllowAll, rng(2), s_addr, c_addr);
//! let mut connected = None;
//! for _ in 0..4 {
//!     while let Some(o) = server.poll_output() {
//!         if let Output::Control(ControlAction::Transmit(octets)) = o {
//!             client.handle_control(now, &octets);
//!         }
//!     }
//!     while let Some(o) = client.poll_output() {
//!         match o {
//!             Output::Control(ControlAction::Transmit(octets)) => {
//!                 server.handle_control(now, &octets)
//!             }
//!             Output::Event(ClientEvent::Connected { mode, .. }) => connected = Some(mode),
//!             _ => {}
//!         }
//!     }
//! }
//! assert_eq!(connected, Some(owamp_core::wire::Mode::Open));
//! assert!(client.is_ready()); // the client takes its first Request-Session now
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod connection;
pub mod control;
pub mod crypto;
pub mod io;
pub mod owp;
pub mod policy;
pub mod proto;
pub mod session;
pub mod stats;
pub mod time;
pub mod wire;

/// The `rand_core` the state machines take their RNG from (`RngCore + CryptoRng`): use this
/// re-export so that the versions match.
pub use rand_core;
