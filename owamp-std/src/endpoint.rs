//! One test session (RFC 4656 4) on its own thread: a sender or a receiver.
//!
//! A [`TestEndpoint`] is a configured session (the core's [`SessionInfo`]) with its bound
//! [`TestSocket`]. [`TestEndpoint::start`] runs it on a thread and returns a
//! [`RunningEndpoint`]; the thread ends on its own (a sender after its last packet, a receiver
//! once every packet is received or declared lost), when [`RunningEndpoint::stop`] is called,
//! or at the latest at the end of the schedule plus the loss timeout plus
//! [`EndpointConfig::margin`]. When it ends it sends its [`SessionReport`] on the channel
//! given to `start`, which is what the control state machine wants as
//! [`Input::SessionFinished`](owamp_core::io::Input::SessionFinished).
//!
//! Senders sleep until [`EndpointConfig::spin`] before each packet is due, prepare the
//! packet, spin to the exact time, then stamp it and send it at once. A packet more than the
//! loss timeout late is skipped, as the core's [`Sender::is_too_late`] says. Receivers stamp
//! each datagram with the kernel's receive timestamp when the socket delivers one.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use owamp_core::control::{session_end_bound, Mode, Role};
use owamp_core::crypto::{SecureMode, TestPacketCrypto};
use owamp_core::io::{SessionEnd, SessionInfo, SessionReport, StoredSession};
use owamp_core::session::{
    PacketProtection, Receiver, ReceiverStats, Schedule, ScheduleError, Sender, SenderError,
    SessionParams, TTL_UNKNOWN,
};
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::SessionId;

use owamp_os::clock::{Clock, SharedClock, SystemClock};
use owamp_os::net::{canonical, Received, TestSocket};

/// How test endpoints run.
#[derive(Clone)]
pub struct EndpointConfig {
    /// The clock that stamps packets.
    pub clock: SharedClock,
    /// How long before a packet is due the sender stops sleeping and spins (yielding) to the
    /// exact time. Longer is more precise and costs more CPU.
    pub spin: Duration,
    /// The longest single wait of an endpoint thread: how fast it notices
    /// [`RunningEndpoint::stop`].
    pub poll_interval: Duration,
    /// Added to the end of the schedule and the loss timeout: past that an endpoint ends even
    /// if nobody stopped it.
    pub margin: Duration,
    /// Whether receivers use the kernel's receive timestamps when the socket delivers them
    /// (otherwise, and when none comes, the clock is read on receipt).
    pub use_kernel_timestamps: bool,
    /// Whether senders keep, per packet sent, the difference between its timestamp and its
    /// scheduled time ([`SenderOutcome::lateness_nanos`]).
    pub record_send_lateness: bool,
}

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("spin", &self.spin)
            .field("poll_interval", &self.poll_interval)
            .field("margin", &self.margin)
            .field("use_kernel_timestamps", &self.use_kernel_timestamps)
            .field("record_send_lateness", &self.record_send_lateness)
            .finish_non_exhaustive()
    }
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock::new()),
            spin: Duration::from_micros(200),
            poll_interval: Duration::from_millis(20),
            margin: Duration::from_secs(5),
            use_kernel_timestamps: true,
            record_send_lateness: false,
        }
    }
}

