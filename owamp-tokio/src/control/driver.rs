//! Drives one core connection (client or server) and all its test sessions on one task: a
//! `tokio::select!` over the TCP control connection, the UDP test sockets (each registered
//! with the reactor) and a timer, bounded by the connection's timeout and the poll interval,
//! with a short spin before each test packet is due.
//!
//! Tokio's own timer has a resolution of one millisecond and fires late rather than early, so
//! the timer here is a `timerfd` ([`TimerFd`]: nanosecond resolution, no timer slack)
//! registered with the reactor: the task wakes a few µs to a few tens of µs after it asked,
//! and the host learns how many from the waits that end by the timer and wakes that much
//! early before a packet is due, then spins ([`owamp_os::timing::SpinWindow`], at most
//! [`EndpointConfig::max_spin`]). Where no timerfd can be made, Tokio's sleep is used.
//!
//! The sockets of sessions in which this end only receives, stamped by the kernel, are not
//! waited for ([`Host::is_batched`]): they are read after every wait, and a wait lasts at
//! most [`RECV_BATCH_WAIT`] while there is one.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use owamp_core::connection::{Connection, ControlAction, Machine, SocketId};
use owamp_os::host::{EndpointConfig, Host, RECV_BATCH_WAIT};
use owamp_os::store::SessionStore;
use owamp_os::timing::TimerFd;
use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// One control connection being driven.
pub(crate) struct Driver<M: Machine> {
    pub h: Host<M>,
    stream: TcpStream,
    /// Readiness of each test socket of the host. Each registers a duplicate of the socket's
    /// descriptor, which this map owns: the host may close its socket at any time, and a
    /// registration must never outlive the descriptor number it was made with (another task
    /// could be given that number and register it with the same reactor).
    watched: BTreeMap<SocketId, AsyncFd<Socket>>,
    /// Test sockets that could not be registered: read on every step instead.
    unwatched: Vec<SocketId>,
    /// The longest single wait: how fast a stop flag is noticed.
    poll_interval: Duration,
    /// How long writing one control message (or a whole Fetch-Session answer) may take.
    io_timeout: Duration,
    tcp_closed: bool,
    buf: Vec<u8>,
    /// The wait's timer (`None`: Tokio's sleep).
    timer: Option<AsyncFd<TimerFd>>,
}

/// What ended one wait of [`Driver::step`].
enum Wake {
    Control(io::Result<usize>),
    Datagrams,
    Timer,
}

