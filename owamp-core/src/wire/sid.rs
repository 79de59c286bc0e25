//! The Session Identifier (RFC 4656 3.5).

use core::fmt;

/// A 16-octet SID: the receiver's IPv4 address (or an IPv6 address hash), a timestamp and 4
/// random octets (RFC 4656 3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// Whether every octet is zero: a Request-Session leaves the SID zero when the server, as
    /// receiver, assigns it.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

/// Lower-case hex, 32 digits, as owping prints it.
impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_zero() {
        let s = SessionId([
            0x7f, 0, 0, 1, 0xee, 0xb2, 0x5d, 0x6e, 0xf6, 0x42, 0x17, 0xd2, 0xe7, 0xf3, 0xe7, 0x51,
        ]);
        assert_eq!(s.to_string(), "7f000001eeb25d6ef64217d2e7f3e751");
        assert!(!s.is_zero());
        assert!(SessionId::default().is_zero());
    }
}
