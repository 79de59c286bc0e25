//! Control connection encryption and HMAC (RFC 4656 3.1, 3.2).

use core::fmt;

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit};
use aes::Aes128;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use zeroize::Zeroize;

use super::{CryptoError, SessionKeys, BLOCK_LEN};

/// Length of an HMAC field (HMAC-SHA1 truncated to 16 octets) in octets.
pub const HMAC_LEN: usize = 16;

type HmacSha1 = Hmac<Sha1>;

/// HMAC-SHA1 keyed with `key`, built without a fallible constructor.
///
/// RFC 2104 pads a key shorter than the hash block (64 octets for SHA-1) with zeros, so padding
/// it here gives the same MAC as keying with the short key directly. The padded copy is wiped;
/// the keyed SHA-1 states inside the returned value are not (the `hmac` 0.12 and `sha1` 0.10
/// crates offer no way to wipe them).
pub(crate) fn hmac_sha1(key: &[u8; 32]) -> HmacSha1 {
    let mut block: GenericArray<u8, _> = GenericArray::default();
    block[..32].copy_from_slice(key);
    let mac = <HmacSha1 as KeyInit>::new(&block);
    block.as_mut_slice().zeroize();
    mac
}

fn check_aligned(len: usize) -> Result<(), CryptoError> {
    if len % BLOCK_LEN == 0 {
        Ok(())
    } else {
        Err(CryptoError::NotBlockAligned(len))
    }
}

/// AES-128-CBC encryption of one direction of the control connection (RFC 4656 3.1).
///
/// The chain continues across calls: the last ciphertext block of one call is the IV of the
/// next, so a message may be encrypted in as many pieces as it is written in.
#[derive(Clone)]
pub struct ControlEncryptor(cbc::Encryptor<Aes128>);

impl ControlEncryptor {
    /// Starts a chain with the AES session key and the IV of this direction (Client-IV for
    /// client to server, Server-IV for server to client).
    pub fn new(aes_key: &[u8; 16], iv: &[u8; 16]) -> Self {
        Self(cbc::Encryptor::new(aes_key.into(), iv.into()))
    }

    /// Encrypts whole blocks in place; fails without touching `buf` unless its length is a
    /// multiple of 16.
    pub fn encrypt(&mut self, buf: &mut [u8]) -> Result<(), CryptoError> {
        check_aligned(buf.len())?;
        for block in buf.chunks_exact_mut(BLOCK_LEN) {
            self.0.encrypt_block_mut(block.into());
        }
        Ok(())
    }
}

impl fmt::Debug for ControlEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ControlEncryptor(AES-128-CBC, <redacted>)")
    }
}

/// AES-128-CBC decryption of one direction of the control connection (RFC 4656 3.1).
///
/// The counterpart of [`ControlEncryptor`]; the chain continues across calls.
#[derive(Clone)]
pub struct ControlDecryptor(cbc::Decryptor<Aes128>);

impl ControlDecryptor {
    /// Starts a chain with the AES session key and the IV of this direction.
    pub fn new(aes_key: &[u8; 16], iv: &[u8; 16]) -> Self {
        Self(cbc::Decryptor::new(aes_key.into(), iv.into()))
    }

    /// Decrypts whole blocks in place; fails without touching `buf` unless its length is a
    /// multiple of 16.
    pub fn decrypt(&mut self, buf: &mut [u8]) -> Result<(), CryptoError> {
        check_aligned(buf.len())?;
        for block in buf.chunks_exact_mut(BLOCK_LEN) {
            self.0.decrypt_block_mut(block.into());
        }
        Ok(())
    }
}

impl fmt::Debug for ControlDecryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ControlDecryptor(AES-128-CBC, <redacted>)")
    }
}

/// The running HMAC of one direction of the control connection: HMAC-SHA1 keyed with the HMAC
/// session key, truncated to 16 octets (RFC 4656 3.2).
///
/// Feed it plaintext with [`update`](Self::update); [`finish`](Self::finish) and
/// [`verify`](Self::verify) end one HMAC and start the next, as the reference does after each
/// HMAC field.
#[derive(Clone)]
pub struct ControlHmac {
    keyed: HmacSha1,
    running: HmacSha1,
}

