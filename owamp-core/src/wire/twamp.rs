//! The TWAMP messages that differ from OWAMP's (RFC 5357): Request-TW-Session, TWAMP's
//! Stop-Sessions and the session-reflector's test packet.
//!
//! Everything else TWAMP sends is OWAMP's, octet for octet: Server-Greeting, Set-Up-Response,
//! Server-Start, Accept-Session, Start-Sessions and Start-Ack (RFC 5357 3.1-3.7), and the
//! session-sender's test packet, which is [`TestPacket`](super::TestPacket) (RFC 5357 4.1.2
//! refers to RFC 4656 4.1.2). Modes add RFC 5618's mixed mode (bit 3, 8): encrypted control
//! with open test packets; [`Modes`] carries the bit as an unknown one, and a
//! Set-Up-Response choosing it is read and written with [`parse_setup_response`] and
//! [`write_setup_response`].

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::IntoBytes;

use super::error::{check_mbz, WireError};
use super::{
    raw, read_layout, AcceptCode, Hmac, Mode, Modes, RequestSession, SessionId, SetUpResponse,
    TypeP,
};
use crate::time::{ErrorEstimate, Interval, OwampTime};

/// The Modes bit of RFC 5618's mixed mode (encrypted TWAMP-Control, open TWAMP-Test), which
/// twampd 5.2.3 offers and twping chooses with `-A M`.
pub const MIXED_MODE_BIT: u32 = 8;

/// Whether a Modes word has RFC 5618's mixed-mode bit.
pub const fn offers_mixed(modes: Modes) -> bool {
    modes.raw() & MIXED_MODE_BIT != 0
}

/// `modes` with RFC 5618's mixed-mode bit added.
pub const fn with_mixed(modes: Modes) -> Modes {
    Modes::from_raw(modes.raw() | MIXED_MODE_BIT)
}

/// `modes` without RFC 5618's mixed-mode bit.
pub const fn without_mixed(modes: Modes) -> Modes {
    Modes::from_raw(modes.raw() & !MIXED_MODE_BIT)
}

/// Decodes a TWAMP Set-Up-Response: OWAMP's, or one whose Mode is RFC 5618's mixed mode (8).
/// Returns the message and whether it chose mixed mode; the message of a mixed-mode response
/// says [`Mode::Authenticated`], whose control-connection handling (KeyID, Token, Client-IV,
/// encrypted and HMAC-protected control, RFC 5618 3.1) mixed mode shares.
pub fn parse_setup_response(bytes: &[u8]) -> Result<(SetUpResponse, bool), WireError> {
    let mixed = bytes.get(..4) == Some(&MIXED_MODE_BIT.to_be_bytes()[..]);
    if !mixed {
        return Ok((SetUpResponse::parse(bytes)?, false));
    }
    let mut b = bytes.to_vec();
    b[..4].copy_from_slice(&Mode::Authenticated.bits().to_be_bytes());
    Ok((SetUpResponse::parse(&b)?, true))
}

/// Appends a Set-Up-Response to `out`; with `mixed` its Mode is RFC 5618's mixed mode (8)
/// and `setup` carries the credentials as in authenticated mode.
pub fn write_setup_response(setup: &SetUpResponse, mixed: bool, out: &mut Vec<u8>) {
    let at = out.len();
    setup.write_to(out);
    if mixed {
        out[at..at + 4].copy_from_slice(&MIXED_MODE_BIT.to_be_bytes());
    }
}

