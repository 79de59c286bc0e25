//! Helpers to replay recorded control traffic through [`Server`] and
//! [`Client`] (see the [module documentation](super) for the order of the
//! random values each side draws). Only built with the cargo feature `replay`.
//!
//! [`Recorded::from_plaintext`] reads what a recorded exchange shows; [`Recorded::replay_server`]
//! feeds a server the client's octets and [`Recorded::replay_client`] feeds a client the
//! server's octets, answering every request of the state machine from the recording. What
//! each sent can then be compared with the other side of the recording.
//!
//! # The scripted RNG is insecure
//!
//! A replay must draw exactly the recorded Challenge, Salt, IVs, session keys and SID octets,
//! so [`InsecureScriptedRng`] returns octets given in advance. [`Client`] and [`Server`] accept
//! only a [`CryptoRng`], so it implements that marker trait although it is the opposite of a
//! cryptographic generator. Three things keep it from being used by accident:
//!
//! - it exists only when the `replay` feature is enabled, which no adapter or binary enables
//!   (the conformance suite and the fuzz targets do);
//! - its name says that it is insecure, at every place it is named;
//! - it is defined here and re-exported nowhere: no other API of the crate returns or expects
//!   it.
//!
//! Narrower designs were rejected: a private constructor would stop the conformance suite and
//! the fuzz targets from scripting their own draws, and dropping the `CryptoRng` bound from the
//! state machines would loosen it for every caller.

use core::net::SocketAddr;
use std::collections::VecDeque;

use rand_core::{CryptoRng, RngCore};

use super::{Client, ClientConfig, ControlError, PortRange, Server, ServerConfig};
use crate::crypto::{decrypt_token, derive_key, SessionKeys};
use crate::io::{FetchReply, Input, Output, SessionInfo, SessionReport, StoredSession};
use crate::policy::ServerPolicy;
use crate::proto::{ClientCommand, CloseReason, Protocol, Role, SessionRequest};
use crate::time::OwampTime;
use crate::wire::{
    framing, AcceptCode, AcceptSession, FetchAck, FetchData, FetchSession, RequestSession,
    RequestTwSession, ServerGreeting, ServerStart, SessionId, SetUpResponse, Slot, SlotKind,
    StartAck, StartSessions, StopSessions, TwampStopSessions, WireError,
};

/// An RNG that returns octets given in advance, in order, then zeros. **Not random and not
/// secure.**
///
/// For replaying recorded exchanges and fuzzing only: it is marked [`CryptoRng`] so that it can
/// stand in for the real generator in [`Client`] and [`Server`], but its output is whatever it
/// was given (see the [module documentation](self)).
#[derive(Debug, Clone, Default)]
pub struct InsecureScriptedRng {
    queue: VecDeque<u8>,
    underrun: usize,
}

impl InsecureScriptedRng {
    /// An RNG that will return `chunks`, concatenated.
    pub fn new<I, B>(chunks: I) -> Self
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let mut s = Self::default();
        for c in chunks {
            s.push(c.as_ref());
        }
        s
    }

    /// Appends octets to return.
    pub fn push(&mut self, bytes: &[u8]) {
        self.queue.extend(bytes.iter().copied());
    }

    /// Octets given and not yet returned.
    pub fn remaining(&self) -> usize {
        self.queue.len()
    }

    /// Octets asked for after the script ran out (returned as zeros).
    pub fn underrun(&self) -> usize {
        self.underrun
    }
}

