//! Driving owamp-core with your own I/O: a one-way measurement over plain std sockets.
//!
//! A server [`ServerConnection`] runs on a thread and a client [`ClientConnection`] on the main
//! thread, both on 127.0.0.1 and both driven by the same small loop, [`pump`]: it writes the
//! control octets, binds the UDP test sockets the connection asks for, sends the test packets it
//! builds, and feeds back what arrives and the time. The client sends 100 packets, fetches
//! what the server received and prints the statistics. Every protocol decision is the core's.
//!
//! Run it with `cargo run -p owamp-core --example std_sockets`. (A real host would read the
//! kernel's receive timestamps and use the OS random generator: see owamp-os.)

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime};

use owamp_core::connection::{ClientConnection, ClientEvent, Connection, ControlAction};
use owamp_core::connection::{Machine, OpenError, Output, ServerConnection, ServerEvent};
use owamp_core::connection::{SocketAction, SocketId};
use owamp_core::control::{ClientConfig, Role, ServerConfig, SessionRequest};
use owamp_core::io::{FetchReply, StoredSession};
use owamp_core::policy::AllowAll;
use owamp_core::session::Datagram;
use owamp_core::stats::Stats;
use owamp_core::time::{Interval, OwampTime};
use owamp_core::wire::{Slot, SlotKind, TypeP};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn now() -> OwampTime {
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    OwampTime::UNIX_EPOCH.saturating_add(unix)
}

/// A seeded generator: fine for an example, not for real keys (use the OS generator).
fn rng(salt: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(now().raw() ^ salt)
}

/// The host's side of one connection: its control stream and its test sockets.
struct Io {
    tcp: TcpStream,
    udp: HashMap<SocketId, UdpSocket>,
    buf: Vec<u8>,
}

/// One turn of the loop: everything the connection wants done, then whatever arrived, then
/// the time. Returns the outputs for the application (events and received sessions).
fn pump<M: Machine>(c: &mut Connection<M>, io: &mut Io) -> Vec<Output<M::Event>> {
    let mut app = Vec::new();
    while let Some(t) = c.poll_transmit(now(), &mut io.buf) {
        if let Some(s) = io.udp.get(&t.socket) {
            let _ = s.send_to(&io.buf[..t.transmit.len], t.transmit.dest);
        }
    }
    while let Some(o) = c.poll_output() {
        match o {
            Output::Control(ControlAction::Transmit(b)) => {
                if io.tcp.write_all(&b).is_err() {
                    c.handle_control_closed(now());
                }
            }
            Output::Control(ControlAction::Close(_)) => {
                let _ = io.tcp.shutdown(std::net::Shutdown::Both);
                io.udp.clear();
            }
            // std cannot size the receive buffer (`recv_buffer`): these sessions are short.
            Output::Socket(SocketAction::Open { id, local, .. }) => {
                let r = match UdpSocket::bind(local) {
                    Ok(s) => {
                        let port = s.local_addr().map(|a| a.port()).unwrap_or(0);
                        let _ = s.set_nonblocking(true);
                        io.udp.insert(id, s);
                        Ok(port)
                    }
                    Err(e) if e.kind() == ErrorKind::AddrInUse => Err(OpenError::InUse),
                    Err(_) => Err(OpenError::Failed),
                };
                c.socket_opened(now(), id, r);
            }
            // Best effort: not here (the connection filters datagrams by source itself).
            Output::Socket(SocketAction::SetDscp { .. } | SocketAction::Connect { .. }) => {}
            Output::Socket(SocketAction::Close(id)) => drop(io.udp.remove(&id)),
            other => app.push(other),
        }
    }
    match io.tcp.read(&mut io.buf) {
        Ok(0) => c.handle_control_closed(now()),
        Ok(n) => c.handle_control(now(), &io.buf[..n]),
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Err(_) => c.handle_control_closed(now()),
    }
    let mut dgram = [0u8; 2048];
    for (&id, s) in &io.udp {
        while let Ok((n, source)) = s.recv_from(&mut dgram) {
            let d = Datagram {
                source,
                recv_time: now(),
                ttl: None,
                truncated: false,
                payload: &dgram[..n],
            };
            c.handle_datagram(now(), id, &d);
        }
    }
    if c.poll_timeout().is_some_and(|t| now() >= t.at) {
        c.handle_timeout(now());
    }
    std::thread::sleep(Duration::from_micros(200));
    app
}

