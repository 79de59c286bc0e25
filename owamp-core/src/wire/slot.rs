//! Schedule slots of a Request-Session message (RFC 4656 3.5).

/// What kind of gap a slot describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotKind {
    /// Slot type 0: an exponentially distributed gap with the given mean (Appendix B).
    Exponential,
    /// Slot type 1: a fixed gap.
    Fixed,
}

/// One schedule slot: a kind and a mean (or fixed) gap in 32.32 fixed-point seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    /// Exponential or fixed.
    pub kind: SlotKind,
    /// The mean gap (exponential) or the gap (fixed), in seconds as 32.32 fixed point.
    pub mean: u64,
}
