//! Control-protocol replay: the extension point for checking an implementation's control
//! state machines against a recorded trace.
//!
//! A replay feeds the server state machine the client's bytes from a trace (and the client
//! state machine the server's bytes) and checks that what each machine sends is byte-identical
//! to what the other side of the trace received. Everything a machine would otherwise draw at
//! random or read from a clock comes from the trace instead:
//!
//! | input | where it is in the trace |
//! |---|---|
//! | server: Challenge, Salt, Count, Modes | Server-Greeting (S>C octets 12..52) |
//! | server: Server-IV | Server-Start (S>C octets 80..96) |
//! | server: Start-Time | Server-Start Start-Time (clear in open mode; decrypted in A/E) |
//! | server: SIDs, test ports | Accept-Session messages |
//! | client: Client-IV, session keys | Set-Up-Response (Client-IV clear; keys inside the Token, recovered with the passphrase) |
//! | client: test ports, SIDs, start times | Request-Session messages |
//! | both: passphrase | the `passphrase-hex` header |
//!
//! The replay vectors are built by [`vectors`], which [`crate::vectors::builtin`] already
//! includes, and by [`replay_trace`], which the trace vectors call for each trace. Until the
//! control state machines exist there are no replay vectors, and [`replay_trace`] says so: a
//! trace vector never reports a replay it did not run.

use crate::runner::Vector;
use crate::trace::{Direction, Trace};

/// What a replay of one trace found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// Octets each machine produced that matched the trace: (C>S, S>C).
    pub matched: (usize, usize),
}

/// Why a replay failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// A machine sent something other than what the trace holds.
    #[error(
        "{dir}: replay differs from the trace at stream offset {offset} (message {message}): {why}"
    )]
    Mismatch {
        /// Whose output differs.
        dir: Direction,
        /// First differing stream offset.
        offset: usize,
        /// 1-based message index in that direction.
        message: usize,
        /// What differs.
        why: String,
    },
    /// The trace lacks something the replay needs (for example the passphrase in A/E mode).
    #[error("cannot replay: {0}")]
    Unusable(String),
}

/// Replays `trace` through the server and client control machines.
///
/// Returns `None` while this build has no control state machines to replay against (the
/// caller then reports nothing about replay), `Some(Ok(_))` when both machines reproduced the
/// trace byte for byte, `Some(Err(_))` otherwise.
///
/// Planned implementation, once the machines exist:
/// 1. derive the inputs in the table above from `trace` (decrypting the Token and the
///    Server-Start tail with the passphrase in A/E mode);
/// 2. build the server machine with a fixed RNG yielding Challenge, Salt, Server-IV and SID
///    randomness, and a clock yielding Start-Time; feed it the C>S segments in trace order and
///    compare every output with the S>C stream;
/// 3. build the client machine likewise (Client-IV, session keys, SIDs from the trace), feed it
///    the S>C segments and compare every output with the C>S stream.
pub fn replay_trace(trace: &Trace) -> Option<Result<ReplayOutcome, ReplayError>> {
    let _ = trace;
    None
}

/// Built-in replay vectors (none until the control state machines exist).
pub fn vectors() -> Vec<Vector> {
    Vec::new()
}
