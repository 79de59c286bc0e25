//! OWAMP over TCP and UDP: the client (owping's side) and the server (owampd's side), each
//! driving one core connection ([`owamp_core::connection`]) and all its test sessions on the
//! calling thread with one `poll(2)` loop.
//!
//! - Client: [`run_test`] does a whole measurement (connect, set up, request the sessions,
//!   start, wait, stop, fetch the records the server received, close);
//!   [`ClientConnection`] offers the same steps one by one. Its records can go to files as
//!   they come, so that memory does not grow with a session's length: fetched ones with
//!   [`ClientConnection::fetch_to`], received ones with [`ClientOptions::receive_dir`]
//!   (reported in [`TestEnd::saved`] as [`SavedSession`]s).
//! - TWAMP client (RFC 5357; [`Protocol::Twamp`] in [`ClientOptions::control`]): the same
//!   [`ClientConnection`], requesting sessions in which it is the session-sender
//!   ([`Role::Sender`]); [`ClientConnection::wait_two_way`] hands over the reflector's replies
//!   as they come and returns each session's end ([`TwoWaySessionEnd`]: packets sent, those
//!   no reply answered). There is nothing to fetch.
//!
//! [`Protocol::Twamp`]: owamp_core::control::Protocol::Twamp
//! [`Role::Sender`]: owamp_core::control::Role::Sender
//! - Server: [`serve_connection`] serves one accepted connection; [`Server`] is the accept
//!   loop (a thread per connection, a cap on concurrent connections, graceful shutdown).
//!   Received sessions go to a [`SessionStore`] ([`MemoryStore`], or [`DirectoryStore`] which
//!   writes perfSONAR-compatible `.owp` files), which also answers Fetch-Session.
//!
//! [`SessionStore`]: owamp_os::store::SessionStore
//! [`MemoryStore`]: owamp_os::store::MemoryStore
//! [`DirectoryStore`]: owamp_os::store::DirectoryStore
//!
//! Every wait is bounded: reads wait at most until the connection's timeout or the poll
//! interval, writes at most the I/O timeout, and the state machine always has a
//! deadline, so a peer that stops talking is dropped when the core's timer fires.

mod client;
mod driver;
mod server;

pub use client::{run_test, ClientConnection};
pub use owamp_os::client_records::SavedSession;
pub use owamp_os::host::SentPacket;
pub use owamp_os::host::{
    fetched_to_stored, ClientError, ClientOptions, ConnectionLog, ConnectionSummary,
    DirectionResult, HostWarning, ServeConfig, SessionSpec, StopHandle, TestEnd, TestPlan,
    TestResults, TwoWaySessionEnd, TwoWayTestEnd, WarningLog,
};
pub use server::{serve_connection, RunningServer, Server, ServerHandle};
