//! Session keys carried in the Token (RFC 4656 3.1).

use core::fmt;

use rand_core::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The AES and HMAC session keys chosen by the client and sent in the Token
/// (RFC 4656 3.1).
///
/// `Debug` does not print the keys; they are wiped when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SessionKeys {
    /// AES-128 session key: encrypts the control connection and derives test packet keys.
    pub aes: [u8; 16],
    /// HMAC-SHA1 session key: authenticates the control connection and derives test packet
    /// HMAC keys.
    pub hmac: [u8; 32],
}

impl SessionKeys {
    /// Draws fresh keys from a cryptographic RNG (the client does this for each connection).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut keys = Self {
            aes: [0; 16],
            hmac: [0; 32],
        };
        rng.fill_bytes(&mut keys.aes);
        rng.fill_bytes(&mut keys.hmac);
        keys
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKeys { aes: <redacted>, hmac: <redacted> }")
    }
}

impl PartialEq for SessionKeys {
    fn eq(&self, other: &Self) -> bool {
        (self.aes.ct_eq(&other.aes) & self.hmac.ct_eq(&other.hmac)).into()
    }
}

impl Eq for SessionKeys {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn generate_is_random_and_debug_redacts() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let a = SessionKeys::generate(&mut rng);
        let b = SessionKeys::generate(&mut rng);
        assert_ne!(a, b);
        assert_ne!(a.aes, [0; 16]);
        let s = format!("{a:?}");
        assert!(s.contains("redacted"));
        for byte in a.aes.iter().chain(a.hmac.iter()) {
            assert!(!s.contains(&format!("{byte}, ")));
        }
    }
}
