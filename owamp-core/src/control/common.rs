//! What the client and the server share: the output queue, the timer, the list of test
//! sessions and the test phase with its Stop-Sessions exchange (RFC 4656 3.6, 3.8).

use core::time::Duration;
use std::collections::VecDeque;

use super::codec::{self, BLOCK};
use super::framing::Stream;
use super::{deadline_after, ControlError};
use crate::crypto::SessionKeys;
use crate::io::{Output, SessionEnd, SessionReport};
use crate::proto::{CloseReason, ProtocolError, Role};
use crate::session::session_end_bound;
use crate::time::OwampTime;
use crate::wire::SessionId;
use crate::wire::{
    framing, AcceptCode, Frame, Mode, RequestSession, SessionStop, StopSessions, TwampStopSessions,
};

/// Octets a peer may send ahead of what the state machine reads: room for the messages the
/// reference pipelines (Stop-Sessions with Fetch-Session) many times over, while a peer that
/// streams octets out of turn cannot grow the connection's buffer without limit.
pub(crate) const MAX_UNREAD: usize = 64 * 1024;

/// A test session configured on this connection.
#[derive(Debug, Clone)]
pub(crate) struct LocalSession {
    pub sid: SessionId,
    pub role: Role,
    pub request: RequestSession,
    pub report: Option<SessionReport>,
}

/// The peer's Stop-Sessions being read: its plaintext so far.
#[derive(Debug, Clone)]
pub(crate) struct StopReader {
    buf: Vec<u8>,
}

/// The test phase: from Start-Ack to the end of the Stop-Sessions exchange.
#[derive(Debug, Clone)]
pub(crate) struct TestPhase {
    /// Our Stop-Sessions has been sent.
    pub sent_stop: bool,
    /// The peer's Stop-Sessions has been read completely.
    pub peer_stop: bool,
    /// The local sessions were asked to stop, at this time.
    pub stopping: Option<OwampTime>,
    /// When the local senders' sessions are over: the latest, over the senders that reported,
    /// of the report time plus the loss timeout plus the end delay. The reference sender waits that long after
    /// its last packet so that the receiver has every packet before Stop-Sessions arrives
    /// (RFC 4656 3.8 lets the receiver drop packets sent less than a timeout before it).
    pub senders_due: Option<OwampTime>,
    /// When our Stop-Sessions was sent.
    pub stop_sent_at: Option<OwampTime>,
    /// Bound on the end of every session (see [`session_end_bound`]).
    pub bound: OwampTime,
    /// The peer's Stop-Sessions, while it is read.
    pub reader: Option<StopReader>,
}

/// Which end of which protocol a connection is: it decides who sends Stop-Sessions and what
/// it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    /// OWAMP, either side: both send Stop-Sessions with their senders' descriptions.
    Owamp,
    /// TWAMP control-client: sends the only Stop-Sessions, without descriptions (RFC 5357 3.8).
    TwampClient,
    /// TWAMP server: sends no Stop-Sessions; the client's ends the test.
    TwampServer,
}

/// State shared by both roles.
#[derive(Debug)]
pub(crate) struct Conn {
    pub stream: Stream,
    pub out: VecDeque<Output>,
    pub deadline: Option<OwampTime>,
    pub closed: bool,
    pub mode: Mode,
    /// RFC 5618 mixed mode (TWAMP): `mode` is authenticated, the test packets are open.
    pub mixed: bool,
    pub keys: Option<SessionKeys>,
    pub sessions: Vec<LocalSession>,
    /// Sessions of finished tests, for the role to clean up.
    pub ended: Vec<LocalSession>,
    /// SIDs of the last finished test: late reports about them are ignored.
    retired: Vec<SessionId>,
    pub test: Option<TestPhase>,
    /// A local receive session failed ([`Input::SessionFailed`]): the Accept code of our
    /// Stop-Sessions for the current sessions.
    ///
    /// [`Input::SessionFailed`]: crate::io::Input::SessionFailed
    failure: Option<AcceptCode>,
    pub control_timeout: Duration,
    pub end_delay: Duration,
    pub flavour: Flavour,
}