impl RngCore for InsecureScriptedRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest.iter_mut() {
            *d = match self.queue.pop_front() {
                Some(v) => v,
                None => {
                    self.underrun += 1;
                    0
                }
            };
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for InsecureScriptedRng {}

/// The 4 random octets that make a server with test ports `range` pick `port` (see
/// [`PortRange::pick`]). `None` if the port is outside the range.
pub fn port_draw(range: PortRange, port: u16) -> Option<[u8; 4]> {
    if port < range.low || port > range.high {
        return None;
    }
    let off = u64::from(port - range.low);
    let len = u64::from(range.len());
    // The smallest draw d with floor(d * len / 2^32) == off.
    let d = (off << 32).div_ceil(len);
    let d = u32::try_from(d).ok()?;
    Some(d.to_be_bytes())
}

/// A Request-Session of a recorded exchange and the Accept-Session that answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The request as the client sent it (plaintext).
    pub request: RequestSession,
    /// The server's answer.
    pub accept: AcceptSession,
    /// Offset in the client-to-server stream just past the request: the input that completes
    /// it must carry [`request_time`](Self::request_time) as `now` on the side that makes the
    /// SID.
    pub end: usize,
}

impl RecordedRequest {
    /// Whether the server receives in this session (it then made the SID).
    pub fn server_receives(&self) -> bool {
        self.request.conf_receiver
    }

    /// The SID of the session: from Accept-Session when the server made it, else from the
    /// request.
    pub fn sid(&self) -> SessionId {
        if self.server_receives() {
            self.accept.sid
        } else {
            self.request.sid
        }
    }

    /// The time in the SID (RFC 4656 3.5): the `now` at which its maker handled the request.
    pub fn request_time(&self) -> OwampTime {
        sid_time(&self.sid())
    }

    /// The command that makes a client send this request (RFC 4656 3.5): the client's own end
    /// is the sender or the receiver the request names, the server's end the other one.
    pub fn command(&self) -> SessionRequest {
        let r = &self.request;
        let (role, local, peer) = if r.conf_receiver {
            (
                Role::Sender,
                SocketAddr::new(r.sender_address, r.sender_port),
                r.receiver_address,
            )
        } else {
            (
                Role::Receiver,
                SocketAddr::new(r.receiver_address, r.receiver_port),
                r.sender_address,
            )
        };
        // A Request-TW-Session carries no schedule (RFC 5357 3.5): any one does.
        let slots = if r.slots.is_empty() {
            vec![Slot {
                kind: SlotKind::Fixed,
                mean: crate::time::Interval::from_raw(1 << 32),
            }]
        } else {
            r.slots.clone()
        };
        SessionRequest {
            role,
            local,
            peer,
            slots,
            packets: r.num_packets.max(1),
            padding: r.padding_length,
            start_time: r.start_time,
            timeout: r.timeout,
            type_p: r.type_p,
        }
    }
}

/// The timestamp in a SID (octets 4..12).
pub fn sid_time(sid: &SessionId) -> OwampTime {
    let mut t = [0u8; 8];
    t.copy_from_slice(&sid.0[4..12]);
    OwampTime::from_raw(u64::from_be_bytes(t))
}

/// A Fetch-Session of a recorded exchange and the server's answer (RFC 4656 3.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedFetch {
    /// The request.
    pub fetch: FetchSession,
    /// The Fetch-Ack.
    pub ack: FetchAck,
    /// When accepted: the stored Request-Session, then the skip ranges and records.
    pub data: Option<(RequestSession, FetchData)>,
}

impl RecordedFetch {
    /// What the server's application answered to reproduce this response: the stored session
    /// when accepted; a missing session for Accept 1 and an unreadable one otherwise (the two
    /// refusals the application can cause).
    pub fn reply(&self) -> FetchReply {
        match (&self.data, self.ack.accept) {
            (Some((request, data)), _) => FetchReply::Found(Box::new(StoredSession {
                request: request.clone(),
                finished: self.ack.finished,
                next_seqno: self.ack.next_seqno,
                skips: data.skip_ranges.clone(),
                records: data.records.clone(),
            })),
            (None, AcceptCode::Failure) => FetchReply::NotFound,
            (None, _) => FetchReply::Failed,
        }
    }
}

/// A client message of a recorded exchange, in the order the client sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedCommand {
    /// A Request-Session: its index in [`Recorded::requests`].
    RequestSession(usize),
    /// Start-Sessions.
    StartSessions,
    /// The client's Stop-Sessions.
    StopSessions(StopSessions),
    /// A Fetch-Session: its index in [`Recorded::fetches`].
    FetchSession(usize),
}

