//! Cryptography of RFC 4656: key derivation, token, control stream and test packets.
//!
//! Everything here works on plain byte arrays and slices (16-octet SIDs, keys and IVs) so that
//! it does not depend on how messages are parsed. Randomness is passed in by the caller.
//!
//! # Building blocks
//!
//! - [`derive_key`] / [`derive_key_with_limit`]: PBKDF2-HMAC-SHA1 of the shared passphrase with
//!   the Salt and Count of the Server-Greeting (RFC 4656 3.1), bounded by a maximum Count.
//! - [`seal_token`] / [`open_token`]: the 64-octet Token of Set-Up-Response (RFC 4656 3.1).
//! - [`SessionKeys`]: the AES and HMAC session keys carried in the Token.
//! - [`Passphrase`]: the shared secret an identity authenticates with.
//! - [`StampKey`]: STAMP's out-of-band key, HMAC-SHA-256 truncated to 16 octets (RFC 8762 4.4).
//!
//! # Secrets
//!
//! [`Passphrase`], [`DerivedKey`] and [`SessionKeys`] are wiped when dropped (`zeroize`) and
//! print `<redacted>` in `Debug`, as do the types keyed from them ([`ControlSealer`],
//! [`ControlOpener`], [`TestPacketCrypto`]); the AES key schedules and CBC chaining values
//! inside those are wiped by the `aes` and `cbc` crates (their `zeroize` feature). The keyed
//! HMAC-SHA1 states are not: the `hmac` 0.12 and `sha1` 0.10 crates cannot wipe them.
//! - [`ControlEncryptor`] / [`ControlDecryptor`]: AES-128-CBC continued across calls for one
//!   direction of the control connection; [`ControlHmac`]: the running, truncated HMAC-SHA1.
//! - [`ControlSealer`] / [`ControlOpener`]: the two combined, and a no-op in open mode.
//! - [`TestPacketCrypto`]: per-session keys and the per-packet seal/open of RFC 4656 4.1.2.
//!
//! # Control connection (RFC 4656 3.1, 3.2, as observed in owamp 5.2.3)
//!
//! In authenticated and encrypted modes each direction is one AES-128-CBC chain keyed with the
//! AES session key: client to server starts with IV = Client-IV, server to client with IV =
//! Server-IV. Encryption starts after the first 164 octets client to server (Set-Up-Response)
//! and after the first 96 octets server to client (Server-Greeting and the first 32 octets of
//! Server-Start). Only the last block of Server-Start (Start-Time and 8 MBZ octets) is encrypted;
//! it is the first block of the server-to-client chain.
//!
//! Each direction also has one running HMAC-SHA1 keyed with the 32-octet HMAC session key,
//! truncated to 16 octets. It absorbs the plaintext of every octet sent after the clear prefix
//! except the HMAC fields themselves, and restarts after each HMAC field. In open mode every HMAC
//! field is zero and nothing is encrypted.
//!
//! ## What each HMAC covers
//!
//! Checked against the reference traces (`b_auth`, `c_encrypted`). In each message the HMAC
//! field directly follows the plaintext it covers.
//!
//! | Message (direction) | HMAC covers |
//! |---|---|
//! | Request-Session (C>S) | its first 96 octets; then a second HMAC over the slot blocks only (16 per slot) |
//! | Accept-Session, first one (S>C) | the plaintext last block of Server-Start (Start-Time + MBZ) **and** the first 32 octets of Accept-Session |
//! | Accept-Session, later ones (S>C) | its first 32 octets |
//! | Start-Sessions (C>S) | its first 16 octets |
//! | Start-Ack (S>C) | its first 16 octets |
//! | Stop-Sessions (both) | the whole message before the HMAC: 16-octet header, then per session SID, Next-Seqno, skip count, MBZ and skip ranges (the traces only have sessions without skip ranges) |
//! | Fetch-Session (C>S) | its first 32 octets |
//! | Fetch-Ack (S>C) | its first 16 octets |
//! | stored Request-Session after Fetch-Ack (S>C) | as Request-Session: 96 octets, then the slot blocks, each recomputed with this connection's key |
//! | skip ranges after the stored Request-Session (S>C) | the skip ranges (8 octets each, padded to 16); with no skip range (the only case in the traces) the HMAC covers zero octets: the block is the HMAC of the empty string |
//! | data records after that (S>C) | all records (25 octets each) and the padding up to a 16-octet boundary |
//!
//! Because the server-to-client HMAC is not restarted after Server-Start, the server must feed the
//! Server-Start last block to its sealer without finishing an HMAC ([`ControlSealer::update`]),
//! and the client must do the same on its opener ([`ControlOpener::update`]), before handling the
//! first Accept-Session with [`ControlSealer::seal`] / [`ControlOpener::open`]. When the server
//! rejects the Set-Up-Response (Accept != 0) the reference sends Server-Start with Server-IV,
//! Start-Time and MBZ all zero and not encrypted, then closes.
//!
//! ```
//! use owamp_core::crypto::{ControlOpener, ControlSealer, CryptoError, SessionKeys};
//!
//! let keys = SessionKeys { aes: [1; 16], hmac: [2; 32] };
//! let server_iv = [3; 16];
//! let mut server = ControlSealer::new(&keys, &server_iv);
//! let mut client = ControlOpener::new(&keys, &server_iv);
//!
//! // Server-Start: the first 32 octets are sent as they are; the last block (Start-Time, MBZ)
//! // is encrypted and absorbed into the HMAC of the first Accept-Session.
//! let mut server_start = [0u8; 48];
//! server_start[32..40].copy_from_slice(&0xeeb2_5d4e_dfcb_5fe5_u64.to_be_bytes());
//! server.update(&mut server_start[32..])?;
//! // Accept-Session: 32 octets, then the HMAC field, filled in by `seal`.
//! let mut accept = [0u8; 48];
//! accept[2..4].copy_from_slice(&8828u16.to_be_bytes());
//! server.seal(&mut accept)?;
//!
//! client.update(&mut server_start[32..])?;
//! client.open(&mut accept)?;
//! assert_eq!(&accept[2..4], &8828u16.to_be_bytes());
//! # Ok::<(), CryptoError>(())
//! ```
//!
//! # Test packets (RFC 4656 4.1.2, as observed in owamp 5.2.3)
//!
//! Per session, test AES key = AES-ECB(key = SID, AES session key) and test HMAC key =
//! AES-CBC(key = SID, IV = 0, HMAC session key). An authenticated or encrypted test packet is at
//! least 48 octets: Seqno 4, MBZ 12, Timestamp 8, Error Estimate 2, MBZ 6, HMAC 16, then padding.
//! In mode A only the first block is encrypted (ECB) and the HMAC covers that block's plaintext
//! only, so the timestamp is not authenticated. In mode E the first two blocks are encrypted (CBC,
//! IV = 0) and the HMAC covers both. The HMAC field (octets 32..48) and the padding are sent as
//! they are.

