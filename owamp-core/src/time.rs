//! OWAMP timestamps and error estimates (RFC 4656 4.1.2).

/// A timestamp in the 64-bit NTP format used by OWAMP (RFC 4656 4.1.2): the high 32 bits count
/// seconds since 1900-01-01 00:00 UTC, the low 32 bits are a binary fraction of a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct OwampTime(u64);

impl OwampTime {
    /// The timestamp whose wire representation is `raw`.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The 64-bit wire representation.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

/// The 16-bit Error Estimate of RFC 4656 4.1.2: S (synchronized) bit, Z bit, 6-bit scale and
/// 8-bit multiplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ErrorEstimate(u16);

impl ErrorEstimate {
    /// The estimate whose wire representation is `raw`.
    pub const fn from_raw(raw: u16) -> Self {
        Self(raw)
    }

    /// The 16-bit wire representation.
    pub const fn raw(self) -> u16 {
        self.0
    }
}
