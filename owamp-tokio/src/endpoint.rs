//! One test session (RFC 4656 4) as a Tokio task: a sender or a receiver.
//!
//! [`spawn`] takes a configured [`TestEndpoint`] (owamp-std: the core's sender or receiver
//! and its bound socket, with the session's DSCP already set), registers the socket with the
//! reactor and runs the session on a task. The task ends on its own (a sender after its last
//! packet, a receiver once every packet is received or declared lost), when
//! [`RunningEndpoint::stop`] is called, or at the latest at the end of the schedule plus the
//! loss timeout plus [`EndpointConfig::margin`]; its [`SessionReport`] then goes to the
//! channel given to `spawn`.
//!
//! Tokio's timer has a resolution of one millisecond, so a sender sleeps until
//! [`EndpointConfig::spin`] (at least [`MIN_SPIN`]) before each packet is due, prepares the
//! packet, then yields to other tasks until the last few microseconds, which it spins; it
//! stamps the packet right before a non-blocking send. A receiver waits for a datagram, the
//! next loss deadline of the core's receiver, or the stop signal, whichever comes first, and
//! stamps each datagram with its kernel receive timestamp when there is one.
//! [`EndpointConfig::poll_interval`] is not used: stop signals wake the tasks at once.
//!
//! The price of precision is CPU: a sender keeps a worker busy (yielding) for up to
//! [`MIN_SPIN`] before each packet, so a session faster than one packet every
//! [`MIN_SPIN`] keeps a worker thread busy for its whole length, as the blocking adapter's
//! spinning sender keeps a core busy.

use std::time::Duration;

use owamp_core::control::Role;
use owamp_core::io::{SessionInfo, SessionReport};
use owamp_core::session::{Receiver, Sender};
use owamp_core::time::OwampTime;
use owamp_core::wire::SessionId;
use owamp_os::clock::Clock;
use owamp_std::endpoint::{hard_end, receive_buffer, receive_datagram, EndpointKind, Stamped};
pub use owamp_std::endpoint::{
    EndpointConfig, EndpointError, EndpointResult, ReceiverOutcome, SenderOutcome, TestEndpoint,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::net::AsyncTestSocket;
use crate::StopToken;

/// The least time before a packet is due at which a sender stops sleeping: Tokio's timer
/// fires up to a millisecond after the time asked for.
pub const MIN_SPIN: Duration = Duration::from_micros(1500);

/// Within this much of a packet's time, a sender spins without yielding: a yield can hand the
/// worker to another task for longer than that.
const SPIN_ONLY: Duration = Duration::from_micros(30);

/// After an endpoint is told to stop, how long [`RunningEndpoint::finish`] waits for its task
/// before aborting it (a task notices the signal at once, so this is only a safety bound).
pub const STOP_WAIT: Duration = Duration::from_secs(2);

/// `later - earlier`, zero if `later` is not later.
fn until(later: OwampTime, earlier: OwampTime) -> Duration {
    later.duration_since(earlier).unwrap_or(Duration::ZERO)
}

/// Runs `endpoint` on a new task of the current runtime (must be called from within one, with
/// I/O and time enabled).
/// When it ends, its report is sent on `reports` (if given; a closed channel is ignored).
pub fn spawn(
    endpoint: TestEndpoint,
    cfg: &EndpointConfig,
    reports: Option<mpsc::UnboundedSender<SessionReport>>,
) -> Result<RunningEndpoint, EndpointError> {
    let (info, socket, kind) = endpoint.into_parts();
    let socket = AsyncTestSocket::new(socket)?;
    let stop = StopToken::new();
    let run = Run {
        end: hard_end(&info, cfg.margin),
        info: info.clone(),
        socket,
        cfg: cfg.clone(),
        stop: stop.clone(),
    };
    let handle = tokio::spawn(async move {
        let result = match kind {
            EndpointKind::Sender(s) => EndpointResult::Sender(run.sender(*s).await),
            EndpointKind::Receiver(r) => EndpointResult::Receiver(Box::new(run.receiver(*r).await)),
        };
        if let Some(tx) = reports {
            let _ = tx.send(result.report());
        }
        result
    });
    Ok(RunningEndpoint {
        info,
        stop,
        handle: Some(handle),
    })
}

/// A test session running on its task.
#[derive(Debug)]
pub struct RunningEndpoint {
    info: SessionInfo,
    stop: StopToken,
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

    /// Asks the task to end; returns at once.
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().map_or(true, |h| h.is_finished())
    }

    /// Waits at most `max` for the task to end on its own, then stops it, and returns what it
    /// did ([`finish`](Self::finish)).
    pub async fn finish_after(mut self, max: Duration) -> Option<EndpointResult> {
        let handle = self.handle.as_mut()?;
        if let Ok(r) = tokio::time::timeout(max, handle).await {
            self.handle = None;
            return r.ok();
        }
        self.finish().await
    }

    /// Stops the task if it still runs and returns what it did; waits at most
    /// [`STOP_WAIT`], then aborts it. `None` if the task panicked or was aborted.
    pub async fn finish(mut self) -> Option<EndpointResult> {
        self.stop();
        let mut handle = self.handle.take()?;
        match tokio::time::timeout(STOP_WAIT, &mut handle).await {
            Ok(r) => r.ok(),
            Err(_) => {
                handle.abort();
                None
            }
        }
    }
}

