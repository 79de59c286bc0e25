//! The Token of Set-Up-Response (RFC 4656 3.1).

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use aes::Aes128;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use super::{CryptoError, DerivedKey, SessionKeys, BLOCK_LEN};

/// Length of the Token in octets.
pub const TOKEN_LEN: usize = 64;

type CbcEnc = cbc::Encryptor<Aes128>;
type CbcDec = cbc::Decryptor<Aes128>;

/// Builds the Token (client side): AES-128-CBC with IV = 0 under the derived key of
/// challenge (16) || AES session key (16) || HMAC session key (32) (RFC 4656 3.1).
pub fn seal_token(key: &DerivedKey, challenge: &[u8; 16], keys: &SessionKeys) -> [u8; TOKEN_LEN] {
    let mut token = [0u8; TOKEN_LEN];
    token[..16].copy_from_slice(challenge);
    token[16..32].copy_from_slice(&keys.aes);
    token[32..].copy_from_slice(&keys.hmac);
    let mut enc = CbcEnc::new(key.as_bytes().into(), &[0u8; BLOCK_LEN].into());
    for block in token.chunks_exact_mut(BLOCK_LEN) {
        enc.encrypt_block_mut(block.into());
    }
    token
}

/// Decrypts a Token without checking it, returning the challenge and the session keys.
///
/// A server should use [`open_token`], which also checks the challenge.
pub fn decrypt_token(key: &DerivedKey, token: &[u8; TOKEN_LEN]) -> ([u8; 16], SessionKeys) {
    let mut plain = *token;
    let mut dec = CbcDec::new(key.as_bytes().into(), &[0u8; BLOCK_LEN].into());
    for block in plain.chunks_exact_mut(BLOCK_LEN) {
        dec.decrypt_block_mut(block.into());
    }
    let mut challenge = [0u8; 16];
    let mut keys = SessionKeys {
        aes: [0; 16],
        hmac: [0; 32],
    };
    challenge.copy_from_slice(&plain[..16]);
    keys.aes.copy_from_slice(&plain[16..32]);
    keys.hmac.copy_from_slice(&plain[32..]);
    plain.zeroize();
    (challenge, keys)
}

/// Opens a Token (server side): decrypts it and checks, in constant time, that it holds the
/// challenge sent in the Server-Greeting (RFC 4656 3.1). A mismatch means the client used
/// another passphrase.
pub fn open_token(
    key: &DerivedKey,
    token: &[u8; TOKEN_LEN],
    expected_challenge: &[u8; 16],
) -> Result<SessionKeys, CryptoError> {
    let (challenge, keys) = decrypt_token(key, token);
    if bool::from(challenge.ct_eq(expected_challenge)) {
        Ok(keys)
    } else {
        Err(CryptoError::ChallengeMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (DerivedKey, [u8; 16], SessionKeys) {
        let keys = SessionKeys {
            aes: core::array::from_fn(|i| i as u8),
            hmac: core::array::from_fn(|i| 0x80 | i as u8),
        };
        (DerivedKey::from_bytes([0x42; 16]), [0x11; 16], keys)
    }

    #[test]
    fn round_trip() {
        let (key, challenge, keys) = sample();
        let token = seal_token(&key, &challenge, &keys);
        assert_ne!(&token[..16], &challenge[..]);
        assert_eq!(open_token(&key, &token, &challenge), Ok(keys.clone()));
        let (c, k) = decrypt_token(&key, &token);
        assert_eq!(c, challenge);
        assert_eq!(k, keys);
    }

    #[test]
    fn is_cbc_chained() {
        // Identical plaintext blocks must give different ciphertext blocks (CBC, not ECB).
        let key = DerivedKey::from_bytes([1; 16]);
        let keys = SessionKeys {
            aes: [9; 16],
            hmac: [9; 32],
        };
        let token = seal_token(&key, &[9; 16], &keys);
        assert_ne!(token[..16], token[16..32]);
        assert_ne!(token[16..32], token[32..48]);
    }

    #[test]
    fn wrong_key_or_challenge_is_rejected() {
        let (key, challenge, keys) = sample();
        let token = seal_token(&key, &challenge, &keys);
        let other = DerivedKey::from_bytes([0x43; 16]);
        assert_eq!(
            open_token(&other, &token, &challenge),
            Err(CryptoError::ChallengeMismatch)
        );
        assert_eq!(
            open_token(&key, &token, &[0x12; 16]),
            Err(CryptoError::ChallengeMismatch)
        );
    }
}
