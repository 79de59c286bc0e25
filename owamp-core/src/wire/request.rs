//! Session requests: Request-Session and Accept-Session (RFC 4656 3.5).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromBytes, IntoBytes};

use super::error::{check_len, check_mbz, WireError};
use super::{raw, read_layout, AcceptCode, Hmac, SessionId, Slot, TypeP, BLOCK_LEN};
use crate::time::{Interval, OwampTime};

/// Request-Session: the client asks for one test session (RFC 4656 3.5).
///
/// On the wire: 112 fixed octets ending in an HMAC over the first 96, then 16 octets per
/// schedule slot, then a second HMAC over the slots alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestSession {
    /// Conf-Sender: the server is asked to be the sender. Any non-zero octet reads as set.
    pub conf_sender: bool,
    /// Conf-Receiver: the server is asked to be the receiver. Any non-zero octet reads as set.
    pub conf_receiver: bool,
    /// Number of test packets.
    pub num_packets: u32,
    /// UDP port of the sender (zero when the server picks it).
    pub sender_port: u16,
    /// UDP port of the receiver (zero when the server picks it).
    pub receiver_port: u16,
    /// Address of the sender.
    pub sender_address: IpAddr,
    /// Address of the receiver.
    pub receiver_address: IpAddr,
    /// Session identifier (zero when the server, as receiver, assigns it).
    pub sid: SessionId,
    /// Octets of padding in each test packet.
    pub padding_length: u32,
    /// When the session starts.
    pub start_time: OwampTime,
    /// Timeout: how long after its scheduled send time a packet may still arrive before the
    /// receiver counts it lost (RFC 4656 3.5).
    pub timeout: Interval,
    /// Type-P descriptor.
    pub type_p: TypeP,
    /// HMAC over the first 96 octets.
    pub hmac: Hmac,
    /// The schedule.
    pub slots: Vec<Slot>,
    /// HMAC over the slot blocks.
    pub slots_hmac: Hmac,
}

impl RequestSession {
    /// Command number.
    pub const COMMAND: u8 = 1;
    /// Octets of the fixed part (including its HMAC).
    pub const FIXED_LEN: usize = 112;
    /// Offset of the first HMAC (the octets it covers).
    pub const HMAC_OFFSET: usize = 96;
    /// The most schedule slots accepted (16 octets each: a 1 MiB message). The reference
    /// client sends one slot per schedule element the user gives.
    pub const MAX_SLOTS: u32 = 1 << 16;
    const NAME: &'static str = "Request-Session";

    /// Octets of a Request-Session with `num_slots` slots; an error above [`Self::MAX_SLOTS`].
    pub fn wire_len(num_slots: u32) -> Result<usize, WireError> {
        if num_slots > Self::MAX_SLOTS {
            return Err(WireError::TooMany {
                message: Self::NAME,
                field: "number of schedule slots",
                count: u64::from(num_slots),
                max: u64::from(Self::MAX_SLOTS),
            });
        }
        // At most 112 + 16 * 2^16 + 16: no overflow.
        Ok(Self::FIXED_LEN + num_slots as usize * Slot::LEN + BLOCK_LEN)
    }

    /// Octets of this message's encoding.
    pub fn encoded_len(&self) -> usize {
        Self::FIXED_LEN + self.slots.len() * Slot::LEN + BLOCK_LEN
    }

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
    /// Checks: command 1; the MBZ half of the IPVN octet; IPVN 4 or 6; for IPv4 the 12 octets
    /// after each address are zero; the MBZ octets; the slot count (at most
    /// [`Self::MAX_SLOTS`], and exactly matching the length given); every slot.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let (h, rest) =
            raw::RequestSession::read_from_prefix(bytes).map_err(|_| WireError::Truncated {
                message: Self::NAME,
                needed: Self::FIXED_LEN,
                got: bytes.len(),
            })?;
        if h.command != Self::COMMAND {
            return Err(WireError::invalid(Self::NAME, "command", 0, h.command));
        }
        let num_slots = h.num_slots.get();
        check_len(Self::NAME, bytes, Self::wire_len(num_slots)?)?;
        // RFC 4656 3.5: the high half of octet 1 is MBZ, the low half the IP version.
        check_mbz(Self::NAME, &[h.mbz_ipvn & 0xf0], 1)?;
        let ipvn = h.mbz_ipvn & 0x0f;
        let (sender_address, receiver_address) = match ipvn {
            4 => (
                Self::parse_v4(&h.sender_address, 16)?,
                Self::parse_v4(&h.receiver_address, 32)?,
            ),
            6 => (
                IpAddr::V6(Ipv6Addr::from(h.sender_address)),
                IpAddr::V6(Ipv6Addr::from(h.receiver_address)),
            ),
            v => return Err(WireError::invalid(Self::NAME, "IPVN", 1, v)),
        };
        check_mbz(Self::NAME, &h.mbz, 88)?;

