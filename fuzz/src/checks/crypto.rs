//! Checks for `owamp_core::crypto` on untrusted octets: test packets, the control stream and
//! the Token. Keys come from the input too, so the seeds can carry real keys and real traffic.

use owamp_core::crypto::{
    decrypt_token, open_token, seal_token, ControlOpener, ControlSealer, CryptoError, DerivedKey,
    SecureMode, SessionKeys, TestPacketCrypto, BLOCK_LEN, HMAC_LEN, SECURE_TEST_PACKET_MIN_LEN,
    TOKEN_LEN,
};

use super::Input;

fn session_keys(input: &mut Input<'_>) -> SessionKeys {
    SessionKeys {
        aes: input.array(),
        hmac: input.array(),
    }
}

/// Test packet protection (RFC 4656 4.1.2).
///
/// Input: mode octet (even: authenticated, odd: encrypted), SID (16), AES session key (16),
/// HMAC session key (32), then a received packet.
///
/// - `open` never panics; a packet under 48 octets is `TooShort` and left untouched;
/// - when `open` accepts, sealing the opened packet gives the received octets back;
/// - sealing the input as plaintext and opening the result succeeds and restores the
///   plaintext (the HMAC field aside, which sealing fills in).
pub fn crypto_test_packet(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = if input.u8() & 1 == 0 {
        SecureMode::Authenticated
    } else {
        SecureMode::Encrypted
    };
    let sid: [u8; 16] = input.array();
    let keys = session_keys(&mut input);
    let packet = input.rest();
    let c = TestPacketCrypto::new(mode, &sid, &keys);

    let mut opened = packet.to_vec();
    let r = c.open(&mut opened);
    if packet.len() < SECURE_TEST_PACKET_MIN_LEN {
        assert_eq!(
            r,
            Err(CryptoError::TooShort {
                len: packet.len(),
                min: SECURE_TEST_PACKET_MIN_LEN
            })
        );
        assert_eq!(opened, packet, "a short packet was modified");
        let mut p = packet.to_vec();
        assert!(c.seal(&mut p).is_err());
        return;
    }
    assert!(
        matches!(r, Ok(()) | Err(CryptoError::HmacMismatch)),
        "{r:?}"
    );
    assert_eq!(opened[48..], packet[48..], "padding changed by open");
    if r.is_ok() {
        let mut resealed = opened.clone();
        c.seal(&mut resealed).expect("seal a packet open accepted");
        assert_eq!(resealed, packet, "seal(open(p)) != p");
    }

    let mut sealed = packet.to_vec();
    c.seal(&mut sealed).expect("seal 48+ octets");
    assert_eq!(sealed[48..], packet[48..], "padding changed by seal");
    let mut back = sealed.clone();
    assert_eq!(c.open(&mut back), Ok(()), "open(seal(p)) fails");
    assert_eq!(back[..32], packet[..32], "open(seal(p)) plaintext differs");
    assert_eq!(back[32..48], sealed[32..48]);
}

/// One step of [`crypto_control`]: an `update` or an `open`/`seal` of `len` octets.
struct Step {
    close: bool,
    len: usize,
}

/// Reads the step list: each step is one octet, top bit = ends a message (open/seal rather
/// than update), low 7 bits = length in blocks; bit 6 set adds 1..15 stray octets to test
/// unaligned buffers. The list ends at a zero octet or when the input does.
fn steps(input: &mut Input<'_>) -> Vec<Step> {
    let mut v = Vec::new();
    while !input.is_empty() && v.len() < 64 {
        let s = input.u8();
        if s == 0 {
            break;
        }
        let blocks = usize::from(s & 0x3f);
        let stray = if s & 0x40 != 0 {
            1 + usize::from(s & 0x0f) % 15
        } else {
            0
        };
        v.push(Step {
            close: s & 0x80 != 0,
            len: blocks * BLOCK_LEN + stray,
        });
    }
    v
}

