//! OWAMP-Control over TCP (RFC 4656 3): the client (owping's side) and the server (owampd's
//! side), each driving the core's state machine for one connection on the calling thread, with
//! the test sessions on their own threads ([`crate::endpoint`]).
//!
//! - Client: [`run_test`] does a whole measurement (connect, set up, request the sessions,
//!   start, wait, stop, fetch the records the server received, close);
//!   [`ClientConnection`] offers the same steps one by one.
//! - Server: [`serve_connection`] serves one accepted connection; [`Server`] is the accept
//!   loop (a thread per connection, a cap on concurrent connections, graceful shutdown).
//!   Received sessions go to a [`SessionStore`] ([`MemoryStore`], or [`DirectoryStore`] which
//!   writes perfSONAR-compatible `.owp` files), which also answers Fetch-Session.
//!
//! [`SessionStore`]: owamp_os::store::SessionStore
//! [`MemoryStore`]: owamp_os::store::MemoryStore
//! [`DirectoryStore`]: owamp_os::store::DirectoryStore
//!
//! Every wait is bounded: reads wait at most until the state machine's deadline or the
//! endpoint poll interval, writes at most the I/O timeout, and the state machine always has a
//! deadline, so a peer that stops talking is dropped when the core's timer fires.

mod client;
pub mod common;
mod driver;
mod server;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use client::{
    bind_test_socket, fetched_to_stored, run_test, ClientConnection, ClientError, ClientOptions,
    DirectionResult, SessionSpec, TestEnd, TestPlan, TestResults,
};
pub use common::Machine;
pub use server::{
    serve_connection, ConnectionSummary, RunningServer, ServeConfig, Server, ServerHandle,
};

/// A flag that asks a test (client) or a server to stop early; clones share the flag.
///
/// Setting it is a single atomic store, so it may be done from a signal handler's context
/// (for example through a handle kept in a static).
///
/// - Client ([`ClientConnection::wait`], [`run_test`]): during the test, the local sessions
///   are stopped and Stop-Sessions is exchanged ([`Input::StopSessions`]); the records
///   received so far are kept and the server's are still fetched.
/// - Server ([`Server`], [`serve_connection`]): no new connection is accepted; connections
///   in a test stop it the same way, the others are closed.
///
/// [`Input::StopSessions`]: owamp_core::io::Input::StopSessions
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// A flag not yet set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
