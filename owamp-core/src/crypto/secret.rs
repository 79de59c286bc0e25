//! The shared secret of authenticated and encrypted modes (RFC 4656 3.1, 6.5).

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A shared passphrase: the raw octets an identity (KeyID) authenticates with, without a
/// trailing newline (RFC 4656 3.1).
///
/// Its octets are wiped when it is dropped, `Debug` prints `Passphrase(<redacted>)`, and
/// equality is checked in constant time (for a given length).
///
/// ```
/// use owamp_core::crypto::Passphrase;
///
/// let p = Passphrase::from("correct horse battery staple");
/// assert_eq!(p.as_bytes().len(), 28);
/// assert_eq!(format!("{p:?}"), "Passphrase(<redacted>)");
/// ```
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct Passphrase(Vec<u8>);

impl Passphrase {
    /// Takes the octets (no copy is made: the vector becomes the passphrase's storage).
    pub fn new(octets: Vec<u8>) -> Self {
        Self(octets)
    }

    /// The octets.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Number of octets.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it has no octets.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Passphrase {
    fn from(octets: Vec<u8>) -> Self {
        Self(octets)
    }
}

impl From<&[u8]> for Passphrase {
    fn from(octets: &[u8]) -> Self {
        Self(octets.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for Passphrase {
    fn from(octets: &[u8; N]) -> Self {
        Self(octets.to_vec())
    }
}

impl From<&str> for Passphrase {
    fn from(s: &str) -> Self {
        Self(s.as_bytes().to_vec())
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

impl PartialEq for Passphrase {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Passphrase {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_octet() {
        let p = Passphrase::from(&[0xab, 0xcd, 0x12][..]);
        let s = format!("{p:?} {p:#?}");
        for needle in ["ab", "cd", "171", "205", "18"] {
            assert!(!s.contains(needle), "{s}");
        }
    }

    #[test]
    fn wiping_clears_the_octets() {
        let mut p = Passphrase::from("secret");
        p.zeroize();
        assert!(p.is_empty());
        assert_eq!(p, Passphrase::default());
        assert_ne!(Passphrase::from("a"), Passphrase::from("b"));
        assert_ne!(Passphrase::from("a"), Passphrase::from("aa"));
    }
}
