//! One test session (RFC 4656 4) behind the same contract as the control connection: the
//! host feeds it time and datagrams and drains the datagrams it wants sent.
//!
//! A [`TestSession`] is built from the [`SessionInfo`] both sides agreed on. It derives
//! everything a host would otherwise have to know about the protocol: the schedule, the
//! packet protection (mode and test-packet keys, RFC 4656 4.1.2), the packet length, which
//! datagrams come from the peer, when the session is over at the latest, and the report and
//! stored form for the control connection. The host:
//!
//! 1. opens a UDP socket, sets [`dscp`](TestSession::dscp), sizes its receive buffer to
//!    [`datagram_buffer_len`](TestSession::datagram_buffer_len);
//! 2. calls [`start`](TestSession::start) when Start-Sessions is accepted;
//! 3. loops: waits until [`poll_timeout`](TestSession::poll_timeout) (spinning the last
//!    stretch when it is [`precise`](Timeout::precise): a packet is due), calls
//!    [`handle_timeout`](TestSession::handle_timeout), sends what
//!    [`poll_transmit`](TestSession::poll_transmit) builds (with the clock read just before,
//!    so the timestamp is as late as possible), and hands every datagram read to
//!    [`handle_datagram`](TestSession::handle_datagram);
//! 4. once [`is_done`](TestSession::is_done), reports [`report`](TestSession::report) to
//!    the control connection, and keeps a receiver's records with
//!    [`into_stored`](TestSession::into_stored) when the peer's Stop-Sessions arrives.
//!
//! [`crate::connection`] does all of this for every session of a control connection, so a
//! host that uses it never calls these methods itself.

use core::net::SocketAddr;
use core::time::Duration;

use std::collections::{BTreeMap, VecDeque};

use super::twamp::{read_reply, Incoming, Reflector, SentPacket, TwampPacketError, TwoWayRecord};
use super::{
    session_end_bound, DropReason, PacketProtection, Receiver, Schedule, ScheduleError, Sender,
    SenderError, SessionParams, StreamEnd, TTL_UNKNOWN,
};
use crate::crypto::{SecureMode, TestPacketCrypto};
use crate::io::{SessionEnd, SessionInfo, SessionReport, StoredSession};
use crate::proto::{canonical, Role};
use crate::time::{ErrorEstimate, Interval, OwampTime};
use crate::wire::ReflectorPacket;
use crate::wire::{DataRecord, Mode, SessionId, Slot, TestPacket};

/// The largest UDP datagram: no buffer for test packets needs to be longer.
pub const MAX_DATAGRAM: usize = 65_535;

/// How long a receiving test socket's queue should hold datagrams for when the receiver falls
/// behind (a scheduling hiccup, a slow disk): about a second of the session's packets.
pub const RECV_BUFFER_SPAN: Duration = Duration::from_secs(1);

/// The most receive buffer asked for one test socket.
pub const MAX_RECV_BUFFER: usize = 64 << 20;

/// What the kernel charges a receive queue per datagram of `len` octets, roughly: Linux
/// counts each queued datagram at its buffer's true size (`skb->truesize`), the data rounded up
/// plus about 600 octets of bookkeeping. Measured on loopback: 832 octets for datagrams of up
/// to 112 octets (OWAMP's open and authenticated test packets), 1,280 for 500, 2,304 for
/// 1,000 to 1,400, 8,448 for 4,000; network drivers often charge a 2 KiB or larger fragment
/// even for a small datagram. 1 KiB plus twice the datagram covers all of these.
const fn datagram_charge(len: usize) -> usize {
    1024 + 2 * len
}

/// The receive buffer (`SO_RCVBUF`, octets) a test socket should have to receive a session:
/// room for about [`RECV_BUFFER_SPAN`] of its packets at the rate of its schedule (the mean
/// of its slots' means, RFC 4656 3.5), and no more than the whole session, at the kernel's
/// cost per datagram, at most [`MAX_RECV_BUFFER`]. A schedule whose mean is zero (back to
/// back) asks for the whole session. The host keeps its default when that is larger.
pub fn recv_buffer_len(mode: Mode, slots: &[Slot], packets: u32, padding: u32) -> usize {
    let per_packet = datagram_charge(
        usize::try_from(padding)
            .unwrap_or(MAX_DATAGRAM)
            .saturating_add(TestPacket::header_len(mode))
            .min(MAX_DATAGRAM),
    );
    let n = u128::try_from(slots.len()).unwrap_or(u128::MAX).max(1);
    let mean_raw = slots.iter().map(|s| u128::from(s.mean.raw())).sum::<u128>() / n;
    let span = u128::from(Interval::saturating_from_duration(RECV_BUFFER_SPAN).raw());
    // Packets in the span (to the nearest: a mean of 1 ms in 2^-32 s units is not exact), at
    // least one; all of them when the mean is zero.
    let in_span = match mean_raw {
        0 => u128::MAX,
        m => ((span + m / 2) / m).max(1),
    };
    let queued = in_span.min(u128::from(packets));
    let bytes = queued.saturating_mul(per_packet as u128);
    usize::try_from(bytes)
        .unwrap_or(usize::MAX)
        .min(MAX_RECV_BUFFER)
}

