//! OWAMP-Control (RFC 4656 section 3): the client and server as sans-IO state machines.
//!
//! [`Server`] and [`Client`] are driven the same way (see [`crate::io`] for the contract):
//! `handle_input(now, input)` with the current time and one [`Input`](crate::io::Input)
//! (octets received, the timer firing, the peer closing, or a decision of the application),
//! then `poll_output()` until it returns `None`. Neither reads a clock, touches a socket or
//! draws randomness except from the RNG it was built with, so the same inputs, times and RNG
//! produce the same octets.
//!
//! # What each side does
//!
//! - Set-up (RFC 4656 3.1): the server sends Server-Greeting at once (modes from its
//!   [`ServerPolicy`](crate::policy::ServerPolicy), random Challenge and Salt, the configured
//!   PBKDF2 count); the client picks the strongest mode both allow (encrypted, then
//!   authenticated, then open; authenticated and encrypted only with an identity) or closes with
//!   [`CloseReason::NoCommonMode`]. In authenticated and encrypted modes the server looks the
//!   passphrase up by KeyID through its policy; a wrong passphrase, an unknown KeyID or a mode it
//!   did not offer is answered with Server-Start Accept = 1 whose Server-IV, Start-Time and MBZ
//!   are zero, then the connection is closed, as the reference implementation does.
//! - Request-Session / Accept-Session (RFC 4656 3.4, 3.5) in both directions. When the server
//!   receives, it builds the SID (receiver address, time, 4 random octets), picks a test port in
//!   its range (one random draw, then upwards, wrapping) and asks the application to bind it.
//!   When the client receives, the client builds the SID. The server's policy may refuse a request
//!   with any Accept code.
//! - Start-Sessions / Start-Ack (3.6), then the test: each side sends Stop-Sessions (3.8) once
//!   its local sessions are over (senders wait `end_delay` after their last packet), or answers
//!   the peer's Stop-Sessions after stopping its own sessions; both sides always send it, as the
//!   reference does. During the test the deadline is a generous bound on the schedule's end
//!   (see [`session_end_bound`]); after it the local sessions are stopped.
//! - Fetch-Session / Fetch-Ack (3.9): the server gets the stored records from the application
//!   ([`Output::FetchRequest`](crate::io::Output::FetchRequest)) and sends the ones asked for,
//!   including partial sessions, whole or as the application feeds them. The client reads the
//!   answer whole, or record by record ([`Client::with_streamed_fetch`]): each block is
//!   decrypted and added to the HMAC as it arrives, and the records are handed out in batches
//!   before the HMAC after the last one is checked.
//! - A connection with nothing to wait for but the peer is closed after `control_timeout`.
//!
//! # TWAMP (RFC 5357)
//!
//! With [`Protocol::Twamp`] in [`ServerConfig::protocol`] and [`ClientConfig::protocol`] the
//! same machines speak TWAMP-Control: the set-up, Accept-Session, Start-Sessions and Start-Ack
//! are OWAMP's octets; the client sends Request-TW-Session (command 5, one HMAC, no slots) for a
//! [`SessionRequest`] whose role is [`Role::Sender`] (its slots and packet count stay local and
//! bound the test's deadlines); the server is the session-reflector: it makes the SID, picks a
//! port from its range ([`Output::PrepareTestEndpoint`] with [`Role::Receiver`]) and answers
//! Accept-Session with it. The client ends the test: once its sender has reported
//! ([`Input::SessionFinished`]) and the loss timeout plus `end_delay` has passed, it sends the
//! only Stop-Sessions (32 octets, the number of sessions, no descriptions) and reports
//! [`Output::TestComplete`]; the server answers nothing, asks for
//! [`Output::StopLocalSessions`] (a reflector host keeps answering for the request's Timeout,
//! RFC 5357 3.8) and reports `TestComplete`. There is no Fetch-Session: a TWAMP server closes
//! on it (and on OWAMP's Request-Session), a TWAMP client refuses the command. The session's
//! packets are [`crate::session::twamp`]'s.
//!
//! RFC 5618 mixed mode (Modes bit 8, [`crate::wire::twamp::MIXED_MODE_BIT`]): the server
//! offers it when its policy's modes have the bit (as twampd does); a TWAMP client with an
//! identity chooses it when its [`ClientConfig::modes`] have the bit and the server offers no
//! stronger mode (encrypted, then authenticated, then mixed, then open). Set-Up-Response then
//! says 8 and carries the KeyID, Token and Client-IV; the control connection is encrypted and
//! HMAC-protected exactly as in authenticated mode, and `mode()` of both machines says
//! [`Mode::Authenticated`] (so does the policy's [`Peer`](crate::policy::Peer)), while
//! `is_mixed()` is true and [`SessionInfo::mode`](crate::io::SessionInfo::mode), like
//! `packet_mode()`, is [`Mode::Open`]: the test packets have the open layout, unprotected.
//!
//! [`crate::connection`] drives both roles of TWAMP with their test sessions (the usual way
//! for a host); what follows is what it does, for a host that drives the machines alone.
//! A twping-like host: connect, drive a [`Client`] until [`Client::is_ready`], bind a UDP socket
//! (TTL 255, as twping, so that the reflector's Sender TTL counts hops), issue
//! `RequestSession`, build a [`SessionSender`](crate::session::twamp::SessionSender) from the
//! [`SessionInfo`](crate::io::SessionInfo) of `SessionAccepted`, `StartSessions`, send on its own
//! schedule to `SessionInfo::peer`, read replies into
//! [`TwoWayRecord`](crate::session::twamp::TwoWayRecord)s, report `SessionFinished` after the
//! last packet, feed timers until `TestComplete`, and summarize with
//! [`TwoWaySummary`](crate::stats::twamp::TwoWaySummary). A twampd-like host: one [`Server`] per
//! connection, bind what `PrepareTestEndpoint` asks for, build a
//! [`Reflector`](crate::session::twamp::Reflector) on `SessionAccepted`, answer every datagram
//! from `SessionInfo::peer` once `StartSessions` came, stop after `StopLocalSessions` plus the
//! Timeout. `owamp-core/tests/twamp_live.rs` is such a client against the reference twampd;
//! `tests/twamp_sim.rs` runs both sides in memory, `tests/twamp_connection.rs` both
//! connections.
//!
//! [`Output::PrepareTestEndpoint`]: crate::io::Output::PrepareTestEndpoint
//! [`Output::TestComplete`]: crate::io::Output::TestComplete
//! [`Output::StopLocalSessions`]: crate::io::Output::StopLocalSessions
//! [`Input::SessionFinished`]: crate::io::Input::SessionFinished
//!
//! # Encryption and HMAC
//!
//! As observed in perfSONAR owamp 5.2.3 (see [`crate::crypto`]): the HMAC of each message covers
//! the plaintext before its HMAC field and restarts after it; Request-Session has two HMACs;
//! the first Accept-Session's HMAC also covers the last block of Server-Start, the only
//! encrypted block of that message.
//!
//! # Replaying recorded traffic
//!
//! Everything random or time-dependent comes from the constructor arguments and the `now` of
//! each input, so a recorded exchange can be replayed from the values in a trace. The module
//! `replay` (cargo feature `replay`, off by default) does this:
//! `replay::Recorded::from_plaintext` reads them from the plaintext streams (a `.trace` in
//! open mode, the decrypted `.plain.trace` otherwise):
//!
//! - Server: build it with `replay::Recorded::server_rng`, which returns, in this order, the
//!   Challenge (16) and Salt (16) of the Server-Greeting, then in authenticated and encrypted
//!   modes the Server-IV (16), then for each Request-Session: when the server receives, the
//!   4 random octets of the SID (its last 4 octets), and when a test port range is configured,
//!   the 4-octet draw that selects the port (`replay::port_draw`). Set
//!   [`ServerConfig::start_time`] to the Start-Time of Server-Start and the Count of the
//!   greeting as [`ServerConfig::kdf_count`]; feed the client's octets (any split), stamping the
//!   input that completes each Request-Session in which the server receives with its
//!   `replay::RecordedRequest::request_time` (the SID's timestamp). Answer
//!   [`Output::PrepareTestEndpoint`] with the port asked for, report the local sessions as
//!   finished, and answer [`Output::FetchRequest`] with the records the trace shows.
//! - Client: build it with `replay::Recorded::client_rng`: in authenticated and encrypted
//!   modes the AES session key (16), the HMAC session key (32) (from the `.plain.trace` header,
//!   or `replay::Recorded::client_keys` with the passphrase) and the Client-IV (16), then for
//!   each session in which the client receives the 4 random octets of the SID. Issue each
//!   [`ClientCommand`] when [`Client::is_ready`], the Request-Sessions with the recorded start
//!   time, timeout, ports and slots, and those in which the client receives with `now` equal
//!   to the SID's timestamp. Feed the server's octets as recorded.
//!
//! `owamp-core/tests/control_replay.rs` does exactly this for the reference traces; both sides
//! reproduce the recorded octets exactly.
//!
//! [`Output::PrepareTestEndpoint`]: crate::io::Output::PrepareTestEndpoint
//! [`Output::FetchRequest`]: crate::io::Output::FetchRequest

