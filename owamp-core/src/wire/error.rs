//! Errors from parsing OWAMP messages.

/// Why a byte string is not a valid OWAMP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Fewer bytes than the message needs.
    #[error("{message}: truncated: need {needed} octets, have {got}")]
    Truncated {
        /// The message being parsed.
        message: &'static str,
        /// Octets the message needs.
        needed: usize,
        /// Octets available.
        got: usize,
    },
    /// More bytes than the message holds (the caller framed it wrongly).
    #[error("{message}: wrong length: expected {expected} octets, got {got}")]
    Length {
        /// The message being parsed.
        message: &'static str,
        /// Octets the message holds.
        expected: usize,
        /// Octets given.
        got: usize,
    },
    /// A must-be-zero field holds a non-zero octet.
    #[error("{message}: non-zero MBZ octet at offset {offset}")]
    Mbz {
        /// The message being parsed.
        message: &'static str,
        /// Offset of the first offending octet within the message.
        offset: usize,
    },
    /// A field holds a value the protocol does not allow.
    #[error("{message}: invalid {field} at offset {offset}: {value:#x}")]
    Invalid {
        /// The message being parsed.
        message: &'static str,
        /// The field name.
        field: &'static str,
        /// Offset of the field within the message.
        offset: usize,
        /// The offending value.
        value: u64,
    },
    /// A count field exceeds what this implementation accepts, or the length it implies does not
    /// fit in memory.
    #[error("{message}: {field} {count} exceeds the limit of {max}")]
    TooMany {
        /// The message being parsed.
        message: &'static str,
        /// The count field.
        field: &'static str,
        /// The value received.
        count: u64,
        /// The largest accepted value.
        max: u64,
    },
}

impl WireError {
    pub(crate) fn invalid(
        message: &'static str,
        field: &'static str,
        offset: usize,
        value: impl Into<u64>,
    ) -> Self {
        WireError::Invalid {
            message,
            field,
            offset,
            value: value.into(),
        }
    }
}

/// Checks that every octet of `bytes` is zero; `base` is the offset of `bytes` in the message.
pub(crate) fn check_mbz(message: &'static str, bytes: &[u8], base: usize) -> Result<(), WireError> {
    match bytes.iter().position(|&b| b != 0) {
        None => Ok(()),
        Some(i) => Err(WireError::Mbz {
            message,
            offset: base + i,
        }),
    }
}

/// Checks that `bytes` is exactly `expected` octets long.
pub(crate) fn check_len(
    message: &'static str,
    bytes: &[u8],
    expected: usize,
) -> Result<(), WireError> {
    use core::cmp::Ordering;
    match bytes.len().cmp(&expected) {
        Ordering::Equal => Ok(()),
        Ordering::Less => Err(WireError::Truncated {
            message,
            needed: expected,
            got: bytes.len(),
        }),
        Ordering::Greater => Err(WireError::Length {
            message,
            expected,
            got: bytes.len(),
        }),
    }
}
