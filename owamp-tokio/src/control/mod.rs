//! OWAMP over TCP and UDP on Tokio: the client (owping's side) and the server (owampd's
//! side), each driving one core connection ([`owamp_core::connection`]) and all its test
//! sessions on one task with one `tokio::select!` loop.
//!
//! The shapes are those of `owamp_std::control`, with `async` methods; the configuration
//! and result types are owamp-os's ([`ClientOptions`], [`TestPlan`], [`SessionSpec`],
//! [`TestResults`], [`ServeConfig`], [`ConnectionSummary`]), shared with the blocking
//! adapter. The stop signal is a [`StopToken`](crate::StopToken), which tasks can await.
//!
//! - Client: [`run_test`] does a whole measurement (connect, set up, request the sessions,
//!   start, wait, stop, fetch the records the server received, close);
//!   [`ClientConnection`] offers the same steps one by one. Its records can go to files as
//!   they come, so that memory does not grow with a session's length: fetched ones with
//!   [`ClientConnection::fetch_to`], received ones with [`ClientOptions::receive_dir`]
//!   (reported in [`TestEnd::saved`] as [`SavedSession`]s).
//! - Server: [`serve_connection`] serves one accepted connection; [`Server`] is the accept
//!   loop (a task per connection, a cap on concurrent connections, graceful shutdown).
//!   Received sessions go to a [`SessionStore`] ([`MemoryStore`], or [`DirectoryStore`] which
//!   writes perfSONAR-compatible `.owp` files), which also answers Fetch-Session.
//!
//! [`SessionStore`]: owamp_os::store::SessionStore
//! [`MemoryStore`]: owamp_os::store::MemoryStore
//! [`DirectoryStore`]: owamp_os::store::DirectoryStore
//!
//! Every wait is bounded: a connection waits at most until its state machine's deadline (it
//! always has one) or the poll interval, writes at most [`ClientOptions::io_timeout`] /
//! [`ServeConfig::io_timeout`], connects at most [`ClientOptions::connect_timeout`].

mod client;
mod driver;
mod server;

pub use client::{run_test, ClientConnection};
pub use owamp_os::client_records::SavedSession;
pub use owamp_os::host::{
    fetched_to_stored, ClientError, ClientOptions, ConnectionLog, ConnectionSummary,
    DirectionResult, EndpointConfig, HostWarning, ServeConfig, SessionSpec, TestEnd, TestPlan,
    TestResults, WarningLog,
};
pub use server::{serve_connection, RunningServer, Server, ServerHandle};
