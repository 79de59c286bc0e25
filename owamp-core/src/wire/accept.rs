//! The Accept field of OWAMP-Control replies (RFC 4656 3.3).

use core::fmt;

/// The value of an Accept field (RFC 4656 3.3). Values above 5 are reserved and rejected when
/// parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcceptCode {
    /// 0: OK.
    Ok,
    /// 1: failure, reason unspecified (catch-all).
    Failure,
    /// 2: internal error.
    InternalError,
    /// 3: some aspect of the request is not supported.
    NotSupported,
    /// 4: cannot perform the request due to permanent resource limitations.
    PermanentResourceLimit,
    /// 5: cannot perform the request due to temporary resource limitations.
    TemporaryResourceLimit,
}

impl AcceptCode {
    /// The wire value.
    pub const fn to_u8(self) -> u8 {
        match self {
            AcceptCode::Ok => 0,
            AcceptCode::Failure => 1,
            AcceptCode::InternalError => 2,
            AcceptCode::NotSupported => 3,
            AcceptCode::PermanentResourceLimit => 4,
            AcceptCode::TemporaryResourceLimit => 5,
        }
    }

    /// The code for a wire value; `None` for reserved values.
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => AcceptCode::Ok,
            1 => AcceptCode::Failure,
            2 => AcceptCode::InternalError,
            3 => AcceptCode::NotSupported,
            4 => AcceptCode::PermanentResourceLimit,
            5 => AcceptCode::TemporaryResourceLimit,
            _ => return None,
        })
    }

    /// Whether the request was accepted.
    pub const fn is_ok(self) -> bool {
        matches!(self, AcceptCode::Ok)
    }

    /// Parses the field at `offset` of `message`.
    pub(crate) fn parse_field(
        message: &'static str,
        offset: usize,
        v: u8,
    ) -> Result<Self, super::WireError> {
        Self::from_u8(v).ok_or(super::WireError::invalid(message, "accept code", offset, v))
    }
}

impl TryFrom<u8> for AcceptCode {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        Self::from_u8(v).ok_or(v)
    }
}

impl From<AcceptCode> for u8 {
    fn from(c: AcceptCode) -> u8 {
        c.to_u8()
    }
}

impl fmt::Display for AcceptCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AcceptCode::Ok => "OK",
            AcceptCode::Failure => "failure",
            AcceptCode::InternalError => "internal error",
            AcceptCode::NotSupported => "not supported",
            AcceptCode::PermanentResourceLimit => "permanent resource limitation",
            AcceptCode::TemporaryResourceLimit => "temporary resource limitation",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_values() {
        for v in 0..=255u8 {
            match AcceptCode::from_u8(v) {
                Some(c) => {
                    assert!(v <= 5);
                    assert_eq!(c.to_u8(), v);
                }
                None => assert!(v > 5),
            }
        }
        assert!(AcceptCode::Ok.is_ok());
        assert!(!AcceptCode::Failure.is_ok());
        assert_eq!(AcceptCode::try_from(6), Err(6));
    }
}