impl<M: Machine> Driver<M> {
    pub async fn new(
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
            watched: BTreeMap::new(),
            unwatched: Vec::new(),
            poll_interval: cfg.poll_interval.max(Duration::from_millis(1)),
            io_timeout: io_timeout.max(Duration::from_millis(1)),
            tcp_closed: false,
            buf: vec![0u8; 16 * 1024],
            timer: cfg
                .fine_timer
                .then(|| {
                    TimerFd::new()
                        .and_then(|t| AsyncFd::with_interest(t, Interest::READABLE))
                        .ok()
                })
                .flatten(),
        };
        // The server queues its Server-Greeting when it is built.
        d.flush().await;
        Ok(d)
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.h.closed.is_some()
    }

    /// Carries out everything the connection has to do now: test packets due, sockets, stored
    /// sessions, and octets for the control connection.
    pub async fn flush(&mut self) {
        while let Some(a) = self.h.poll_control() {
            match a {
                ControlAction::Transmit(bytes) => {
                    // A peer that stops reading cannot hold us longer than the I/O timeout.
                    if !self.tcp_closed {
                        let w =
                            tokio::time::timeout(self.io_timeout, self.stream.write_all(&bytes));
                        if !matches!(w.await, Ok(Ok(()))) {
                            self.h.handle_control_closed();
                        }
                    }
                }
                ControlAction::Close(_) => self.shutdown(),
            }
        }
        self.watch_sockets();
    }

    fn shutdown(&mut self) {
        if !self.tcp_closed {
            self.tcp_closed = true;
            // Everything queued was written by `write_all`; FIN both ways.
            let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Both);
        }
        self.h.close_sockets();
        self.watch_sockets();
    }

    /// Brings the registrations in line with the host's test sockets: those of closed sockets
    /// are dropped first, then the new sockets are registered.
    /// Batched sockets ([`Host::is_batched`]) are not registered (a registration that became
    /// batched is dropped): the reactor would wake this task's thread for every datagram.
    fn watch_sockets(&mut self) {
        let h = &self.h;
        self.watched
            .retain(|id, _| h.sockets().any(|(open, _)| open == *id) && !h.is_batched(*id));
        self.unwatched
            .retain(|id| h.sockets().any(|(open, _)| open == *id));
        for (id, s) in h.sockets() {
            if self.watched.contains_key(&id) || self.unwatched.contains(&id) || h.is_batched(id) {
                continue;
            }
            let fd = s
                .socket()
                .try_clone()
                .and_then(|dup| AsyncFd::with_interest(dup, Interest::READABLE));
            match fd {
                Ok(fd) => {
                    self.watched.insert(id, fd);
                }
                Err(_) => self.unwatched.push(id),
            }
        }
    }

    /// Waits once (at most until the connection's timeout or the poll interval) and feeds
    /// what happened: octets or the end of the control connection, datagrams, the time.
    pub async fn step(&mut self) {
        self.flush().await;
        if self.is_closed() {
            return;
        }
        self.wait_once().await;
        self.flush().await;
    }

    /// The waiting half of [`step`](Self::step): waits once and feeds what happened, but
    /// writes nothing. Cancel-safe: its only await is a `select!` of reads and a sleep, and
    /// all it does after that is synchronous, so it can race another future.
    pub async fn wait_once(&mut self) {
        if self.is_closed() {
            return;
        }
        // Batched test sockets are not waited for: they are read after every wait, which lasts
        // at most RECV_BATCH_WAIT while there is one.
        let batched = self.h.sockets().any(|(id, _)| self.h.is_batched(id));
        let max = if batched {
            self.poll_interval.min(RECV_BATCH_WAIT)
        } else {
            self.poll_interval
        };
        let timeout = self.h.poll_timeout();
        let wait = self.h.wait_for(timeout, max);
        for id in &self.unwatched {
            self.h.receive(*id);
        }
        // Armed here, before the only await: re-arming also forgets an expiry of an earlier
        // wait that another branch won.
        let timer = self
            .timer
            .as_ref()
            .filter(|t| t.get_ref().arm(wait).is_ok());
        // Biased, datagrams before the timer: when packets are due back to back the timer is
        // ready at every step, and a random order would leave the test sockets unread for
        // whole steps at a time.
        let wake = tokio::select! {
            biased;
            r = self.stream.read(&mut self.buf), if !self.tcp_closed => Wake::Control(r),
            () = receive_ready(&mut self.h, &self.watched) => Wake::Datagrams,
            () = sleep(timer, wait) => Wake::Timer,
        };
        // How late the timer woke (before any spinning, which would count as lateness).
        if matches!(wake, Wake::Timer) {
            self.h.timer_expired();
        }
        // A packet due now leaves first: reading a batch or a control message can wait a few
        // µs, the packet's schedule cannot.
        self.h.spin_until(timeout);
        self.h.transmit_due();
        // Then a packet that arrived before a control message (Stop-Sessions) or a timeout
        // (a loss deadline) is handed over before it, as if it had been read on arrival.
        if batched {
            self.h.receive_batched();
        }
        match wake {
            Wake::Control(Ok(0)) | Wake::Control(Err(_)) => self.h.handle_control_closed(),
            Wake::Control(Ok(n)) => {
                let Self { h, buf, .. } = self;
                h.handle_control(buf.get(..n).unwrap_or(&[]));
            }
            Wake::Timer | Wake::Datagrams => {}
        }
        self.h.spin_until(timeout);
        if timeout.is_some_and(|t| self.h.now() >= t.at) {
            self.h.handle_timeout();
        }
    }

    /// Carries out what is left (a Close the caller just asked the connection for), then
    /// closes the TCP connection and the test sockets.
    pub async fn close_now(&mut self) {
        self.flush().await;
        self.shutdown();
    }
}

/// Waits until the armed `timer` expires, or `wait` with Tokio's timer when there is none (or
/// it fails).
async fn sleep(timer: Option<&AsyncFd<TimerFd>>, wait: Duration) {
    if let Some(t) = timer {
        loop {
            let Ok(mut ready) = t.readable().await else {
                break;
            };
            match t.get_ref().expired() {
                // Readiness cleared too: the next wait then needs an event from the reactor,
                // whose turn also brings the test sockets' readiness up to date.
                Ok(true) => {
                    ready.clear_ready();
                    return;
                }
                // Readiness left from an earlier arming: wait for the next.
                Ok(false) => ready.clear_ready(),
                Err(_) => break,
            }
        }
    }
    tokio::time::sleep(wait).await;
}

/// Reads every datagram waiting on the readable test sockets into the host; ready once at
/// least one was read. A socket's readiness is cleared only when a read found nothing, so a
/// read that stopped at the host's bound is taken up again on the next step.
fn receive_ready<'a, M: Machine>(
    h: &'a mut Host<M>,
    watched: &'a BTreeMap<SocketId, AsyncFd<Socket>>,
) -> impl Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| {
        let mut read = false;
        for (id, fd) in watched {
            // Ends with a read that found something, or with `Pending` (the task is then woken
            // when the socket next becomes readable); each round needs a new readiness event.
            while let Poll::Ready(Ok(mut ready)) = fd.poll_read_ready(cx) {
                if h.receive(*id) > 0 {
                    read = true;
                    break;
                }
                ready.clear_ready();
            }
        }
        if read {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}