/// The control stream (RFC 4656 3.1, 3.2): an opener fed arbitrary blocks.
///
/// Input: flags octet (bit 0: authenticated/encrypted rather than open), AES session key (16),
/// HMAC session key (32), IV (16), a step list (see `steps`), then the stream octets the steps
/// consume in turn (short at the end if the input is).
///
/// - the opener never panics; unaligned buffers are `NotBlockAligned` and left untouched;
///   `open` of fewer than 16 octets is `TooShort`;
/// - in open mode nothing changes and every aligned step succeeds;
/// - a sealer with the same keys and IV, fed the stream as plaintext in the same steps,
///   produces what a fresh opener accepts, restoring the plaintext.
pub fn crypto_control(data: &[u8]) {
    let mut input = Input::new(data);
    let secure = input.u8() & 1 != 0;
    let keys = session_keys(&mut input);
    let iv: [u8; 16] = input.array();
    let steps = steps(&mut input);
    let stream = input.rest();
    let (mut opener, mut sealer, mut check) = if secure {
        (
            ControlOpener::new(&keys, &iv),
            ControlSealer::new(&keys, &iv),
            ControlOpener::new(&keys, &iv),
        )
    } else {
        (
            ControlOpener::unauthenticated(),
            ControlSealer::unauthenticated(),
            ControlOpener::unauthenticated(),
        )
    };
    assert_eq!(opener.is_secure(), secure);
    assert_eq!(sealer.is_secure(), secure);

    let mut off = 0;
    for step in &steps {
        let end = (off + step.len).min(stream.len());
        let chunk = &stream[off..end];
        off = end;
        let aligned = chunk.len() % BLOCK_LEN == 0;

        // Arbitrary octets through the opener.
        let mut buf = chunk.to_vec();
        let r = if step.close {
            opener.open(&mut buf)
        } else {
            opener.update(&mut buf)
        };
        if !aligned {
            assert_eq!(r, Err(CryptoError::NotBlockAligned(chunk.len())));
            assert_eq!(buf, chunk, "unaligned buffer modified");
        } else if step.close && chunk.len() < HMAC_LEN {
            assert!(matches!(r, Err(CryptoError::TooShort { .. })), "{r:?}");
        } else if !secure {
            assert_eq!(r, Ok(()));
            assert_eq!(buf, chunk, "open mode modified the stream");
        } else if !step.close {
            assert_eq!(r, Ok(()));
        } else {
            assert!(
                matches!(r, Ok(()) | Err(CryptoError::HmacMismatch)),
                "{r:?}"
            );
        }

        // The same octets as plaintext: seal, then open with a fresh chain.
        if !aligned || (step.close && chunk.len() < HMAC_LEN) {
            continue;
        }
        let mut wire = chunk.to_vec();
        if step.close {
            sealer.seal(&mut wire).expect("seal aligned");
        } else {
            sealer.update(&mut wire).expect("update aligned");
        }
        let mut plain = wire.clone();
        let r = if step.close {
            check.open(&mut plain)
        } else {
            check.update(&mut plain)
        };
        assert_eq!(r, Ok(()), "opener rejects what the sealer wrote");
        let body = if step.close {
            chunk.len() - HMAC_LEN
        } else {
            chunk.len()
        };
        assert_eq!(plain[..body], chunk[..body], "open(seal(x)) differs");
        if step.close && !secure {
            assert_eq!(plain[body..], [0u8; HMAC_LEN], "open-mode HMAC not zero");
        }
    }
}

/// The Token (RFC 4656 3.1).
///
/// Input: derived key (16), expected challenge (16), Token (64).
///
/// - `open_token` accepts exactly when the decrypted challenge is the expected one, and then
///   returns the decrypted keys;
/// - decryption is a bijection: sealing what `decrypt_token` returns gives the Token back.
pub fn crypto_token(data: &[u8]) {
    let mut input = Input::new(data);
    let key = DerivedKey::from_bytes(input.array());
    let expected: [u8; 16] = input.array();
    let token: [u8; TOKEN_LEN] = input.array();
    let (challenge, keys) = decrypt_token(&key, &token);
    assert_eq!(
        seal_token(&key, &challenge, &keys),
        token,
        "seal(decrypt(t)) != t"
    );
    match open_token(&key, &token, &expected) {
        Ok(k) => {
            assert_eq!(challenge, expected);
            assert_eq!(k, keys);
        }
        Err(e) => {
            assert_eq!(e, CryptoError::ChallengeMismatch);
            assert_ne!(challenge, expected);
        }
    }
    // And with the challenge the Token really holds.
    assert_eq!(open_token(&key, &token, &challenge), Ok(keys));
}
