//! Errors from reading and writing .owp session data files.

/// Why a .owp file could not be read or written.
///
/// Every variant that comes from the file's bytes says which field was wrong and at which octet
/// offset of the file it starts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OwpError {
    /// The file ends before a field it needs.
    #[error(
        "truncated: {field} at offset {offset} needs {needed} octets, the file has {available}"
    )]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Offset of the field in the file.
        offset: u64,
        /// Octets the field needs.
        needed: u64,
        /// Octets the file has from that offset on.
        available: u64,
    },
    /// The file does not start with "OwA\0".
    #[error("not an owp file: magic at offset 0 is {found:02x?}, expected \"OwA\\0\"")]
    BadMagic {
        /// The first four octets.
        found: [u8; 4],
    },
    /// A file version this implementation does not read.
    #[error("unsupported owp file version {version} at offset 4 (only version 3 is read, and 131 for two-way files)")]
    UnsupportedVersion {
        /// The version word.
        version: u32,
    },
    /// A field holds a value the format does not allow.
    #[error("invalid {field} at offset {offset}: {value:#x}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Offset of the field in the file.
        offset: u64,
        /// The offending value.
        value: u64,
    },
    /// The stored Request-Session (which starts at offset 40) is invalid; the offsets in the
    /// cause count from its start.
    #[error("stored Request-Session at offset 40: {0}")]
    Request(#[source] crate::wire::WireError),
    /// The header's offsets or counts contradict each other or the file size.
    #[error("inconsistent header: {0}")]
    Layout(String),
    /// A data record holds an invalid error estimate (multiplier zero, RFC 4656 4.1.2).
    #[error("invalid data record {index} at offset {offset}: {field} has a zero multiplier")]
    InvalidRecord {
        /// Index of the record among the data records.
        index: u64,
        /// Offset of the record in the file.
        offset: u64,
        /// The invalid field.
        field: &'static str,
    },
    /// A two-way (TWAMP) file where a one-way session file was expected.
    #[error("a two-way (TWAMP) session file: version word at offset 4 has the two-way flag (128)")]
    TwoWay,
    /// A one-way session file where a two-way (TWAMP) file was expected.
    #[error(
        "not a two-way (TWAMP) session file: version word at offset 4 lacks the two-way flag (128)"
    )]
    OneWay,
    /// The underlying reader or writer failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
