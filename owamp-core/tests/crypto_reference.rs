//! Reproduces the cryptography of the perfSONAR owamp 5.2.3 reference traces: key derivation,
//! Token, control stream encryption and HMACs, and test packets, in modes A and E.

use owamp_core::crypto::{
    decrypt_token, derive_key, open_token, seal_token, ControlDecryptor, ControlOpener,
    ControlSealer, CryptoError, SecureMode, SessionKeys, TestPacketCrypto, HMAC_LEN,
};

const PASSPHRASE: &[u8] = b"correct horse battery staple";
/// Octets sent in the clear before encryption starts (RFC 4656 3.1): Set-Up-Response C>S,
/// Server-Greeting and the first two blocks of Server-Start S>C.
const CLEAR_CS: usize = 164;
const CLEAR_SC: usize = 96;

// ---------------------------------------------------------------------------------------------
// A tiny parser for the text trace format (see testdata/traces/reference/README.md).

struct TestLine {
    /// "<t> <src>-><dst>", used to pair the wire and plaintext traces.
    id: String,
    payload: Vec<u8>,
    /// The trailing comment of .plain.trace lines.
    comment: String,
}

struct Trace {
    header: Vec<String>,
    cs: Vec<Vec<u8>>,
    sc: Vec<Vec<u8>>,
    tests: Vec<TestLine>,
}

fn load(name: &str) -> Trace {
    let path = format!(
        "{}/../testdata/traces/reference/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut t = Trace {
        header: Vec::new(),
        cs: Vec::new(),
        sc: Vec::new(),
        tests: Vec::new(),
    };
    for line in text.lines() {
        if let Some(h) = line.strip_prefix('#') {
            t.header.push(h.trim().to_string());
        } else if let Some(x) = line.strip_prefix("C>S ") {
            t.cs.push(hex::decode(x.trim()).unwrap());
        } else if let Some(x) = line.strip_prefix("S>C ") {
            t.sc.push(hex::decode(x.trim()).unwrap());
        } else if let Some(x) = line.strip_prefix("T ") {
            let (data, comment) = x.split_once('#').unwrap_or((x, ""));
            let fields: Vec<&str> = data.split_whitespace().collect();
            assert_eq!(fields.len(), 3, "{line}");
            t.tests.push(TestLine {
                id: format!("{} {}", fields[0], fields[1]),
                payload: hex::decode(fields[2]).unwrap(),
                comment: comment.trim().to_string(),
            });
        } else {
            assert!(line.trim().is_empty(), "unexpected line {line}");
        }
    }
    t
}

impl Trace {
    /// The value after `key` (e.g. `salt=`) in the first header line that has it.
    fn value(&self, key: &str) -> String {
        self.header
            .iter()
            .find_map(|h| {
                let at = h.find(key)?;
                Some(h[at + key.len()..].split_whitespace().next()?.to_string())
            })
            .unwrap_or_else(|| panic!("header has no {key}"))
    }

    fn hex16(&self, key: &str) -> [u8; 16] {
        hex::decode(self.value(key)).unwrap().try_into().unwrap()
    }

    fn hex32(&self, key: &str) -> [u8; 32] {
        hex::decode(self.value(key)).unwrap().try_into().unwrap()
    }

    fn cs_stream(&self) -> Vec<u8> {
        self.cs.concat()
    }

    fn sc_stream(&self) -> Vec<u8> {
        self.sc.concat()
    }

    /// From the header line `mode: authenticated (-A A)`.
    fn mode(&self) -> SecureMode {
        match self.value("(-A ").as_str() {
            "A)" => SecureMode::Authenticated,
            "E)" => SecureMode::Encrypted,
            other => panic!("mode {other}"),
        }
    }
}

fn h16(b: &[u8]) -> [u8; 16] {
    b.try_into().unwrap()
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b.try_into().unwrap())
}

fn pad16(n: usize) -> usize {
    n.div_ceil(16) * 16
}

// ---------------------------------------------------------------------------------------------
// Setup: greeting, key derivation, Token.

struct Setup {
    keys: SessionKeys,
    client_iv: [u8; 16],
    server_iv: [u8; 16],
}

