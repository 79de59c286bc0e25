//! OWAMP-Control over Tokio TCP streams (RFC 4656 3): the client (owping's side) and the
//! server (owampd's side), each driving the core's state machine for one connection on a
//! task, with the test sessions on their own tasks ([`crate::endpoint`]).
//!
//! The shapes are those of `owamp_std::control`, with `async` methods; the configuration
//! and result types are owamp-std's ([`ClientOptions`], [`TestPlan`], [`SessionSpec`],
//! [`TestResults`], [`ServeConfig`], [`ConnectionSummary`]). The session stores are
//! owamp-os's ([`MemoryStore`], [`DirectoryStore`]).
//!
//! [`MemoryStore`]: owamp_os::store::MemoryStore
//! [`DirectoryStore`]: owamp_os::store::DirectoryStore
//!
//! - Client: [`run_test`] does a whole measurement; [`ClientConnection`] offers the same
//!   steps one by one.
//! - Server: [`serve_connection`] serves one accepted connection; [`Server`] is the accept
//!   loop (a task per connection, a cap on concurrent connections, graceful shutdown).
//!
//! Every wait is bounded: each wait of a connection ends at the state machine's deadline (it
//! always has one), writes wait at most [`ClientOptions::io_timeout`] /
//! [`ServeConfig::io_timeout`], connects at most [`ClientOptions::connect_timeout`].

mod client;
mod driver;
mod server;

pub use client::{run_test, ClientConnection};
pub use server::{serve_connection, RunningServer, Server, ServerHandle};

pub use owamp_std::control::{
    fetched_to_stored, ClientError, ClientOptions, ConnectionSummary, DirectionResult, ServeConfig,
    SessionSpec, TestEnd, TestPlan, TestResults,
};