/// What a recorded control exchange shows, read from its plaintext streams (the `.trace` of
/// an open-mode exchange, or the decrypted `.plain.trace`): everything needed to replay it.
///
/// The server answers the client's requests in order; during a test (after an accepting
/// Start-Ack) it sends only its own Stop-Sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Server-Greeting.
    pub greeting: ServerGreeting,
    /// Set-Up-Response.
    pub setup: SetUpResponse,
    /// Server-Start.
    pub server_start: ServerStart,
    /// The Request-Sessions and their answers, in order.
    pub requests: Vec<RecordedRequest>,
    /// The Fetch-Sessions and their answers, in order.
    pub fetches: Vec<RecordedFetch>,
    /// Everything the client sent after Set-Up-Response, in order.
    pub commands: Vec<RecordedCommand>,
    /// The server's Stop-Sessions messages, in order.
    pub server_stops: Vec<StopSessions>,
}

/// `b[at..at + n]`, or a truncation error naming the recorded stream.
fn cut(b: &[u8], at: usize, n: usize) -> Result<&[u8], WireError> {
    b.get(at..at.saturating_add(n)).ok_or(WireError::Truncated {
        message: "recorded stream",
        needed: at.saturating_add(n),
        got: b.len(),
    })
}

/// The length of the message at the start of `b` as told by `f`, or a truncation error.
fn whole(
    b: &[u8],
    at: usize,
    f: fn(&[u8]) -> Result<framing::Frame, WireError>,
) -> Result<usize, WireError> {
    let rest = b.get(at..).unwrap_or_default();
    match f(rest)? {
        framing::Frame::Complete { len } => Ok(len),
        framing::Frame::Incomplete { need } => Err(WireError::Truncated {
            message: "recorded stream",
            needed: at.saturating_add(need),
            got: b.len(),
        }),
    }
}

impl Recorded {
    /// Reads the plaintext client-to-server (`cs`) and server-to-client (`sc`) streams.
    ///
    /// After a Server-Start that refuses the set-up nothing more is read.
    pub fn from_plaintext(cs: &[u8], sc: &[u8]) -> Result<Self, WireError> {
        let greeting = ServerGreeting::parse(cut(sc, 0, ServerGreeting::LEN)?)?;
        let setup = SetUpResponse::parse(cut(cs, 0, SetUpResponse::LEN)?)?;
        let server_start = ServerStart::parse(cut(sc, ServerGreeting::LEN, ServerStart::LEN)?)?;
        let mut rec = Self {
            greeting,
            setup,
            server_start,
            requests: Vec::new(),
            fetches: Vec::new(),
            commands: Vec::new(),
            server_stops: Vec::new(),
        };
        if !rec.server_start.accept.is_ok() {
            return Ok(rec);
        }
        let mut at = SetUpResponse::LEN;
        let mut sc_at = ServerGreeting::LEN + ServerStart::LEN;
        while at < cs.len() {
            let len = whole(cs, at, framing::client_request)?;
            let msg = cut(cs, at, len)?;
            at += len;
            let cmd = match msg.first().copied() {
                Some(RequestSession::COMMAND) => {
                    let request = RequestSession::parse(msg)?;
                    let accept = AcceptSession::parse(cut(sc, sc_at, AcceptSession::LEN)?)?;
                    sc_at += AcceptSession::LEN;
                    rec.requests.push(RecordedRequest {
                        request,
                        accept,
                        end: at,
                    });
                    RecordedCommand::RequestSession(rec.requests.len() - 1)
                }
                Some(StartSessions::COMMAND) => {
                    StartSessions::parse(msg)?;
                    let ack = StartAck::parse(cut(sc, sc_at, StartAck::LEN)?)?;
                    sc_at += StartAck::LEN;
                    // RFC 4656 3.8: during the test the server sends only its Stop-Sessions.
                    if ack.accept.is_ok() && sc_at < sc.len() {
                        let len = whole(sc, sc_at, framing::stop_sessions)?;
                        rec.server_stops
                            .push(StopSessions::parse(cut(sc, sc_at, len)?)?);
                        sc_at += len;
                    }
                    RecordedCommand::StartSessions
                }
                Some(StopSessions::COMMAND) => {
                    RecordedCommand::StopSessions(StopSessions::parse(msg)?)
                }
                _ => {
                    let fetch = FetchSession::parse(msg)?;
                    let len = whole(sc, sc_at, framing::fetch_response)?;
                    let resp = cut(sc, sc_at, len)?;
                    sc_at += len;
                    let ack = FetchAck::parse(cut(resp, 0, FetchAck::LEN)?)?;
                    let data = match resp.get(FetchAck::LEN..) {
                        Some(rest) if ack.accept.is_ok() => {
                            let rlen = whole(rest, 0, framing::request_session)?;
                            let stored = RequestSession::parse(cut(rest, 0, rlen)?)?;
                            let data = FetchData::parse(
                                rest.get(rlen..).unwrap_or_default(),
                                ack.num_skip_ranges,
                                ack.num_records,
                            )?;
                            Some((stored, data))
                        }
                        _ => None,
                    };
                    rec.fetches.push(RecordedFetch { fetch, ack, data });
                    RecordedCommand::FetchSession(rec.fetches.len() - 1)
                }
            };
            rec.commands.push(cmd);
        }
        Ok(rec)
    }