impl Conn {
    pub(crate) fn new(control_timeout: Duration, end_delay: Duration, flavour: Flavour) -> Self {
        Self {
            flavour,
            stream: Stream::new(),
            out: VecDeque::new(),
            deadline: None,
            closed: false,
            mode: Mode::Open,
            mixed: false,
            keys: None,
            sessions: Vec::new(),
            ended: Vec::new(),
            retired: Vec::new(),
            test: None,
            failure: None,
            control_timeout,
            end_delay,
        }
    }

    /// The mode of the test packets: open in RFC 5618 mixed mode, else the connection's.
    pub(crate) fn packet_mode(&self) -> Mode {
        if self.mixed {
            Mode::Open
        } else {
            self.mode
        }
    }

    /// Queues the octets waiting to be sent as one [`Output::Transmit`].
    pub(crate) fn flush_tx(&mut self) {
        if let Some(bytes) = self.stream.take_tx() {
            self.out.push_back(Output::Transmit(bytes));
        }
    }

    /// Waits at most the control timeout from `now` for the peer.
    pub(crate) fn wait_peer(&mut self, now: OwampTime) {
        self.deadline = Some(deadline_after(now, self.control_timeout));
    }

    /// Flushes what is queued, then closes: every later input is ignored.
    pub(crate) fn close(&mut self, reason: CloseReason) {
        if self.closed {
            return;
        }
        self.flush_tx();
        self.deadline = None;
        self.out.push_back(Output::Close(reason));
        self.closed = true;
    }

    /// Closes the connection when the peer has sent more than [`MAX_UNREAD`] octets that the
    /// state machine has not read (it reads every message as it arrives, in whole blocks, so
    /// unread octets pile up only while it waits for the application or during a test: the
    /// peer is then talking out of turn). Returns whether it closed.
    pub(crate) fn check_unread(&mut self) -> bool {
        if !self.closed && self.stream.available() > MAX_UNREAD {
            self.fail(ProtocolError::Limit("octets sent out of turn"));
            return true;
        }
        false
    }

    /// Closes because the peer broke the protocol.
    pub(crate) fn fail(&mut self, err: ProtocolError) {
        self.abort_receivers();
        self.close(CloseReason::Protocol(err));
    }

    /// During a test, reports the local receive sessions not yet finished as incomplete.
    pub(crate) fn abort_receivers(&mut self) {
        if let Some(t) = &self.test {
            if !t.peer_stop {
                let sids: Vec<SessionId> = self
                    .sessions
                    .iter()
                    .filter(|s| s.role == Role::Receiver)
                    .map(|s| s.sid)
                    .collect();
                if !sids.is_empty() {
                    self.out.push_back(Output::SessionsAborted { sids });
                }
            }
        }
        self.test = None;
    }

    /// Whether a session with this SID exists.
    pub(crate) fn has_session(&self, sid: &SessionId) -> bool {
        self.sessions.iter().any(|s| s.sid == *sid)
    }

    /// Start-Sessions accepted: the test phase begins.
    pub(crate) fn start_test(&mut self, now: OwampTime) {
        let slack = self.control_timeout + self.end_delay;
        let bound = self
            .sessions
            .iter()
            .map(|s| {
                session_end_bound(
                    s.request.start_time,
                    &s.request.slots,
                    s.request.num_packets,
                    s.request.timeout,
                    slack,
                )
            })
            .max()
            .unwrap_or(now)
            .max(now);
        for s in &mut self.sessions {
            s.report = None;
        }
        self.test = Some(TestPhase {
            sent_stop: false,
            peer_stop: false,
            stopping: None,
            senders_due: None,
            stop_sent_at: None,
            bound,
            reader: None,
        });
        self.out.push_back(Output::StartSessions);
        self.update_test_deadline();
        if self.failure.is_some() {
            // A receive session failed before the test: it cannot be measured.
            self.stop_local(now);
        }
        // No session at all: nothing to wait for.
        self.maybe_send_stop(now);
    }