/// Request-TW-Session: the control-client asks for one TWAMP test session (RFC 5357 3.5).
///
/// The same 112 octets as OWAMP's Request-Session without schedule slots and without the
/// second HMAC: the session-sender keeps its schedule to itself. Conf-Sender, Conf-Receiver,
/// the slot count and the packet count are carried as received (RFC 5357 3.5 sets them to
/// zero; twping 5.2.3 sends zeros), so that the encoding round-trips.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestTwSession {
    /// Conf-Sender octet (zero in TWAMP).
    pub conf_sender: u8,
    /// Conf-Receiver octet (zero in TWAMP).
    pub conf_receiver: u8,
    /// Number of Schedule Slots (zero in TWAMP).
    pub num_slots: u32,
    /// Number of Packets (zero in TWAMP; twping does not send its count).
    pub num_packets: u32,
    /// The session-sender's UDP port.
    pub sender_port: u16,
    /// Receiver Port: the port the control-client suggests for the reflector (twping puts its
    /// own port here too; the server chooses anyway).
    pub receiver_port: u16,
    /// The session-sender's address.
    pub sender_address: IpAddr,
    /// The session-reflector's address.
    pub receiver_address: IpAddr,
    /// SID (zero: the server makes it).
    pub sid: SessionId,
    /// Padding octets in each sender packet.
    pub padding_length: u32,
    /// When the session starts.
    pub start_time: OwampTime,
    /// Timeout: how long the reflector keeps reflecting after Stop-Sessions (RFC 5357 3.5).
    pub timeout: Interval,
    /// Type-P descriptor.
    pub type_p: TypeP,
    /// HMAC over the first 96 octets.
    pub hmac: Hmac,
}

impl RequestTwSession {
    /// Command number (RFC 5357 3.5).
    pub const COMMAND: u8 = 5;
    /// Octets of the message.
    pub const LEN: usize = 112;
    /// Offset of the HMAC (the octets it covers).
    pub const HMAC_OFFSET: usize = 96;
    const NAME: &'static str = "Request-TW-Session";

    /// The IPVN the encoding uses: 6 if either address is IPv6, else 4.
    pub fn ipvn(&self) -> u8 {
        if self.sender_address.is_ipv6() || self.receiver_address.is_ipv6() {
            6
        } else {
            4
        }
    }