impl ControlHmac {
    /// Keys the HMAC with the 32-octet HMAC session key.
    pub fn new(hmac_key: &[u8; 32]) -> Self {
        let keyed = hmac_sha1(hmac_key);
        Self {
            running: keyed.clone(),
            keyed,
        }
    }

    /// Absorbs plaintext.
    pub fn update(&mut self, plaintext: &[u8]) {
        self.running.update(plaintext);
    }

    /// Returns the 16-octet HMAC of everything absorbed since the last finish or verify, and
    /// starts a new one.
    pub fn finish(&mut self) -> [u8; HMAC_LEN] {
        let mac = core::mem::replace(&mut self.running, self.keyed.clone());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; HMAC_LEN];
        out.copy_from_slice(&full[..HMAC_LEN]);
        out
    }

    /// Checks, in constant time, a received 16-octet HMAC against everything absorbed since the
    /// last finish or verify, and starts a new one.
    pub fn verify(&mut self, tag: &[u8; HMAC_LEN]) -> Result<(), CryptoError> {
        let mac = core::mem::replace(&mut self.running, self.keyed.clone());
        mac.verify_truncated_left(tag)
            .map_err(|_| CryptoError::HmacMismatch)
    }
}

impl fmt::Debug for ControlHmac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ControlHmac(HMAC-SHA1/128, <redacted>)")
    }
}

/// Sending half of the control connection: encrypts and computes HMACs in authenticated and
/// encrypted modes; writes zero HMAC fields and leaves data in the clear in open mode.
///
/// Use it for everything sent after the clear prefix (RFC 4656 3.1): after the 164-octet
/// Set-Up-Response on the client, from the last block of Server-Start on the server.
#[derive(Clone, Debug)]
pub struct ControlSealer {
    secure: Option<(ControlEncryptor, ControlHmac)>,
}

impl ControlSealer {
    /// Open (unauthenticated) mode: no encryption, HMAC fields set to zero.
    pub fn unauthenticated() -> Self {
        Self { secure: None }
    }

    /// Authenticated or encrypted mode, with the session keys and the IV of this direction
    /// (Client-IV on the client, Server-IV on the server).
    pub fn new(keys: &SessionKeys, iv: &[u8; 16]) -> Self {
        Self {
            secure: Some((
                ControlEncryptor::new(&keys.aes, iv),
                ControlHmac::new(&keys.hmac),
            )),
        }
    }

    /// Whether this sealer encrypts and authenticates.
    pub fn is_secure(&self) -> bool {
        self.secure.is_some()
    }

    /// Absorbs `buf` (plaintext, whole blocks) into the running HMAC and encrypts it in place,
    /// without ending the HMAC. Use it for the part of a message before its HMAC field when the
    /// message is written in pieces, and for the last block of Server-Start.
    pub fn update(&mut self, buf: &mut [u8]) -> Result<(), CryptoError> {
        check_aligned(buf.len())?;
        if let Some((enc, mac)) = &mut self.secure {
            mac.update(buf);
            enc.encrypt(buf)?;
        }
        Ok(())
    }

    /// Seals the end of a message: `buf` is plaintext whose last 16 octets are the HMAC field.
    /// Absorbs what precedes the field, writes the HMAC into it (zero in open mode), encrypts
    /// all of `buf` in place and starts a new HMAC.
    pub fn seal(&mut self, buf: &mut [u8]) -> Result<(), CryptoError> {
        check_aligned(buf.len())?;
        let body_len = buf
            .len()
            .checked_sub(HMAC_LEN)
            .ok_or(CryptoError::TooShort {
                len: buf.len(),
                min: HMAC_LEN,
            })?;
        let (body, field) = buf.split_at_mut(body_len);
        match &mut self.secure {
            Some((enc, mac)) => {
                mac.update(body);
                field.copy_from_slice(&mac.finish());
                enc.encrypt(buf)?;
            }
            None => field.fill(0),
        }
        Ok(())
    }
}

/// Receiving half of the control connection: decrypts and verifies HMACs in authenticated and
/// encrypted modes; a no-op in open mode.
///
/// Use it for everything received after the clear prefix (RFC 4656 3.1).
#[derive(Clone, Debug)]
pub struct ControlOpener {
    secure: Option<(ControlDecryptor, ControlHmac)>,
}