    /// A local receive session cannot go on (its records cannot be kept): the test stops
    /// early, and our Stop-Sessions will carry `accept` (RFC 4656 3.8). A failure after our
    /// Stop-Sessions was sent changes nothing on the wire (a Fetch-Session for the session
    /// is then refused by the store).
    pub(crate) fn session_failed(
        &mut self,
        now: OwampTime,
        sid: SessionId,
        accept: AcceptCode,
    ) -> Result<(), ControlError> {
        if !self.has_session(&sid) {
            // A failure crossing the end of the test is not an error.
            return if self.retired.contains(&sid) {
                Ok(())
            } else {
                Err(ControlError::UnknownSession)
            };
        }
        let accept = if accept == AcceptCode::Ok {
            AcceptCode::Failure
        } else {
            accept
        };
        self.failure.get_or_insert(accept);
        if self.test.is_some() {
            self.stop_local(now);
        }
        Ok(())
    }

    /// A local session reported its end.
    pub(crate) fn session_finished(&mut self, now: OwampTime, report: SessionReport) -> bool {
        let Some(s) = self.sessions.iter_mut().find(|s| s.sid == report.sid) else {
            // A report crossing the end of the test is not an error.
            return self.retired.contains(&report.sid);
        };
        if s.report.is_none() {
            let due = (s.role == Role::Sender).then(|| {
                deadline_after(
                    now.saturating_add_interval(s.request.timeout),
                    self.end_delay,
                )
            });
            s.report = Some(report);
            if let (Some(due), Some(t)) = (due, &mut self.test) {
                t.senders_due = Some(t.senders_due.map_or(due, |d| d.max(due)));
            }
        }
        if self.test.is_some() {
            self.maybe_send_stop(now);
        }
        true
    }

    fn all_reported(&self, role: Option<Role>) -> bool {
        self.sessions
            .iter()
            .filter(|s| role.map_or(true, |r| s.role == r))
            .all(|s| s.report.is_some())
    }

    /// Sends our Stop-Sessions when it is due (RFC 4656 3.8).
    pub(crate) fn maybe_send_stop(&mut self, now: OwampTime) {
        let Some(t) = &self.test else { return };
        if t.sent_stop || self.flavour == Flavour::TwampServer {
            return;
        }
        let ready = if t.peer_stop || t.stopping.is_some() {
            // Answering the peer, or stopping early: only the senders' figures are needed.
            self.all_reported(Some(Role::Sender))
        } else {
            self.all_reported(None) && t.senders_due.map_or(true, |d| now >= d)
        };
        if !ready {
            self.update_test_deadline();
            return;
        }
        let mut failed = false;
        let sessions: Vec<SessionStop> = self
            .sessions
            .iter()
            .filter(|s| s.role == Role::Sender)
            .map(|s| {
                let r = s
                    .report
                    .clone()
                    .unwrap_or_else(|| SessionReport::completed(s.sid, 0));
                failed |= r.failed;
                SessionStop {
                    sid: s.sid,
                    next_seqno: r.next_seqno,
                    skip_ranges: r.skips,
                }
            })
            .collect();
        let accept = match self.failure {
            Some(a) => a,
            None if failed => AcceptCode::InternalError,
            None => AcceptCode::Ok,
        };
        let twamp = self.flavour == Flavour::TwampClient;
        let msg = if twamp {
            // RFC 5357 3.8: the number of sessions and no descriptions.
            TwampStopSessions {
                accept,
                num_sessions: u32::try_from(self.sessions.len()).unwrap_or(u32::MAX),
                hmac: [0; 16],
            }
            .to_bytes()
        } else {
            // RFC 4656 3.8: one description per session this side sent packets for.
            StopSessions {
                accept,
                sessions,
                hmac: [0; 16],
            }
            .to_bytes()
        };
        if let Err(_e) = self.stream.send_sealed(msg) {
            self.close(CloseReason::Local);
            return;
        }
        if let Some(t) = &mut self.test {
            t.sent_stop = true;
            t.stop_sent_at = Some(now);
            // RFC 5357 3.8: the server answers nothing; the test is over once it is sent.
            t.peer_stop |= twamp;
        }
        self.finish_test_if_done(now);
    }

    /// Ends the test phase once both Stop-Sessions have been exchanged.
    fn finish_test_if_done(&mut self, now: OwampTime) {
        let done = self
            .test
            .as_ref()
            .is_some_and(|t| t.sent_stop && t.peer_stop);
        if done {
            self.test = None;
            self.failure = None;
            let ended = std::mem::take(&mut self.sessions);
            self.retired = ended.iter().map(|s| s.sid).collect();
            self.ended.extend(ended);
            self.out.push_back(Output::TestComplete);
            self.wait_peer(now);
        } else {
            self.update_test_deadline();
        }
    }