    /// Decodes and validates one whole message.
    ///
    /// Checks: the length (112); command 5; the MBZ half of the IPVN octet; IPVN 4 or 6; for
    /// IPv4 the 12 octets after each address are zero; the 8 MBZ octets (RFC 6038's reflected
    /// octets fields, which twampd 5.2.3 does not support).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let h: raw::RequestSession = read_layout(Self::NAME, bytes)?;
        if h.command != Self::COMMAND {
            return Err(WireError::invalid(Self::NAME, "command", 0, h.command));
        }
        check_mbz(Self::NAME, &[h.mbz_ipvn & 0xf0], 1)?;
        let (sender_address, receiver_address) = match h.mbz_ipvn & 0x0f {
            4 => (
                parse_v4(&h.sender_address, 16)?,
                parse_v4(&h.receiver_address, 32)?,
            ),
            6 => (
                IpAddr::V6(Ipv6Addr::from(h.sender_address)),
                IpAddr::V6(Ipv6Addr::from(h.receiver_address)),
            ),
            v => return Err(WireError::invalid(Self::NAME, "IPVN", 1, v)),
        };
        check_mbz(Self::NAME, &h.mbz, 88)?;
        Ok(Self {
            conf_sender: h.conf_sender,
            conf_receiver: h.conf_receiver,
            num_slots: h.num_slots.get(),
            num_packets: h.num_packets.get(),
            sender_port: h.sender_port.get(),
            receiver_port: h.receiver_port.get(),
            sender_address,
            receiver_address,
            sid: SessionId(h.sid),
            padding_length: h.padding_length.get(),
            start_time: OwampTime::from_raw(h.start_time.get()),
            timeout: Interval::from_raw(h.timeout.get()),
            type_p: TypeP(h.type_p.get()),
            hmac: h.hmac,
        })
    }

    /// Appends the 112-octet encoding to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let ipvn = self.ipvn();
        let h = raw::RequestSession {
            command: Self::COMMAND,
            mbz_ipvn: ipvn,
            conf_sender: self.conf_sender,
            conf_receiver: self.conf_receiver,
            num_slots: U32::new(self.num_slots),
            num_packets: U32::new(self.num_packets),
            sender_port: U16::new(self.sender_port),
            receiver_port: U16::new(self.receiver_port),
            sender_address: encode_addr(self.sender_address, ipvn),
            receiver_address: encode_addr(self.receiver_address, ipvn),
            sid: self.sid.0,
            padding_length: U32::new(self.padding_length),
            start_time: U64::new(self.start_time.raw()),
            timeout: U64::new(self.timeout.raw()),
            type_p: U32::new(self.type_p.0),
            mbz: [0; 8],
            hmac: self.hmac,
        };
        out.extend_from_slice(h.as_bytes());
    }

    /// The request as the control state machines keep it: an OWAMP [`RequestSession`] in which
    /// the server (the reflector) receives first (Conf-Receiver set), with no slots; the
    /// packet count is the one on the wire.
    pub fn to_request(&self) -> RequestSession {
        RequestSession {
            conf_sender: false,
            conf_receiver: true,
            num_packets: self.num_packets,
            sender_port: self.sender_port,
            receiver_port: self.receiver_port,
            sender_address: self.sender_address,
            receiver_address: self.receiver_address,
            sid: self.sid,
            padding_length: self.padding_length,
            start_time: self.start_time,
            timeout: self.timeout,
            type_p: self.type_p,
            hmac: self.hmac,
            slots: Vec::new(),
            slots_hmac: [0; 16],
        }
    }

    /// What a control-client sends for a session it keeps as `req` (the sender's own schedule
    /// and count stay local, as twping does): Conf-Sender, Conf-Receiver, the slot count and
    /// the packet count zero, and the sender's port in both port fields, as twping 5.2.3 sends.
    pub fn from_request(req: &RequestSession) -> Self {
        Self {
            conf_sender: 0,
            conf_receiver: 0,
            num_slots: 0,
            num_packets: 0,
            sender_port: req.sender_port,
            receiver_port: req.sender_port,
            sender_address: req.sender_address,
            receiver_address: req.receiver_address,
            sid: req.sid,
            padding_length: req.padding_length,
            start_time: req.start_time,
            timeout: req.timeout,
            type_p: req.type_p,
            hmac: req.hmac,
        }
    }
}

fn parse_v4(field: &[u8; 16], offset: usize) -> Result<IpAddr, WireError> {
    check_mbz(RequestTwSession::NAME, &field[4..], offset + 4)?;
    Ok(IpAddr::V4(Ipv4Addr::new(
        field[0], field[1], field[2], field[3],
    )))
}

fn encode_addr(addr: IpAddr, ipvn: u8) -> [u8; 16] {
    let mut out = [0u8; 16];
    match (addr, ipvn) {
        (IpAddr::V4(a), 4) => out[..4].copy_from_slice(&a.octets()),
        (IpAddr::V4(a), _) => out = a.to_ipv6_mapped().octets(),
        (IpAddr::V6(a), _) => out = a.octets(),
    }
    out
}

/// TWAMP's Stop-Sessions, 32 octets (RFC 5357 3.8): only the control-client sends it, and it
/// carries the number of sessions but no session descriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TwampStopSessions {
    /// Zero when the sessions ended normally.
    pub accept: AcceptCode,
    /// Number of Sessions: the sessions the connection set up.
    pub num_sessions: u32,
    /// HMAC over the first 16 octets.
    pub hmac: Hmac,
}

impl TwampStopSessions {
    /// Command number (the same as OWAMP's).
    pub const COMMAND: u8 = 3;
    /// Octets of the message.
    pub const LEN: usize = 32;
    const NAME: &'static str = "TWAMP Stop-Sessions";

