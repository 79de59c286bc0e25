//! The Request-Session message as stored in a .owp file (RFC 4656 3.5).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::time::OwampTime;
use crate::wire::SessionId;

/// Octets of the stored Request-Session, HMAC field included (RFC 4656 3.5).
pub const REQUEST_LEN: usize = 112;

/// The fixed part of a Request-Session as it is stored in a .owp file: everything but the slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    /// Message type octet (1 for Request-Session).
    pub command: u8,
    /// IP version of the addresses: 4 or 6.
    pub ipvn: u8,
    /// Conf-Sender octet: non-zero when the server configured the sender.
    pub conf_sender: u8,
    /// Conf-Receiver octet: non-zero when the server configured the receiver.
    pub conf_receiver: u8,
    /// Number of schedule slots.
    pub num_slots: u32,
    /// Number of test packets.
    pub num_packets: u32,
    /// UDP port of the sender.
    pub sender_port: u16,
    /// UDP port of the receiver.
    pub receiver_port: u16,
    /// Address of the sender.
    pub sender_addr: IpAddr,
    /// Address of the receiver.
    pub receiver_addr: IpAddr,
    /// Session identifier.
    pub sid: SessionId,
    /// Padding length of each test packet.
    pub padding_length: u32,
    /// Scheduled start of the session.
    pub start_time: OwampTime,
    /// Loss timeout, 32.32 fixed-point seconds.
    pub timeout: u64,
    /// Type-P descriptor (DSCP in the low 6 bits of the high octet).
    pub type_p: u32,
    /// The HMAC field (zero in files).
    pub hmac: [u8; 16],
}

impl StoredRequest {
    /// Decodes the 112-octet stored message. Only the IP version is checked, as the reference
    /// implementation does when it reads a file; MBZ octets are ignored.
    pub(crate) fn parse(b: &[u8; REQUEST_LEN]) -> Result<Self, (&'static str, usize, u64)> {
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
        let addr16 = |i: usize| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[i..i + 16]);
            a
        };
        // RFC 4656 3.5: the low four bits of the second octet hold the IP version.
        let ipvn = b[1] & 0x0f;
        let (sender_addr, receiver_addr) = match ipvn {
            4 => (
                IpAddr::V4(Ipv4Addr::new(b[16], b[17], b[18], b[19])),
                IpAddr::V4(Ipv4Addr::new(b[32], b[33], b[34], b[35])),
            ),
            6 => (
                IpAddr::V6(Ipv6Addr::from(addr16(16))),
                IpAddr::V6(Ipv6Addr::from(addr16(32))),
            ),
            _ => return Err(("IPVN", 1, u64::from(b[1]))),
        };
        // The reference rejects a request that configures neither endpoint.
        if b[2] == 0 && b[3] == 0 {
            return Err(("Conf-Sender/Conf-Receiver", 2, 0));
        }
        let mut sid = [0u8; 16];
        sid.copy_from_slice(&b[48..64]);
        let mut hmac = [0u8; 16];
        hmac.copy_from_slice(&b[96..112]);
        Ok(Self {
            command: b[0],
            ipvn,
            conf_sender: b[2],
            conf_receiver: b[3],
            num_slots: u32_at(4),
            num_packets: u32_at(8),
            sender_port: u16_at(12),
            receiver_port: u16_at(14),
            sender_addr,
            receiver_addr,
            sid: SessionId(sid),
            padding_length: u32_at(64),
            start_time: OwampTime::from_raw(u64_at(68)),
            timeout: u64_at(76),
            type_p: u32_at(84),
            hmac,
        })
    }

    /// Encodes the 112-octet stored message.
    pub(crate) fn to_bytes(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        b[0] = self.command;
        b[1] = self.ipvn & 0x0f;
        b[2] = self.conf_sender;
        b[3] = self.conf_receiver;
        b[4..8].copy_from_slice(&self.num_slots.to_be_bytes());
        b[8..12].copy_from_slice(&self.num_packets.to_be_bytes());
        b[12..14].copy_from_slice(&self.sender_port.to_be_bytes());
        b[14..16].copy_from_slice(&self.receiver_port.to_be_bytes());
        let put = |b: &mut [u8; REQUEST_LEN], at: usize, a: &IpAddr| match a {
            IpAddr::V4(v4) => b[at..at + 4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => b[at..at + 16].copy_from_slice(&v6.octets()),
        };
        put(&mut b, 16, &self.sender_addr);
        put(&mut b, 32, &self.receiver_addr);
        b[48..64].copy_from_slice(&self.sid.0);
        b[64..68].copy_from_slice(&self.padding_length.to_be_bytes());
        b[68..76].copy_from_slice(&self.start_time.raw().to_be_bytes());
        b[76..84].copy_from_slice(&self.timeout.to_be_bytes());
        b[84..88].copy_from_slice(&self.type_p.to_be_bytes());
        b[96..112].copy_from_slice(&self.hmac);
        b
    }
}
