//! Plaintext layouts of the control messages, as the state machines need them.
//!
//! A thin bridge: each function encodes or decodes one message (or one piece of a message
//! read incrementally) to and from fixed-size buffers. HMAC fields are left zero; the
//! [`framing`](super::framing) layer fills and checks them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{ProtocolError, TestRequest};
use crate::io::SkipRange;
use crate::time::{ErrorEstimate, OwampTime};
use crate::wire::{DataRecord, SessionId, Slot, SlotKind};

pub(crate) const GREETING_LEN: usize = 64;
pub(crate) const SETUP_LEN: usize = 164;
pub(crate) const SERVER_START_CLEAR_LEN: usize = 32;
pub(crate) const BLOCK: usize = 16;
pub(crate) const REQUEST_BODY_LEN: usize = 96;
pub(crate) const ACCEPT_SESSION_BODY_LEN: usize = 32;
pub(crate) const FETCH_SESSION_BODY_LEN: usize = 32;
pub(crate) const RECORD_LEN: usize = 25;

/// Message type octets of the client's requests (RFC 4656 3.4).
pub(crate) const MSG_REQUEST_SESSION: u8 = 1;
pub(crate) const MSG_START_SESSIONS: u8 = 2;
pub(crate) const MSG_STOP_SESSIONS: u8 = 3;
pub(crate) const MSG_FETCH_SESSION: u8 = 4;

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

fn be16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        a.copy_from_slice(s);
    }
    u16::from_be_bytes(a)
}

fn arr16(b: &[u8], at: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    if let Some(s) = b.get(at..at + 16) {
        a.copy_from_slice(s);
    }
    a
}

fn check_len(b: &[u8], n: usize, what: &'static str) -> Result<(), ProtocolError> {
    if b.len() < n {
        Err(ProtocolError::Malformed(what))
    } else {
        Ok(())
    }
}

/// Server-Greeting (RFC 4656 3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Greeting {
    pub modes: u32,
    pub challenge: [u8; 16],
    pub salt: [u8; 16],
    pub count: u32,
}

pub(crate) fn encode_greeting(g: &Greeting) -> Vec<u8> {
    let mut b = vec![0u8; GREETING_LEN];
    b[12..16].copy_from_slice(&g.modes.to_be_bytes());
    b[16..32].copy_from_slice(&g.challenge);
    b[32..48].copy_from_slice(&g.salt);
    b[48..52].copy_from_slice(&g.count.to_be_bytes());
    b
}

pub(crate) fn decode_greeting(b: &[u8]) -> Result<Greeting, ProtocolError> {
    check_len(b, GREETING_LEN, "Server-Greeting")?;
    Ok(Greeting {
        modes: be32(b, 12),
        challenge: arr16(b, 16),
        salt: arr16(b, 32),
        count: be32(b, 48),
    })
}

/// Set-Up-Response (RFC 4656 3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetupResponse {
    pub mode: u32,
    pub key_id: [u8; 80],
    pub token: [u8; 64],
    pub client_iv: [u8; 16],
}

pub(crate) fn encode_setup(s: &SetupResponse) -> Vec<u8> {
    let mut b = vec![0u8; SETUP_LEN];
    b[0..4].copy_from_slice(&s.mode.to_be_bytes());
    b[4..84].copy_from_slice(&s.key_id);
    b[84..148].copy_from_slice(&s.token);
    b[148..164].copy_from_slice(&s.client_iv);
    b
}

pub(crate) fn decode_setup(b: &[u8]) -> Result<SetupResponse, ProtocolError> {
    check_len(b, SETUP_LEN, "Set-Up-Response")?;
    let mut key_id = [0u8; 80];
    key_id.copy_from_slice(&b[4..84]);
    let mut token = [0u8; 64];
    token.copy_from_slice(&b[84..148]);
    Ok(SetupResponse {
        mode: be32(b, 0),
        key_id,
        token,
        client_iv: arr16(b, 148),
    })
}

/// The clear first 32 octets of Server-Start (RFC 4656 3.1): 15 MBZ, Accept, Server-IV.
pub(crate) fn encode_server_start_clear(accept: u8, server_iv: &[u8; 16]) -> Vec<u8> {
    let mut b = vec![0u8; SERVER_START_CLEAR_LEN];
    b[15] = accept;
    b[16..32].copy_from_slice(server_iv);
    b
}