    /// Reads a recorded TWAMP exchange (RFC 5357) from its plaintext streams: the set-up as
    /// OWAMP's, then Request-TW-Session (kept as [`RequestTwSession::to_request`]) with its
    /// Accept-Session, Start-Sessions with its Start-Ack, and the client's Stop-Sessions
    /// (kept as a [`StopSessions`] without descriptions).
    pub fn from_twamp_plaintext(cs: &[u8], sc: &[u8]) -> Result<Self, WireError> {
        let mut rec = Self::from_plaintext(
            cut(cs, 0, SetUpResponse::LEN)?,
            cut(sc, 0, ServerGreeting::LEN + ServerStart::LEN)?,
        )?;
        if !rec.server_start.accept.is_ok() {
            return Ok(rec);
        }
        let mut at = SetUpResponse::LEN;
        let mut sc_at = ServerGreeting::LEN + ServerStart::LEN;
        while at < cs.len() {
            let command = cs.get(at).copied().unwrap_or(0);
            let cmd = match command {
                RequestTwSession::COMMAND => {
                    let request = RequestTwSession::parse(cut(cs, at, RequestTwSession::LEN)?)?;
                    at += RequestTwSession::LEN;
                    let accept = AcceptSession::parse(cut(sc, sc_at, AcceptSession::LEN)?)?;
                    sc_at += AcceptSession::LEN;
                    rec.requests.push(RecordedRequest {
                        request: request.to_request(),
                        accept,
                        end: at,
                    });
                    RecordedCommand::RequestSession(rec.requests.len() - 1)
                }
                StartSessions::COMMAND => {
                    StartSessions::parse(cut(cs, at, StartSessions::LEN)?)?;
                    at += StartSessions::LEN;
                    StartAck::parse(cut(sc, sc_at, StartAck::LEN)?)?;
                    sc_at += StartAck::LEN;
                    RecordedCommand::StartSessions
                }
                TwampStopSessions::COMMAND => {
                    let stop = TwampStopSessions::parse(cut(cs, at, TwampStopSessions::LEN)?)?;
                    at += TwampStopSessions::LEN;
                    RecordedCommand::StopSessions(StopSessions {
                        accept: stop.accept,
                        sessions: Vec::new(),
                        hmac: stop.hmac,
                    })
                }
                other => return Err(WireError::invalid("TWAMP request", "command", at, other)),
            };
            rec.commands.push(cmd);
        }
        Ok(rec)
    }

