//! A blocking host for one core [`Connection`] (client or server) that records everything it
//! sends and receives as a [`Trace`], and can alter what it sends: the live probe and the
//! strict server both run on it.
//!
//! It follows the contract of `owamp_core::connection`: handle input, send the test packets
//! [`Connection::poll_transmit`] builds, carry out every output, then wait (`ppoll(2)` over
//! the control connection and the test sockets) at most until [`Connection::poll_timeout`]
//! and at most until the caller's deadline. Every wait is bounded by that deadline, so a peer
//! that never answers ends a [`Driver::pump`] with `false`, never a hang.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use owamp_core::connection::{
    Connection, ControlAction, Machine, OpenError, Output, SocketAction, SocketId,
};
use owamp_core::control::CloseReason;
use owamp_core::io::StoredSession;
use owamp_core::session::Datagram;
use owamp_core::time::OwampTime;
use owamp_os::clock::{Clock, SystemClock};
use owamp_os::net::{is_addr_in_use, wait_any_readable, TestSocket, MAX_DATAGRAM};

use crate::trace::{Direction, Event, Trace};

/// What to do with one control message this end is about to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alter {
    /// Send it as it is (possibly changed in place).
    Send,
    /// Do not send it.
    Drop,
    /// Send these octets, then close the writing half of the connection (a truncated
    /// message).
    SendAndShutdown(Vec<u8>),
}

/// A hook over the control octets this end sends: called with the index of the transmit
/// (0-based, one per [`ControlAction::Transmit`]) and its octets.
pub type ControlHook = Box<dyn FnMut(usize, &mut Vec<u8>) -> Alter + Send>;

/// A hook over the test packets this end sends: returns `false` to leave the packet with this
/// sequence number unsent.
pub type PacketHook = Box<dyn FnMut(u32) -> bool + Send>;

/// Records control segments and test packets as trace events, timed from the first one.
#[derive(Debug, Default)]
pub struct Recorder {
    start: Option<Instant>,
    /// The events so far.
    pub events: Vec<Event>,
}

impl Recorder {
    fn micros(&mut self) -> u64 {
        let start = *self.start.get_or_insert_with(Instant::now);
        u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Records a control segment.
    pub fn control(&mut self, dir: Direction, bytes: &[u8], comment: Option<String>) {
        if bytes.is_empty() {
            return;
        }
        self.events.push(Event::Control {
            dir,
            bytes: bytes.to_vec(),
            comment,
        });
    }

    /// Records a test packet.
    pub fn test(&mut self, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        let micros = self.micros();
        self.events.push(Event::Test {
            micros,
            src,
            dst,
            payload: payload.to_vec(),
            comment: None,
        });
    }

    /// The bytes one direction sent so far.
    pub fn stream(&self, dir: Direction) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.events {
            if let Event::Control { dir: d, bytes, .. } = e {
                if *d == dir {
                    out.extend_from_slice(bytes);
                }
            }
        }
        out
    }

    /// The events as a trace with these headers.
    pub fn to_trace(&self, headers: &[(&str, String)]) -> Trace {
        let mut t = Trace {
            comments: Vec::new(),
            events: self.events.clone(),
        };
        for (k, v) in headers {
            t.push_header(k, v);
        }
        t
    }
}

/// One control connection driven by a core [`Connection`], recorded.
pub struct Driver<M: Machine> {
    /// The core connection.
    pub conn: Connection<M>,
    stream: TcpStream,
    /// Which end of the trace this side is (`C>S` for a client).
    sends: Direction,
    clock: SystemClock,
    sockets: BTreeMap<SocketId, TestSocket>,
    /// What was exchanged.
    pub rec: Recorder,
    /// What the connection told the application, not yet taken.
    pub events: VecDeque<M::Event>,
    /// Sessions this end received, when they ended.
    pub stored: Vec<StoredSession>,
    /// Why this end closed, once it did.
    pub closed: Option<CloseReason>,
    /// The peer closed the control connection (end of stream or an error).
    pub peer_closed: bool,
    /// Alters the control messages this end sends.
    pub control_hook: Option<ControlHook>,
    /// Leaves test packets unsent.
    pub packet_hook: Option<PacketHook>,
    transmits: usize,
    write_shut: bool,
    buf: Vec<u8>,
}