pub(crate) fn decode_server_start_clear(b: &[u8]) -> Result<(u8, [u8; 16]), ProtocolError> {
    check_len(b, SERVER_START_CLEAR_LEN, "Server-Start")?;
    Ok((b[15], arr16(b, 16)))
}

/// The last block of Server-Start: Start-Time and 8 MBZ.
pub(crate) fn encode_time_block(t: OwampTime) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    b[..8].copy_from_slice(&t.raw().to_be_bytes());
    b
}

pub(crate) fn decode_time_block(b: &[u8]) -> OwampTime {
    OwampTime::from_raw(be64(b, 0))
}

fn put_addr(b: &mut [u8], at: usize, addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => b[at..at + 4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => b[at..at + 16].copy_from_slice(&a.octets()),
    }
}

fn get_addr(b: &[u8], at: usize, ipvn: u8) -> IpAddr {
    let a = arr16(b, at);
    if ipvn == 6 {
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    }
}

/// The first 112 octets of Request-Session (RFC 4656 3.5), HMAC field zero.
pub(crate) fn encode_request(r: &TestRequest) -> Vec<u8> {
    let mut b = vec![0u8; REQUEST_BODY_LEN + BLOCK];
    b[0] = MSG_REQUEST_SESSION;
    b[1] = r.ipvn & 0x0f;
    b[2] = u8::from(r.conf_sender);
    b[3] = u8::from(r.conf_receiver);
    b[4..8].copy_from_slice(&(r.slots.len() as u32).to_be_bytes());
    b[8..12].copy_from_slice(&r.packets.to_be_bytes());
    b[12..14].copy_from_slice(&r.sender_port.to_be_bytes());
    b[14..16].copy_from_slice(&r.receiver_port.to_be_bytes());
    put_addr(&mut b, 16, r.sender);
    put_addr(&mut b, 32, r.receiver);
    b[48..64].copy_from_slice(&r.sid.0);
    b[64..68].copy_from_slice(&r.padding.to_be_bytes());
    b[68..76].copy_from_slice(&r.start_time.raw().to_be_bytes());
    b[76..84].copy_from_slice(&r.timeout.to_be_bytes());
    b[84..88].copy_from_slice(&r.type_p.to_be_bytes());
    b
}

/// Decodes the first 96 octets of Request-Session; returns the request without slots and the
/// number of slots announced.
pub(crate) fn decode_request(b: &[u8]) -> Result<(TestRequest, u32), ProtocolError> {
    check_len(b, REQUEST_BODY_LEN, "Request-Session")?;
    let ipvn = b[1] & 0x0f;
    let req = TestRequest {
        ipvn,
        // The reference reads any non-zero value as true.
        conf_sender: b[2] != 0,
        conf_receiver: b[3] != 0,
        slots: Vec::new(),
        packets: be32(b, 8),
        sender_port: be16(b, 12),
        receiver_port: be16(b, 14),
        sender: get_addr(b, 16, ipvn),
        receiver: get_addr(b, 32, ipvn),
        sid: SessionId(arr16(b, 48)),
        padding: be32(b, 64),
        start_time: OwampTime::from_raw(be64(b, 68)),
        timeout: be64(b, 76),
        type_p: be32(b, 84),
    };
    Ok((req, be32(b, 4)))
}

/// One schedule slot block (RFC 4656 3.5).
pub(crate) fn encode_slot(s: &Slot) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = match s.kind {
        SlotKind::Exponential => 0,
        SlotKind::Fixed => 1,
    };
    b[8..16].copy_from_slice(&s.mean.to_be_bytes());
    b
}

pub(crate) fn decode_slot(b: &[u8]) -> Result<Slot, ProtocolError> {
    check_len(b, BLOCK, "slot")?;
    let kind = match b[0] {
        0 => SlotKind::Exponential,
        1 => SlotKind::Fixed,
        _ => return Err(ProtocolError::Malformed("slot type")),
    };
    Ok(Slot {
        kind,
        mean: be64(b, 8),
    })
}

