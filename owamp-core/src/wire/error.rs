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
}
