//! Drives one core connection (client or server) and all its test sessions on the calling
//! thread: one `ppoll(2)` over the TCP control connection and the UDP test sockets, bounded by
//! the connection's timeout, and a short spin before each test packet is due.
//!
//! The wait has nanosecond resolution and the thread's timer slack is 1 ns
//! ([`owamp_os::timing::tighten_timer_slack`], set by the threads that run a driver), so a wait
//! ends a few to a few tens of µs after it was asked to; the host learns how many from the
//! waits that end by their timer and wakes that much early before a packet is due
//! ([`owamp_os::timing::SpinWindow`]).
//!
//! The sockets of sessions in which this end only receives, stamped by the kernel, are not
//! polled ([`Host::is_batched`]): they are read after every wait on the descriptors, and such
//! a wait lasts at most [`RECV_BATCH_WAIT`] while there is one, so a receiver wakes for its
//! loss deadlines (at most a hundred times a second) rather than once a packet.
//!
//! A sender wakes once a packet. While every descriptor it would wait on is send-only or
//! batched, it waits for the packets due within [`POLL_EVERY`] of its last look at them on a
//! bare timer, and looks again (reading batches, control octets, timeouts) every
//! [`POLL_EVERY`]: one `clock_nanosleep(2)` a packet instead of a `ppoll(2)` and a
//! `recvmmsg(2)`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::{Duration, Instant};

use owamp_core::connection::{Connection, ControlAction, Machine, SocketId};
use owamp_os::host::{EndpointConfig, Host, POLL_EVERY, RECV_BATCH_WAIT};
use owamp_os::net::Poller;
use owamp_os::store::SessionStore;

/// One control connection being driven.
pub(crate) struct Driver<M: Machine> {
    pub h: Host<M>,
    stream: TcpStream,
    /// The longest single wait: how fast a stop flag is noticed.
    poll_interval: Duration,
    /// How long writing one control message (or a whole Fetch-Session answer) may take.
    io_timeout: Duration,
    tcp_closed: bool,
    buf: Vec<u8>,
    fds: Vec<RawFd>,
    poller: Poller,
    ready: Vec<bool>,
    /// When the descriptors were last waited on (a quiet step skips them: [`POLL_EVERY`]).
    last_poll: Instant,
    /// When the batched sockets were last read to their end.
    last_drained: Instant,
    /// A budgeted read of the batched sockets stopped before their end: the next step reads
    /// on before it handles control octets or timeouts.
    drain_pending: bool,
    /// The test sockets polled in this step, in the order of `fds` after the stream.
    ids: Vec<(SocketId, RawFd)>,
    /// Readable when another thread has something for this connection ([`Driver::waker`]).
    wake: Option<UnixDatagram>,
}