impl<M: Machine> Driver<M> {
    /// A driver for `conn` on the connected `stream`; `sends` is the direction of what this
    /// end writes.
    pub fn new(conn: Connection<M>, stream: TcpStream, sends: Direction) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            conn,
            stream,
            sends,
            clock: SystemClock::new(),
            sockets: BTreeMap::new(),
            rec: Recorder::default(),
            events: VecDeque::new(),
            stored: Vec::new(),
            closed: None,
            peer_closed: false,
            control_hook: None,
            packet_hook: None,
            transmits: 0,
            write_shut: false,
            buf: vec![0; MAX_DATAGRAM],
        })
    }

    /// The clock's time.
    pub fn now(&self) -> OwampTime {
        self.clock.now()
    }

    /// Whether the connection is over: closed by this end or by the peer.
    pub fn is_over(&self) -> bool {
        self.closed.is_some() || self.peer_closed || self.conn.is_closed()
    }

    fn peer_dir(&self) -> Direction {
        match self.sends {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        }
    }

    /// Writes octets to the control connection, within a bounded time.
    fn write_control(&mut self, bytes: &[u8]) {
        if self.write_shut || bytes.is_empty() {
            return;
        }
        self.rec.control(self.sends, bytes, None);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut at = 0;
        while at < bytes.len() {
            match self.stream.write(&bytes[at..]) {
                Ok(0) => break,
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.peer_closed = true;
                    break;
                }
            }
        }
    }

    /// Closes the writing half of the control connection.
    pub fn shutdown_write(&mut self) {
        self.write_shut = true;
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Writes raw octets (outside the core: a crafted message), recorded like the others.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.write_control(bytes);
    }

    /// Sends every due test packet and carries out every output.
    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            let now = self.clock.now();
            let mut buf = std::mem::take(&mut self.buf);
            while let Some(t) = self.conn.poll_transmit(now, &mut buf) {
                progressed = true;
                let send = self
                    .packet_hook
                    .as_mut()
                    .map_or(true, |h| h(t.transmit.seq));
                let payload = buf.get(..t.transmit.len).unwrap_or(&[]);
                if let (true, Some(s)) = (send, self.sockets.get(&t.socket)) {
                    let _ = s.send_to(payload, t.transmit.dest);
                    self.rec.test(s.local_addr(), t.transmit.dest, payload);
                }
            }
            self.buf = buf;
            while let Some(out) = self.conn.poll_output() {
                progressed = true;
                self.carry_out(out);
            }
            if !progressed {
                return;
            }
        }
    }

    fn carry_out(&mut self, out: Output<M::Event>) {
        match out {
            Output::Control(ControlAction::Transmit(mut bytes)) => {
                let i = self.transmits;
                self.transmits += 1;
                let alter = match self.control_hook.as_mut() {
                    Some(h) => h(i, &mut bytes),
                    None => Alter::Send,
                };
                match alter {
                    Alter::Send => self.write_control(&bytes),
                    Alter::Drop => {}
                    Alter::SendAndShutdown(b) => {
                        self.write_control(&b);
                        self.shutdown_write();
                    }
                }
            }
            Output::Control(ControlAction::Close(reason)) => {
                self.closed = Some(reason);
                self.shutdown_write();
                self.sockets.clear();
            }
            Output::Socket(SocketAction::Open {
                id,
                local,
                recv_buffer,
            }) => {
                let now = self.clock.now();
                let r = match TestSocket::bind(local) {
                    Ok(s) => {
                        let _ = s.set_recv_buffer(recv_buffer);
                        let port = s.local_addr().port();
                        self.sockets.insert(id, s);
                        Ok(port)
                    }
                    Err(e) if is_addr_in_use(&e) => Err(OpenError::InUse),
                    Err(_) => Err(OpenError::Failed),
                };
                self.conn.socket_opened(now, id, r);
            }
            Output::Socket(SocketAction::SetDscp { id, dscp }) => {
                if let Some(s) = self.sockets.get(&id) {
                    let _ = s.set_dscp(dscp);
                }
            }
            Output::Socket(SocketAction::Connect { id, peer }) => {
                // As the hosts do: the core filters foreign datagrams itself as well.
                if let Some(s) = self.sockets.get(&id) {
                    let _ = s.accept_only_from(peer);
                }
            }
            Output::Socket(SocketAction::Close(id)) => {
                self.sockets.remove(&id);
            }
            Output::Store(s) => self.stored.push(*s),
            // Records are not streamed on this host.
            Output::Stream(_) => {}
            Output::Event(e) => self.events.push_back(e),
        }
    }

    /// Reads what the control connection has: `false` once it ended.
    fn read_control(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.peer_closed = true;
                    let now = self.clock.now();
                    self.conn.handle_control_closed(now);
                    return;
                }
                Ok(n) => {
                    let bytes = &buf[..n];
                    self.rec.control(self.peer_dir(), bytes, None);
                    let now = self.clock.now();
                    self.conn.handle_control(now, bytes);
                    self.flush();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.peer_closed = true;
                    let now = self.clock.now();
                    self.conn.handle_control_closed(now);
                    return;
                }
            }
        }
    }

    /// Reads every datagram waiting on the socket.
    fn read_socket(&mut self, id: SocketId) {
        // Bounded: a socket flooded faster than this loop reads is read again next round.
        for _ in 0..1024 {
            let Some(s) = self.sockets.get(&id) else {
                return;
            };
            let local = s.local_addr();
            let Ok(Some(r)) = s.recv(&mut self.buf, Duration::ZERO) else {
                return;
            };
            let now = self.clock.now();
            let recv_time = r
                .kernel_time
                .and_then(|t| self.clock.kernel_timestamp(t))
                .unwrap_or(now);
            let payload = self.buf.get(..r.len).unwrap_or(&[]);
            self.rec.test(r.source, local, payload);
            let d = Datagram {
                source: r.source,
                recv_time,
                ttl: r.ttl,
                truncated: r.truncated,
                payload,
            };
            self.conn.handle_datagram(now, id, &d);
        }
    }

    /// Drives the connection until `until` says so (`true`), the connection is over and
    /// nothing is left to do (`false`), or `limit` has passed (`false`). `until` is asked
    /// after every round; it may call the connection's commands.
    pub fn pump(&mut self, limit: Duration, mut until: impl FnMut(&mut Self) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut ready = Vec::new();
        loop {
            self.flush();
            if until(self) {
                return true;
            }
            self.flush();
            if self.closed.is_some() || (self.peer_closed && self.conn.is_closed()) {
                // A last look: what was queued before the close.
                return until(self);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut wait = left.min(Duration::from_millis(100));
            if let Some(t) = self.conn.poll_timeout() {
                let now = self.clock.now();
                let d = t.at.duration_since(now).unwrap_or(Duration::ZERO);
                wait = wait.min(d);
            }
            let mut fds = Vec::with_capacity(1 + self.sockets.len());
            let ids: Vec<SocketId> = self.sockets.keys().copied().collect();
            if !self.peer_closed {
                fds.push(self.stream.as_raw_fd());
            }
            fds.extend(self.sockets.values().map(|s| s.socket().as_raw_fd()));
            if fds.is_empty() {
                std::thread::sleep(wait);
            } else if wait_any_readable(&fds, wait, &mut ready).is_err() {
                std::thread::sleep(Duration::from_millis(1));
            }
            let offset = usize::from(!self.peer_closed);
            if !self.peer_closed && ready.first().copied().unwrap_or(false) {
                self.read_control();
            }
            for (i, id) in ids.iter().enumerate() {
                if ready.get(i + offset).copied().unwrap_or(false) {
                    self.read_socket(*id);
                }
            }
            ready.clear();
            let now = self.clock.now();
            self.conn.handle_timeout(now);
        }
    }

    /// Waits at most `limit` for the peer to close the control connection; whether it did.
    /// Octets that arrive meanwhile are recorded (and handed to the connection).
    pub fn wait_peer_close(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut ready = Vec::new();
        while !self.peer_closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let fd = self.stream.as_raw_fd();
            if wait_any_readable(&[fd], left.min(Duration::from_millis(100)), &mut ready)
                .unwrap_or(false)
            {
                self.read_control_raw();
            }
        }
        true
    }

    /// Reads the control connection without handing the octets to the core (after this end
    /// sent something the core did not: its state no longer matches the stream).
    fn read_control_raw(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.peer_closed = true;
                    return;
                }
                Ok(n) => self.rec.control(self.peer_dir(), &buf[..n], None),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.peer_closed = true;
                    return;
                }
            }
        }
    }

    /// The local and peer addresses of the control connection.
    pub fn addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        (self.stream.local_addr().ok(), self.stream.peer_addr().ok())
    }
}
