//! Secrets at the level of the tools, on 127.0.0.1 only: an encrypted session between our
//! owping and owampd, both as verbose as they go, prints neither the passphrase nor any key
//! made from it; a server asking for a huge PBKDF2 count is refused at once; pass-phrase
//! files that others may read are used, with a warning naming them.

mod common;

use common::{args, run, Daemon, Output};

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use owamp_core::crypto::{decrypt_token, derive_key};
use owamp_core::wire::{Modes, ServerGreeting, SetUpResponse};

const OWPING: &str = env!("CARGO_BIN_EXE_owping");
const POWSTREAM: &str = env!("CARGO_BIN_EXE_powstream");
const PFSTORE: &str = env!("CARGO_BIN_EXE_pfstore");

const PASS: &str = "Tr0ub4dor&3 staple";

/// A pfs file written by pfstore (mode 0600), the pass-phrase read from standard input.
fn pfs_file(dir: &Path, name: &str) -> PathBuf {
    let f = dir.join(name);
    let o = run(
        PFSTORE,
        &args(&["-n", "-f", f.to_str().unwrap(), "alice"]),
        &format!("{PASS}\n"),
        Duration::from_secs(10),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    f
}

fn secure_daemon(conf: &str) -> (Daemon, tempfile::TempDir) {
    let keys = tempfile::tempdir().unwrap();
    let server_pfs = pfs_file(keys.path(), "server.pfs");
    let limits = "limit root with disk=0, bandwidth=0, allow_open_mode=on\n\
assign default root\nassign user alice root\n";
    let d = Daemon::start(
        conf,
        Some(limits),
        Some(&std::fs::read_to_string(server_pfs).unwrap()),
    );
    (d, keys)
}

/// Octets that went each way through a [`Relay`].
type Captured = Arc<Mutex<Vec<u8>>>;

/// A TCP relay on 127.0.0.1 between one client and `upstream`, keeping what passes each way.
struct Relay {
    port: u16,
    to_server: Captured,
    to_client: Captured,
    thread: JoinHandle<()>,
}

fn pipe(mut from: TcpStream, mut to: TcpStream, keep: Captured) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // The control connection is bounded by the test's own deadlines; a read timeout keeps
        // this thread bounded too.
        let _ = from.set_read_timeout(Some(Duration::from_secs(60)));
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
            keep.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        let _ = to.shutdown(Shutdown::Write);
    })
}

impl Relay {
    fn start(upstream: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let to_server = Captured::default();
        let to_client = Captured::default();
        let (up, down) = (to_server.clone(), to_client.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let client = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => panic!("nobody connected to the relay: {e}"),
                }
            };
            client.set_nonblocking(false).unwrap();
            let server = TcpStream::connect(upstream).unwrap();
            let a = pipe(client.try_clone().unwrap(), server.try_clone().unwrap(), up);
            let b = pipe(server, client, down);
            a.join().unwrap();
            b.join().unwrap();
        });
        Relay {
            port,
            to_server,
            to_client,
            thread,
        }
    }
}

/// Every way a log line could show `secret`: as text, and in hex of either case.
fn shows(text: &str, secret: &[u8]) -> bool {
    let lower = text.to_ascii_lowercase();
    (secret.len() >= 4 && std::str::from_utf8(secret).is_ok_and(|s| text.contains(s)))
        || lower.contains(&hex::encode(secret))
        || secret
            .windows(8.min(secret.len()))
            .any(|w| lower.contains(&hex::encode(w)))
}

#[test]
fn the_check_finds_secrets() {
    assert!(shows("pass=Tr0ub4dor&3 staple", PASS.as_bytes()));
    assert!(shows(
        "key 0011AABBCCDDEEFF0011",
        &[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0, 0x11]
    ));
    assert!(!shows("nothing", &[1, 2, 3, 4, 5, 6, 7, 8]));
}

