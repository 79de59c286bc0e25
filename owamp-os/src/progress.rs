//! How far a connection's test sessions have come, for a progress display: packets sent by
//! each sending session, packets received and declared lost by each receiving one. Read from
//! the core's sessions; a snapshot, shared with the application through a [`ProgressWatch`].

use std::sync::{Arc, Mutex};

use owamp_core::connection::{Connection, Machine};
use owamp_core::control::Role;

/// One test session's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionProgress {
    /// Whether this end sends or receives the session's packets.
    pub role: Role,
    /// The session's packet count.
    pub packets: u32,
    /// Sender: packets sent. Receiver: distinct packets received.
    pub done: u64,
    /// Receiver: packets declared lost so far (always 0 for a sender).
    pub lost: u64,
}

/// The progress of every test session of `conn`'s current test.
pub fn of<M: Machine>(conn: &Connection<M>) -> Vec<SessionProgress> {
    conn.sessions()
        .map(|(_, s)| {
            let packets = s.info().request.num_packets;
            match s.receiver() {
                Some(r) => SessionProgress {
                    role: Role::Receiver,
                    packets,
                    done: r.stats().received,
                    lost: r.stats().lost,
                },
                None => SessionProgress {
                    role: Role::Sender,
                    packets,
                    done: s.counters().sent,
                    lost: 0,
                },
            }
        })
        .collect()
}

/// The latest snapshot of a connection's progress, written by the thread that runs the
/// connection and read by anyone holding a clone.
#[derive(Debug, Clone, Default)]
pub struct ProgressWatch(Arc<Mutex<Vec<SessionProgress>>>);

impl ProgressWatch {
    /// Replaces the snapshot.
    pub fn publish(&self, p: Vec<SessionProgress>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = p;
    }

    /// The latest snapshot (empty before a test starts).
    pub fn get(&self) -> Vec<SessionProgress> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