/// Accept-Session (RFC 4656 3.5): Accept, MBZ, Port, SID, 12 MBZ, HMAC field.
pub(crate) fn encode_accept_session(accept: u8, port: u16, sid: &SessionId) -> Vec<u8> {
    let mut b = vec![0u8; ACCEPT_SESSION_BODY_LEN + BLOCK];
    b[0] = accept;
    b[2..4].copy_from_slice(&port.to_be_bytes());
    b[4..20].copy_from_slice(&sid.0);
    b
}

pub(crate) fn decode_accept_session(b: &[u8]) -> Result<(u8, u16, SessionId), ProtocolError> {
    check_len(b, ACCEPT_SESSION_BODY_LEN, "Accept-Session")?;
    Ok((b[0], be16(b, 2), SessionId(arr16(b, 4))))
}

/// Start-Sessions (RFC 4656 3.6).
pub(crate) fn encode_start_sessions() -> Vec<u8> {
    let mut b = vec![0u8; 2 * BLOCK];
    b[0] = MSG_START_SESSIONS;
    b
}

/// Start-Ack (RFC 4656 3.6).
pub(crate) fn encode_start_ack(accept: u8) -> Vec<u8> {
    let mut b = vec![0u8; 2 * BLOCK];
    b[0] = accept;
    b
}

/// One session description of Stop-Sessions (RFC 4656 3.8), as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StopEntry {
    pub sid: SessionId,
    pub next_seqno: u32,
    pub skips: Vec<SkipRange>,
}

/// A whole Stop-Sessions message with its HMAC field zero.
pub(crate) fn encode_stop(accept: u8, entries: &[StopEntry]) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    b[0] = MSG_STOP_SESSIONS;
    b[1] = accept;
    b[4..8].copy_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        b.extend_from_slice(&e.sid.0);
        let mut d = Vec::with_capacity(8 + 8 * e.skips.len());
        d.extend_from_slice(&e.next_seqno.to_be_bytes());
        d.extend_from_slice(&(e.skips.len() as u32).to_be_bytes());
        for s in &e.skips {
            d.extend_from_slice(&s.first.to_be_bytes());
            d.extend_from_slice(&s.last.to_be_bytes());
        }
        d.resize(d.len().div_ceil(BLOCK) * BLOCK, 0);
        b.extend_from_slice(&d);
    }
    b.extend_from_slice(&[0u8; BLOCK]);
    b
}

/// The header block of Stop-Sessions: Accept and number of sessions.
pub(crate) fn decode_stop_header(b: &[u8]) -> Result<(u8, u32), ProtocolError> {
    check_len(b, BLOCK, "Stop-Sessions")?;
    Ok((b[1], be32(b, 4)))
}

/// The block after a SID in Stop-Sessions: Next-Seqno, number of skip ranges, then the first
/// skip range or 8 MBZ.
pub(crate) fn decode_stop_seqno(b: &[u8]) -> Result<(u32, u32), ProtocolError> {
    check_len(b, BLOCK, "Stop-Sessions")?;
    Ok((be32(b, 0), be32(b, 4)))
}

/// Octets of a session description after its SID, for `nskips` skip ranges.
pub(crate) fn stop_desc_len(nskips: u32) -> usize {
    (8 + 8 * nskips as usize).div_ceil(BLOCK) * BLOCK
}

/// Skip ranges packed 8 octets each, from `b`.
pub(crate) fn decode_skips(b: &[u8], n: u32) -> Vec<SkipRange> {
    b.chunks_exact(8)
        .take(n as usize)
        .map(|c| SkipRange {
            first: be32(c, 0),
            last: be32(c, 4),
        })
        .collect()
}

/// Skip ranges packed 8 octets each and padded to a whole block.
pub(crate) fn encode_skips(skips: &[SkipRange]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 * skips.len() + BLOCK);
    for s in skips {
        b.extend_from_slice(&s.first.to_be_bytes());
        b.extend_from_slice(&s.last.to_be_bytes());
    }
    b.resize(b.len().div_ceil(BLOCK) * BLOCK, 0);
    b
}

/// Fetch-Session (RFC 4656 3.9).
pub(crate) fn encode_fetch_session(begin: u32, end: u32, sid: &SessionId) -> Vec<u8> {
    let mut b = vec![0u8; FETCH_SESSION_BODY_LEN + BLOCK];
    b[0] = MSG_FETCH_SESSION;
    b[8..12].copy_from_slice(&begin.to_be_bytes());
    b[12..16].copy_from_slice(&end.to_be_bytes());
    b[16..32].copy_from_slice(&sid.0);
    b
}