#[test]
fn an_encrypted_session_at_full_verbosity_prints_no_secret() {
    let (d, keys) = secure_daemon("verbose\nloglevel all\n");
    let pfs = pfs_file(keys.path(), "alice.pfs");
    let relay = Relay::start(d.addr());
    let o = run(
        OWPING,
        &args(&[
            "-A",
            "E",
            "-u",
            "alice",
            "-k",
            pfs.to_str().unwrap(),
            "-c",
            "10",
            "-i",
            "0.01",
            "-L",
            "1",
            "-v",
            &format!("127.0.0.1:{}", relay.port),
        ]),
        "",
        Duration::from_secs(60),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    relay.thread.join().unwrap();
    let (code, log) = d.terminate();
    assert_eq!(code, 0, "{log:?}");
    assert!(
        log.iter()
            .any(|l| l.contains("mode=encrypted identity=\"alice\"")),
        "{log:?}"
    );

    // The keys in use, recovered from the wire with the passphrase.
    let to_server = relay.to_server.lock().unwrap().clone();
    let to_client = relay.to_client.lock().unwrap().clone();
    let greeting = ServerGreeting::parse(&to_client[..64]).unwrap();
    let setup = SetUpResponse::parse(&to_server[..164]).unwrap();
    let derived = derive_key(PASS.as_bytes(), &greeting.salt, greeting.count).unwrap();
    let (challenge, session) = decrypt_token(&derived, &setup.token);
    assert_eq!(challenge, greeting.challenge, "not the keys in use");
    assert!(greeting.modes.contains(owamp_core::wire::Mode::Encrypted));

    let all = format!("{}\n{}\n{}", o.stdout, o.stderr, log.join("\n"));
    assert!(all.contains("one-way delay"), "{all}");
    for (name, secret) in [
        ("pass-phrase", PASS.as_bytes()),
        ("pass-phrase (pfs hex)", &hex::encode(PASS).into_bytes()[..]),
        ("derived key", &derived.as_bytes()[..]),
        ("AES session key", &session.aes[..]),
        ("HMAC session key", &session.hmac[..]),
    ] {
        assert!(!shows(&all, secret), "the output shows the {name}:\n{all}");
    }
}

/// A fake server: sends a Server-Greeting offering every mode with `count` iterations, then
/// keeps the connection open (bounded) and counts what the client sends.
fn fake_server(count: u32) -> (u16, JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let t = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("the client never connected: {e}"),
            }
        };
        s.set_nonblocking(false).unwrap();
        let g = ServerGreeting {
            modes: Modes::ALL,
            challenge: [7; 16],
            salt: [9; 16],
            count,
        };
        s.write_all(&g.to_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got.len()
    });
    (port, t)
}

fn owping_against(port: u16, pfs: &Path, extra: &[&str]) -> (Output, Duration) {
    let mut a = args(&["-A", "AE", "-u", "alice", "-k", pfs.to_str().unwrap()]);
    a.extend(args(extra));
    a.push(format!("127.0.0.1:{port}").into());
    let t0 = Instant::now();
    let o = run(OWPING, &a, "", Duration::from_secs(60));
    (o, t0.elapsed())
}

#[test]
fn owping_refuses_a_huge_pbkdf2_count_at_once() {
    let keys = tempfile::tempdir().unwrap();
    let pfs = pfs_file(keys.path(), "alice.pfs");

    let (port, server) = fake_server(u32::MAX);
    let (o, took) = owping_against(port, &pfs, &[]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("PBKDF2 iteration count of 4294967295, above this client's limit of 1048576"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("Unable to open control connection"),
        "{}",
        o.stderr
    );
    // Nothing was sent: no Set-Up-Response, no Token.
    assert_eq!(server.join().unwrap(), 0);
    // Hours of derivation would not finish within the run's limit; refusing takes moments.
    assert!(took < Duration::from_secs(30), "{took:?}");

    // The bound is the user's to lower.
    let (port, server) = fake_server(4096);
    let (o, _) = owping_against(port, &pfs, &["--max-pbkdf2-count", "2048"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("count of 4096, above this client's limit of 2048"),
        "{}",
        o.stderr
    );
    assert_eq!(server.join().unwrap(), 0);
}

fn loosen(f: &Path, mode: u32) {
    std::fs::set_permissions(f, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn loose_pass_phrase_files_are_used_with_a_warning() {
    let (d, keys) = secure_daemon("");
    let pfs = pfs_file(keys.path(), "alice.pfs");
    loosen(&pfs, 0o644);
    let o = run(
        OWPING,
        &args(&[
            "-A",
            "A",
            "-u",
            "alice",
            "-k",
            pfs.to_str().unwrap(),
            "-c",
            "5",
            "-i",
            "0.01",
            "-L",
            "1",
            &d.addr(),
        ]),
        "",
        Duration::from_secs(60),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let warning = format!(
        "owping: warning: pass-phrase file {} has mode 0644 (group can read it, others can \
         read it)",
        pfs.display()
    );
    assert!(o.stderr.contains(&warning), "{}", o.stderr);
    assert!(!o.stderr.contains(PASS), "{}", o.stderr);
    // As pfstore leaves it: no warning.
    loosen(&pfs, 0o600);
    let o = run(
        OWPING,
        &args(&[
            "-A",
            "A",
            "-u",
            "alice",
            "-k",
            pfs.to_str().unwrap(),
            "-c",
            "5",
            "-i",
            "0.01",
            "-L",
            "1",
            &d.addr(),
        ]),
        "",
        Duration::from_secs(60),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(!o.stderr.contains("warning: pass-phrase"), "{}", o.stderr);

    // powstream reads its -k file the same way; it stops right after (a third host).
    loosen(&pfs, 0o620);
    let o = run(
        POWSTREAM,
        &args(&[
            "-A",
            "A",
            "-u",
            "alice",
            "-k",
            pfs.to_str().unwrap(),
            "-d",
            keys.path().to_str().unwrap(),
            "127.0.0.1",
            "127.0.0.2",
        ]),
        "",
        Duration::from_secs(30),
    );
    assert_ne!(o.code, 0);
    let warning = format!(
        "powstream: warning: pass-phrase file {} has mode 0620 (group can write it)",
        pfs.display()
    );
    assert!(o.stderr.contains(&warning), "{}", o.stderr);
}