    /// Sets the deadline of the test phase from its progress.
    pub(crate) fn update_test_deadline(&mut self) {
        let Some(t) = &self.test else { return };
        let d = if self.flavour == Flavour::TwampServer {
            // The client ends a TWAMP test; the reflectors' reports do not (RFC 5357 3.8).
            t.stopping
                .map_or(t.bound, |at| deadline_after(at, self.control_timeout))
        } else if let Some(at) = t.stop_sent_at {
            deadline_after(at, self.control_timeout)
        } else if let Some(at) = t.stopping {
            deadline_after(at, self.control_timeout)
        } else if self.all_reported(None) {
            t.senders_due.unwrap_or(t.bound)
        } else {
            t.bound
        };
        self.deadline = Some(d);
    }

    /// The test phase's deadline passed.
    pub(crate) fn test_timer(&mut self, now: OwampTime) {
        let Some(t) = self.test.clone() else { return };
        if self.flavour == Flavour::TwampServer {
            if t.stopping.is_none() {
                // The test outlived any plausible schedule: stop reflecting.
                self.stop_local(now);
            } else {
                // The client never sent its Stop-Sessions.
                self.abort_receivers();
                self.close(CloseReason::Timeout);
            }
            return;
        }
        if t.sent_stop {
            // The peer never sent its Stop-Sessions.
            self.abort_receivers();
            self.close(CloseReason::Timeout);
        } else if t.stopping.is_some() {
            self.abort_receivers();
            self.close(CloseReason::SessionsUnreported);
        } else if self.all_reported(None) {
            // The end delay after the last sender is over.
            self.maybe_send_stop(now);
        } else {
            // The sessions outlived any plausible schedule: stop them.
            self.stop_local(now);
        }
    }

    /// The application stops the test early.
    pub(crate) fn stop_early(&mut self, now: OwampTime) -> Result<(), ControlError> {
        if self.test.is_none() {
            return Err(ControlError::WrongState {
                input: "Stop-Sessions",
                state: "no test is running",
            });
        }
        self.stop_local(now);
        Ok(())
    }

    /// Asks the application to stop every local session now.
    pub(crate) fn stop_local(&mut self, now: OwampTime) {
        if let Some(t) = &mut self.test {
            if t.stopping.is_none() && !t.sent_stop {
                t.stopping = Some(now);
                self.out.push_back(Output::StopLocalSessions);
            }
        }
        self.maybe_send_stop(now);
        self.update_test_deadline();
    }

    /// The first block of a Stop-Sessions message was read (during the test phase).
    pub(crate) fn begin_stop(&mut self, first: Vec<u8>) -> Result<(), ProtocolError> {
        let (_, n) = StopSessions::parse_header(&first)?;
        let receivers = self
            .sessions
            .iter()
            .filter(|s| s.role == Role::Receiver)
            .count();
        // Every description must name one of our receive sessions (RFC 4656 3.8).
        if n as usize > receivers {
            return Err(ProtocolError::BadStop("more sessions than receivers"));
        }
        let Some(t) = &mut self.test else {
            return Err(ProtocolError::Unexpected(codec::MSG_STOP_SESSIONS));
        };
        t.reader = Some(StopReader { buf: first });
        Ok(())
    }

