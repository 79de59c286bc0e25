//! One test session (RFC 4656 4) on its own thread, without a control connection: a sender or
//! a receiver. For tests, benchmarks and hosts that run sessions by hand; the control
//! drivers of [`crate::control`] run their sessions in the connection's own loop instead.
//!
//! A [`TestEndpoint`] is the core's [`TestSession`] with its bound [`TestSocket`].
//! [`TestEndpoint::start`] runs it on a thread; the thread ends when the session is done (a
//! sender after its last packet, a receiver once every packet is received or declared lost),
//! when [`RunningEndpoint::stop`] is called, or at the session's end bound. It then sends its
//! [`SessionReport`] on the channel given to `start`.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use owamp_core::control::Role;
use owamp_core::io::{SessionEnd, SessionInfo, SessionReport, StoredSession};
use owamp_core::session::{
    Datagram, DatagramOutcome, Receiver, ReceiverStats, SessionSetupError, TestSession,
};
use owamp_core::time::ErrorEstimate;
use owamp_core::wire::SessionId;
use owamp_os::clock::Clock;
pub use owamp_os::host::EndpointConfig;
use owamp_os::net::TestSocket;
use owamp_os::timing::{tighten_timer_slack, SpinWindow};

/// Why a test endpoint cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The core cannot run the session (schedule, padding, Type-P, keys).
    #[error("{0}")]
    Setup(#[from] SessionSetupError),
    /// A socket option or the thread could not be set up.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A configured test session with its socket, not yet started.
#[derive(Debug)]
pub struct TestEndpoint {
    session: TestSession,
    socket: TestSocket,
}

impl TestEndpoint {
    /// The session `info` on `socket`; a sender's socket gets the session's DSCP.
    pub fn new(info: SessionInfo, socket: TestSocket) -> Result<Self, EndpointError> {
        let session = TestSession::new(info)?;
        if session.role() == Role::Sender && session.dscp() != 0 {
            socket.set_dscp(session.dscp())?;
        }
        Ok(Self { session, socket })
    }

    /// The session.
    pub fn info(&self) -> &SessionInfo {
        self.session.info()
    }

    /// The socket.
    pub fn socket(&self) -> &TestSocket {
        &self.socket
    }

    /// Runs the session on a new thread. When it ends, its report is sent on `reports` (if
    /// given; a closed channel is ignored).
    pub fn start(
        self,
        cfg: &EndpointConfig,
        reports: Option<mpsc::Sender<SessionReport>>,
    ) -> Result<RunningEndpoint, EndpointError> {
        let stop = Arc::new(AtomicBool::new(false));
        let info = self.session.info().clone();
        let session = self.session.with_end_margin(cfg.margin);
        let (socket, cfg2, stop2) = (self.socket, cfg.clone(), stop.clone());
        let name = match info.role {
            Role::Sender => "owamp-send",
            Role::Receiver => "owamp-recv",
        };
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let result = run(session, socket, &cfg2, &stop2);
                if let Some(tx) = reports {
                    let _ = tx.send(result.report());
                }
                result
            })?;
        Ok(RunningEndpoint {
            info,
            stop,
            handle: Some(handle),
        })
    }
}

