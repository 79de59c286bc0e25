//! Test packet encryption and HMAC (RFC 4656 4.1.2, as observed in owamp 5.2.3).

use core::fmt;

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{
    BlockDecrypt, BlockDecryptMut, BlockEncrypt, BlockEncryptMut, InnerIvInit, KeyInit,
};
use aes::Aes128;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use zeroize::Zeroize;

use super::control::hmac_sha1;
use super::{CryptoError, SessionKeys, BLOCK_LEN, HMAC_LEN};

/// Smallest authenticated or encrypted test packet: Seqno 4, MBZ 12, Timestamp 8, Error
/// Estimate 2, MBZ 6, HMAC 16 (RFC 4656 4.1.2); padding may follow.
pub const SECURE_TEST_PACKET_MIN_LEN: usize = 48;

/// Where the HMAC sits in an authenticated or encrypted test packet.
const HMAC_AT: usize = 32;

/// The two modes that protect test packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecureMode {
    /// Authenticated mode (A): the first block is encrypted; the HMAC covers it only.
    Authenticated,
    /// Encrypted mode (E): the first two blocks are encrypted; the HMAC covers both.
    Encrypted,
}

/// Per-session test packet keys, ready to seal and open packets without allocating.
///
/// Built once per session from its SID and the session keys; [`seal`](Self::seal) and
/// [`open`](Self::open) take `&self`, so one instance can serve a whole session (and threads).
#[derive(Clone)]
pub struct TestPacketCrypto {
    mode: SecureMode,
    cipher: Aes128,
    mac: Hmac<Sha1>,
}

impl TestPacketCrypto {
    /// Derives the test keys of the session `sid` (RFC 4656 4.1.2): test AES key =
    /// AES-ECB(key = SID, AES session key); test HMAC key = AES-CBC(key = SID, IV = 0,
    /// HMAC session key).
    pub fn new(mode: SecureMode, sid: &[u8; 16], keys: &SessionKeys) -> Self {
        let sid_cipher = Aes128::new(sid.into());
        let mut aes_key = GenericArray::from(keys.aes);
        sid_cipher.encrypt_block(&mut aes_key);

        let mut hmac_key = keys.hmac;
        let mut cbc = cbc::Encryptor::<&Aes128>::inner_iv_init(&sid_cipher, &[0u8; 16].into());
        for block in hmac_key.chunks_exact_mut(BLOCK_LEN) {
            cbc.encrypt_block_mut(block.into());
        }

        let this = Self {
            mode,
            cipher: Aes128::new(&aes_key),
            mac: hmac_sha1(&hmac_key),
        };
        aes_key.as_mut_slice().zeroize();
        hmac_key.zeroize();
        this
    }

    /// The mode this instance was built for.
    pub fn mode(&self) -> SecureMode {
        self.mode
    }

    fn tag(&self, plaintext: &[u8]) -> hmac::digest::Output<Hmac<Sha1>> {
        // Cloning the pre-keyed state skips re-hashing the key pads for every packet.
        let mut mac = self.mac.clone();
        mac.update(plaintext);
        mac.finalize().into_bytes()
    }

    /// Seals a plaintext test packet in place: writes the HMAC into octets 32..48, then encrypts
    /// the first block (mode A, ECB) or the first two blocks (mode E, CBC with IV = 0). Padding
    /// after octet 48 is left as it is.
    pub fn seal(&self, packet: &mut [u8]) -> Result<(), CryptoError> {
        self.seal_layout(packet, PacketLayout::SENDER)
    }

    /// Opens a received test packet in place: decrypts the protected blocks and checks the HMAC
    /// in octets 32..48 in constant time. On [`CryptoError::HmacMismatch`] the buffer holds the
    /// (untrustworthy) decrypted bytes.
    pub fn open(&self, packet: &mut [u8]) -> Result<(), CryptoError> {
        self.open_layout(packet, PacketLayout::SENDER)
    }

    /// Seals a plaintext TWAMP reflector packet (RFC 5357 4.2.1, as observed in twampd 5.2.3):
    /// the HMAC goes into octets 96..112 and covers block 0 (mode A, which encrypts block 0
    /// with ECB) or blocks 0-5 (mode E, CBC with IV = 0). Padding after octet 112 is left as it
    /// is. The keys are the session's, the same as for the sender's packets.
    pub fn seal_reflector(&self, packet: &mut [u8]) -> Result<(), CryptoError> {
        self.seal_layout(packet, PacketLayout::REFLECTOR)
    }

    /// Opens a received TWAMP reflector packet in place (see
    /// [`seal_reflector`](Self::seal_reflector)).
    pub fn open_reflector(&self, packet: &mut [u8]) -> Result<(), CryptoError> {
        self.open_layout(packet, PacketLayout::REFLECTOR)
    }

    fn protected_len(&self, layout: PacketLayout) -> usize {
        match self.mode {
            SecureMode::Authenticated => BLOCK_LEN,
            SecureMode::Encrypted => layout.hmac_at,
        }
    }

    fn split(
        packet: &mut [u8],
        layout: PacketLayout,
    ) -> Result<(&mut [u8], &mut [u8]), CryptoError> {
        let len = packet.len();
        let min = layout.hmac_at + HMAC_LEN;
        let head = packet
            .get_mut(..min)
            .ok_or(CryptoError::TooShort { len, min })?;
        Ok(head.split_at_mut(layout.hmac_at))
    }