    /// The server's RNG for a replay: Challenge, Salt, Server-IV (when the set-up was
    /// accepted in authenticated or encrypted mode), then per request the SID's random octets
    /// (when the server receives) and the port draw (with a test port range).
    pub fn server_rng(&self, ports: Option<PortRange>) -> InsecureScriptedRng {
        let mut rng = InsecureScriptedRng::new([self.greeting.challenge, self.greeting.salt]);
        if self.setup.mode.is_secure() && self.server_start.accept.is_ok() {
            rng.push(&self.server_start.server_iv);
        }
        for r in &self.requests {
            if r.server_receives() {
                rng.push(&r.accept.sid.0[12..]);
            }
            if let Some(range) = ports {
                if let Some(d) = port_draw(range, r.accept.port) {
                    rng.push(&d);
                }
            }
        }
        rng
    }

    /// The session keys the client chose, recovered from the Token with its passphrase
    /// (`None` in open mode or if the Count is unusable).
    pub fn client_keys(&self, passphrase: &[u8]) -> Option<SessionKeys> {
        if !self.setup.mode.is_secure() {
            return None;
        }
        let key = derive_key(passphrase, &self.greeting.salt, self.greeting.count).ok()?;
        Some(decrypt_token(&key, &self.setup.token).1)
    }

    /// The client's RNG for a replay: in authenticated and encrypted modes the AES and HMAC
    /// session keys and the Client-IV, then per request in which the client receives the SID's
    /// random octets.
    pub fn client_rng(&self, keys: Option<&SessionKeys>) -> InsecureScriptedRng {
        let mut rng = InsecureScriptedRng::default();
        if let Some(k) = keys {
            rng.push(&k.aes);
            rng.push(&k.hmac);
            rng.push(&self.setup.client_iv);
        }
        for r in &self.requests {
            if !r.server_receives() {
                rng.push(&r.request.sid.0[12..]);
            }
        }
        rng
    }

    /// What a side's Stop-Sessions reported for `sid` (its senders' Next-Seqno and skip
    /// ranges), or a complete session of `packets` when the recording has no such report.
    fn report(stops: &[&StopSessions], sid: SessionId, packets: u32) -> SessionReport {
        stops
            .iter()
            .flat_map(|s| &s.sessions)
            .find(|d| d.sid == sid)
            .map_or(SessionReport::completed(sid, packets), |d| SessionReport {
                sid,
                next_seqno: d.next_seqno,
                skips: d.skip_ranges.clone(),
                failed: false,
            })
    }

    /// The time to start a replay at: the server's Start-Time (the reference sends the time
    /// its process started, before any connection).
    fn base_time(&self) -> OwampTime {
        self.server_start.start_time
    }