fn io(tcp: TcpStream) -> Io {
    tcp.set_nonblocking(true)
        .expect("non-blocking control socket");
    Io {
        tcp,
        udp: HashMap::new(),
        buf: vec![0; 64 * 1024],
    }
}

/// The server: one connection, sessions kept in memory for Fetch-Session.
fn serve(listener: TcpListener) {
    let (tcp, peer) = listener.accept().expect("a client");
    let local = tcp.local_addr().expect("local address");
    let cfg = ServerConfig {
        start_time: now(),
        ..ServerConfig::default()
    };
    let mut c = ServerConnection::server(now(), cfg, AllowAll, rng(1), local, peer);
    let (mut io, mut kept) = (io(tcp), Vec::<StoredSession>::new());
    while !c.is_closed() {
        for o in pump(&mut c, &mut io) {
            match o {
                Output::Store(s) => kept.push(*s),
                Output::Event(ServerEvent::FetchRequest { sid, .. }) => {
                    let found = kept.iter().find(|s| s.request.sid == sid).cloned();
                    let reply =
                        found.map_or(FetchReply::NotFound, |s| FetchReply::Found(Box::new(s)));
                    c.fetch_reply(now(), reply);
                }
                _ => {}
            }
        }
    }
}

fn main() {
    run().expect("the measurement completes");
}

fn run() -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let server = listener.local_addr().map_err(|e| e.to_string())?;
    let thread = std::thread::spawn(move || serve(listener));
    let tcp = TcpStream::connect(server).map_err(|e| e.to_string())?;
    let local = tcp.local_addr().map_err(|e| e.to_string())?;
    let mut c = ClientConnection::client(now(), ClientConfig::default(), rng(2));
    let mut io = io(tcp);
    let (t0, mut sid, mut result) = (Instant::now(), None, None);
    while !c.is_closed() && t0.elapsed() < Duration::from_secs(30) {
        for o in pump(&mut c, &mut io) {
            let Output::Event(e) = o else { continue };
            match e {
                ClientEvent::Connected { .. } => {
                    let req = SessionRequest {
                        role: Role::Sender,
                        local: std::net::SocketAddr::new(local.ip(), 0),
                        peer: server.ip(),
                        slots: vec![Slot {
                            kind: SlotKind::Fixed,
                            mean: Interval::from_duration(Duration::from_millis(5))
                                .unwrap_or(Interval::ZERO),
                        }],
                        packets: 100,
                        padding: 0,
                        start_time: now().saturating_add(Duration::from_millis(300)),
                        timeout: Interval::from_duration(Duration::from_secs(1))
                            .unwrap_or(Interval::ZERO),
                        type_p: TypeP::BEST_EFFORT,
                    };
                    c.request_session(req).map_err(|e| e.to_string())?;
                }
                ClientEvent::SessionAccepted(info) => {
                    sid = Some(info.sid);
                    c.start_sessions(now()).map_err(|e| e.to_string())?;
                }
                ClientEvent::TestComplete => {
                    let sid = sid.ok_or("no session")?;
                    c.fetch(now(), sid, 0, u32::MAX)
                        .map_err(|e| e.to_string())?;
                }
                ClientEvent::Fetched(f) => {
                    let s = Stats::of_fetched(&f).map_err(|e| e.to_string())?;
                    let median = s.exact_median().unwrap_or(f64::NAN) * 1e3;
                    println!(
                        "{} sent, {} lost, median one-way delay {median:.3} ms",
                        s.sent, s.lost
                    );
                    result = Some((s.sent, s.lost));
                    c.close(now());
                }
                ClientEvent::Started => {}
                other => return Err(format!("unexpected {other:?}")),
            }
        }
    }
    // The last outputs (the Close), then the sockets go: the server sees the end.
    pump(&mut c, &mut io);
    drop(io);
    thread
        .join()
        .map_err(|_| "server thread panicked".to_string())?;
    match result {
        Some((100, 0)) => Ok(()),
        other => Err(format!("measurement incomplete: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn measures_over_loopback() {
        super::run().unwrap();
    }
}