    fn seal_layout(&self, packet: &mut [u8], layout: PacketLayout) -> Result<(), CryptoError> {
        let n = self.protected_len(layout);
        let (body, rest) = Self::split(packet, layout)?;
        let covered = &mut body[..n];
        let tag = self.tag(covered);
        rest.copy_from_slice(&tag[..HMAC_LEN]);
        match self.mode {
            SecureMode::Authenticated => self.cipher.encrypt_block(covered.into()),
            SecureMode::Encrypted => {
                let mut cbc =
                    cbc::Encryptor::<&Aes128>::inner_iv_init(&self.cipher, &[0u8; 16].into());
                for block in covered.chunks_exact_mut(BLOCK_LEN) {
                    cbc.encrypt_block_mut(block.into());
                }
            }
        }
        Ok(())
    }

    fn open_layout(&self, packet: &mut [u8], layout: PacketLayout) -> Result<(), CryptoError> {
        let n = self.protected_len(layout);
        let (body, rest) = Self::split(packet, layout)?;
        let covered = &mut body[..n];
        match self.mode {
            SecureMode::Authenticated => self.cipher.decrypt_block(covered.into()),
            SecureMode::Encrypted => {
                let mut cbc =
                    cbc::Decryptor::<&Aes128>::inner_iv_init(&self.cipher, &[0u8; 16].into());
                for block in covered.chunks_exact_mut(BLOCK_LEN) {
                    cbc.decrypt_block_mut(block.into());
                }
            }
        }
        let mut mac = self.mac.clone();
        mac.update(covered);
        mac.verify_truncated_left(rest)
            .map_err(|_| CryptoError::HmacMismatch)
    }
}

/// Where a protected test packet's HMAC sits; in mode E everything before it is encrypted.
#[derive(Debug, Clone, Copy)]
struct PacketLayout {
    hmac_at: usize,
}

impl PacketLayout {
    /// OWAMP test packets and TWAMP sender packets (RFC 4656 4.1.2).
    const SENDER: Self = Self { hmac_at: HMAC_AT };
    /// TWAMP reflector packets (RFC 5357 4.2.1).
    const REFLECTOR: Self = Self { hmac_at: 96 };
}

impl fmt::Debug for TestPacketCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPacketCrypto")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SessionKeys {
        SessionKeys {
            aes: core::array::from_fn(|i| 7 * i as u8),
            hmac: core::array::from_fn(|i| 0x40 ^ i as u8),
        }
    }

    fn packet(len: usize) -> Vec<u8> {
        let mut p: Vec<u8> = (0..len).map(|i| i as u8).collect();
        p[32..48].fill(0);
        p
    }

    #[test]
    fn round_trip_both_modes_with_padding() {
        let sid = [0xa5; 16];
        for mode in [SecureMode::Authenticated, SecureMode::Encrypted] {
            let c = TestPacketCrypto::new(mode, &sid, &keys());
            let plain = packet(80);
            let mut p = plain.clone();
            c.seal(&mut p).unwrap();
            let n = c.protected_len(PacketLayout::SENDER);
            assert_ne!(p[..n], plain[..n]);
            assert_eq!(p[n..32], plain[n..32], "unprotected part stays clear");
            assert_ne!(p[32..48], [0u8; 16]);
            assert_eq!(p[48..], plain[48..], "padding untouched");
            let mut q = p.clone();
            c.open(&mut q).unwrap();
            assert_eq!(q[..32], plain[..32]);
            assert_eq!(q[32..48], p[32..48]);
        }
    }

    #[test]
    fn tamper_is_detected() {
        let sid = [0x11; 16];
        for mode in [SecureMode::Authenticated, SecureMode::Encrypted] {
            let c = TestPacketCrypto::new(mode, &sid, &keys());
            let mut sealed = packet(48);
            c.seal(&mut sealed).unwrap();
            for i in 0..48 {
                let mut t = sealed.clone();
                t[i] ^= 0x01;
                let r = c.open(&mut t);
                let covered = i < c.protected_len(PacketLayout::SENDER) || (32..48).contains(&i);
                if covered {
                    assert_eq!(r, Err(CryptoError::HmacMismatch), "mode {mode:?} octet {i}");
                } else {
                    // Mode A leaves the timestamp block unauthenticated (as the reference does).
                    assert_eq!(r, Ok(()), "mode {mode:?} octet {i}");
                }
            }
        }
    }

    #[test]
    fn keys_are_per_session() {
        let a = TestPacketCrypto::new(SecureMode::Encrypted, &[1; 16], &keys());
        let b = TestPacketCrypto::new(SecureMode::Encrypted, &[2; 16], &keys());
        let mut p = packet(48);
        a.seal(&mut p).unwrap();
        assert_eq!(b.open(&mut p), Err(CryptoError::HmacMismatch));
    }

    #[test]
    fn short_packets_are_rejected() {
        let c = TestPacketCrypto::new(SecureMode::Authenticated, &[1; 16], &keys());
        let mut p = [0u8; 47];
        assert_eq!(
            c.seal(&mut p),
            Err(CryptoError::TooShort { len: 47, min: 48 })
        );
        assert_eq!(
            c.open(&mut p),
            Err(CryptoError::TooShort { len: 47, min: 48 })
        );
        assert_eq!(p, [0u8; 47]);
        assert!(format!("{c:?}").contains("Authenticated"));
    }
}