fn check_setup(wire: &Trace, plain: &Trace) -> Setup {
    let cs = wire.cs_stream();
    let sc = wire.sc_stream();
    // Server-Greeting: 12 unused, Modes, Challenge, Salt, Count, 12 MBZ (RFC 4656 3.1).
    let greeting = &sc[..64];
    let challenge = h16(&greeting[16..32]);
    let salt = h16(&greeting[32..48]);
    let count = be32(&greeting[48..52]);
    assert_eq!(challenge, plain.hex16("challenge="));
    assert_eq!(salt, plain.hex16("salt="));
    assert_eq!(count, plain.value("count=").parse::<u32>().unwrap());
    assert_eq!(
        hex::decode(plain.value("passphrase-hex:")).unwrap(),
        PASSPHRASE
    );

    let key = derive_key(PASSPHRASE, &salt, count).unwrap();
    assert_eq!(
        key.as_bytes(),
        &plain.hex16("pbkdf2-hmac-sha1(passphrase, salt, count, 16) = ")
    );

    // Set-Up-Response: Mode 4, KeyID 80, Token 64, Client-IV 16.
    let token: [u8; 64] = cs[84..148].try_into().unwrap();
    let client_iv = h16(&cs[148..164]);
    assert_eq!(client_iv, plain.hex16("client-iv="));
    assert_eq!(plain.value("challenge-match="), "True");
    let keys = open_token(&key, &token, &challenge).unwrap();
    assert_eq!(keys.aes, plain.hex16("aes-session-key="));
    assert_eq!(keys.hmac, plain.hex32("hmac-session-key="));
    let (c, k) = decrypt_token(&key, &token);
    assert_eq!((c, &k), (challenge, &keys));
    // Sealing is deterministic (CBC with IV 0): the client's Token is reproduced exactly.
    assert_eq!(seal_token(&key, &challenge, &keys), token);
    // Another challenge or passphrase does not open it.
    let mut other = challenge;
    other[15] ^= 1;
    assert_eq!(
        open_token(&key, &token, &other),
        Err(CryptoError::ChallengeMismatch)
    );
    let wrong = derive_key(b"correct horse battery stapler", &salt, count).unwrap();
    assert_eq!(
        open_token(&wrong, &token, &challenge),
        Err(CryptoError::ChallengeMismatch)
    );

    // Server-Start: 15 MBZ, Accept, Server-IV, Start-Time, MBZ.
    let server_start = &sc[64..112];
    assert_eq!(server_start[15], 0, "accept");
    let server_iv = h16(&server_start[16..32]);
    assert_eq!(server_iv, plain.hex16("server-iv="));
    Setup {
        keys,
        client_iv,
        server_iv,
    }
}

// ---------------------------------------------------------------------------------------------
// Control streams: walk the messages, decrypting and verifying each HMAC.

/// One step over a direction's stream after the clear prefix: `Update(n)` absorbs n octets,
/// `Open(n)` ends with a 16-octet HMAC field.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Update(usize),
    Open(usize),
}

/// Walks an encrypted stream with an opener, deciding message sizes from decrypted bytes as a
/// receiver would. Returns the plaintext and the ops used.
struct Walker {
    opener: ControlOpener,
    buf: Vec<u8>,
    pos: usize,
    ops: Vec<Op>,
}

impl Walker {
    fn new(opener: ControlOpener, wire: Vec<u8>, start: usize) -> Self {
        Walker {
            opener,
            buf: wire,
            pos: start,
            ops: Vec::new(),
        }
    }