    /// Decodes and validates the message (command, Accept code, MBZ octets).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let r: raw::TwampStopSessions = read_layout(Self::NAME, bytes)?;
        let h = r.header;
        if h.command != Self::COMMAND {
            return Err(WireError::invalid(Self::NAME, "command", 0, h.command));
        }
        let accept = AcceptCode::parse_field(Self::NAME, 1, h.accept)?;
        check_mbz(Self::NAME, &h.mbz1, 2)?;
        check_mbz(Self::NAME, &h.mbz2, 8)?;
        Ok(Self {
            accept,
            num_sessions: h.num_sessions.get(),
            hmac: r.hmac,
        })
    }

    /// Appends the 32-octet encoding to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let r = raw::TwampStopSessions {
            header: raw::StopSessionsHeader {
                command: Self::COMMAND,
                accept: self.accept.to_u8(),
                mbz1: [0; 2],
                num_sessions: U32::new(self.num_sessions),
                mbz2: [0; 8],
            },
            hmac: self.hmac,
        };
        out.extend_from_slice(r.as_bytes());
    }
}

super::impl_message!(RequestTwSession, TwampStopSessions);

/// The fields of one session-reflector test packet (RFC 5357 4.2.1), as plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReflectorPacket {
    /// The reflector's own sequence number (from 0, one per reflected packet).
    pub seq: u32,
    /// When the reflector sent the packet.
    pub timestamp: OwampTime,
    /// The reflector's clock error estimate.
    pub error_estimate: ErrorEstimate,
    /// When the reflector received the sender's packet.
    pub receive_timestamp: OwampTime,
    /// The sender packet's sequence number.
    pub sender_seq: u32,
    /// The sender packet's timestamp.
    pub sender_timestamp: OwampTime,
    /// The sender packet's error estimate.
    pub sender_error_estimate: ErrorEstimate,
    /// The TTL (hop limit) of the sender's packet as the reflector received it.
    pub sender_ttl: u8,
    /// HMAC field (authenticated and encrypted modes; zero in open mode).
    pub hmac: Hmac,
}

impl ReflectorPacket {
    /// Octets before the padding in open mode.
    pub const OPEN_LEN: usize = 41;
    /// Octets before the padding in authenticated and encrypted modes.
    pub const AUTH_LEN: usize = 112;
    /// Offset of the HMAC field in authenticated and encrypted modes.
    pub const AUTH_HMAC_OFFSET: usize = 96;
    const NAME: &'static str = "reflector packet";

    /// Octets before the padding in `mode` (the test packets' mode: open in mixed mode).
    pub const fn header_len(mode: Mode) -> usize {
        match mode {
            Mode::Open => Self::OPEN_LEN,
            Mode::Authenticated | Mode::Encrypted => Self::AUTH_LEN,
        }
    }

