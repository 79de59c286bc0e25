//! Schedule slots of a Request-Session message (RFC 4656 3.5).

use crate::time::Interval;

use zerocopy::network_endian::U64;
use zerocopy::{FromBytes, IntoBytes};

use super::error::{check_len, check_mbz, WireError};
use super::raw;

/// What kind of gap a slot describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotKind {
    /// Slot type 0: an exponentially distributed gap with the given mean (Appendix B).
    Exponential,
    /// Slot type 1: a fixed gap.
    Fixed,
}

impl SlotKind {
    /// The slot type octet.
    pub const fn to_u8(self) -> u8 {
        match self {
            SlotKind::Exponential => 0,
            SlotKind::Fixed => 1,
        }
    }

    /// The kind for a slot type octet; `None` for other values.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(SlotKind::Exponential),
            1 => Some(SlotKind::Fixed),
            _ => None,
        }
    }
}

/// One schedule slot: a kind and a mean (or fixed) gap in 32.32 fixed-point seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    /// Exponential or fixed.
    pub kind: SlotKind,
    /// The mean gap (exponential) or the gap (fixed).
    pub mean: Interval,
}

impl Slot {
    /// Octets of one encoded slot.
    pub const LEN: usize = 16;
    const NAME: &'static str = "schedule slot";

    /// Decodes a 16-octet slot: type octet (0 or 1), 7 MBZ octets, 64-bit mean.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        check_len(Self::NAME, bytes, Self::LEN)?;
        let r = raw::Slot::read_from_bytes(bytes).map_err(|_| WireError::Truncated {
            message: Self::NAME,
            needed: Self::LEN,
            got: bytes.len(),
        })?;
        Self::from_raw(&r, 0)
    }

    /// Validates a slot layout; `base` is its offset in the enclosing message.
    pub(crate) fn from_raw(r: &raw::Slot, base: usize) -> Result<Self, WireError> {
        let kind = SlotKind::from_u8(r.kind).ok_or(WireError::invalid(
            Self::NAME,
            "slot type",
            base,
            r.kind,
        ))?;
        check_mbz(Self::NAME, &r.mbz, base + 1)?;
        Ok(Slot {
            kind,
            mean: Interval::from_raw(r.mean.get()),
        })
    }

    pub(crate) fn to_raw(self) -> raw::Slot {
        raw::Slot {
            kind: self.kind.to_u8(),
            mbz: [0; 7],
            mean: U64::new(self.mean.raw()),
        }
    }

    /// Encodes the slot as 16 octets.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b.copy_from_slice(self.to_raw().as_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn reference_slot() {
        // `-i 0.05`, exponential (from the reference traces).
        let b: [u8; 16] = hex::decode("0000000000000000000000000ccccccc")
            .unwrap()
            .try_into()
            .unwrap();
        let s = Slot::parse(&b).unwrap();
        assert_eq!(s.kind, SlotKind::Exponential);
        assert_eq!(s.mean, Interval::from_raw(0x0ccc_cccc));
        assert_eq!(s.mean.to_duration(), Duration::from_millis(50));
        assert_eq!(s.to_bytes(), b);
    }

    #[test]
    fn bad_slots() {
        let mut b = [0u8; 16];
        b[0] = 2;
        assert!(matches!(Slot::parse(&b), Err(WireError::Invalid { .. })));
        b[0] = 1;
        b[7] = 1;
        assert_eq!(
            Slot::parse(&b),
            Err(WireError::Mbz {
                message: "schedule slot",
                offset: 7
            })
        );
        assert!(matches!(
            Slot::parse(&b[..15]),
            Err(WireError::Truncated { .. })
        ));
    }
}
