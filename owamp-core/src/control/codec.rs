//! The state machines' view of the message layouts of [`crate::wire`]: lengths, HMAC field
//! positions and the few octets read before a message is complete.
//!
//! Messages are encoded and parsed by `wire` as whole plaintext buffers. HMAC fields are
//! written as zero and filled in (and checked) by the [`framing`](super::framing) layer.

use crate::proto::ProtocolError;
use crate::wire::{AcceptCode, WireError, BLOCK_LEN};

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