/// The session's loop: send what is due, hand over what arrives, sleep until the session's
/// next timeout (spinning the last stretch before a packet, as long as recent sleeps woke
/// late: [`SpinWindow`]), until it is done or stopped.
fn run(
    mut s: TestSession,
    socket: TestSocket,
    cfg: &EndpointConfig,
    stop: &AtomicBool,
) -> EndpointResult {
    // Sleeps should end when asked; a kernel that refuses only makes packets leave later.
    let _ = tighten_timer_slack();
    let mut spin = SpinWindow::new(cfg.min_spin, cfg.max_spin);
    let clock = &cfg.clock;
    let mut buf = vec![0u8; s.datagram_buffer_len()];
    let mut c = Counters::default();
    s.start();
    while !stop.load(Ordering::Relaxed) && !s.is_done() {
        let error = clock.error_estimate();
        c.error_estimate = error;
        let now = clock.now();
        if let Some(t) = s.poll_transmit(now, error, &mut buf) {
            if socket.send_to(&buf[..t.len], t.dest).is_err() {
                c.send_errors += 1;
            }
            if cfg.record_send_lateness {
                c.lateness.push(now.diff_nanos(t.due));
            }
            continue;
        }
        let Some(timeout) = s.poll_timeout() else {
            break;
        };
        let mut wait = timeout.at.duration_since(now).unwrap_or(Duration::ZERO);
        if timeout.precise {
            wait = wait.saturating_sub(spin.window());
        }
        // The wake-up to learn from: a sleep that ends by its timer before a packet is due.
        let planned = (timeout.precise && !wait.is_zero() && wait < cfg.poll_interval)
            .then(|| now.saturating_add(wait));
        let wait = wait.min(cfg.poll_interval);
        let mut timed_out = false;
        if s.role() == Role::Receiver {
            match socket.recv(&mut buf, wait) {
                Ok(Some(r)) => receive(&mut s, cfg, &buf, &r, error, &mut c),
                Ok(None) => timed_out = true,
                Err(_) => {
                    c.recv_errors += 1;
                    // Errors such as a queued ICMP report come back at once: do not spin.
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        } else if !wait.is_zero() {
            std::thread::sleep(wait);
            timed_out = true;
        }
        if let (true, Some(p)) = (timed_out, planned) {
            spin.record(clock.now().duration_since(p).unwrap_or(Duration::ZERO));
        }
        let window = spin.window();
        while timeout.precise && !stop.load(Ordering::Relaxed) {
            let now = clock.now();
            if now >= timeout.at || timeout.at.duration_since(now).is_some_and(|d| d > window) {
                break;
            }
            // No yield: under contention a yield gives the core away for a whole time slice.
            std::hint::spin_loop();
        }
        s.handle_timeout(clock.now(), error);
    }
    s.stop();
    let report = s.report();
    let (sent, foreign, info) = (s.counters().sent, s.counters().foreign, s.info().clone());
    match s.into_receiver() {
        None => EndpointResult::Sender(SenderOutcome {
            report,
            sent: sent.saturating_sub(c.send_errors),
            send_errors: c.send_errors,
            lateness_nanos: c.lateness,
        }),
        Some(receiver) => EndpointResult::Receiver(Box::new(ReceiverOutcome {
            info,
            receiver,
            report,
            kernel_stamped: c.kernel_stamped,
            clock_stamped: c.clock_stamped,
            foreign,
            recv_errors: c.recv_errors,
            error_estimate: c.error_estimate,
        })),
    }
}

/// Hands a datagram read from the socket to the session, stamped with the kernel's receive
/// timestamp when there is one (and `cfg` allows it), else with the clock read now.
fn receive(
    s: &mut TestSession,
    cfg: &EndpointConfig,
    buf: &[u8],
    r: &owamp_os::net::Received,
    error: ErrorEstimate,
    c: &mut Counters,
) {
    let kernel = if cfg.use_kernel_timestamps {
        r.kernel_time.and_then(|k| cfg.clock.kernel_timestamp(k))
    } else {
        None
    };
    let d = Datagram {
        source: r.source,
        recv_time: kernel.unwrap_or_else(|| cfg.clock.now()),
        ttl: r.ttl,
        truncated: r.truncated,
        payload: &buf[..r.len.min(buf.len())],
    };
    if s.handle_datagram(&d, error) != DatagramOutcome::Foreign {
        match kernel {
            Some(_) => c.kernel_stamped += 1,
            None => c.clock_stamped += 1,
        }
    }
}

#[derive(Default)]
struct Counters {
    kernel_stamped: u64,
    clock_stamped: u64,
    recv_errors: u64,
    send_errors: u64,
    lateness: Vec<i64>,
    error_estimate: ErrorEstimate,
}

/// A test session running on its thread.
#[derive(Debug)]
pub struct RunningEndpoint {
    info: SessionInfo,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<EndpointResult>>,
}

impl RunningEndpoint {
    /// The session.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// The session's SID.
    pub fn sid(&self) -> SessionId {
        self.info.sid
    }

    /// Whether this end sends or receives.
    pub fn role(&self) -> Role {
        self.info.role
    }

    /// Asks the thread to end; returns at once. It ends within
    /// [`EndpointConfig::poll_interval`] (plus scheduling).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().map_or(true, |h| h.is_finished())
    }

    /// Waits at most `max` for the thread to end on its own, then stops it, and returns what
    /// it did ([`finish`](Self::finish)).
    pub fn finish_after(self, max: Duration) -> Option<EndpointResult> {
        let t0 = std::time::Instant::now();
        while !self.is_finished() && t0.elapsed() < max {
            std::thread::sleep(Duration::from_millis(2).min(max));
        }
        self.finish()
    }

    /// Stops the thread if it still runs and returns what it did. `None` if it panicked.
    pub fn finish(mut self) -> Option<EndpointResult> {
        self.stop();
        self.handle.take().and_then(|h| h.join().ok())
    }
}

impl Drop for RunningEndpoint {
    fn drop(&mut self) {
        // A dropped endpoint must not keep sending.
        self.stop();
    }
}

/// What an endpoint thread did.
#[derive(Debug)]
pub enum EndpointResult {
    /// A sender's figures.
    Sender(SenderOutcome),
    /// A receiver, with its records.
    Receiver(Box<ReceiverOutcome>),
}

impl EndpointResult {
    /// The report for the control connection.
    pub fn report(&self) -> SessionReport {
        match self {
            EndpointResult::Sender(s) => s.report.clone(),
            EndpointResult::Receiver(r) => r.report.clone(),
        }
    }
}

/// What a sender did.
#[derive(Debug, Clone)]
pub struct SenderOutcome {
    /// Next-Seqno and skip ranges for Stop-Sessions.
    pub report: SessionReport,
    /// Packets handed to the kernel.
    pub sent: u64,
    /// Packets whose `sendto` failed (lost in the network, as far as the receiver knows).
    pub send_errors: u64,
    /// Per packet sent, its timestamp minus its scheduled send time, in nanoseconds (only
    /// with [`EndpointConfig::record_send_lateness`]).
    pub lateness_nanos: Vec<i64>,
}

/// What a receiver did: the core receiver with its records so far, and counters.
#[derive(Debug, Clone)]
pub struct ReceiverOutcome {
    /// The session.
    pub info: SessionInfo,
    /// The receiver (its records, not yet finished).
    pub receiver: Receiver,
    /// The report for the control connection.
    pub report: SessionReport,
    /// Datagrams stamped with the kernel's receive timestamp.
    pub kernel_stamped: u64,
    /// Datagrams stamped by reading the clock after receipt.
    pub clock_stamped: u64,
    /// Datagrams from an address other than the session's sender, ignored.
    pub foreign: u64,
    /// Receive errors.
    pub recv_errors: u64,
    /// The error estimate of the receiver's clock at the end.
    pub error_estimate: ErrorEstimate,
}

impl ReceiverOutcome {
    /// The receiver's counters.
    pub fn stats(&self) -> &ReceiverStats {
        self.receiver.stats()
    }

    /// The session as stored after the sender's Stop-Sessions (RFC 4656 3.8).
    pub fn stopped(self, end: &SessionEnd) -> StoredSession {
        self.receiver
            .into_stored(self.info.request, end, self.error_estimate)
    }

    /// The session as stored when it ended without Stop-Sessions.
    pub fn aborted(self) -> StoredSession {
        self.receiver.into_incomplete(self.info.request)
    }
}