/// The grid on which a receiver asks to be woken for its loss deadlines.
///
/// A receiver has a deadline per packet (RFC 4656 4.2: lost once the loss timeout after its
/// send time has passed); woken for each, it would wake once per packet received, a loss
/// timeout later. Rounded up to a 10 ms grid they take at most a hundred wake-ups a second, and
/// a sender's precise timeout in between still comes first. Nothing depends on declaring a
/// loss to the millisecond: a datagram that arrives after its deadline is judged by its
/// receive time ([`Receiver::receive`]).
pub const LOSS_DEADLINE_GRID: Duration = Duration::from_millis(10);

/// `at` rounded up to a multiple of [`LOSS_DEADLINE_GRID`].
fn on_loss_grid(at: OwampTime) -> OwampTime {
    let grid = Interval::saturating_from_duration(LOSS_DEADLINE_GRID)
        .raw()
        .max(1);
    let rounded = at.raw().div_ceil(grid).saturating_mul(grid);
    OwampTime::from_raw(rounded.max(at.raw()))
}

/// How long past the end of its schedule plus the loss timeout a session ends by itself when
/// nobody stops it (see [`TestSession::with_end_margin`]).
pub const DEFAULT_END_MARGIN: Duration = Duration::from_secs(5);

/// When a session (or a connection) wants [`handle_timeout`](TestSession::handle_timeout)
/// called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout {
    /// The time.
    pub at: OwampTime,
    /// A test packet is due then: the host should wake up a little early and spin to the
    /// exact time (sleeping alone is late by the timer's slack and the scheduler's delay).
    pub precise: bool,
}

impl Timeout {
    /// The earlier of two optional timeouts.
    pub fn earliest(a: Option<Timeout>, b: Option<Timeout>) -> Option<Timeout> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.at < a.at { b } else { a }),
            (a, None) => a,
            (None, b) => b,
        }
    }
}

/// A datagram read from a session's test socket.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// Where it came from.
    pub source: SocketAddr,
    /// When it arrived: the kernel's receive timestamp when the socket gives one, else the
    /// clock read on receipt.
    pub recv_time: OwampTime,
    /// The IP TTL or hop limit it arrived with, if the socket reports it.
    pub ttl: Option<u8>,
    /// The datagram was longer than the buffer it was read into.
    pub truncated: bool,
    /// Its payload (as much as the buffer held).
    pub payload: &'a [u8],
}

/// A test packet built by [`TestSession::poll_transmit`], at the start of the caller's
/// buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub dest: SocketAddr,
    /// Its length.
    pub len: usize,
    /// Its sequence number.
    pub seq: u32,
    /// When it was scheduled (its timestamp minus this is how late it left).
    pub due: OwampTime,
}

/// What [`TestSession::handle_datagram`] did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramOutcome {
    /// It did not come from the session's peer: ignored (RFC 4656 4.2 test packets come
    /// from the sender's address and port as given in Request-Session).
    Foreign,
    /// This end sends, or the session has been stopped: ignored.
    NotReceiving,
    /// A test packet of the session (a duplicate if already received).
    Accepted {
        /// Its sequence number.
        seq: u32,
        /// Whether it had been received before.
        duplicate: bool,
    },
    /// Not a valid test packet of the session, or too late.
    Dropped(DropReason),
}

/// Why a session cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionSetupError {
    /// The schedule is unusable (no slots, or no packets).
    #[error("invalid schedule: {0}")]
    Schedule(#[from] ScheduleError),
    /// The sender cannot be built (padding too large).
    #[error("{0}")]
    Sender(#[from] SenderError),
    /// The session's Type-P is not a DSCP (RFC 4656 3.5; the control connection refuses
    /// such requests already).
    #[error("unsupported Type-P descriptor {0:#010x}")]
    TypeP(u32),
    /// An authenticated or encrypted session without the control connection's keys.
    #[error("{0:?} mode without session keys")]
    MissingKeys(Mode),
}

/// Counters of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionCounters {
    /// Sender: packets built for sending.
    pub sent: u64,
    /// Datagrams from an address other than the peer's, ignored.
    pub foreign: u64,
}

