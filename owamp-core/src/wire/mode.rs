//! OWAMP-Control modes (RFC 4656 3.1).

use core::fmt;
use core::ops::{BitOr, BitOrAssign};

/// One security mode of an OWAMP-Control connection and its test sessions (RFC 4656 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Unauthenticated mode, bit value 1.
    Open,
    /// Authenticated mode, bit value 2: control is encrypted and HMAC-protected, test packets
    /// are partly encrypted.
    Authenticated,
    /// Encrypted mode, bit value 4: control and test packets are encrypted.
    Encrypted,
}

impl Mode {
    /// All modes, weakest first.
    pub const ALL: [Mode; 3] = [Mode::Open, Mode::Authenticated, Mode::Encrypted];

    /// The mode's bit in the Modes word and its value in Set-Up-Response.
    pub const fn bits(self) -> u32 {
        match self {
            Mode::Open => 1,
            Mode::Authenticated => 2,
            Mode::Encrypted => 4,
        }
    }

    /// The mode whose Set-Up-Response value is `value`; `None` unless exactly one known bit.
    pub const fn from_bits(value: u32) -> Option<Mode> {
        match value {
            1 => Some(Mode::Open),
            2 => Some(Mode::Authenticated),
            4 => Some(Mode::Encrypted),
            _ => None,
        }
    }

    /// Whether the mode encrypts the control connection (authenticated and encrypted modes).
    pub const fn is_secure(self) -> bool {
        !matches!(self, Mode::Open)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Open => "open",
            Mode::Authenticated => "authenticated",
            Mode::Encrypted => "encrypted",
        })
    }
}

/// The Modes word of a Server-Greeting: a set of modes. Bits this implementation does not know
/// are kept (so the word re-encodes unchanged) but never reported as a [`Mode`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Modes(u32);

impl Modes {
    const KNOWN: u32 = 7;

    /// No modes: the server refuses the connection (RFC 4656 3.1).
    pub const EMPTY: Modes = Modes(0);

    /// Open, authenticated and encrypted.
    pub const ALL: Modes = Modes(Self::KNOWN);

    /// Only open (unauthenticated) mode, bit value 1.
    pub const OPEN: Modes = Modes(Mode::Open.bits());

    /// Only authenticated mode, bit value 2.
    pub const AUTHENTICATED: Modes = Modes(Mode::Authenticated.bits());

    /// Only encrypted mode, bit value 4.
    pub const ENCRYPTED: Modes = Modes(Mode::Encrypted.bits());

    /// The set with the given wire bits, unknown bits included.
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }

    /// The wire bits.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Whether `mode` is in the set.
    pub const fn contains(self, mode: Mode) -> bool {
        self.0 & mode.bits() != 0
    }

    /// The set with `mode` added.
    pub const fn with(self, mode: Mode) -> Self {
        Self(self.0 | mode.bits())
    }

    /// The set with `mode` removed.
    pub const fn without(self, mode: Mode) -> Self {
        Self(self.0 & !mode.bits())
    }

    /// The intersection of two sets.
    pub const fn intersection(self, other: Modes) -> Self {
        Self(self.0 & other.0)
    }

    /// Only the known bits.
    pub const fn known(self) -> Self {
        Self(self.0 & Self::KNOWN)
    }

    /// Whether no known mode is in the set.
    pub const fn is_empty(self) -> bool {
        self.0 & Self::KNOWN == 0
    }

    /// The known modes in the set, weakest first.
    pub fn iter(self) -> impl Iterator<Item = Mode> {
        Mode::ALL.into_iter().filter(move |m| self.contains(*m))
    }

    /// The strongest known mode in the set.
    pub fn strongest(self) -> Option<Mode> {
        self.iter().last()
    }
}

impl From<Mode> for Modes {
    fn from(m: Mode) -> Self {
        Modes(m.bits())
    }
}

impl FromIterator<Mode> for Modes {
    fn from_iter<I: IntoIterator<Item = Mode>>(iter: I) -> Self {
        iter.into_iter().fold(Modes::EMPTY, Modes::with)
    }
}

impl BitOr for Modes {
    type Output = Modes;
    fn bitor(self, rhs: Modes) -> Modes {
        Modes(self.0 | rhs.0)
    }
}

impl BitOr<Mode> for Modes {
    type Output = Modes;
    fn bitor(self, rhs: Mode) -> Modes {
        self.with(rhs)
    }
}

impl BitOr for Mode {
    type Output = Modes;
    fn bitor(self, rhs: Mode) -> Modes {
        Modes::from(self).with(rhs)
    }
}

impl BitOrAssign<Mode> for Modes {
    fn bitor_assign(&mut self, rhs: Mode) {
        *self = self.with(rhs);
    }
}

impl fmt::Debug for Modes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_set();
        l.entries(self.iter());
        let unknown = self.0 & !Self::KNOWN;
        if unknown != 0 {
            l.entry(&format_args!("{unknown:#x}"));
        }
        l.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_and_sets() {
        assert_eq!(Mode::from_bits(1), Some(Mode::Open));
        assert_eq!(Mode::from_bits(2), Some(Mode::Authenticated));
        assert_eq!(Mode::from_bits(4), Some(Mode::Encrypted));
        for bad in [0, 3, 5, 6, 7, 8, 0x8000_0000] {
            assert_eq!(Mode::from_bits(bad), None, "{bad}");
        }
        let m = Modes::from_raw(0x0000_0007);
        assert_eq!(m, Modes::ALL);
        assert_eq!(
            Modes::OPEN | Modes::AUTHENTICATED | Modes::ENCRYPTED,
            Modes::ALL
        );
        assert_eq!(
            Modes::AUTHENTICATED.iter().collect::<Vec<_>>(),
            [Mode::Authenticated]
        );
        assert_eq!(Modes::EMPTY.with(Mode::Encrypted), Modes::ENCRYPTED);
        assert_eq!(Modes::OPEN.raw(), 1);
        assert_eq!(m.iter().collect::<Vec<_>>(), Mode::ALL);
        assert_eq!(m.strongest(), Some(Mode::Encrypted));
        let odd = Modes::from_raw(0x8000_0006);
        assert!(!odd.contains(Mode::Open));
        assert!(odd.contains(Mode::Authenticated));
        assert_eq!(odd.known().raw(), 6);
        assert_eq!(odd.raw(), 0x8000_0006);
        assert!(Modes::from_raw(0x10).is_empty());
        assert_eq!((Mode::Open | Mode::Encrypted).raw(), 5);
        assert_eq!(Modes::ALL.without(Mode::Open).raw(), 6);
        assert_eq!(format!("{odd:?}"), "{Authenticated, Encrypted, 0x80000000}");
    }
}