pub mod client;
mod codec;
mod common;
mod framing;
#[cfg(feature = "replay")]
pub mod replay;
pub mod server;

use core::net::IpAddr;
use core::time::Duration;

pub use client::{Client, ClientConfig, Identity};
pub use server::{Server, ServerConfig, SetupRefusal, SetupRefused};

// What the state machines share with the layers below them (`proto`, `session`, `wire`),
// re-exported here, where the machines' users have always found it.
pub use crate::proto::{
    canonical, ClientCommand, CloseReason, Protocol, ProtocolError, Role, SessionRequest,
};
pub use crate::session::session_end_bound;
pub use crate::wire::{AcceptCode, Mode, Modes, RequestSession};

use crate::time::{Interval, OwampTime};
use crate::wire::SessionId;

/// Misuse of a state machine by the application (never caused by the peer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The input is not valid in the current state, e.g. "Start-Sessions is not valid while
    /// waiting for Accept-Session".
    #[error("{input} is not valid while {state}")]
    WrongState {
        /// The input or command refused.
        input: &'static str,
        /// What the state machine was doing.
        state: &'static str,
    },
    /// The input does not belong to this role.
    #[error("{0} is not valid for this role")]
    WrongRole(&'static str),
    /// A request's parameters are unusable.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The session named does not exist on this connection.
    #[error("unknown session")]
    UnknownSession,
}