#[derive(Debug, Clone)]
enum Kind {
    Sender(Box<Sender>),
    Receiver(Box<Receiver>),
    /// TWAMP session-sender (RFC 5357 4.1): OWAMP's sender, and the reflector's replies.
    TwampSender(Box<TwampSender>),
    /// TWAMP session-reflector (RFC 5357 4.2).
    Reflector(Box<Reflecting>),
}

/// The TWAMP session-sender's side: packets as an OWAMP sender's, on the client's own
/// schedule (RFC 5357 4.1: it is not sent; here it is drawn from the SID as OWAMP's, RFC 4656
/// Appendix B), and the replies read into two-way records.
#[derive(Debug, Clone)]
struct TwampSender {
    sender: Sender,
    /// Replies read and not yet taken.
    records: Vec<TwoWayRecord>,
    /// Sender sequence numbers answered so far, a bit each (for duplicates): at most a bit
    /// per packet sent.
    answered: Vec<u64>,
    /// Packets sent and not answered yet: those in flight, and once the session is over the
    /// lost ones.
    unanswered: BTreeMap<u32, SentPacket>,
}

impl TwampSender {
    /// Marks `seq` answered; returns whether it had been before.
    fn answer(&mut self, seq: u32) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.answered.len() <= word {
            self.answered.resize(word + 1, 0);
        }
        let before = self.answered[word] & (1 << bit) != 0;
        self.answered[word] |= 1 << bit;
        before
    }
}

/// Sender packets a reflector holds, accepted and not yet answered (the host sends the
/// replies with [`TestSession::poll_transmit`] after each batch of datagrams it hands over).
pub const MAX_PENDING_REPLIES: usize = 1024;

/// The TWAMP session-reflector's side: the packets waiting for their replies.
#[derive(Debug, Clone)]
struct Reflecting {
    reflector: Reflector,
    /// The length of the sender's packets, from the request's padding.
    packet_len: usize,
    pending: VecDeque<(SocketAddr, Incoming)>,
    /// Where a reply is built before it is copied into the host's buffer.
    scratch: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Configured,
    Running,
    /// Stopped by the control connection, or past its end bound.
    Stopped,
}

/// How the test packets of a session are protected, from its mode and the control
/// connection's keys (RFC 4656 4.1.2: the test-packet keys derive from the session keys and
/// the SID).
pub fn packet_protection(info: &SessionInfo) -> Result<PacketProtection, SessionSetupError> {
    let mode = match info.mode {
        Mode::Authenticated => SecureMode::Authenticated,
        Mode::Encrypted => SecureMode::Encrypted,
        _ => return Ok(PacketProtection::Open),
    };
    let keys = info
        .keys
        .as_ref()
        .ok_or(SessionSetupError::MissingKeys(info.mode))?;
    Ok(PacketProtection::Sealed(TestPacketCrypto::new(
        mode,
        &info.sid.0,
        keys,
    )))
}

/// The schedule, start time, timeout and padding both ends agreed on (RFC 4656 3.5).
pub fn session_params(info: &SessionInfo) -> Result<SessionParams, SessionSetupError> {
    let r = &info.request;
    Ok(SessionParams {
        schedule: Schedule::new(info.sid, &r.slots, r.num_packets)?,
        start: r.start_time,
        timeout: r.timeout,
        padding: r.padding_length,
    })
}

/// Whether a datagram's source is the session's peer: the port is not checked when the
/// peer's is unknown (0), and IPv4-mapped IPv6 addresses compare as IPv4.
pub fn is_from_peer(peer: SocketAddr, source: SocketAddr) -> bool {
    let peer = canonical(peer);
    let source = canonical(source);
    source.ip() == peer.ip() && (peer.port() == 0 || source.port() == peer.port())
}

/// One test session: its sender or receiver, with everything derived from the agreement.
#[derive(Debug, Clone)]
pub struct TestSession {
    info: SessionInfo,
    kind: Kind,
    state: State,
    margin: Duration,
    end_bound: OwampTime,
    dscp: u8,
    failed: bool,
    counters: SessionCounters,
}

impl TestSession {
    /// The session both sides agreed on (from the control connection's `SessionAccepted`).
    pub fn new(info: SessionInfo) -> Result<Self, SessionSetupError> {
        let params = session_params(&info)?;
        let protection = packet_protection(&info)?;
        let kind = match info.role {
            Role::Sender => Kind::Sender(Box::new(Sender::new(params, protection)?)),
            Role::Receiver => Kind::Receiver(Box::new(Receiver::new(params, protection))),
        };
        Self::with_kind(info, kind)
    }