    /// Reads as much of the peer's Stop-Sessions as has arrived. Returns whether it is
    /// complete.
    pub(crate) fn pump_stop(&mut self, now: OwampTime) -> Result<bool, ProtocolError> {
        loop {
            let Some(reader) = self.test.as_mut().and_then(|t| t.reader.as_mut()) else {
                return Ok(false);
            };
            let (body_end, complete) = match framing::stop_sessions(&reader.buf)? {
                Frame::Incomplete { need } => (need, false),
                Frame::Complete { len } => (len - BLOCK, true),
            };
            if reader.buf.len() < body_end {
                // Whole blocks of descriptions, as many as have arrived.
                let want = body_end - reader.buf.len();
                let n = (self.stream.available() / BLOCK * BLOCK).min(want);
                if n == 0 {
                    return Ok(false);
                }
                let Some(b) = self.stream.take_body(n) else {
                    return Ok(false);
                };
                let b = b.map_err(|_| ProtocolError::Malformed("Stop-Sessions"))?;
                reader.buf.extend_from_slice(&b);
                continue;
            }
            if !complete {
                // Framing asks for more than is held whenever it is incomplete.
                return Err(ProtocolError::Malformed("Stop-Sessions"));
            }
            let Some(h) = self.stream.take_hmac() else {
                return Ok(false);
            };
            let h = h.map_err(|_| ProtocolError::BadHmac("Stop-Sessions"))?;
            reader.buf.extend_from_slice(&h);
            let msg = StopSessions::parse(&reader.buf)?;
            self.complete_stop(now, msg)?;
            return Ok(true);
        }
    }

    /// TWAMP server: the client's Stop-Sessions (RFC 5357 3.8) is complete and verified. The
    /// reflectors are stopped (the host keeps reflecting for the request's Timeout, RFC 5357
    /// 3.8) and the test is over: the server sends nothing back.
    pub(crate) fn twamp_stop(
        &mut self,
        now: OwampTime,
        msg: TwampStopSessions,
    ) -> Result<(), ProtocolError> {
        if msg.num_sessions as usize != self.sessions.len() {
            return Err(ProtocolError::BadStop("number of sessions"));
        }
        let Some(t) = &mut self.test else {
            return Err(ProtocolError::Unexpected(codec::MSG_STOP_SESSIONS));
        };
        t.peer_stop = true;
        t.sent_stop = true;
        let stopping = t.stopping.is_none();
        if msg.accept != AcceptCode::Ok {
            self.out
                .push_back(Output::TestAborted { accept: msg.accept });
        }
        if stopping {
            self.out.push_back(Output::StopLocalSessions);
        }
        self.finish_test_if_done(now);
        Ok(())
    }

    /// The peer's Stop-Sessions is complete and verified.
    fn complete_stop(&mut self, now: OwampTime, msg: StopSessions) -> Result<(), ProtocolError> {
        let receivers: Vec<&LocalSession> = self
            .sessions
            .iter()
            .filter(|s| s.role == Role::Receiver)
            .collect();
        // Exactly our receive sessions, each once (RFC 4656 3.8).
        if msg.sessions.len() != receivers.len() {
            return Err(ProtocolError::BadStop("receive sessions missing"));
        }
        let mut ends = Vec::with_capacity(msg.sessions.len());
        for d in msg.sessions {
            let Some(local) = receivers.iter().find(|s| s.sid == d.sid) else {
                return Err(ProtocolError::BadStop("unknown SID"));
            };
            if ends.iter().any(|e: &SessionEnd| e.sid == d.sid) {
                return Err(ProtocolError::BadStop("SID given twice"));
            }
            if d.next_seqno > local.request.num_packets {
                return Err(ProtocolError::BadStop("Next-Seqno beyond the packet count"));
            }
            let mut prev_end: Option<u32> = None;
            for r in &d.skip_ranges {
                if !r.is_ordered() || prev_end.is_some_and(|p| r.first < p) {
                    return Err(ProtocolError::BadStop("skip ranges out of order"));
                }
                prev_end = Some(r.last);
            }
            ends.push(SessionEnd {
                sid: d.sid,
                next_seqno: d.next_seqno,
                skips: d.skip_ranges,
                accept: msg.accept,
                stop_time: now,
            });
        }
        let Some(t) = &mut self.test else {
            return Ok(());
        };
        t.reader = None;
        t.peer_stop = true;
        let sent = t.sent_stop;
        if msg.accept != AcceptCode::Ok {
            // RFC 4656 3.8: the peer ended the sessions abnormally.
            self.out
                .push_back(Output::TestAborted { accept: msg.accept });
        }
        for e in ends {
            self.out.push_back(Output::SessionStopped(e));
        }
        if sent {
            self.finish_test_if_done(now);
        } else {
            // Answer after stopping our own sessions (the senders report their figures).
            self.stop_local(now);
        }
        Ok(())
    }
}
