//! STAMP's authenticated mode (RFC 8762 4.4): HMAC-SHA-256 truncated to 128 bits over the
//! octets before the HMAC field, with a key provisioned out of band.

use core::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::CryptoError;

/// Offset of the HMAC field in an authenticated STAMP packet, sender's or reflector's (RFC
/// 8762 4.2.2 and 4.3.2): it covers the 96 octets before it.
pub const STAMP_HMAC_OFFSET: usize = 96;

/// Octets of the truncated HMAC (RFC 8762 4.4: HMAC-SHA-256 truncated to 128 bits).
const TAG_LEN: usize = 16;

/// Why a STAMP key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StampKeyError {
    /// Shorter than [`StampKey::MIN_LEN`] octets.
    #[error("a STAMP key has at least {min} octets, this one has {len}")]
    TooShort {
        /// Octets given.
        len: usize,
        /// The least accepted.
        min: usize,
    },
    /// Longer than [`StampKey::MAX_LEN`] octets.
    #[error("a STAMP key has at most {max} octets, this one has {len}")]
    TooLong {
        /// Octets given.
        len: usize,
        /// The most accepted.
        max: usize,
    },
}

/// The shared key of authenticated STAMP (RFC 8762 4.4). Its octets are wiped when it is
/// dropped and `Debug` prints `StampKey(<redacted>)`.
///
/// ```
/// use owamp_core::crypto::StampKey;
///
/// let key = StampKey::new(vec![7; 32])?;
/// let mut packet = [0u8; 112];
/// key.seal(&mut packet)?;
/// key.verify(&packet)?;
/// packet[3] ^= 1;
/// assert!(key.verify(&packet).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct StampKey(Vec<u8>);

impl StampKey {
    /// The shortest key accepted: RFC 4868 2.1.2 asks for keys of at least the HMAC's
    /// output length; 16 octets is the least that is not trivially guessed.
    pub const MIN_LEN: usize = 16;
    /// The longest key accepted (a SHA-256 block: longer keys are hashed first anyway).
    pub const MAX_LEN: usize = 64;

    /// Takes the key octets.
    pub fn new(octets: Vec<u8>) -> Result<Self, StampKeyError> {
        let len = octets.len();
        if len < Self::MIN_LEN {
            let mut o = octets;
            o.zeroize();
            return Err(StampKeyError::TooShort {
                len,
                min: Self::MIN_LEN,
            });
        }
        if len > Self::MAX_LEN {
            let mut o = octets;
            o.zeroize();
            return Err(StampKeyError::TooLong {
                len,
                max: Self::MAX_LEN,
            });
        }
        Ok(Self(octets))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length: this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    /// Writes the HMAC of `packet[..96]` into `packet[96..112]`.
    pub fn seal(&self, packet: &mut [u8]) -> Result<(), CryptoError> {
        let (covered, rest) = split(packet)?;
        let mut mac = self.mac();
        mac.update(covered);
        let tag = mac.finalize().into_bytes();
        rest[..TAG_LEN].copy_from_slice(&tag[..TAG_LEN]);
        Ok(())
    }

    /// Checks the HMAC at `packet[96..112]` in constant time.
    pub fn verify(&self, packet: &[u8]) -> Result<(), CryptoError> {
        let min = STAMP_HMAC_OFFSET + TAG_LEN;
        let (covered, rest) = match (
            packet.get(..STAMP_HMAC_OFFSET),
            packet.get(STAMP_HMAC_OFFSET..min),
        ) {
            (Some(c), Some(r)) => (c, r),
            _ => {
                return Err(CryptoError::TooShort {
                    len: packet.len(),
                    min,
                })
            }
        };
        let mut mac = self.mac();
        mac.update(covered);
        mac.verify_truncated_left(rest)
            .map_err(|_| CryptoError::HmacMismatch)
    }
}

fn split(packet: &mut [u8]) -> Result<(&[u8], &mut [u8]), CryptoError> {
    let min = STAMP_HMAC_OFFSET + TAG_LEN;
    if packet.len() < min {
        return Err(CryptoError::TooShort {
            len: packet.len(),
            min,
        });
    }
    let (a, b) = packet.split_at_mut(STAMP_HMAC_OFFSET);
    Ok((a, b))
}

impl fmt::Debug for StampKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StampKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_is_truncated_hmac_sha256_of_the_first_96_octets() {
        // RFC 4231 test case 2 style check: the tag is the first 16 octets of HMAC-SHA-256.
        let key = StampKey::new(b"Jefe-is-a-16-octet-key".to_vec()).unwrap();
        let mut p = [0xabu8; 120];
        key.seal(&mut p).unwrap();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe-is-a-16-octet-key").unwrap();
        mac.update(&[0xab; 96]);
        let full = mac.finalize().into_bytes();
        assert_eq!(&p[96..112], &full[..16]);
        assert_eq!(&p[112..], &[0xab; 8]);
        key.verify(&p).unwrap();
        let other = StampKey::new(vec![1; 16]).unwrap();
        assert_eq!(other.verify(&p), Err(CryptoError::HmacMismatch));
    }

    #[test]
    fn short_packets_and_bad_keys_are_errors() {
        let key = StampKey::new(vec![1; 16]).unwrap();
        assert!(matches!(
            key.verify(&[0; 111]),
            Err(CryptoError::TooShort { len: 111, min: 112 })
        ));
        assert!(key.seal(&mut [0; 50]).is_err());
        assert_eq!(
            StampKey::new(vec![0; 15]).unwrap_err(),
            StampKeyError::TooShort { len: 15, min: 16 }
        );
        assert!(StampKey::new(vec![0; 65]).is_err());
        assert_eq!(format!("{key:?}"), "StampKey(<redacted>)");
    }
}