mod control;
mod kdf;
mod keys;
mod secret;
mod stamp;
mod test_packet;
mod token;

pub use control::{
    ControlDecryptor, ControlEncryptor, ControlHmac, ControlOpener, ControlSealer, HMAC_LEN,
};
pub use kdf::{derive_key, derive_key_with_limit, DerivedKey, DEFAULT_MAX_KDF_COUNT};
pub use keys::SessionKeys;
pub use secret::Passphrase;
pub use stamp::{StampKey, StampKeyError, STAMP_HMAC_OFFSET};
pub use test_packet::{SecureMode, TestPacketCrypto, SECURE_TEST_PACKET_MIN_LEN};
pub use token::{decrypt_token, open_token, seal_token, TOKEN_LEN};

/// AES block size: the control stream and test packets are processed in whole blocks of this
/// many octets.
pub const BLOCK_LEN: usize = 16;

/// Errors from the cryptographic operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The PBKDF2 iteration count is zero.
    #[error("PBKDF2 iteration count is zero")]
    ZeroIterationCount,
    /// The PBKDF2 iteration count is above the accepted maximum.
    #[error("PBKDF2 iteration count {count} exceeds the limit of {max}")]
    IterationCountTooLarge {
        /// The count that was asked for.
        count: u32,
        /// The largest count accepted.
        max: u32,
    },
    /// The challenge inside the Token is not the one sent in the Server-Greeting: wrong
    /// passphrase (or a forged Token).
    #[error("token challenge does not match the Server-Greeting challenge")]
    ChallengeMismatch,
    /// A buffer to encrypt or decrypt is not a whole number of 16-octet blocks.
    #[error("{0} octets is not a whole number of 16-octet blocks")]
    NotBlockAligned(usize),
    /// A buffer is too short for the operation.
    #[error("{len} octets is shorter than the {min} octets required")]
    TooShort {
        /// Length of the buffer given.
        len: usize,
        /// Minimum length required.
        min: usize,
    },
    /// The HMAC in a message or test packet does not match its contents.
    #[error("HMAC verification failed")]
    HmacMismatch,
}
