//! The Type-P descriptor of Request-Session (RFC 4656 3.5).

/// The 32-bit Type-P descriptor: which kind of packets the test sends (RFC 4656 3.5).
///
/// If the first two bits are `00`, the next six bits are a DSCP value (RFC 2474); if they are
/// `01`, the next 16 bits are a PHB ID (RFC 2836). Zero means default best-effort service.
/// The raw word is kept as received: whether a value is supported is for the session layer to
/// decide (it answers with Accept 3, not supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TypeP(pub u32);

impl TypeP {
    /// Default best-effort service.
    pub const BEST_EFFORT: TypeP = TypeP(0);

    /// The descriptor for a DSCP value; `None` if it does not fit in 6 bits.
    pub const fn from_dscp(dscp: u8) -> Option<TypeP> {
        if dscp > 63 {
            None
        } else {
            Some(TypeP((dscp as u32) << 24))
        }
    }

    /// The descriptor for a PHB ID.
    pub const fn from_phb_id(phb: u16) -> TypeP {
        TypeP((1 << 30) | ((phb as u32) << 14))
    }

    /// The DSCP value, if this is a DSCP descriptor with every other bit zero.
    pub const fn dscp(self) -> Option<u8> {
        if self.0 & !0x3f00_0000 == 0 {
            Some((self.0 >> 24) as u8)
        } else {
            None
        }
    }

    /// The PHB ID, if this is a PHB descriptor with every other bit zero.
    pub const fn phb_id(self) -> Option<u16> {
        if self.0 >> 30 == 1 && self.0 & 0x3fff == 0 {
            Some((self.0 >> 14) as u16)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dscp_and_phb() {
        assert_eq!(TypeP::BEST_EFFORT.dscp(), Some(0));
        assert_eq!(TypeP::from_dscp(46), Some(TypeP(0x2e00_0000)));
        assert_eq!(TypeP(0x2e00_0000).dscp(), Some(46));
        assert_eq!(TypeP::from_dscp(64), None);
        assert_eq!(TypeP(0x2e00_0001).dscp(), None);
        assert_eq!(TypeP(0x8000_0000).dscp(), None);
        let p = TypeP::from_phb_id(0xabcd);
        assert_eq!(p.phb_id(), Some(0xabcd));
        assert_eq!(p.dscp(), None);
        assert_eq!(TypeP(0x2e00_0000).phb_id(), None);
    }
}