    /// Replays the client's octets `segments` (as recorded, encrypted if the mode is) through a
    /// [`Server`] built with `cfg`, `policy`, [`server_rng`](Self::server_rng) and the
    /// connection's addresses, and returns what the server sent.
    ///
    /// `cfg.start_time` and `cfg.kdf_count` should be the recorded Start-Time and Count. Each
    /// input that completes a Request-Session in which the server receives carries that
    /// request's [`request_time`](RecordedRequest::request_time); the application's part is
    /// played from the recording: endpoints bind the recorded port (or fail with the recorded
    /// Accept code), local sessions end as the server's Stop-Sessions reported, fetches return
    /// the recorded data.
    pub fn replay_server<P: ServerPolicy>(
        &self,
        cfg: ServerConfig,
        policy: P,
        local: SocketAddr,
        peer: SocketAddr,
        segments: &[&[u8]],
    ) -> Replayed {
        let rng = self.server_rng(cfg.test_ports);
        let mut now = self.base_time();
        let mut server = Server::new(now, cfg, policy, rng, local, peer);
        let stops: Vec<&StopSessions> = self.server_stops.iter().collect();
        // Times the SIDs carry, at the stream offset where the server makes them.
        let times: Vec<(usize, OwampTime)> = self
            .requests
            .iter()
            .filter(|r| r.server_receives() && r.accept.accept.is_ok())
            .map(|r| (r.end, r.request_time()))
            .collect();
        let mut out = Replayed::default();
        let mut answered = vec![false; self.requests.len()];
        let mut fetches = self.fetches.iter();
        let mut sessions: Vec<SessionInfo> = Vec::new();
        let mut at = 0;
        for seg in segments {
            // Cut the segment where requests end, so each input can carry its own time.
            let mut pieces = Vec::new();
            let mut from = 0;
            for &(end, t) in &times {
                if end > at && end < at + seg.len() {
                    pieces.push((&seg[from..end - at], Some(t)));
                    from = end - at;
                }
            }
            let last_t = times
                .iter()
                .find(|(e, _)| *e == at + seg.len())
                .map(|&(_, t)| t);
            pieces.push((&seg[from..], last_t));
            at += seg.len();
            for (piece, t) in pieces {
                if let Some(t) = t {
                    now = t;
                }
                let mut inputs = VecDeque::from([Input::Received(piece)]);
                while let Some(input) = inputs.pop_front() {
                    if let Err(e) = server.handle_input(now, input) {
                        out.errors.push(e);
                    }
                    while let Some(o) = server.poll_output() {
                        match o {
                            Output::Transmit(b) => out.sent.extend_from_slice(&b),
                            Output::PrepareTestEndpoint(e) => {
                                // The recorded request this is for: the one with this SID, or
                                // the first one not answered yet.
                                let i = (0..self.requests.len())
                                    .find(|&i| !answered[i] && self.requests[i].sid() == e.sid)
                                    .or_else(|| answered.iter().position(|a| !a));
                                let input = match i.map(|i| (i, &self.requests[i].accept)) {
                                    Some((i, a)) => {
                                        answered[i] = true;
                                        if a.accept.is_ok() {
                                            Input::EndpointReady {
                                                sid: e.sid,
                                                port: a.port,
                                            }
                                        } else {
                                            Input::EndpointFailed {
                                                sid: e.sid,
                                                accept: a.accept,
                                            }
                                        }
                                    }
                                    None => Input::EndpointFailed {
                                        sid: e.sid,
                                        accept: AcceptCode::Failure,
                                    },
                                };
                                inputs.push_back(input);
                            }
                            Output::SessionAccepted(info) => sessions.push(*info),
                            Output::StartSessions | Output::StopLocalSessions => {
                                for s in &sessions {
                                    inputs.push_back(Input::SessionFinished(Self::report(
                                        &stops,
                                        s.sid,
                                        s.request.num_packets,
                                    )));
                                }
                            }
                            Output::TestComplete => sessions.clear(),
                            Output::FetchRequest { .. } => {
                                let reply =
                                    fetches.next().map_or(FetchReply::NotFound, |f| f.reply());
                                inputs.push_back(Input::FetchReply(reply));
                            }
                            Output::Close(r) => out.closed = Some(r),
                            _ => {}
                        }
                    }
                }
            }
        }
        out
    }