/// Why a test endpoint cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The session's schedule is unusable.
    #[error("invalid schedule: {0}")]
    Schedule(#[from] ScheduleError),
    /// The sender cannot be built (padding too large).
    #[error("{0}")]
    Sender(#[from] SenderError),
    /// The session's Type-P is not a DSCP (the core refuses those requests already).
    #[error("unsupported Type-P descriptor {0:#010x}")]
    TypeP(u32),
    /// A socket option or the thread could not be set up.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// How a session's test packets are protected, from its mode and the control connection's
/// keys (RFC 4656 4.1.2: the test packet keys derive from the session keys and the SID).
pub fn packet_protection(info: &SessionInfo) -> PacketProtection {
    let mode = match info.mode {
        Mode::Authenticated => SecureMode::Authenticated,
        Mode::Encrypted => SecureMode::Encrypted,
        _ => return PacketProtection::Open,
    };
    match &info.keys {
        Some(k) => PacketProtection::Sealed(TestPacketCrypto::new(mode, &info.sid.0, k)),
        // A secure mode always has keys; without them no packet could be authenticated, and
        // the core never produces this combination.
        None => PacketProtection::Open,
    }
}

/// The schedule, start time, timeout and padding both ends agreed on.
pub fn session_params(info: &SessionInfo) -> Result<SessionParams, EndpointError> {
    let r = &info.request;
    let schedule = Schedule::new(info.sid, &r.slots, r.num_packets)?;
    Ok(SessionParams {
        schedule,
        start: r.start_time,
        timeout: r.timeout,
        padding: r.padding_length,
    })
}

/// The time past which an endpoint of this session ends on its own.
pub fn hard_end(info: &SessionInfo, margin: Duration) -> OwampTime {
    let r = &info.request;
    session_end_bound(r.start_time, &r.slots, r.num_packets, r.timeout, margin)
}

/// A configured test session with its socket, not yet started.
#[derive(Debug)]
pub struct TestEndpoint {
    info: SessionInfo,
    socket: TestSocket,
    kind: EndpointKind,
}

/// The core's side of a test session: the sender or the receiver (see
/// [`TestEndpoint::into_parts`]).
#[derive(Debug)]
pub enum EndpointKind {
    /// This end sends.
    Sender(Box<Sender>),
    /// This end receives.
    Receiver(Box<Receiver>),
}

impl TestEndpoint {
    /// Prepares the sender or receiver of `info` (its role) on `socket`. A sender's socket
    /// gets the session's DSCP.
    pub fn new(info: SessionInfo, socket: TestSocket) -> Result<Self, EndpointError> {
        let params = session_params(&info)?;
        let protection = packet_protection(&info);
        let kind = match info.role {
            Role::Sender => {
                let dscp = info
                    .request
                    .type_p
                    .dscp()
                    .ok_or(EndpointError::TypeP(info.request.type_p.0))?;
                if dscp != 0 {
                    socket.set_dscp(dscp)?;
                }
                EndpointKind::Sender(Box::new(Sender::new(params, protection)?))
            }
            Role::Receiver => EndpointKind::Receiver(Box::new(Receiver::new(params, protection))),
        };
        Ok(Self { info, socket, kind })
    }

    /// The session.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// The socket.
    pub fn socket(&self) -> &TestSocket {
        &self.socket
    }

    /// The session, its socket and the core's sender or receiver, for an adapter that runs
    /// the session its own way (an async runtime, for example).
    pub fn into_parts(self) -> (SessionInfo, TestSocket, EndpointKind) {
        (self.info, self.socket, self.kind)
    }

    /// Runs the session on a new thread. When it ends, its report is sent on `reports` (if
    /// given; a closed channel is ignored).
    pub fn start(
        self,
        cfg: &EndpointConfig,
        reports: Option<mpsc::Sender<SessionReport>>,
    ) -> Result<RunningEndpoint, EndpointError> {
        let stop = Arc::new(AtomicBool::new(false));
        let info = self.info.clone();
        let run = Run {
            end: hard_end(&self.info, cfg.margin),
            info: self.info,
            socket: self.socket,
            cfg: cfg.clone(),
            stop: stop.clone(),
        };
        let name = match info.role {
            Role::Sender => "owamp-send",
            Role::Receiver => "owamp-recv",
        };
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let result = match self.kind {
                    EndpointKind::Sender(s) => EndpointResult::Sender(run.sender(*s)),
                    EndpointKind::Receiver(r) => {
                        EndpointResult::Receiver(Box::new(run.receiver(*r)))
                    }
                };
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

    /// Stops the thread if it still runs and returns what it did. Waits at most about one
    /// [`EndpointConfig::poll_interval`]. `None` if the thread panicked.
    pub fn finish(mut self) -> Option<EndpointResult> {
        self.stop();
        self.handle.take().and_then(|h| h.join().ok())
    }
}

impl Drop for RunningEndpoint {
    fn drop(&mut self) {
        // A dropped endpoint must not keep sending: stop it (the thread ends on its own).
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
    /// The report for the control state machine.
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
    /// Packets whose `sendto` failed (counted as sent: they are lost in the network).
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
    /// The report for the control state machine.
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

    /// The session as stored after the sender's Stop-Sessions (RFC 4656 3.8; see
    /// [`Receiver::into_stored`]).
    pub fn stopped(self, end: &SessionEnd) -> StoredSession {
        self.receiver
            .into_stored(self.info.request, end, self.error_estimate)
    }

    /// The session as stored when it ended without Stop-Sessions (see
    /// [`Receiver::into_incomplete`]).
    pub fn aborted(self) -> StoredSession {
        self.receiver.into_incomplete(self.info.request)
    }
}

/// Whether a datagram's source is the session's peer (the port is not checked when the
/// peer's is unknown, 0); IPv4-mapped addresses compare as IPv4.
pub fn is_from_peer(peer: SocketAddr, source: SocketAddr) -> bool {
    let peer = canonical(peer);
    let source = canonical(source);
    source.ip() == peer.ip() && (peer.port() == 0 || source.port() == peer.port())
}

/// How [`receive_datagram`] handled a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamped {
    /// It came from an address other than the session's sender: ignored.
    Foreign,
    /// Stamped with the kernel's receive timestamp.
    Kernel,
    /// Stamped by reading the clock now.
    Clock,
}

/// Hands one datagram read from a session's test socket (into `buf`, as `r` describes) to
/// the session's receiver: datagrams from anyone but `peer` are ignored; the others are
/// stamped with the kernel's receive timestamp when there is one and `cfg` allows it, else
/// with the clock read now. Invalid packets are counted by the receiver and otherwise ignored.
pub fn receive_datagram(
    rcv: &mut Receiver,
    peer: SocketAddr,
    cfg: &EndpointConfig,
    buf: &[u8],
    r: &Received,
    error: ErrorEstimate,
) -> Stamped {
    if !is_from_peer(peer, r.source) {
        return Stamped::Foreign;
    }
    let clock = &cfg.clock;
    let kernel = if cfg.use_kernel_timestamps {
        r.kernel_time.and_then(|k| clock.kernel_timestamp(k))
    } else {
        None
    };
    let (t, how) = match kernel {
        Some(t) => (t, Stamped::Kernel),
        None => (clock.now(), Stamped::Clock),
    };
    // A truncated datagram is longer than any packet of the session: pass the whole buffer
    // so that the receiver sees the wrong length.
    let len = if r.truncated {
        buf.len()
    } else {
        r.len.min(buf.len())
    };
    let ttl = r.ttl.unwrap_or(TTL_UNKNOWN);
    let _ = rcv.receive(&buf[..len], t, error, ttl);
    how
}

/// The receive buffer of a session: one octet more than a test packet, so that a longer
/// datagram shows as the wrong length.
pub fn receive_buffer(rcv: &Receiver) -> Vec<u8> {
    let want = rcv.params().padding as usize;
    vec![0u8; want.saturating_add(49).min(owamp_os::net::MAX_DATAGRAM)]
}

#[derive(Default)]
struct Counters {
    kernel_stamped: u64,
    clock_stamped: u64,
    foreign: u64,
    recv_errors: u64,
    error_estimate: ErrorEstimate,
}

/// The state of an endpoint thread.
struct Run {
    info: SessionInfo,
    socket: TestSocket,
    cfg: EndpointConfig,
    stop: Arc<AtomicBool>,
    end: OwampTime,
}

/// Lowers this thread's timer slack so that sleeps end close to when they were asked to.
fn tighten_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument (nanoseconds) and only changes
    // the calling thread's timer slack; the remaining arguments are unused.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0);
    }
}

/// `later - earlier` as a duration, zero if `later` is not later.
fn until(later: OwampTime, earlier: OwampTime) -> Duration {
    later.duration_since(earlier).unwrap_or(Duration::ZERO)
}

impl Run {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn sender(self, mut snd: Sender) -> SenderOutcome {
        tighten_timer_slack();
        let clock = &self.cfg.clock;
        let peer = self.info.peer;
        let mut buf = vec![0u8; snd.packet_len()];
        let mut sent = 0u64;
        let mut send_errors = 0u64;
        let mut failed = false;
        let mut lateness = Vec::new();
        while !self.stopped() {
            let Some((_, due)) = snd.next_due() else {
                break;
            };
            let now = clock.now();
            if now > self.end {
                break;
            }
            // The core decides what is too late to send (RFC 4656 3.8 skip ranges).
            if snd.is_too_late(now) {
                snd.skip();
                continue;
            }
            let wait = until(due, now);
            if wait > self.cfg.spin {
                std::thread::sleep((wait - self.cfg.spin).min(self.cfg.poll_interval));
                continue;
            }
            // Everything that does not depend on the timestamp first.
            let prepared = match snd.prepare(&mut buf) {
                Ok(p) => p,
                Err(_) => {
                    failed = true;
                    break;
                }
            };
            let error = clock.error_estimate();
            loop {
                let n = clock.now();
                if n >= due {
                    break;
                }
                // No yield: under CPU contention a yield hands the core to another task for a
                // whole time slice, which shows as milliseconds of send error.
                std::hint::spin_loop();
            }
            // Stamped as late as possible: right before the send.
            let t = clock.now();
            let len = match snd.stamp(&mut buf, prepared, t, error) {
                Ok(n) => n,
                Err(_) => {
                    failed = true;
                    break;
                }
            };
            match self.socket.send_to(&buf[..len], peer) {
                Ok(_) => sent += 1,
                Err(_) => send_errors += 1,
            }
            if self.cfg.record_send_lateness {
                lateness.push(t.diff_nanos(due));
            }
        }
        SenderOutcome {
            report: SessionReport {
                sid: self.info.sid,
                next_seqno: snd.next_seqno(),
                skips: snd.skip_ranges().to_vec(),
                failed,
            },
            sent,
            send_errors,
            lateness_nanos: lateness,
        }
    }

    fn receiver(self, mut rcv: Receiver) -> ReceiverOutcome {
        let clock = &self.cfg.clock;
        let mut buf = receive_buffer(&rcv);
        let mut out = Counters {
            error_estimate: clock.error_estimate(),
            ..Counters::default()
        };
        while !self.stopped() {
            let now = clock.now();
            if now > self.end {
                break;
            }
            let error = clock.error_estimate();
            out.error_estimate = error;
            // RFC 4656 4.2: packets not received within the timeout are lost.
            rcv.poll(now, error);
            if rcv.is_complete() {
                break;
            }
            let wait = rcv
                .next_deadline()
                .map_or(self.cfg.poll_interval, |d| {
                    until(d, now) + Duration::from_millis(1)
                })
                .min(self.cfg.poll_interval);
            match self.socket.recv(&mut buf, wait) {
                Ok(Some(r)) => {
                    match receive_datagram(&mut rcv, self.info.peer, &self.cfg, &buf, &r, error) {
                        Stamped::Foreign => out.foreign += 1,
                        Stamped::Kernel => out.kernel_stamped += 1,
                        Stamped::Clock => out.clock_stamped += 1,
                    }
                }
                Ok(None) => {}
                Err(_) => {
                    out.recv_errors += 1;
                    // Errors such as a queued ICMP report come back at once: do not spin.
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        ReceiverOutcome {
            report: SessionReport::completed(self.info.sid, 0),
            info: self.info,
            receiver: rcv,
            kernel_stamped: out.kernel_stamped,
            clock_stamped: out.clock_stamped,
            foreign: out.foreign,
            recv_errors: out.recv_errors,
            error_estimate: out.error_estimate,
        }
    }
}