        // The length check above makes `rest` exactly the slots and the second HMAC, so the
        // vector below is bounded by the bytes at hand.
        let (slot_bytes, hmac2) = rest.split_at(rest.len() - BLOCK_LEN);
        let slots = <[raw::Slot]>::ref_from_bytes(slot_bytes)
            .map_err(|_| WireError::Truncated {
                message: Self::NAME,
                needed: bytes.len(),
                got: bytes.len(),
            })?
            .iter()
            .enumerate()
            .map(|(i, s)| Slot::from_raw(s, Self::FIXED_LEN + i * Slot::LEN))
            .collect::<Result<Vec<_>, _>>()?;
        let mut slots_hmac = [0u8; 16];
        slots_hmac.copy_from_slice(hmac2);

        Ok(Self {
            // The reference server reads any non-zero octet as set.
            conf_sender: h.conf_sender != 0,
            conf_receiver: h.conf_receiver != 0,
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
            slots,
            slots_hmac,
        })
    }

    fn parse_v4(field: &[u8; 16], offset: usize) -> Result<IpAddr, WireError> {
        // RFC 4656 3.5: an IPv4 address fills the first 4 octets, the other 12 are MBZ.
        check_mbz(Self::NAME, &field[4..], offset + 4)?;
        Ok(IpAddr::V4(Ipv4Addr::new(
            field[0], field[1], field[2], field[3],
        )))
    }

    fn encode_addr(addr: IpAddr, ipvn: u8) -> [u8; 16] {
        let mut out = [0u8; 16];
        match (addr, ipvn) {
            (IpAddr::V4(a), 4) => out[..4].copy_from_slice(&a.octets()),
            // An IPv4 address in an IPv6 request travels as IPv4-mapped IPv6.
            (IpAddr::V4(a), _) => out = a.to_ipv6_mapped().octets(),
            (IpAddr::V6(a), _) => out = a.octets(),
        }
        out
    }

    /// The fixed 112-octet part (the first HMAC included).
    pub fn fixed_part(&self) -> [u8; Self::FIXED_LEN] {
        let ipvn = self.ipvn();
        let h = raw::RequestSession {
            command: Self::COMMAND,
            mbz_ipvn: ipvn,
            conf_sender: u8::from(self.conf_sender),
            conf_receiver: u8::from(self.conf_receiver),
            // The slot count is whatever the vector holds; `wire_len` bounds what we parse.
            num_slots: U32::new(u32::try_from(self.slots.len()).unwrap_or(u32::MAX)),
            num_packets: U32::new(self.num_packets),
            sender_port: U16::new(self.sender_port),
            receiver_port: U16::new(self.receiver_port),
            sender_address: Self::encode_addr(self.sender_address, ipvn),
            receiver_address: Self::encode_addr(self.receiver_address, ipvn),
            sid: self.sid.0,
            padding_length: U32::new(self.padding_length),
            start_time: U64::new(self.start_time.raw()),
            timeout: U64::new(self.timeout.raw()),
            type_p: U32::new(self.type_p.0),
            mbz: [0; 8],
            hmac: self.hmac,
        };
        let mut out = [0u8; Self::FIXED_LEN];
        out.copy_from_slice(h.as_bytes());
        out
    }

    /// Appends the encoding to `out`.
    ///
    /// The IPVN is 6 if either address is IPv6 (an IPv4 address is then written IPv4-mapped),
    /// otherwise 4.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.extend_from_slice(&self.fixed_part());
        for s in &self.slots {
            out.extend_from_slice(s.to_raw().as_bytes());
        }
        out.extend_from_slice(&self.slots_hmac);
    }
}

/// Accept-Session: the server's answer to Request-Session, 48 octets (RFC 4656 3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AcceptSession {
    /// Whether the session is accepted.
    pub accept: AcceptCode,
    /// The server's UDP port for the session (zero when refused).
    pub port: u16,
    /// The session identifier (assigned by the receiver).
    pub sid: SessionId,
    /// HMAC over the first 32 octets.
    pub hmac: Hmac,
}

impl AcceptSession {
    /// Octets of the message.
    pub const LEN: usize = 48;
    const NAME: &'static str = "Accept-Session";

    /// Decodes and validates the message (Accept code, MBZ octets).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let r: raw::AcceptSession = read_layout(Self::NAME, bytes)?;
        let accept = AcceptCode::parse_field(Self::NAME, 0, r.accept)?;
        check_mbz(Self::NAME, &[r.mbz1], 1)?;
        check_mbz(Self::NAME, &r.mbz2, 20)?;
        Ok(Self {
            accept,
            port: r.port.get(),
            sid: SessionId(r.sid),
            hmac: r.hmac,
        })
    }

    /// Appends the 48-octet encoding to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let r = raw::AcceptSession {
            accept: self.accept.to_u8(),
            mbz1: 0,
            port: U16::new(self.port),
            sid: self.sid.0,
            mbz2: [0; 12],
            hmac: self.hmac,
        };
        out.extend_from_slice(r.as_bytes());
    }
}

super::impl_message!(RequestSession, AcceptSession);