    /// A configured session of `kind`, marked with the request's DSCP.
    fn with_kind(info: SessionInfo, kind: Kind) -> Result<Self, SessionSetupError> {
        let dscp = info
            .request
            .type_p
            .dscp()
            .ok_or(SessionSetupError::TypeP(info.request.type_p.0))?;
        let mut s = Self {
            info,
            kind,
            state: State::Configured,
            margin: DEFAULT_END_MARGIN,
            end_bound: OwampTime::ZERO,
            dscp,
            failed: false,
            counters: SessionCounters::default(),
        };
        s.end_bound = s.bound();
        Ok(s)
    }

    /// A TWAMP test session (RFC 5357 4) agreed on by a control connection speaking TWAMP:
    /// at the client (role [`Role::Sender`]) the session-sender, which sends on the schedule
    /// of its local request (slots and packet count, which TWAMP does not send) and reads the
    /// replies into [`TwoWayRecord`]s ([`take_two_way`](Self::take_two_way)); at the server
    /// (role [`Role::Receiver`]) the session-reflector, which answers every packet from the
    /// sender ([`poll_transmit`](Self::poll_transmit) builds the replies) until it is stopped.
    pub fn twamp(info: SessionInfo) -> Result<Self, SessionSetupError> {
        let protection = packet_protection(&info)?;
        let kind = match info.role {
            Role::Sender => {
                let sender = Sender::new(session_params(&info)?, protection)?;
                Kind::TwampSender(Box::new(TwampSender {
                    sender,
                    records: Vec::new(),
                    answered: Vec::new(),
                    unanswered: BTreeMap::new(),
                }))
            }
            Role::Receiver => {
                let padding = info.request.padding_length;
                let packet_len = protection
                    .packet_len(padding)
                    .ok_or(SenderError::PaddingTooLarge(padding))?;
                Kind::Reflector(Box::new(Reflecting {
                    reflector: Reflector::with_protection(protection),
                    packet_len,
                    pending: VecDeque::new(),
                    scratch: Vec::new(),
                }))
            }
        };
        Self::with_kind(info, kind)
    }