/// An inclusive UDP port range for test sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// Lowest port.
    pub low: u16,
    /// Highest port (at least `low`).
    pub high: u16,
}

impl PortRange {
    /// Number of ports in the range.
    pub fn len(&self) -> u32 {
        u32::from(self.high.saturating_sub(self.low)) + 1
    }

    /// Always false: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The port a 32-bit random draw selects: uniform over the range.
    pub fn pick(&self, draw: u32) -> u16 {
        let off = (u64::from(draw) * u64::from(self.len())) >> 32;
        // off < len <= 65536 and low + off <= high, so this fits.
        self.low.saturating_add(off as u16)
    }

    /// The port after `port`, wrapping to `low` past `high`.
    pub fn next(&self, port: u16) -> u16 {
        if port >= self.high || port < self.low {
            self.low
        } else {
            port + 1
        }
    }
}

/// `t + d`, saturating; `d` is truncated to 2^-32 s (see [`Interval`]), as deadlines always
/// were.
pub(crate) fn deadline_after(t: OwampTime, d: Duration) -> OwampTime {
    t.saturating_add_interval(Interval::from_duration_truncated(d))
}

/// The 4 octets of an address that go into a SID (RFC 4656 3.5): an IPv4 address, or the last
/// 4 octets of an IPv6 address.
pub(crate) fn sid_addr_octets(addr: IpAddr) -> [u8; 4] {
    match addr {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => v4.octets(),
            None => {
                let o = a.octets();
                [o[12], o[13], o[14], o[15]]
            }
        },
    }
}

/// Builds a SID (RFC 4656 3.5): receiver address (4), timestamp (8), random (4).
pub(crate) fn make_sid(receiver: IpAddr, now: OwampTime, random: [u8; 4]) -> SessionId {
    let mut sid = [0u8; 16];
    sid[..4].copy_from_slice(&sid_addr_octets(receiver));
    sid[4..12].copy_from_slice(&now.raw().to_be_bytes());
    sid[12..].copy_from_slice(&random);
    SessionId(sid)
}

/// An unspecified address is replaced by `fallback` (addresses of the control connection stand
/// in for zero addresses in a request).
pub(crate) fn or_fallback(addr: IpAddr, fallback: IpAddr) -> IpAddr {
    if addr.is_unspecified() {
        fallback
    } else {
        addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    #[test]
    fn wrong_state_names_input_and_state() {
        use rand_chacha::rand_core::SeedableRng;
        let rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let mut c = Client::new(OwampTime::ZERO, ClientConfig::default(), rng);
        let cmd = crate::io::Input::Command(ClientCommand::StartSessions);
        let e = c.handle_input(OwampTime::ZERO, cmd).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Start-Sessions is not valid while waiting for the Server-Greeting"
        );
    }

    #[test]
    fn port_pick_covers_range() {
        let r = PortRange {
            low: 8760,
            high: 8960,
        };
        assert_eq!(r.pick(0), 8760);
        assert_eq!(r.pick(u32::MAX), 8960);
        assert_eq!(r.next(8960), 8760);
        assert_eq!(r.next(8800), 8801);
        let one = PortRange { low: 5, high: 5 };
        assert_eq!(one.pick(u32::MAX), 5);
    }

    #[test]
    fn sid_layout() {
        let sid = make_sid(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            OwampTime::from_raw(0xeeb2_5d6e_f642_17d2),
            [0xe7, 0xf3, 0xe7, 0x51],
        );
        assert_eq!(
            sid.0,
            [
                0x7f, 0, 0, 1, 0xee, 0xb2, 0x5d, 0x6e, 0xf6, 0x42, 0x17, 0xd2, 0xe7, 0xf3, 0xe7,
                0x51
            ]
        );
    }
}
