//! The state machines' view of the message layouts of [`crate::wire`]: lengths, HMAC field
//! positions and the few octets read before a message is complete.
//!
//! Messages are encoded and parsed by `wire` as whole plaintext buffers. HMAC fields are
//! written as zero and filled in (and checked) by the [`framing`](super::framing) layer.

use super::ProtocolError;
use crate::io::Finished;
use crate::wire::{AcceptCode, FetchAck, WireError, BLOCK_LEN};

pub(crate) const BLOCK: usize = BLOCK_LEN;

/// Message type octets of the client's requests (RFC 4656 3.4).
pub(crate) const MSG_REQUEST_SESSION: u8 = crate::wire::RequestSession::COMMAND;
pub(crate) const MSG_START_SESSIONS: u8 = crate::wire::StartSessions::COMMAND;
pub(crate) const MSG_STOP_SESSIONS: u8 = crate::wire::StopSessions::COMMAND;
pub(crate) const MSG_FETCH_SESSION: u8 = crate::wire::FetchSession::COMMAND;

/// Octets of Request-Session before its first HMAC.
pub(crate) const REQUEST_BODY_LEN: usize = crate::wire::RequestSession::HMAC_OFFSET;

impl From<WireError> for ProtocolError {
    fn from(e: WireError) -> Self {
        ProtocolError::Wire(e)
    }
}

/// An Accept octet received in a message whose parse is not complete yet; reserved values
/// are a protocol error, as in the reference.
pub(crate) fn accept_at(b: &[u8], at: usize) -> Result<AcceptCode, ProtocolError> {
    b.get(at)
        .copied()
        .and_then(AcceptCode::from_u8)
        .ok_or(ProtocolError::Malformed("Accept field"))
}

/// Fetch-Ack carries the reference's three-valued Finished octet (0 running, 1 normal,
/// 2 incomplete); `wire::FetchAck` keeps it as a flag, so the octet is set here.
pub(crate) fn encode_fetch_ack(ack: &FetchAck, finished: Finished) -> Vec<u8> {
    let mut b = ack.to_bytes();
    if let Some(f) = b.get_mut(1) {
        *f = finished.to_u8();
    }
    b
}

/// The Finished octet of a plaintext Fetch-Ack.
pub(crate) fn fetch_ack_finished(b: &[u8]) -> Finished {
    Finished::from_u8(b.get(1).copied().unwrap_or(0))
}

/// Splits an encoded message (HMAC fields zero) into the part up to and including its first
/// HMAC field and the rest.
pub(crate) fn split_at_first_hmac(mut msg: Vec<u8>, body: usize) -> (Vec<u8>, Vec<u8>) {
    let rest = msg.split_off((body + BLOCK).min(msg.len()));
    (msg, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_ack_carries_the_three_valued_finished_octet() {
        let ack = FetchAck {
            accept: AcceptCode::Ok,
            finished: true,
            next_seqno: 0,
            num_skip_ranges: 0,
            num_records: 7,
            hmac: [0; 16],
        };
        for f in [Finished::No, Finished::Normal, Finished::Incomplete] {
            let b = encode_fetch_ack(&ack, f);
            assert_eq!(b.len(), FetchAck::LEN);
            assert_eq!(b[1], f.to_u8());
            assert_eq!(fetch_ack_finished(&b), f);
            assert_eq!(FetchAck::parse(&b).unwrap().num_records, 7);
        }
    }

    #[test]
    fn split_keeps_the_first_hmac_with_the_first_part() {
        let (a, b) = split_at_first_hmac((0..160u8).collect(), REQUEST_BODY_LEN);
        assert_eq!(a.len(), 112);
        assert_eq!(b.len(), 48);
        assert_eq!(b[0], 112);
    }

    #[test]
    fn reserved_accept_values_are_errors() {
        assert_eq!(
            accept_at(&[5], 0).unwrap(),
            AcceptCode::TemporaryResourceLimit
        );
        assert!(accept_at(&[6], 0).is_err());
        assert!(accept_at(&[], 0).is_err());
    }
}