    /// Sets how long past the end of the schedule plus the loss timeout the session ends by
    /// itself if nobody stops it ([`DEFAULT_END_MARGIN`] by default).
    pub fn with_end_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self.end_bound = self.bound();
        self
    }

    fn bound(&self) -> OwampTime {
        if let Kind::Reflector(_) = self.kind {
            // No schedule: the control connection stops it (RFC 5357 3.8).
            return OwampTime::MAX;
        }
        let r = &self.info.request;
        session_end_bound(
            r.start_time,
            &r.slots,
            r.num_packets,
            r.timeout,
            self.margin,
        )
    }

    /// The session as agreed.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// Its SID.
    pub fn sid(&self) -> SessionId {
        self.info.sid
    }

    /// Whether this end sends or receives.
    pub fn role(&self) -> Role {
        self.info.role
    }

    /// The DSCP the sender's socket should mark its packets with (RFC 4656 3.5 Type-P).
    pub fn dscp(&self) -> u8 {
        self.dscp
    }

    /// Octets of each test packet of the session.
    pub fn packet_len(&self) -> usize {
        match &self.kind {
            Kind::Sender(s) => s.packet_len(),
            Kind::Receiver(r) => r.packet_len().unwrap_or(MAX_DATAGRAM),
            Kind::TwampSender(t) => t.sender.packet_len(),
            Kind::Reflector(r) => r.packet_len,
        }
    }

    /// Octets of each datagram this end receives: the test packets, or for a TWAMP sender
    /// the reflector's replies (as long as its packets, or the reflector header if longer).
    fn received_len(&self) -> usize {
        match &self.kind {
            Kind::TwampSender(t) => t
                .sender
                .packet_len()
                .max(ReflectorPacket::header_len(self.info.mode)),
            _ => self.packet_len(),
        }
    }

    /// How long a receive buffer must be: one octet more than a datagram this end receives
    /// (a test packet, or a TWAMP reflector's reply), so that a longer datagram shows as the
    /// wrong length, and at most [`MAX_DATAGRAM`].
    pub fn datagram_buffer_len(&self) -> usize {
        self.received_len().saturating_add(1).min(MAX_DATAGRAM)
    }

    /// When the session ends by itself at the latest.
    pub fn end_bound(&self) -> OwampTime {
        self.end_bound
    }

    /// Starts sending or receiving (Start-Sessions was accepted).
    pub fn start(&mut self) {
        if self.state == State::Configured {
            self.state = State::Running;
        }
    }

    /// Stops the session now; further calls do nothing.
    pub fn stop(&mut self) {
        self.state = State::Stopped;
    }

    /// Stops the session once `at` has passed (at the latest: its end bound still holds).
    /// A TWAMP reflector is stopped this way: it answers packets in transit for the
    /// request's Timeout after Stop-Sessions (RFC 5357 3.5).
    pub fn stop_at(&mut self, at: OwampTime) {
        self.end_bound = self.end_bound.min(at);
    }

    /// Whether it has been started and not stopped.
    pub fn is_running(&self) -> bool {
        self.state == State::Running
    }

    /// Whether the session is over for the control connection: stopped, a sender with every
    /// packet sent or skipped, or a receiver with every packet received or declared lost. A
    /// receiver that is done still takes datagrams (duplicates) until it is stopped.
    pub fn is_done(&self) -> bool {
        match (&self.kind, self.state) {
            (_, State::Stopped) => true,
            (_, State::Configured) => false,
            (Kind::Sender(s), State::Running) => s.is_finished(),
            (Kind::Receiver(r), State::Running) => r.is_complete(),
            (Kind::TwampSender(t), State::Running) => t.sender.is_finished(),
            // Until the control connection stops it.
            (Kind::Reflector(_), State::Running) => false,
        }
    }

    /// The counters.
    pub fn counters(&self) -> &SessionCounters {
        &self.counters
    }

    /// The core sender, when this end sends.
    pub fn sender(&self) -> Option<&Sender> {
        match &self.kind {
            Kind::Sender(s) => Some(s),
            Kind::TwampSender(t) => Some(&t.sender),
            Kind::Receiver(_) | Kind::Reflector(_) => None,
        }
    }

    /// The core receiver, when this end receives (OWAMP).
    pub fn receiver(&self) -> Option<&Receiver> {
        match &self.kind {
            Kind::Receiver(r) => Some(r),
            _ => None,
        }
    }

    /// TWAMP: the session-reflector, when this end reflects.
    pub fn reflector(&self) -> Option<&Reflector> {
        match &self.kind {
            Kind::Reflector(r) => Some(&r.reflector),
            _ => None,
        }
    }

    /// Whether this is a TWAMP session (sender or reflector).
    pub fn is_twamp(&self) -> bool {
        matches!(self.kind, Kind::TwampSender(_) | Kind::Reflector(_))
    }

    /// TWAMP sender: the packets sent that no reply answered so far, in sequence order, taken
    /// (once the session is over, its lost packets); empty for any other session.
    pub fn take_unanswered(&mut self) -> Vec<SentPacket> {
        match &mut self.kind {
            Kind::TwampSender(t) => std::mem::take(&mut t.unanswered).into_values().collect(),
            _ => Vec::new(),
        }
    }

    /// TWAMP sender: the replies read since the last call, in the order they arrived
    /// (duplicates included); empty for any other session.
    pub fn take_two_way(&mut self) -> Vec<TwoWayRecord> {
        match &mut self.kind {
            Kind::TwampSender(t) => std::mem::take(&mut t.records),
            _ => Vec::new(),
        }
    }

    /// TWAMP sender: how many replies are held that were not taken yet.
    pub fn two_way_held(&self) -> usize {
        match &self.kind {
            Kind::TwampSender(t) => t.records.len(),
            _ => 0,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) (a receiver declaring a packet lost, the
    /// end bound) or [`poll_transmit`](Self::poll_transmit) (a packet due: `precise`) next
    /// has something to do; `None` while not running or once done.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        if self.state != State::Running {
            return None;
        }
        let bound = Some(Timeout {
            at: self.end_bound,
            precise: false,
        });
        let next = match &self.kind {
            Kind::Sender(s) => s.next_due().map(|(_, due)| Timeout {
                at: due,
                precise: true,
            }),
            Kind::TwampSender(t) => t.sender.next_due().map(|(_, due)| Timeout {
                at: due,
                precise: true,
            }),
            // Replies leave with poll_transmit, called after every datagram handed over;
            // the only deadline is the end bound, once it is set (stop_at).
            Kind::Reflector(_) => {
                return (self.end_bound < OwampTime::MAX).then_some(Timeout {
                    at: self.end_bound,
                    precise: false,
                })
            }
            Kind::Receiver(r) => r.next_deadline().map(|at| Timeout {
                // RFC 4656 4.2: lost once the timeout after its send time has passed.
                at: on_loss_grid(at.saturating_add(Duration::from_nanos(1))),
                precise: false,
            }),
        };
        // Done when there is no next packet: nothing to wait for.
        next?;
        Timeout::earliest(next, bound)
    }

    /// Time passed: a receiver declares lost the packets whose timeout is over (recording
    /// `error`, the receiver clock's estimate, as the reference does); past its end bound
    /// the session stops.
    pub fn handle_timeout(&mut self, now: OwampTime, error: ErrorEstimate) {
        if self.state != State::Running {
            return;
        }
        if let Kind::Receiver(r) = &mut self.kind {
            r.poll(now, error);
        }
        // A reflector's bound is when it must stop answering (RFC 5357 3.5), and its
        // timeout: it stops at it.
        let reflector = matches!(self.kind, Kind::Reflector(_));
        if now > self.end_bound || (reflector && now >= self.end_bound) {
            self.state = State::Stopped;
        }
    }

    /// Builds the next test packet into `buf` if one is due at `now`, stamped with `now` and
    /// `error` (read the clock right before calling, and send at once). Packets more than the
    /// loss timeout late are skipped and reported in Stop-Sessions (RFC 4656 3.8), as the
    /// reference sender does. `None` when nothing is due.
    pub fn poll_transmit(
        &mut self,
        now: OwampTime,
        error: ErrorEstimate,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        if self.state != State::Running {
            return None;
        }
        let snd = match &mut self.kind {
            Kind::Sender(s) => &mut **s,
            Kind::TwampSender(t) => &mut t.sender,
            Kind::Reflector(r) => return Self::reflect(r, now, error, buf),
            Kind::Receiver(_) => return None,
        };
        if now > self.end_bound {
            self.state = State::Stopped;
            return None;
        }
        loop {
            let (seq, due) = snd.next_due()?;
            if snd.is_too_late(now) {
                snd.skip();
                continue;
            }
            if due > now {
                return None;
            }
            return match snd.build(buf, now, error) {
                Ok(len) => {
                    self.counters.sent += 1;
                    if let Kind::TwampSender(t) = &mut self.kind {
                        let p = SentPacket {
                            seq,
                            send_time: now,
                            send_error: error,
                        };
                        t.unanswered.insert(seq, p);
                    }
                    Some(Transmit {
                        dest: self.info.peer,
                        len,
                        seq,
                        due,
                    })
                }
                Err(_) => {
                    // Only a buffer shorter than `packet_len` gets here: the session cannot
                    // go on, and Stop-Sessions reports the failure.
                    self.failed = true;
                    self.state = State::Stopped;
                    None
                }
            };
        }
    }

    /// A TWAMP reflector's next reply, stamped `now` (RFC 5357 4.2.1), into `buf`.
    fn reflect(
        r: &mut Reflecting,
        now: OwampTime,
        error: ErrorEstimate,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        while let Some((dest, incoming)) = r.pending.pop_front() {
            let seq = r.reflector.reflected();
            if r.reflector
                .reply(&incoming, now, error, &mut r.scratch)
                .is_err()
            {
                continue;
            }
            let len = r.scratch.len();
            let Some(out) = buf.get_mut(..len) else {
                // A buffer too short for the reply: it cannot be sent.
                continue;
            };
            out.copy_from_slice(&r.scratch);
            return Some(Transmit {
                dest,
                len,
                seq,
                due: incoming.received,
            });
        }
        None
    }

    /// Handles a datagram read from the session's socket, with `error` the receiver clock's
    /// estimate. Datagrams from anyone but the peer are ignored.
    ///
    /// TWAMP: a reflector accepts a sender packet (its reply comes from
    /// [`poll_transmit`](Self::poll_transmit)); a sender reads a reply into a
    /// [`TwoWayRecord`]. Both count as [`DatagramOutcome::Accepted`] with the sender's
    /// sequence number (`duplicate` for a second reply to the same packet).
    pub fn handle_datagram(&mut self, d: &Datagram<'_>, error: ErrorEstimate) -> DatagramOutcome {
        if !is_from_peer(self.info.peer, d.source) {
            self.counters.foreign += 1;
            return DatagramOutcome::Foreign;
        }
        if self.state != State::Running {
            return DatagramOutcome::NotReceiving;
        }
        let keep = self.received_len().saturating_add(1);
        let ttl = d.ttl.unwrap_or(TTL_UNKNOWN);
        let rcv = match &mut self.kind {
            Kind::Receiver(r) => r,
            Kind::Sender(_) => return DatagramOutcome::NotReceiving,
            Kind::TwampSender(t) => return Self::read_reply(t, d, error),
            Kind::Reflector(r) => return Self::accept_packet(r, d, self.end_bound),
        };
        // A truncated datagram was longer than any packet of the session: hand over one
        // octet more than a packet so that the receiver sees the wrong length.
        let payload = if d.truncated {
            d.payload
        } else {
            d.payload.get(..keep).unwrap_or(d.payload)
        };
        match rcv.receive(payload, d.recv_time, error, ttl) {
            Ok(a) => DatagramOutcome::Accepted {
                seq: a.seq,
                duplicate: a.duplicate,
            },
            Err(r) => DatagramOutcome::Dropped(r),
        }
    }

    /// TWAMP sender: a datagram from the reflector.
    fn read_reply(t: &mut TwampSender, d: &Datagram<'_>, error: ErrorEstimate) -> DatagramOutcome {
        // A reply longer than expected (another reflector's padding) is read as long as it
        // was not cut short.
        if d.truncated {
            return DatagramOutcome::Dropped(DropReason::WrongLength);
        }
        // RFC 5357 4.2.1: the reply's own TTL gives the hops back (255 minus it, as twping).
        let ttl = d.ttl.unwrap_or(TTL_UNKNOWN);
        let sent = t.sender.next_seqno();
        match read_reply(
            t.sender.protection(),
            sent,
            d.recv_time,
            ttl,
            error,
            d.payload,
        ) {
            Ok(r) => {
                let duplicate = t.answer(r.sender_seq);
                t.unanswered.remove(&r.sender_seq);
                t.records.push(r);
                DatagramOutcome::Accepted {
                    seq: r.sender_seq,
                    duplicate,
                }
            }
            Err(e) => DatagramOutcome::Dropped(twamp_drop(&e)),
        }
    }

    /// TWAMP reflector: a packet from the sender, kept for its reply.
    fn accept_packet(r: &mut Reflecting, d: &Datagram<'_>, bound: OwampTime) -> DatagramOutcome {
        if d.recv_time >= bound {
            // RFC 5357 3.5: not reflected past the Timeout after Stop-Sessions.
            return DatagramOutcome::NotReceiving;
        }
        if d.truncated || d.payload.len() != r.packet_len {
            return DatagramOutcome::Dropped(DropReason::WrongLength);
        }
        if r.pending.len() >= MAX_PENDING_REPLIES {
            return DatagramOutcome::Dropped(DropReason::WindowFull);
        }
        // RFC 5357 4.2.1: Sender TTL is the TTL the packet arrived with (255 when the host
        // cannot tell, as twampd).
        let ttl = d.ttl.unwrap_or(255);
        match r.reflector.accept(d.recv_time, ttl, d.payload) {
            Ok(incoming) => {
                let seq = incoming.sent.seq;
                r.pending.push_back((d.source, incoming));
                DatagramOutcome::Accepted {
                    seq,
                    duplicate: false,
                }
            }
            Err(e) => DatagramOutcome::Dropped(twamp_drop(&e)),
        }
    }

    /// Marks the session failed: Stop-Sessions reports it (a socket that could not be set up,
    /// for example).
    pub fn fail(&mut self) {
        self.failed = true;
        self.state = State::Stopped;
    }

    /// What the control connection needs to know of how it ended (a sender's Next-Seqno and
    /// skip ranges for Stop-Sessions, RFC 4656 3.8).
    pub fn report(&self) -> SessionReport {
        let sid = self.info.sid;
        let mut r = match &self.kind {
            Kind::Sender(s) => SessionReport {
                sid,
                next_seqno: s.next_seqno(),
                skips: s.skip_ranges().to_vec(),
                failed: false,
            },
            Kind::TwampSender(t) => SessionReport {
                sid,
                next_seqno: t.sender.next_seqno(),
                skips: t.sender.skip_ranges().to_vec(),
                failed: false,
            },
            Kind::Receiver(_) | Kind::Reflector(_) => SessionReport::completed(sid, 0),
        };
        r.failed = self.failed;
        r
    }

    /// The core receiver, when this end receives, with its records so far.
    pub fn into_receiver(self) -> Option<Receiver> {
        match self.kind {
            Kind::Receiver(r) => Some(*r),
            _ => None,
        }
    }

    /// A receiver's stored form after the peer's Stop-Sessions (RFC 4656 3.8, see
    /// [`Receiver::into_stored`]); `None` for a sender.
    pub fn into_stored(self, end: &SessionEnd, error: ErrorEstimate) -> Option<StoredSession> {
        match self.kind {
            Kind::Receiver(r) => Some(r.into_stored(self.info.request, end, error)),
            _ => None,
        }
    }

    /// A receiver's records so far, handed out so that they can be written as they come
    /// ([`Receiver::take_records`]); empty for a sender.
    pub fn take_records(&mut self) -> Vec<DataRecord> {
        match &mut self.kind {
            Kind::Receiver(r) => r.take_records(),
            _ => Vec::new(),
        }
    }

    /// How many records a receiver holds that were not taken yet.
    pub fn records_held(&self) -> usize {
        self.receiver().map_or(0, |r| r.records().len())
    }

    /// A receiver's end when its records were taken as they came: after the peer's
    /// Stop-Sessions (`end`), or without it (`None`: incomplete); see
    /// [`Receiver::finish_stream`]. `None` for a sender.
    pub fn finish_stream(
        self,
        end: Option<&SessionEnd>,
        error: ErrorEstimate,
    ) -> Option<StreamEnd> {
        let sid = self.info.sid;
        match self.kind {
            Kind::Receiver(r) => Some(r.finish_stream(sid, end, error)),
            _ => None,
        }
    }

    /// A receiver's stored form when the test broke off without the peer's Stop-Sessions
    /// (incomplete, see [`Receiver::into_incomplete`]); `None` for a sender.
    pub fn into_incomplete(self) -> Option<StoredSession> {
        match self.kind {
            Kind::Receiver(r) => Some(r.into_incomplete(self.info.request)),
            _ => None,
        }
    }
}

