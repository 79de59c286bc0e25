//! Byte layouts of OWAMP messages as zerocopy structs in network byte order.
//!
//! These are the first parsing phase: they give names and offsets to the octets and nothing
//! more. Any octet pattern of the right length is a valid layout; the typed messages in the
//! parent module validate the fields. Offsets in the comments are from the start of the
//! message.

use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Server-Greeting, 64 octets (RFC 4656 3.1).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct ServerGreeting {
    /// 0: unused, ignored.
    pub unused: [u8; 12],
    /// 12: bit set of the modes the server offers.
    pub modes: U32,
    /// 16: challenge.
    pub challenge: [u8; 16],
    /// 32: PBKDF2 salt.
    pub salt: [u8; 16],
    /// 48: PBKDF2 iteration count.
    pub count: U32,
    /// 52: MBZ.
    pub mbz: [u8; 12],
}

/// Set-Up-Response, 164 octets (RFC 4656 3.1).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct SetUpResponse {
    /// 0: the chosen mode.
    pub mode: U32,
    /// 4: KeyID, the user name padded with NULs.
    pub key_id: [u8; 80],
    /// 84: Token (encrypted challenge and session keys).
    pub token: [u8; 64],
    /// 148: Client-IV.
    pub client_iv: [u8; 16],
}

/// Server-Start, 48 octets (RFC 4656 3.1).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct ServerStart {
    /// 0: MBZ.
    pub mbz1: [u8; 15],
    /// 15: Accept.
    pub accept: u8,
    /// 16: Server-IV.
    pub server_iv: [u8; 16],
    /// 32: Start-Time.
    pub start_time: U64,
    /// 40: MBZ.
    pub mbz2: [u8; 8],
}

/// The fixed 112-octet part of Request-Session (RFC 4656 3.5). Schedule slots and a second
/// HMAC follow.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RequestSession {
    /// 0: command number, 1.
    pub command: u8,
    /// 1: MBZ in the high four bits, IPVN in the low four.
    pub mbz_ipvn: u8,
    /// 2: Conf-Sender.
    pub conf_sender: u8,
    /// 3: Conf-Receiver.
    pub conf_receiver: u8,
    /// 4: Number of Schedule Slots.
    pub num_slots: U32,
    /// 8: Number of Packets.
    pub num_packets: U32,
    /// 12: Sender Port.
    pub sender_port: U16,
    /// 14: Receiver Port.
    pub receiver_port: U16,
    /// 16: Sender Address (IPv4 in the first 4 octets, the rest MBZ).
    pub sender_address: [u8; 16],
    /// 32: Receiver Address.
    pub receiver_address: [u8; 16],
    /// 48: SID.
    pub sid: [u8; 16],
    /// 64: Padding Length.
    pub padding_length: U32,
    /// 68: Start Time.
    pub start_time: U64,
    /// 76: Timeout, 32.32 fixed-point seconds.
    pub timeout: U64,
    /// 84: Type-P Descriptor.
    pub type_p: U32,
    /// 88: MBZ.
    pub mbz: [u8; 8],
    /// 96: HMAC over octets 0..96.
    pub hmac: [u8; 16],
}

/// One schedule slot, 16 octets (RFC 4656 3.5).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct Slot {
    /// 0: slot type, 0 exponential, 1 fixed.
    pub kind: u8,
    /// 1: MBZ.
    pub mbz: [u8; 7],
    /// 8: mean or fixed gap, 32.32 fixed-point seconds.
    pub mean: U64,
}

/// Accept-Session, 48 octets (RFC 4656 3.5).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct AcceptSession {
    /// 0: Accept.
    pub accept: u8,
    /// 1: MBZ.
    pub mbz1: u8,
    /// 2: Port.
    pub port: U16,
    /// 4: SID.
    pub sid: [u8; 16],
    /// 20: MBZ.
    pub mbz2: [u8; 12],
    /// 32: HMAC.
    pub hmac: [u8; 16],
}

/// Start-Sessions, 32 octets (RFC 4656 3.7).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct StartSessions {
    /// 0: command number, 2.
    pub command: u8,
    /// 1: MBZ.
    pub mbz: [u8; 15],
    /// 16: HMAC.
    pub hmac: [u8; 16],
}

/// Start-Ack, 32 octets (RFC 4656 3.7).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct StartAck {
    /// 0: Accept.
    pub accept: u8,
    /// 1: MBZ.
    pub mbz: [u8; 15],
    /// 16: HMAC.
    pub hmac: [u8; 16],
}