    /// Replays the server's octets `segments` (as recorded) through a [`Client`] built with
    /// `cfg` and [`client_rng`](Self::client_rng)`(keys)`, giving it the recorded commands as
    /// soon as it can take them, and returns what the client sent.
    ///
    /// `cfg` should allow exactly the recorded mode, with the recorded identity in
    /// authenticated and encrypted modes. A Request-Session in which the client receives is
    /// issued at its [`request_time`](RecordedRequest::request_time); local sessions end as the
    /// client's Stop-Sessions reported.
    pub fn replay_client(
        &self,
        cfg: ClientConfig,
        keys: Option<&SessionKeys>,
        segments: &[&[u8]],
    ) -> Replayed {
        let base = self.base_time();
        let twamp = cfg.protocol == Protocol::Twamp;
        let mut client = Client::new(base, cfg, self.client_rng(keys));
        let stops: Vec<&StopSessions> = self
            .commands
            .iter()
            .filter_map(|c| match c {
                RecordedCommand::StopSessions(s) => Some(s),
                _ => None,
            })
            .collect();
        let mut commands = self.commands.iter().filter_map(|c| match c {
            RecordedCommand::RequestSession(i) => self.requests.get(*i).map(|r| {
                let t = (!r.server_receives()).then(|| r.request_time());
                (t, ClientCommand::RequestSession(r.command()))
            }),
            RecordedCommand::StartSessions => Some((None, ClientCommand::StartSessions)),
            RecordedCommand::StopSessions(_) => None,
            RecordedCommand::FetchSession(i) => self.fetches.get(*i).map(|f| {
                (
                    None,
                    ClientCommand::Fetch {
                        sid: f.fetch.sid,
                        begin: f.fetch.begin_seq,
                        end: f.fetch.end_seq,
                    },
                )
            }),
        });
        let mut out = Replayed::default();
        let mut sessions: Vec<SessionInfo> = Vec::new();
        let mut pending: VecDeque<Input<'static>> = VecDeque::new();
        let mut feed =
            |client: &mut Client<InsecureScriptedRng>,
             first: (OwampTime, Input<'_>),
             commands: &mut dyn Iterator<Item = (Option<OwampTime>, ClientCommand)>| {
                let mut next = Some(first);
                while let Some((t, input)) = next.take() {
                    if let Err(e) = client.handle_input(t, input) {
                        out.errors.push(e);
                    }
                    while let Some(o) = client.poll_output() {
                        match o {
                            Output::Transmit(b) => out.sent.extend_from_slice(&b),
                            Output::SessionAccepted(info) => sessions.push(*info),
                            Output::StartSessions | Output::StopLocalSessions => {
                                for s in &sessions {
                                    pending.push_back(Input::SessionFinished(Self::report(
                                        &stops,
                                        s.sid,
                                        s.request.num_packets,
                                    )));
                                }
                            }
                            Output::TestComplete => sessions.clear(),
                            Output::Close(r) => out.closed = Some(r),
                            _ => {}
                        }
                    }
                    if let Some(input) = pending.pop_front() {
                        next = Some((base, input));
                    } else if client.is_ready() {
                        next = commands
                            .next()
                            .map(|(t, c)| (t.unwrap_or(base), Input::Command(c)));
                    }
                }
            };
        for seg in segments {
            feed(&mut client, (base, Input::Received(seg)), &mut commands);
        }
        // A TWAMP server sends nothing during the test (RFC 5357 3.8): the client's
        // Stop-Sessions comes when its timer says the sessions are over.
        for _ in 0..8 {
            if !twamp || !client.in_test() {
                break;
            }
            let Some(t) = client.poll_timeout() else {
                break;
            };
            feed(&mut client, (t, Input::Timer), &mut commands);
        }
        out
    }
}

/// What a state machine did in a replay ([`Recorded::replay_server`],
/// [`Recorded::replay_client`]).
#[derive(Debug, Default)]
pub struct Replayed {
    /// Every octet it sent, in order.
    pub sent: Vec<u8>,
    /// Why it closed the connection, if it did.
    pub closed: Option<CloseReason>,
    /// Inputs it refused as misuse (none in a faithful replay).
    pub errors: Vec<ControlError>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_draw_inverts_pick() {
        let r = PortRange {
            low: 8760,
            high: 8960,
        };
        for p in [8760, 8811, 8939, 8960] {
            let d = port_draw(r, p).unwrap();
            assert_eq!(r.pick(u32::from_be_bytes(d)), p);
        }
        assert_eq!(port_draw(r, 9000), None);
    }

    #[test]
    fn scripted_rng_returns_script_then_zeros() {
        let mut rng = InsecureScriptedRng::new([[1u8, 2], [3, 4]]);
        let mut b = [0u8; 3];
        rng.fill_bytes(&mut b);
        assert_eq!(b, [1, 2, 3]);
        let mut c = [9u8; 3];
        rng.fill_bytes(&mut c);
        assert_eq!(c, [4, 0, 0]);
        assert_eq!(rng.underrun(), 2);
    }
}