/// The receiver's name for why a TWAMP datagram was not accepted.
fn twamp_drop(e: &TwampPacketError) -> DropReason {
    match e {
        TwampPacketError::Crypto(crate::crypto::CryptoError::HmacMismatch) => DropReason::BadHmac,
        TwampPacketError::NotSent(_) => DropReason::SeqOutOfRange,
        TwampPacketError::Wire(crate::wire::WireError::Invalid { field, .. })
            if *field == "error estimate" =>
        {
            DropReason::InvalidErrorEstimate
        }
        _ => DropReason::WrongLength,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::SlotKind;

    fn every(d: Duration) -> Vec<Slot> {
        vec![Slot {
            kind: SlotKind::Exponential,
            mean: Interval::saturating_from_duration(d),
        }]
    }

    #[test]
    fn loss_deadlines_share_a_grid() {
        let grid = Interval::saturating_from_duration(LOSS_DEADLINE_GRID).raw();
        let base = OwampTime::from_parts(3_900_000_000, 12_345);
        let g = on_loss_grid(base);
        assert_eq!(g.raw() % grid, 0);
        assert!(g >= base && g.duration_since(base).unwrap() < LOSS_DEADLINE_GRID);
        // Deadlines a millisecond apart (one per packet at 1,000 packets/s) fall on at most
        // two grid points, each at or after its deadline.
        let mut times: Vec<OwampTime> = (0..10u64)
            .map(|i| on_loss_grid(base.saturating_add(Duration::from_millis(i))))
            .collect();
        times.dedup();
        assert!(times.len() <= 2, "{times:?}");
        assert_eq!(on_loss_grid(g), g);
        assert_eq!(on_loss_grid(OwampTime::MAX), OwampTime::MAX);
    }

    #[test]
    fn recv_buffer_grows_with_the_rate() {
        let per = |pps: u64| {
            recv_buffer_len(
                Mode::Open,
                &every(Duration::from_secs(1) / pps as u32),
                1_000_000,
                0,
            )
        };
        let charge = datagram_charge(TestPacket::header_len(Mode::Open));
        // About a second of packets: 10, 1,000, 10,000 per second.
        assert_eq!(per(10), 10 * charge);
        assert_eq!(per(1000), 1000 * charge);
        assert_eq!(per(10_000), 10_000 * charge);
        let rates = [1, 10, 100, 1000, 5000, 10_000, 50_000];
        for w in rates.windows(2) {
            assert!(per(w[0]) < per(w[1]), "{} -> {}", w[0], w[1]);
        }
        // Capped.
        assert_eq!(per(1_000_000), MAX_RECV_BUFFER);
    }

    #[test]
    fn recv_buffer_follows_the_schedule_and_the_packets() {
        let ms = Duration::from_millis(1);
        let open = datagram_charge(TestPacket::header_len(Mode::Open));
        // No more than the whole session.
        assert_eq!(recv_buffer_len(Mode::Open, &every(ms), 100, 0), 100 * open);
        // The mean of the slots: 1 ms and 3 ms alternate, a packet every 2 ms on average.
        let mut slots = every(ms);
        slots.extend(every(3 * ms));
        assert_eq!(recv_buffer_len(Mode::Open, &slots, 10_000, 0), 500 * open);
        // Back to back: the whole session, within the cap.
        let zero = every(Duration::ZERO);
        assert_eq!(recv_buffer_len(Mode::Open, &zero, 1000, 0), 1000 * open);
        assert_eq!(
            recv_buffer_len(Mode::Open, &zero, u32::MAX, 0),
            MAX_RECV_BUFFER
        );
        // Longer packets cost more: padding, and the authenticated header.
        let padded = recv_buffer_len(Mode::Open, &every(ms), 10_000, 1000);
        assert_eq!(
            padded,
            1000 * datagram_charge(TestPacket::header_len(Mode::Open) + 1000)
        );
        assert!(recv_buffer_len(Mode::Encrypted, &every(ms), 10_000, 0) > 1000 * open);
        // No slots (refused elsewhere) does not panic.
        assert_eq!(recv_buffer_len(Mode::Open, &[], 10, 0), 10 * open);
    }
}