impl Drop for RunningEndpoint {
    fn drop(&mut self) {
        // A dropped endpoint must not keep sending: stop it (the task ends on its own).
        self.stop();
    }
}

/// The state of an endpoint task.
struct Run {
    info: SessionInfo,
    socket: AsyncTestSocket,
    cfg: EndpointConfig,
    stop: StopToken,
    end: OwampTime,
}

impl Run {
    async fn sender(self, mut snd: Sender) -> SenderOutcome {
        let clock = &self.cfg.clock;
        let spin = self.cfg.spin.max(MIN_SPIN);
        let peer = self.info.peer;
        let mut buf = vec![0u8; snd.packet_len()];
        let mut sent = 0u64;
        let mut send_errors = 0u64;
        let mut failed = false;
        let mut lateness = Vec::new();
        while !self.stop.is_stopped() {
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
            if wait > spin {
                let wake = tokio::time::Instant::now() + (wait - spin);
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => {}
                    _ = self.stop.stopped() => {}
                }
                continue;
            }
            // Everything that does not depend on the timestamp first.
            let Ok(prepared) = snd.prepare(&mut buf) else {
                failed = true;
                break;
            };
            let error = clock.error_estimate();
            loop {
                let n = clock.now();
                if n >= due {
                    break;
                }
                if until(due, n) > SPIN_ONLY {
                    tokio::task::yield_now().await;
                } else {
                    std::hint::spin_loop();
                }
            }
            // Stamped as late as possible: right before the send.
            let t = clock.now();
            let Ok(len) = snd.stamp(&mut buf, prepared, t, error) else {
                failed = true;
                break;
            };
            let packet = &buf[..len];
            let r = match self.socket.try_send_to(packet, peer) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // The socket's buffer is full: wait briefly for room, else count the
                    // packet as lost.
                    let limit = Duration::from_millis(100);
                    tokio::time::timeout(limit, self.socket.send_to(packet, peer))
                        .await
                        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
                }
                r => r,
            };
            match r {
                Ok(_) => sent += 1,
                // Counted as sent: the packet is lost in the network.
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

    async fn receiver(self, mut rcv: Receiver) -> ReceiverOutcome {
        enum Wake {
            Datagram(std::io::Result<owamp_os::net::Received>),
            Deadline,
            Stop,
        }
        let clock = &self.cfg.clock;
        let mut buf = receive_buffer(&rcv);
        let mut error = clock.error_estimate();
        let (mut kernel_stamped, mut clock_stamped, mut foreign, mut recv_errors) = (0, 0, 0, 0);
        while !self.stop.is_stopped() {
            let now = clock.now();
            if now > self.end {
                break;
            }
            error = clock.error_estimate();
            // RFC 4656 4.2: packets not received within the timeout are lost.
            rcv.poll(now, error);
            if rcv.is_complete() {
                break;
            }
            // Wake at the next loss deadline (just past it) even if nothing arrives.
            let next = rcv.next_deadline().unwrap_or(self.end).min(self.end);
            let wait = until(next, now) + Duration::from_millis(1);
            let wake = tokio::select! {
                r = self.socket.recv(&mut buf) => Wake::Datagram(r),
                _ = tokio::time::sleep(wait) => Wake::Deadline,
                _ = self.stop.stopped() => Wake::Stop,
            };
            match wake {
                Wake::Datagram(Ok(r)) => {
                    match receive_datagram(&mut rcv, self.info.peer, &self.cfg, &buf, &r, error) {
                        Stamped::Foreign => foreign += 1,
                        Stamped::Kernel => kernel_stamped += 1,
                        Stamped::Clock => clock_stamped += 1,
                    }
                }
                Wake::Datagram(Err(_)) => {
                    recv_errors += 1;
                    // Errors such as a queued ICMP report come back at once: do not spin.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Wake::Deadline => {}
                Wake::Stop => break,
            }
        }
        ReceiverOutcome {
            report: SessionReport::completed(self.info.sid, 0),
            info: self.info,
            receiver: rcv,
            kernel_stamped,
            clock_stamped,
            foreign,
            recv_errors,
            error_estimate: error,
        }
    }
}
