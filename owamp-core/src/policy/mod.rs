//! What an OWAMP server allows: modes, identities and their passphrases, and the resources a
//! test may use (the decisions owampd takes from its limits and pfs files).
//!
//! A [`Server`](crate::control::Server) asks its [`ServerPolicy`] at each step; the answers
//! decide the Accept codes it sends. [`AllowAll`] accepts everything in open mode; [`Limits`]
//! implements owampd-like classes with bandwidth and disk limits shared between connections.

mod limits;
mod per_addr;

use core::net::IpAddr;

use crate::crypto::Passphrase;
use crate::proto::Role;
use crate::wire::{AcceptCode, Mode, Modes, RequestSession, SessionId};

pub use limits::{ClassLimits, Limits};
pub use per_addr::{addr_key, OverLimit, PerAddr, SessionsPerAddr};

/// Who is on the other end of a control connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer<'a> {
    /// The client's address.
    pub addr: IpAddr,
    /// The mode in use (open until set-up completes).
    pub mode: Mode,
    /// The KeyID the client authenticated with (authenticated and encrypted modes).
    pub key_id: Option<&'a [u8]>,
}

/// A test session a client asks the server to take part in.
#[derive(Debug, Clone, Copy)]
pub struct TestAdmission<'a> {
    /// The client.
    pub peer: Peer<'a>,
    /// The session (for a server receiver, the SID it just made).
    pub sid: SessionId,
    /// Whether the server would send or receive.
    pub role: Role,
    /// The request.
    pub request: &'a RequestSession,
}

impl TestAdmission<'_> {
    /// Octets of one test packet on the wire, IP and UDP headers included, as the reference
    /// counts them against bandwidth limits: IPv4 20 or IPv6 40, UDP 8, payload 14 (open) or
    /// 48 (authenticated, encrypted), padding.
    pub fn packet_octets(&self) -> u64 {
        let ip = if self.request.ipvn() == 6 { 40 } else { 20 };
        let payload = if self.peer.mode.is_secure() { 48 } else { 14 };
        ip + 8 + payload + u64::from(self.request.padding_length)
    }

    /// Mean packets per second of the schedule: slots divided by the sum of their means.
    /// A TWAMP request has no schedule (RFC 5357 3.5): its rate is unknown and counts as 0, so
    /// only the classes' other limits apply to it.
    pub fn packet_rate(&self) -> f64 {
        if self.request.slots.is_empty() {
            return 0.0;
        }
        let sum: u128 = self
            .request
            .slots
            .iter()
            .map(|s| u128::from(s.mean.raw()))
            .sum();
        if sum == 0 {
            return f64::INFINITY;
        }
        let secs = sum as f64 / 4_294_967_296.0;
        self.request.slots.len() as f64 / secs
    }

    /// Mean bandwidth of the session in bits per second (RFC 4656 leaves policy to the server;
    /// this is the reference's estimate).
    pub fn bandwidth_bps(&self) -> f64 {
        self.packet_rate() * self.packet_octets() as f64 * 8.0
    }

    /// Octets of disk a receiver needs for the session file: the reference's estimate (file
    /// header, request, slots, and 25 octets per packet).
    pub fn disk_octets(&self) -> u64 {
        let slots = self.request.slots.len() as u64;
        56 + 112 + 16 * (slots + 1) + 25 * u64::from(self.request.num_packets)
    }
}

/// The decisions of an OWAMP server.
pub trait ServerPolicy {
    /// The modes offered in the Server-Greeting to a client at `addr` (0 closes at once).
    fn modes(&mut self, addr: IpAddr) -> Modes;

    /// The passphrase of a KeyID (the raw octets, no trailing newline), or `None` if unknown.
    /// The server drops it (and so wipes it) as soon as the Token is opened.
    fn passphrase(&mut self, key_id: &[u8]) -> Option<Passphrase>;

    /// Whether the control connection may proceed once set up; `Err` carries the Accept code
    /// for Server-Start.
    fn allow_control(&mut self, peer: Peer<'_>) -> Result<(), AcceptCode> {
        let _ = peer;
        Ok(())
    }

    /// Whether a test may run, reserving its resources if so; `Err` carries the Accept code
    /// for Accept-Session (the reference refuses over-limit requests with 1).
    fn admit_test(&mut self, test: &TestAdmission<'_>) -> Result<(), AcceptCode>;

    /// Releases what [`admit_test`](Self::admit_test) reserved for a session (the session
    /// is over, or it was not set up after all).
    fn release_test(&mut self, sid: &SessionId, role: Role) {
        let _ = (sid, role);
    }

    /// Whether a client may fetch a session's records; `Err` carries the Fetch-Ack Accept code.
    fn allow_fetch(&mut self, peer: Peer<'_>, sid: &SessionId) -> Result<(), AcceptCode> {
        let _ = (peer, sid);
        Ok(())
    }
}

/// Open mode only, every test admitted, no identities.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl ServerPolicy for AllowAll {
    fn modes(&mut self, _addr: IpAddr) -> Modes {
        Modes::OPEN
    }

    fn passphrase(&mut self, _key_id: &[u8]) -> Option<Passphrase> {
        None
    }

    fn admit_test(&mut self, _test: &TestAdmission<'_>) -> Result<(), AcceptCode> {
        Ok(())
    }
}

impl<P: ServerPolicy + ?Sized> ServerPolicy for &mut P {
    fn modes(&mut self, addr: IpAddr) -> Modes {
        (**self).modes(addr)
    }
    fn passphrase(&mut self, key_id: &[u8]) -> Option<Passphrase> {
        (**self).passphrase(key_id)
    }
    fn allow_control(&mut self, peer: Peer<'_>) -> Result<(), AcceptCode> {
        (**self).allow_control(peer)
    }
    fn admit_test(&mut self, test: &TestAdmission<'_>) -> Result<(), AcceptCode> {
        (**self).admit_test(test)
    }
    fn release_test(&mut self, sid: &SessionId, role: Role) {
        (**self).release_test(sid, role)
    }
    fn allow_fetch(&mut self, peer: Peer<'_>, sid: &SessionId) -> Result<(), AcceptCode> {
        (**self).allow_fetch(peer, sid)
    }
}