    fn done(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Decrypts and absorbs n octets; returns their plaintext.
    fn update(&mut self, n: usize) -> Vec<u8> {
        let range = self.pos..self.pos + n;
        self.opener.update(&mut self.buf[range.clone()]).unwrap();
        self.pos += n;
        self.ops.push(Op::Update(n));
        self.buf[range].to_vec()
    }

    /// Decrypts n octets ending with an HMAC field and verifies it.
    fn open(&mut self, n: usize, what: &str) -> Vec<u8> {
        let range = self.pos..self.pos + n;
        self.opener
            .open(&mut self.buf[range.clone()])
            .unwrap_or_else(|e| panic!("{what} at {}: {e}", self.pos));
        self.pos += n;
        self.ops.push(Op::Open(n));
        self.buf[range].to_vec()
    }

    /// Request-Session (RFC 4656 3.5): 112 octets with an HMAC over the first 96, then the
    /// slots (16 each) with an HMAC over the slots only. Returns the number of slots.
    fn request_session(&mut self, first: &[u8]) -> usize {
        let slots = be32(&first[4..8]) as usize;
        self.open(112 - 16, "Request-Session HMAC");
        self.update(16 * slots);
        self.open(HMAC_LEN, "Request-Session slots HMAC");
        slots
    }

    /// Stop-Sessions (RFC 4656 3.8): header block, per session SID + Next-Seqno + skip count +
    /// MBZ, then the skip ranges, then one HMAC over all of it.
    fn stop_sessions(&mut self, first: &[u8]) {
        let sessions = be32(&first[4..8]);
        for _ in 0..sessions {
            let s = self.update(32);
            let skips = be32(&s[20..24]) as usize;
            self.update(pad16(8 * skips));
        }
        self.open(HMAC_LEN, "Stop-Sessions HMAC");
    }
}

/// Decrypts C>S; returns the plaintext, the ops and the commands in order.
fn walk_cs(wire: &Trace, setup: &Setup) -> (Vec<u8>, Vec<Op>, Vec<u8>) {
    let opener = ControlOpener::new(&setup.keys, &setup.client_iv);
    let mut w = Walker::new(opener, wire.cs_stream(), CLEAR_CS);
    let mut commands = Vec::new();
    while !w.done() {
        let first = w.update(16);
        commands.push(first[0]);
        match first[0] {
            1 => {
                w.request_session(&first);
            }
            2 => {
                w.open(16, "Start-Sessions");
            }
            3 => w.stop_sessions(&first),
            4 => {
                w.open(32, "Fetch-Session");
            }
            c => panic!("unexpected command {c}"),
        }
    }
    (w.buf, w.ops, commands)
}

/// Decrypts S>C, given the client's commands to know which responses follow.
fn walk_sc(wire: &Trace, setup: &Setup, commands: &[u8]) -> (Vec<u8>, Vec<Op>) {
    let opener = ControlOpener::new(&setup.keys, &setup.server_iv);
    let mut w = Walker::new(opener, wire.sc_stream(), CLEAR_SC);
    // The last block of Server-Start (Start-Time + MBZ) starts the chain and the HMAC of the
    // first Accept-Session, without an HMAC of its own.
    w.update(16);
    let mut responses = commands.iter().filter(|&&c| c != 3).copied();
    let mut started = false;
    while !w.done() {
        let first = w.update(16);
        if started && first[0] == 3 {
            // The server's own Stop-Sessions.
            w.stop_sessions(&first);
            continue;
        }
        match responses.next().expect("a response without a request") {
            1 => {
                assert_eq!(first[0], 0, "Accept-Session accept");
                w.open(32, "Accept-Session");
            }
            2 => {
                w.open(16, "Start-Ack");
                started = true;
            }
            4 => {
                // Fetch-Ack (RFC 4656 3.8): Accept, Finished, MBZ 2, Next Seqno, skip ranges,
                // records, HMAC.
                assert_eq!(first[0], 0, "Fetch-Ack accept");
                let skips = be32(&first[8..12]) as usize;
                let records = be32(&first[12..16]) as usize;
                w.open(16, "Fetch-Ack");
                let stored = w.update(16);
                assert_eq!(stored[0], 1, "stored Request-Session");
                w.request_session(&stored);
                w.update(pad16(8 * skips));
                w.open(HMAC_LEN, "skip ranges HMAC");
                w.update(pad16(25 * records));
                w.open(HMAC_LEN, "records HMAC");
            }
            c => panic!("no response expected for {c}"),
        }
    }
    (w.buf, w.ops)
}

/// Re-seals a plaintext stream with the ops of the walk, HMAC fields zeroed first so that they
/// are recomputed, not copied.
fn reseal(plain: &[u8], start: usize, ops: &[Op], mut sealer: ControlSealer) -> Vec<u8> {
    let mut out = plain.to_vec();
    let mut pos = start;
    for op in ops {
        match *op {
            Op::Update(n) => {
                sealer.update(&mut out[pos..pos + n]).unwrap();
                pos += n;
            }
            Op::Open(n) => {
                out[pos + n - HMAC_LEN..pos + n].fill(0);
                sealer.seal(&mut out[pos..pos + n]).unwrap();
                pos += n;
            }
        }
    }
    assert_eq!(pos, out.len());
    out
}

/// Decrypts a direction with the bare CBC decryptor, one trace segment at a time.
fn decrypt_by_segments(segments: &[Vec<u8>], clear: usize, mut dec: ControlDecryptor) -> Vec<u8> {
    let mut out = Vec::new();
    for seg in segments {
        let mut seg = seg.clone();
        let skip = clear.saturating_sub(out.len()).min(seg.len());
        dec.decrypt(&mut seg[skip..]).unwrap();
        out.extend_from_slice(&seg);
    }
    out
}

fn check_control(wire: &Trace, plain: &Trace, setup: &Setup) {
    let plain_cs = plain.cs_stream();
    let plain_sc = plain.sc_stream();

    // The bare chains, fed in the sender's write sizes.
    let dec = ControlDecryptor::new(&setup.keys.aes, &setup.client_iv);
    assert_eq!(decrypt_by_segments(&wire.cs, CLEAR_CS, dec), plain_cs);
    let dec = ControlDecryptor::new(&setup.keys.aes, &setup.server_iv);
    assert_eq!(decrypt_by_segments(&wire.sc, CLEAR_SC, dec), plain_sc);

    // Message by message with every HMAC verified.
    let (cs, cs_ops, commands) = walk_cs(wire, setup);
    assert_eq!(cs, plain_cs);
    assert_eq!(commands, [1, 1, 2, 3, 4]);
    let (sc, sc_ops) = walk_sc(wire, setup, &commands);
    assert_eq!(sc, plain_sc);
    let hmacs = |ops: &[Op]| ops.iter().filter(|o| matches!(o, Op::Open(_))).count();
    // C>S: 2 x (Request-Session + slots), Start-Sessions, Stop-Sessions, Fetch-Session.
    assert_eq!(hmacs(&cs_ops), 7);
    // S>C: 2 Accept-Session, Start-Ack, Stop-Sessions, Fetch-Ack, stored Request-Session (2),
    // skip ranges, records.
    assert_eq!(hmacs(&sc_ops), 9);

    // The HMAC checks listed in the plaintext trace's header all passed there too.
    let checks: Vec<&String> = plain
        .header
        .iter()
        .filter(|h| h.starts_with("check "))
        .collect();
    assert!(checks.len() >= 3);
    assert!(checks.iter().all(|h| h.ends_with(": True")), "{checks:?}");

    // Sealing the plaintext reproduces the wire bytes exactly.
    let sealer = ControlSealer::new(&setup.keys, &setup.client_iv);
    assert_eq!(
        reseal(&plain_cs, CLEAR_CS, &cs_ops, sealer),
        wire.cs_stream()
    );
    let sealer = ControlSealer::new(&setup.keys, &setup.server_iv);
    assert_eq!(
        reseal(&plain_sc, CLEAR_SC, &sc_ops, sealer),
        wire.sc_stream()
    );

    // A flipped ciphertext bit anywhere after the clear prefix fails an HMAC.
    let cases = [
        (wire.cs_stream(), CLEAR_CS, &cs_ops, setup.client_iv),
        (wire.sc_stream(), CLEAR_SC, &sc_ops, setup.server_iv),
    ];
    for (stream, clear, ops, iv) in cases {
        assert_eq!(replay_open(&stream, clear, ops, &setup.keys, &iv), Ok(()));
        for pos in (clear..stream.len()).step_by(7) {
            let mut tampered = stream.clone();
            tampered[pos] ^= 0x04;
            assert_eq!(
                replay_open(&tampered, clear, ops, &setup.keys, &iv),
                Err(CryptoError::HmacMismatch),
                "octet {pos}"
            );
        }
    }
}

/// Opens a whole direction with the given ops; the first error, if any.
fn replay_open(
    stream: &[u8],
    start: usize,
    ops: &[Op],
    keys: &SessionKeys,
    iv: &[u8; 16],
) -> Result<(), CryptoError> {
    let mut buf = stream.to_vec();
    let mut opener = ControlOpener::new(keys, iv);
    let mut pos = start;
    for op in ops {
        match *op {
            Op::Update(n) => {
                opener.update(&mut buf[pos..pos + n])?;
                pos += n;
            }
            Op::Open(n) => {
                opener.open(&mut buf[pos..pos + n])?;
                pos += n;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Test packets.

fn check_test_packets(wire: &Trace, plain: &Trace, setup: &Setup) {
    let mode = plain.mode();
    assert_eq!(wire.tests.len(), plain.tests.len());
    assert_eq!(wire.tests.len(), 40);
    for (w, p) in wire.tests.iter().zip(&plain.tests) {
        assert_eq!(w.id, p.id);
        assert!(p.comment.ends_with("hmac=ok"), "{}", p.comment);
        let sid: [u8; 16] = hex::decode(
            p.comment
                .split("sid=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap(),
        )
        .unwrap()
        .try_into()
        .unwrap();
        let crypto = TestPacketCrypto::new(mode, &sid, &setup.keys);

        let mut opened = w.payload.clone();
        crypto.open(&mut opened).unwrap();
        assert_eq!(opened, p.payload, "open {}", w.id);

        let mut sealed = p.payload.clone();
        sealed[32..48].fill(0);
        crypto.seal(&mut sealed).unwrap();
        assert_eq!(sealed, w.payload, "seal {}", w.id);

        // Any flipped bit in what the HMAC covers, or in the HMAC, is caught.
        let covered = match mode {
            SecureMode::Authenticated => 16,
            SecureMode::Encrypted => 32,
        };
        for i in (0..covered).chain(32..48).step_by(5) {
            let mut t = w.payload.clone();
            t[i] ^= 0x10;
            assert_eq!(
                crypto.open(&mut t),
                Err(CryptoError::HmacMismatch),
                "octet {i}"
            );
        }
        // The SID matters.
        let mut other = sid;
        other[0] ^= 1;
        let mut t = w.payload.clone();
        assert_eq!(
            TestPacketCrypto::new(mode, &other, &setup.keys).open(&mut t),
            Err(CryptoError::HmacMismatch)
        );
    }
}

fn check_scenario(name: &str, mode: SecureMode) {
    let wire = load(&format!("{name}.trace"));
    let plain = load(&format!("{name}.plain.trace"));
    assert_eq!(plain.mode(), mode);
    let setup = check_setup(&wire, &plain);
    check_control(&wire, &plain, &setup);
    check_test_packets(&wire, &plain, &setup);
}

#[test]
fn authenticated_trace() {
    check_scenario("b_auth", SecureMode::Authenticated);
}

#[test]
fn encrypted_trace() {
    check_scenario("c_encrypted", SecureMode::Encrypted);
}

#[test]
fn wrong_passphrase_trace() {
    // The client used another passphrase: its Token opens with that passphrase's key but not
    // with the server's.
    let t = load("d_authfail.trace");
    let sc = t.sc_stream();
    let cs = t.cs_stream();
    let challenge = h16(&sc[16..32]);
    let salt = h16(&sc[32..48]);
    let count = be32(&sc[48..52]);
    let token: [u8; 64] = cs[84..148].try_into().unwrap();
    let server_key = derive_key(PASSPHRASE, &salt, count).unwrap();
    assert_eq!(
        open_token(&server_key, &token, &challenge),
        Err(CryptoError::ChallengeMismatch)
    );
    let client_pass = hex::decode(t.value("passphrase-hex:")).unwrap();
    assert_eq!(client_pass, b"wrong passphrase");
    let client_key = derive_key(&client_pass, &salt, count).unwrap();
    assert!(open_token(&client_key, &token, &challenge).is_ok());
}
