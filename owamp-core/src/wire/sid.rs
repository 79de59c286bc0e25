//! The Session Identifier (RFC 4656 3.5).

/// A 16-octet SID: the receiver's IPv4 address (or an IPv6 address hash), a timestamp and 4
/// random octets (RFC 4656 3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct SessionId(pub [u8; 16]);