impl ControlOpener {
    /// Open (unauthenticated) mode: nothing is decrypted and HMAC fields are not checked.
    pub fn unauthenticated() -> Self {
        Self { secure: None }
    }

    /// Authenticated or encrypted mode, with the session keys and the IV of the peer's
    /// direction (Server-IV on the client, Client-IV on the server).
    pub fn new(keys: &SessionKeys, iv: &[u8; 16]) -> Self {
        Self {
            secure: Some((
                ControlDecryptor::new(&keys.aes, iv),
                ControlHmac::new(&keys.hmac),
            )),
        }
    }

    /// Whether this opener decrypts and authenticates.
    pub fn is_secure(&self) -> bool {
        self.secure.is_some()
    }

    /// Decrypts `buf` (whole blocks) in place and absorbs the plaintext into the running HMAC,
    /// without ending it. Use it for the part of a message before its HMAC field when it is read
    /// in pieces, and for the last block of Server-Start.
    pub fn update(&mut self, buf: &mut [u8]) -> Result<(), CryptoError> {
        check_aligned(buf.len())?;
        if let Some((dec, mac)) = &mut self.secure {
            dec.decrypt(buf)?;
            mac.update(buf);
        }
        Ok(())
    }

    /// Opens the end of a message: decrypts `buf` in place, whose last 16 octets are the HMAC
    /// field, and checks in constant time that the field is the HMAC of everything absorbed
    /// since the previous HMAC field. A new HMAC starts either way. In open mode the field is
    /// not checked (the reference sends zeros).
    pub fn open(&mut self, buf: &mut [u8]) -> Result<(), CryptoError> {
        check_aligned(buf.len())?;
        let body_len = buf
            .len()
            .checked_sub(HMAC_LEN)
            .ok_or(CryptoError::TooShort {
                len: buf.len(),
                min: HMAC_LEN,
            })?;
        if let Some((dec, mac)) = &mut self.secure {
            dec.decrypt(buf)?;
            let (body, field) = buf.split_at(body_len);
            mac.update(body);
            let mut tag = [0u8; HMAC_LEN];
            tag.copy_from_slice(field);
            mac.verify(&tag)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SessionKeys {
        SessionKeys {
            aes: core::array::from_fn(|i| 3 * i as u8),
            hmac: core::array::from_fn(|i| 0xff - i as u8),
        }
    }

    #[test]
    fn padded_key_matches_short_key() {
        let key: [u8; 32] = core::array::from_fn(|i| i as u8);
        let mut a = hmac_sha1(&key);
        let mut b = <HmacSha1 as Mac>::new_from_slice(&key).unwrap();
        a.update(b"abc");
        b.update(b"abc");
        assert_eq!(a.finalize().into_bytes(), b.finalize().into_bytes());
    }

    #[test]
    fn hmac_resets_after_finish_and_verify() {
        let mut h = ControlHmac::new(&[5; 32]);
        h.update(b"hello");
        let t1 = h.finish();
        h.update(b"hello");
        assert_eq!(h.finish(), t1);
        h.update(b"hel");
        h.update(b"lo");
        assert_eq!(h.verify(&t1), Ok(()));
        // After a failed verify the state is fresh too.
        h.update(b"other");
        assert_eq!(h.verify(&t1), Err(CryptoError::HmacMismatch));
        h.update(b"hello");
        assert_eq!(h.verify(&t1), Ok(()));
        // Empty input has an HMAC of its own.
        assert_ne!(h.finish(), t1);
    }

    #[test]
    fn chain_carries_across_calls() {
        let k = keys();
        let iv = [0x5a; 16];
        let plain: Vec<u8> = (0..96u8).collect();
        let mut whole = plain.clone();
        ControlEncryptor::new(&k.aes, &iv)
            .encrypt(&mut whole)
            .unwrap();
        let mut pieces = plain.clone();
        let mut enc = ControlEncryptor::new(&k.aes, &iv);
        let (a, rest) = pieces.split_at_mut(16);
        let (b, c) = rest.split_at_mut(48);
        enc.encrypt(a).unwrap();
        enc.encrypt(b).unwrap();
        enc.encrypt(&mut []).unwrap();
        enc.encrypt(c).unwrap();
        assert_eq!(whole, pieces);
        let mut dec = ControlDecryptor::new(&k.aes, &iv);
        for chunk in pieces.chunks_mut(32) {
            dec.decrypt(chunk).unwrap();
        }
        assert_eq!(pieces, plain);
    }

    #[test]
    fn rejects_partial_blocks() {
        let k = keys();
        let mut buf = [1u8; 20];
        assert_eq!(
            ControlEncryptor::new(&k.aes, &[0; 16]).encrypt(&mut buf),
            Err(CryptoError::NotBlockAligned(20))
        );
        assert_eq!(buf, [1u8; 20]);
        let mut s = ControlSealer::new(&k, &[0; 16]);
        assert_eq!(
            s.seal(&mut []),
            Err(CryptoError::TooShort { len: 0, min: 16 })
        );
        assert_eq!(s.update(&mut buf), Err(CryptoError::NotBlockAligned(20)));
        let mut o = ControlOpener::new(&k, &[0; 16]);
        assert_eq!(
            o.open(&mut buf[..15]),
            Err(CryptoError::NotBlockAligned(15))
        );
    }

    #[test]
    fn sealer_opener_round_trip_and_tamper() {
        let k = keys();
        let iv = [9; 16];
        let mut s = ControlSealer::new(&k, &iv);
        let mut o = ControlOpener::new(&k, &iv);
        // A message sent as a prefix block, then body + HMAC; then a second message.
        let mut m1 = [0x11u8; 16];
        let mut m2 = [0x22u8; 48];
        let mut m3 = [0x33u8; 32];
        s.update(&mut m1).unwrap();
        s.seal(&mut m2).unwrap();
        s.seal(&mut m3).unwrap();
        assert_ne!(m1, [0x11u8; 16]);
        let mut r1 = m1;
        let mut r2 = m2;
        let mut r3 = m3;
        o.update(&mut r1).unwrap();
        o.open(&mut r2).unwrap();
        o.open(&mut r3).unwrap();
        assert_eq!(r1, [0x11u8; 16]);
        assert_eq!(&r2[..32], &[0x22u8; 32]);
        assert_eq!(&r3[..16], &[0x33u8; 16]);
        // The HMAC of m2 covered m1: leaving m1 out of the HMAC must fail.
        let mut dec = ControlDecryptor::new(&k.aes, &iv);
        let mut mac = ControlHmac::new(&k.hmac);
        let (mut t1, mut t2) = (m1, m2);
        dec.decrypt(&mut t1).unwrap();
        dec.decrypt(&mut t2).unwrap();
        mac.update(&t2[..32]);
        assert_eq!(
            mac.verify(t2[32..].try_into().unwrap()),
            Err(CryptoError::HmacMismatch)
        );
        // A flipped ciphertext bit in the body.
        let mut o3 = ControlOpener::new(&k, &iv);
        let (mut t1, mut t2) = (m1, m2);
        o3.update(&mut t1).unwrap();
        t2[5] ^= 1;
        assert_eq!(o3.open(&mut t2), Err(CryptoError::HmacMismatch));
        // Tampered HMAC field.
        let mut o4 = ControlOpener::new(&k, &iv);
        let mut t1 = m1;
        o4.update(&mut t1).unwrap();
        let mut t2 = m2;
        t2[47] ^= 0x80;
        assert_eq!(o4.open(&mut t2), Err(CryptoError::HmacMismatch));
    }

    #[test]
    fn unauthenticated_is_clear_with_zero_hmac() {
        let mut s = ControlSealer::unauthenticated();
        assert!(!s.is_secure());
        let mut m = [0x44u8; 32];
        s.update(&mut m[..16]).unwrap();
        assert_eq!(m, [0x44u8; 32]);
        s.seal(&mut m).unwrap();
        assert_eq!(&m[..16], &[0x44u8; 16]);
        assert_eq!(&m[16..], &[0u8; 16]);
        let mut o = ControlOpener::unauthenticated();
        let mut r = m;
        o.open(&mut r).unwrap();
        assert_eq!(r, m);
    }
}