impl<M: Machine> Driver<M> {
    pub fn new(
        conn: Connection<M>,
        stream: TcpStream,
        cfg: &EndpointConfig,
        store: Option<Arc<dyn SessionStore>>,
        io_timeout: Duration,
    ) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        let mut d = Self {
            h: Host::new(conn, cfg, store),
            stream,
            poll_interval: cfg.poll_interval,
            io_timeout: io_timeout.max(Duration::from_millis(1)),
            tcp_closed: false,
            buf: vec![0u8; 16 * 1024],
            fds: Vec::new(),
            poller: Poller::default(),
            ready: Vec::new(),
            last_poll: Instant::now(),
            last_drained: Instant::now(),
            drain_pending: false,
            ids: Vec::new(),
            wake: None,
        };
        // The server queues its Server-Greeting when it is built.
        d.flush();
        Ok(d)
    }

    /// A handle that ends the driver's current wait at once (another thread has a command for
    /// the connection): write any octet to it.
    pub fn waker(&mut self) -> io::Result<UnixDatagram> {
        let (a, b) = UnixDatagram::pair()?;
        b.set_nonblocking(true)?;
        self.wake = Some(b);
        Ok(a)
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.h.closed.is_some()
    }

    /// Carries out everything the connection has to do now: test packets due, sockets, stored
    /// sessions, and octets for the control connection.
    pub fn flush(&mut self) {
        while let Some(a) = self.h.poll_control() {
            match a {
                ControlAction::Transmit(bytes) => {
                    // A peer that stops reading, or reads a few octets at a time, cannot hold
                    // us longer than the I/O timeout.
                    if !self.tcp_closed
                        && write_all_within(&mut self.stream, &bytes, self.io_timeout).is_err()
                    {
                        self.h.handle_control_closed();
                    }
                }
                ControlAction::Close(_) => self.shutdown(),
            }
        }
    }

    fn shutdown(&mut self) {
        if !self.tcp_closed {
            self.tcp_closed = true;
            let _ = self.stream.flush();
            let _ = self.stream.shutdown(Shutdown::Both);
        }
        self.h.close_sockets();
    }

    /// Waits once (at most until the connection's timeout or the poll interval) and feeds
    /// what happened: octets or the end of the control connection, datagrams, the time.
    ///
    /// A packet due leaves before anything read in the same step is handled: reading a batch
    /// or a control message can wait a few µs, the packet's schedule cannot. Between packets
    /// due within [`POLL_EVERY`] of the last look at the descriptors, when every socket
    /// polled is send-only, the step is quiet: a bare sleep, then the packets due.
    pub fn step(&mut self) {
        self.flush();
        if self.is_closed() {
            return;
        }
        // The control connection, the test sockets, and the wake-up socket last. Batched
        // sockets are not polled: they are read after every wait, which lasts at most
        // RECV_BATCH_WAIT while there is one.
        self.ids.clear();
        let mut batched = false;
        let mut send_only = true;
        for (id, s) in self.h.sockets() {
            if self.h.is_batched(id) {
                batched = true;
            } else {
                send_only &= self.h.is_send_only(id);
                self.ids.push((id, s.as_raw_fd()));
            }
        }
        let max = if batched {
            self.poll_interval.min(RECV_BATCH_WAIT)
        } else {
            self.poll_interval
        };
        let timeout = self.h.poll_timeout();
        let wait = self.h.wait_for(timeout, max);
        if send_only
            && !self.drain_pending
            && timeout.is_some_and(|t| t.precise)
            && self.last_poll.elapsed() + wait < POLL_EVERY
        {
            // Quiet: no timeout other than a packet's is due before it (the connection's
            // timeout is the earliest of them all), and what the descriptors hold can wait
            // for the next step that looks.
            if !wait.is_zero() {
                std::thread::sleep(wait);
                self.h.timer_expired();
            }
            self.h.spin_until(timeout);
            self.flush();
            return;
        }
        self.fds.clear();
        self.fds.push(self.stream.as_raw_fd());
        self.fds.extend(self.ids.iter().map(|(_, fd)| *fd));
        if let Some(w) = &self.wake {
            self.fds.push(w.as_raw_fd());
        }
        match self.poller.wait(&self.fds, wait, &mut self.ready) {
            // Nothing readable: the wait ended by its timer (or a signal, rarely).
            Ok(false) => self.h.timer_expired(),
            Ok(true) => {}
            // ppoll(2) fails only on resource exhaustion: do not spin through it.
            Err(_) => std::thread::sleep(wait.min(Duration::from_millis(1))),
        }
        self.last_poll = Instant::now();
        // A packet due now leaves first.
        self.h.spin_until(timeout);
        self.h.transmit_due();
        // Then a packet that arrived before a control message (Stop-Sessions) or a timeout
        // (a loss deadline) is handed over before it, as if it had been read on arrival. The
        // read stops in time for the next packet due (the rest waits for the next step), but
        // not for longer than RECV_BATCH_WAIT.
        let mut drained = true;
        if batched {
            let limit = if self.last_drained.elapsed() < RECV_BATCH_WAIT {
                self.h.read_budget_end()
            } else {
                None
            };
            drained = self.h.receive_batched_until(limit).1;
            if drained {
                self.last_drained = Instant::now();
            }
        }
        self.drain_pending = !drained;
        if drained && self.ready.first() == Some(&true) {
            self.read_control();
        }
        for (i, (id, _)) in self.ids.iter().enumerate() {
            if self.ready.get(i + 1) == Some(&true) {
                self.h.receive(*id);
            }
        }
        if let Some(w) = &self.wake {
            if self.ready.get(1 + self.ids.len()) == Some(&true) {
                let mut b = [0u8; 64];
                while w.recv(&mut b).is_ok() {}
            }
        }
        self.h.spin_until(timeout);
        if drained && timeout.is_some_and(|t| self.h.now() >= t.at) {
            self.h.handle_timeout();
        }
        self.flush();
    }

    fn read_control(&mut self) {
        // Readable: this read returns at once (data, end of stream or an error).
        let _ = self.stream.set_read_timeout(Some(Duration::from_millis(1)));
        match self.stream.read(&mut self.buf) {
            Ok(0) => self.h.handle_control_closed(),
            Ok(n) => {
                let Self { h, buf, .. } = self;
                h.handle_control(&buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => self.h.handle_control_closed(),
        }
    }

    /// Carries out what is left (a Close the caller just asked the connection for), then
    /// closes the TCP connection and the test sockets.
    pub fn close_now(&mut self) {
        self.flush();
        self.shutdown();
    }
}

impl<M: Machine> Drop for Driver<M> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Writes all of `bytes` within `limit` in all: each write waits at most what is left, so a
/// peer that keeps letting a few octets through cannot stretch the whole beyond it.
fn write_all_within(stream: &mut TcpStream, bytes: &[u8], limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    let mut rest = bytes;
    while !rest.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        // A zero timeout would mean "block forever".
        stream.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
        match stream.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = rest.get(n..).unwrap_or(&[]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