/// The 16-octet header of Stop-Sessions (RFC 4656 3.8).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct StopSessionsHeader {
    /// 0: command number, 3.
    pub command: u8,
    /// 1: Accept.
    pub accept: u8,
    /// 2: MBZ.
    pub mbz1: [u8; 2],
    /// 4: Number of Sessions.
    pub num_sessions: U32,
    /// 8: MBZ.
    pub mbz2: [u8; 8],
}

/// The first 24 octets of one session description in Stop-Sessions (RFC 4656 3.8). Skip
/// ranges follow, then zero padding to a 16-octet boundary.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct SessionDescription {
    /// 0: SID.
    pub sid: [u8; 16],
    /// 16: Next Seqno.
    pub next_seqno: U32,
    /// 20: Number of Skip Ranges.
    pub num_skip_ranges: U32,
}

/// One skip range, 8 octets (RFC 4656 3.8).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct SkipRange {
    /// 0: First Seqno Skipped.
    pub first: U32,
    /// 4: Last Seqno Skipped.
    pub last: U32,
}

/// Fetch-Session, 48 octets (RFC 4656 3.8).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct FetchSession {
    /// 0: command number, 4.
    pub command: u8,
    /// 1: MBZ.
    pub mbz: [u8; 7],
    /// 8: Begin Seq.
    pub begin_seq: U32,
    /// 12: End Seq.
    pub end_seq: U32,
    /// 16: SID.
    pub sid: [u8; 16],
    /// 32: HMAC.
    pub hmac: [u8; 16],
}

/// Fetch-Ack, 32 octets (RFC 4656 3.8).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct FetchAck {
    /// 0: Accept.
    pub accept: u8,
    /// 1: Finished.
    pub finished: u8,
    /// 2: MBZ.
    pub mbz: [u8; 2],
    /// 4: Next Seqno.
    pub next_seqno: U32,
    /// 8: Number of Skip Ranges.
    pub num_skip_ranges: U32,
    /// 12: Number of Records.
    pub num_records: U32,
    /// 16: HMAC.
    pub hmac: [u8; 16],
}

/// One data record, 25 octets (RFC 4656 3.8).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct DataRecord {
    /// 0: Seq Number.
    pub seq: U32,
    /// 4: Send Error Estimate.
    pub send_error: U16,
    /// 6: Receive Error Estimate.
    pub recv_error: U16,
    /// 8: Send Timestamp.
    pub send_time: U64,
    /// 16: Receive Timestamp.
    pub recv_time: U64,
    /// 24: TTL.
    pub ttl: u8,
}

/// OWAMP-Test packet header in open mode, 14 octets before the padding (RFC 4656 4.1.2).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct OpenTestPacket {
    /// 0: Sequence Number.
    pub seq: U32,
    /// 4: Timestamp.
    pub timestamp: U64,
    /// 12: Error Estimate.
    pub error_estimate: U16,
}

/// OWAMP-Test packet header in authenticated and encrypted modes, 48 octets of plaintext before
/// the padding (RFC 4656 4.1.2).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct AuthTestPacket {
    /// 0: Sequence Number.
    pub seq: U32,
    /// 4: MBZ.
    pub mbz1: [u8; 12],
    /// 16: Timestamp.
    pub timestamp: U64,
    /// 24: Error Estimate.
    pub error_estimate: U16,
    /// 26: MBZ.
    pub mbz2: [u8; 6],
    /// 32: HMAC.
    pub hmac: [u8; 16],
}

/// TWAMP Stop-Sessions, 32 octets (RFC 5357 3.8): the OWAMP header without session
/// descriptions, then the HMAC.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct TwampStopSessions {
    /// 0: the OWAMP Stop-Sessions header (command 3, Accept, MBZ, Number of Sessions, MBZ).
    pub header: StopSessionsHeader,
    /// 16: HMAC.
    pub hmac: [u8; 16],
}

/// TWAMP-Test reflector packet in unauthenticated mode, 41 octets before the padding
/// (RFC 5357 4.2.1).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct OpenReflectorPacket {
    /// 0: Sequence Number (the reflector's own).
    pub seq: U32,
    /// 4: Timestamp (when the reflector sent it).
    pub timestamp: U64,
    /// 12: Error Estimate.
    pub error_estimate: U16,
    /// 14: MBZ.
    pub mbz1: [u8; 2],
    /// 16: Receive Timestamp.
    pub receive_timestamp: U64,
    /// 24: Sender Sequence Number.
    pub sender_seq: U32,
    /// 28: Sender Timestamp.
    pub sender_timestamp: U64,
    /// 36: Sender Error Estimate.
    pub sender_error_estimate: U16,
    /// 38: MBZ.
    pub mbz2: [u8; 2],
    /// 40: Sender TTL.
    pub sender_ttl: u8,
}

