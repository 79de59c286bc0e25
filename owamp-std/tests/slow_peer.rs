//! A peer that reads the control connection slowly cannot hold a connection past the I/O
//! timeout: writing one batch of octets (here a large Fetch-Session answer) must end within it,
//! however often the peer lets a few octets through.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use owamp_core::control::{Client, ClientCommand, ClientConfig, ServerConfig};
use owamp_core::io::{Finished, Input, Output, StoredSession};
use owamp_core::policy::AllowAll;
use owamp_core::time::Interval;
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::{DataRecord, RequestSession, SessionId, Slot, SlotKind, TypeP};
use owamp_os::rng::OsRng;
use owamp_os::store::{MemoryStore, SessionStore};
use owamp_std::control::{serve_connection, ServeConfig};

const SID: SessionId = SessionId([7; 16]);

/// A finished session of `n` records (about 25 n octets to send).
fn stored(n: u32) -> StoredSession {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let t = OwampTime::from_raw(0xeeb2_5d00_0000_0000);
    let records = (0..n)
        .map(|seq| DataRecord {
            seq,
            send_error: ErrorEstimate::from_raw(1),
            send_time: t,
            recv_error: ErrorEstimate::from_raw(1),
            recv_time: t,
            ttl: 255,
        })
        .collect();
    StoredSession {
        request: RequestSession {
            conf_sender: false,
            conf_receiver: true,
            num_packets: n,
            sender_port: 1,
            receiver_port: 2,
            sender_address: lo,
            receiver_address: lo,
            sid: SID,
            padding_length: 0,
            start_time: t,
            timeout: Interval::from_raw(1 << 32),
            type_p: TypeP::BEST_EFFORT,
            hmac: [0; 16],
            slots: vec![Slot {
                kind: SlotKind::Fixed,
                mean: Interval::from_raw(1 << 28),
            }],
            slots_hmac: [0; 16],
        },
        finished: Finished::Normal,
        next_seqno: n,
        skips: Vec::new(),
        records,
    }
}

/// Writes what the client machine queued.
fn flush(c: &mut Client<OsRng>, s: &mut TcpStream) {
    while let Some(o) = c.poll_output() {
        if let Output::Transmit(b) = o {
            s.write_all(&b).unwrap();
        }
    }
}

#[test]
fn a_slowly_reading_client_cannot_hold_a_fetch_answer_open() {
    let store = Arc::new(MemoryStore::new());
    store.save(&stored(200_000)).unwrap();
    let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServeConfig {
        control: ServerConfig {
            // Only the write bound may end this connection early.
            control_timeout: Duration::from_secs(60),
            ..ServerConfig::default()
        },
        io_timeout: Duration::from_secs(1),
        ..ServeConfig::default()
    };
    let (done_tx, done_rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        // Small kernel buffers, so that the peer's pace governs the writes.
        socket2::SockRef::from(&stream)
            .set_send_buffer_size(4096)
            .unwrap();
        let store: Arc<dyn SessionStore> = store;
        let r = serve_connection(stream, AllowAll, &config, store, None);
        let _ = done_tx.send(Instant::now());
        r.map(|s| s.close)
    });

    let sock = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let cfg = ClientConfig {
        control_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    };
    let now = OwampTime::from_raw(0xeeb2_5d00_0000_0000);
    let mut c = Client::new(now, cfg, OsRng);
    let mut buf = [0u8; 4096];
    while !c.is_ready() {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed during set-up");
        c.handle_input(now, Input::Received(&buf[..n])).unwrap();
        flush(&mut c, &mut s);
    }
    c.handle_input(
        now,
        Input::Command(ClientCommand::Fetch {
            sid: SID,
            begin: 0,
            end: u32::MAX,
        }),
    )
    .unwrap();
    flush(&mut c, &mut s);

    // Read a little, often enough that no single write waits a whole second: about 40 kB/s,
    // so the 5 MB answer would take two minutes.
    let t0 = Instant::now();
    let mut read = 0usize;
    let mut done = None;
    while t0.elapsed() < Duration::from_secs(8) {
        if let Ok(t) = done_rx.try_recv() {
            done = Some(t);
            break;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => {}
            Ok(n) => read += n,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = done.unwrap_or_else(|| {
        panic!(
            "the server still writes to the slow reader after {:?} ({read} octets read)",
            t0.elapsed()
        )
    });
    assert!(read < 25 * 200_000, "the whole answer was read: {read}");
    assert!(done.duration_since(t0) < Duration::from_secs(5));
    drop(s);
    server.join().unwrap().unwrap();
}