pub(crate) fn decode_fetch_session(b: &[u8]) -> Result<(u32, u32, SessionId), ProtocolError> {
    check_len(b, FETCH_SESSION_BODY_LEN, "Fetch-Session")?;
    Ok((be32(b, 8), be32(b, 12), SessionId(arr16(b, 16))))
}

/// Fetch-Ack (RFC 4656 3.9): Accept, Finished, MBZ, Next-Seqno, skips, records, HMAC field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FetchAck {
    pub accept: u8,
    pub finished: u8,
    pub next_seqno: u32,
    pub num_skips: u32,
    pub num_records: u32,
}

pub(crate) fn encode_fetch_ack(a: &FetchAck) -> Vec<u8> {
    let mut b = vec![0u8; 2 * BLOCK];
    b[0] = a.accept;
    b[1] = a.finished;
    b[4..8].copy_from_slice(&a.next_seqno.to_be_bytes());
    b[8..12].copy_from_slice(&a.num_skips.to_be_bytes());
    b[12..16].copy_from_slice(&a.num_records.to_be_bytes());
    b
}

pub(crate) fn decode_fetch_ack(b: &[u8]) -> Result<FetchAck, ProtocolError> {
    check_len(b, BLOCK, "Fetch-Ack")?;
    Ok(FetchAck {
        accept: b[0],
        finished: b[1],
        next_seqno: be32(b, 4),
        num_skips: be32(b, 8),
        num_records: be32(b, 12),
    })
}

/// One 25-octet data record (RFC 4656 3.8): Seqno, send and receive Error Estimates, send
/// and receive Timestamps, TTL.
pub(crate) fn encode_record(r: &DataRecord) -> [u8; RECORD_LEN] {
    let mut b = [0u8; RECORD_LEN];
    b[0..4].copy_from_slice(&r.seq.to_be_bytes());
    b[4..6].copy_from_slice(&r.send_error.raw().to_be_bytes());
    b[6..8].copy_from_slice(&r.recv_error.raw().to_be_bytes());
    b[8..16].copy_from_slice(&r.send_time.raw().to_be_bytes());
    b[16..24].copy_from_slice(&r.recv_time.raw().to_be_bytes());
    b[24] = r.ttl;
    b
}

pub(crate) fn decode_record(b: &[u8]) -> DataRecord {
    DataRecord {
        seq: be32(b, 0),
        send_error: ErrorEstimate::from_raw(be16(b, 4)),
        recv_error: ErrorEstimate::from_raw(be16(b, 6)),
        send_time: OwampTime::from_raw(be64(b, 8)),
        recv_time: OwampTime::from_raw(be64(b, 16)),
        ttl: b.get(24).copied().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let r = TestRequest {
            ipvn: 4,
            conf_sender: false,
            conf_receiver: true,
            slots: vec![],
            packets: 20,
            sender_port: 8864,
            receiver_port: 0,
            sender: IpAddr::V4(Ipv4Addr::LOCALHOST),
            receiver: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sid: SessionId::default(),
            padding: 0,
            start_time: OwampTime::from_raw(0xeeb2_5d6f_ea72_8631),
            timeout: 0x2_0005_2d67,
            type_p: 0,
        };
        let b = encode_request(&r);
        assert_eq!(hex::encode(&b[..16]), "01040001000000000000001422a00000");
        let (d, n) = decode_request(&b).unwrap();
        assert_eq!(d, r);
        assert_eq!(n, 0);
    }

    #[test]
    fn stop_layout() {
        let e = StopEntry {
            sid: SessionId([7; 16]),
            next_seqno: 20,
            skips: vec![SkipRange { first: 3, last: 4 }],
        };
        let b = encode_stop(0, &[e]);
        assert_eq!(b.len(), 16 + 16 + 16 + 16);
        assert_eq!(
            &b[32..48],
            &[0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 4]
        );
        assert_eq!(stop_desc_len(1), 16);
        assert_eq!(stop_desc_len(2), 32);
        assert_eq!(stop_desc_len(0), 16);
    }
}