    /// Decodes a plaintext packet; returns the fields and the padding.
    ///
    /// Checks the length, the MBZ octets, and that the reflector's error estimate has a
    /// non-zero multiplier (RFC 4656 4.1.2, which RFC 5357 4.2.1 refers to).
    pub fn parse(mode: Mode, bytes: &[u8]) -> Result<(Self, &[u8]), WireError> {
        use zerocopy::FromBytes;
        let truncated = WireError::Truncated {
            message: Self::NAME,
            needed: Self::header_len(mode),
            got: bytes.len(),
        };
        let (p, padding, ee_offset) = match mode {
            Mode::Open => {
                let (r, padding) =
                    raw::OpenReflectorPacket::read_from_prefix(bytes).map_err(|_| truncated)?;
                check_mbz(Self::NAME, &r.mbz1, 14)?;
                check_mbz(Self::NAME, &r.mbz2, 38)?;
                let p = Self {
                    seq: r.seq.get(),
                    timestamp: OwampTime::from_raw(r.timestamp.get()),
                    error_estimate: ErrorEstimate::from_raw(r.error_estimate.get()),
                    receive_timestamp: OwampTime::from_raw(r.receive_timestamp.get()),
                    sender_seq: r.sender_seq.get(),
                    sender_timestamp: OwampTime::from_raw(r.sender_timestamp.get()),
                    sender_error_estimate: ErrorEstimate::from_raw(r.sender_error_estimate.get()),
                    sender_ttl: r.sender_ttl,
                    hmac: [0; 16],
                };
                (p, padding, 12)
            }
            Mode::Authenticated | Mode::Encrypted => {
                let (r, padding) =
                    raw::AuthReflectorPacket::read_from_prefix(bytes).map_err(|_| truncated)?;
                check_mbz(Self::NAME, &r.mbz1, 4)?;
                check_mbz(Self::NAME, &r.mbz2, 26)?;
                check_mbz(Self::NAME, &r.mbz3, 40)?;
                check_mbz(Self::NAME, &r.mbz4, 52)?;
                check_mbz(Self::NAME, &r.mbz5, 74)?;
                check_mbz(Self::NAME, &r.mbz6, 81)?;
                let p = Self {
                    seq: r.seq.get(),
                    timestamp: OwampTime::from_raw(r.timestamp.get()),
                    error_estimate: ErrorEstimate::from_raw(r.error_estimate.get()),
                    receive_timestamp: OwampTime::from_raw(r.receive_timestamp.get()),
                    sender_seq: r.sender_seq.get(),
                    sender_timestamp: OwampTime::from_raw(r.sender_timestamp.get()),
                    sender_error_estimate: ErrorEstimate::from_raw(r.sender_error_estimate.get()),
                    sender_ttl: r.sender_ttl,
                    hmac: r.hmac,
                };
                (p, padding, 24)
            }
        };
        if !p.error_estimate.is_valid() {
            return Err(WireError::invalid(
                Self::NAME,
                "error estimate",
                ee_offset,
                p.error_estimate.raw(),
            ));
        }
        Ok((p, padding))
    }

    /// Appends the plaintext packet with the given padding.
    pub fn write_to(&self, mode: Mode, padding: &[u8], out: &mut Vec<u8>) {
        out.reserve(Self::header_len(mode) + padding.len());
        match mode {
            Mode::Open => {
                let r = raw::OpenReflectorPacket {
                    seq: U32::new(self.seq),
                    timestamp: U64::new(self.timestamp.raw()),
                    error_estimate: U16::new(self.error_estimate.raw()),
                    mbz1: [0; 2],
                    receive_timestamp: U64::new(self.receive_timestamp.raw()),
                    sender_seq: U32::new(self.sender_seq),
                    sender_timestamp: U64::new(self.sender_timestamp.raw()),
                    sender_error_estimate: U16::new(self.sender_error_estimate.raw()),
                    mbz2: [0; 2],
                    sender_ttl: self.sender_ttl,
                };
                out.extend_from_slice(r.as_bytes());
            }
            Mode::Authenticated | Mode::Encrypted => {
                let r = raw::AuthReflectorPacket {
                    seq: U32::new(self.seq),
                    mbz1: [0; 12],
                    timestamp: U64::new(self.timestamp.raw()),
                    error_estimate: U16::new(self.error_estimate.raw()),
                    mbz2: [0; 6],
                    receive_timestamp: U64::new(self.receive_timestamp.raw()),
                    mbz3: [0; 8],
                    sender_seq: U32::new(self.sender_seq),
                    mbz4: [0; 12],
                    sender_timestamp: U64::new(self.sender_timestamp.raw()),
                    sender_error_estimate: U16::new(self.sender_error_estimate.raw()),
                    mbz5: [0; 6],
                    sender_ttl: self.sender_ttl,
                    mbz6: [0; 15],
                    hmac: self.hmac,
                };
                out.extend_from_slice(r.as_bytes());
            }
        }
        out.extend_from_slice(padding);
    }

    /// The plaintext packet with the given padding, as a new vector.
    pub fn to_bytes(&self, mode: Mode, padding: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(mode, padding, &mut v);
        v
    }
}