/// TWAMP-Test reflector packet in authenticated and encrypted modes, 112 octets of plaintext
/// before the padding (RFC 5357 4.2.1).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct AuthReflectorPacket {
    /// 0: Sequence Number.
    pub seq: U32,
    /// 4: MBZ.
    pub mbz1: [u8; 12],
    /// 16: Timestamp.
    pub timestamp: U64,
    /// 24: Error Estimate.
    pub error_estimate: U16,
    /// 26: MBZ.
    pub mbz2: [u8; 6],
    /// 32: Receive Timestamp.
    pub receive_timestamp: U64,
    /// 40: MBZ.
    pub mbz3: [u8; 8],
    /// 48: Sender Sequence Number.
    pub sender_seq: U32,
    /// 52: MBZ.
    pub mbz4: [u8; 12],
    /// 64: Sender Timestamp.
    pub sender_timestamp: U64,
    /// 72: Sender Error Estimate.
    pub sender_error_estimate: U16,
    /// 74: MBZ.
    pub mbz5: [u8; 6],
    /// 80: Sender TTL.
    pub sender_ttl: u8,
    /// 81: MBZ.
    pub mbz6: [u8; 15],
    /// 96: HMAC.
    pub hmac: [u8; 16],
}

/// STAMP Session-Sender test packet in unauthenticated mode, 44 octets (RFC 8762 4.2.1).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct StampSenderPacket {
    /// 0: Sequence Number.
    pub seq: U32,
    /// 4: Timestamp.
    pub timestamp: U64,
    /// 12: Error Estimate.
    pub error_estimate: U16,
    /// 14: MBZ.
    pub mbz: [u8; 30],
}

/// STAMP Session-Sender test packet in authenticated mode, 112 octets (RFC 8762 4.2.2).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct StampAuthSenderPacket {
    /// 0: Sequence Number.
    pub seq: U32,
    /// 4: MBZ.
    pub mbz1: [u8; 12],
    /// 16: Timestamp.
    pub timestamp: U64,
    /// 24: Error Estimate.
    pub error_estimate: U16,
    /// 26: MBZ.
    pub mbz2: [u8; 70],
    /// 96: HMAC.
    pub hmac: [u8; 16],
}

/// STAMP Session-Reflector test packet in unauthenticated mode, 44 octets (RFC 8762 4.3.1):
/// TWAMP's 41-octet reflector packet and three MBZ octets. The authenticated one (RFC 8762
/// 4.3.2) has the layout of [`AuthReflectorPacket`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct StampReflectorPacket {
    /// 0: the fields of TWAMP's unauthenticated reflector packet.
    pub twamp: OpenReflectorPacket,
    /// 41: MBZ.
    pub mbz: [u8; 3],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_rfc() {
        use core::mem::size_of;
        assert_eq!(size_of::<ServerGreeting>(), 64);
        assert_eq!(size_of::<SetUpResponse>(), 164);
        assert_eq!(size_of::<ServerStart>(), 48);
        assert_eq!(size_of::<RequestSession>(), 112);
        assert_eq!(size_of::<Slot>(), 16);
        assert_eq!(size_of::<AcceptSession>(), 48);
        assert_eq!(size_of::<StartSessions>(), 32);
        assert_eq!(size_of::<StartAck>(), 32);
        assert_eq!(size_of::<StopSessionsHeader>(), 16);
        assert_eq!(size_of::<SessionDescription>(), 24);
        assert_eq!(size_of::<SkipRange>(), 8);
        assert_eq!(size_of::<FetchSession>(), 48);
        assert_eq!(size_of::<FetchAck>(), 32);
        assert_eq!(size_of::<DataRecord>(), 25);
        assert_eq!(size_of::<OpenTestPacket>(), 14);
        assert_eq!(size_of::<AuthTestPacket>(), 48);
        assert_eq!(size_of::<TwampStopSessions>(), 32);
        assert_eq!(size_of::<OpenReflectorPacket>(), 41);
        assert_eq!(size_of::<AuthReflectorPacket>(), 112);
        assert_eq!(size_of::<StampSenderPacket>(), 44);
        assert_eq!(size_of::<StampAuthSenderPacket>(), 112);
        assert_eq!(size_of::<StampReflectorPacket>(), 44);
    }
}
