//! The OWAMP-Control client (RFC 4656 3), one per control connection it opens.

use core::net::SocketAddr;
use core::time::Duration;

use rand_core::{CryptoRng, RngCore};

use super::codec::{self, BLOCK};
use super::common::{Conn, Flavour, LocalSession};
use super::{make_sid, ControlError};
use crate::crypto::{
    derive_key_with_limit, seal_token, ControlOpener, ControlSealer, CryptoError, Passphrase,
    SessionKeys,
};
use crate::io::{FetchStream, FetchedSession, Finished, Input, Output, SessionInfo, FETCH_BATCH};
use crate::proto::{ClientCommand, CloseReason, Protocol, ProtocolError, Role, SessionRequest};
use crate::time::OwampTime;
use crate::wire::{
    framing, twamp, AcceptSession, DataRecord, FetchAck, FetchData, FetchSession, Mode, Modes,
    RequestSession, RequestTwSession, ServerGreeting, ServerStart, SessionId, SetUpResponse,
    SkipRange, StartAck, StartSessions,
};

/// An identity: a KeyID (at most 80 octets) and its shared passphrase.
///
/// `Debug` shows the KeyID and not the passphrase, which is wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The KeyID sent in Set-Up-Response (the reference calls it the user name).
    pub key_id: Vec<u8>,
    /// The passphrase, raw octets without a trailing newline.
    pub passphrase: Passphrase,
}

impl Identity {
    /// An identity from its KeyID and passphrase.
    pub fn new(key_id: impl Into<Vec<u8>>, passphrase: impl Into<Passphrase>) -> Self {
        Self {
            key_id: key_id.into(),
            passphrase: passphrase.into(),
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("key_id", &String::from_utf8_lossy(&self.key_id))
            .field("passphrase", &"<redacted>")
            .finish()
    }
}

/// Settings of a [`Client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Modes the client is willing to use (authenticated and encrypted need `identity`). A
    /// TWAMP client may add RFC 5618's mixed mode with
    /// [`twamp::with_mixed`] (it needs `identity` too); it
    /// is chosen after encrypted and authenticated, before open.
    pub modes: Modes,
    /// The identity for authenticated and encrypted modes.
    pub identity: Option<Identity>,
    /// How long to wait for the server, and for the application when the connection is idle.
    pub control_timeout: Duration,
    /// How long a sender waits after its last packet and the loss timeout before
    /// Stop-Sessions (the reference's default is 1 s).
    pub end_delay: Duration,
    /// The largest PBKDF2 count accepted from a Server-Greeting (RFC 4656 3.1: the server
    /// chooses it, so it bounds the work a server can make the client do). Default:
    /// [`DEFAULT_MAX_KDF_COUNT`](crate::crypto::DEFAULT_MAX_KDF_COUNT), the largest count
    /// owampd offers. A greeting above it closes the connection with
    /// [`ProtocolError::KdfCount`] before anything is derived or sent.
    pub max_kdf_count: u32,
    /// The most slots, skip ranges or records accepted in a fetched session.
    pub max_fetch_items: u32,
    /// OWAMP or TWAMP. A TWAMP client sends Request-TW-Session for a
    /// [`SessionRequest`] whose role is [`Role::Sender`] (the schedule and packet count stay
    /// local), has no Fetch-Session, and ends the test with the only Stop-Sessions.
    pub protocol: Protocol,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            modes: Modes::ALL,
            identity: None,
            control_timeout: Duration::from_secs(1800),
            end_delay: Duration::from_secs(1),
            max_kdf_count: crate::crypto::DEFAULT_MAX_KDF_COUNT,
            max_fetch_items: 1 << 24,
            protocol: Protocol::Owamp,
        }
    }
}

/// A fetch response being read.
#[derive(Debug, Clone)]
struct Fetching {
    sid: SessionId,
    ack: FetchAck,
    finished: Finished,
    request: Option<RequestSession>,
    /// Plaintext of the part being read (streamed records: the octets of a record cut by
    /// the end of what has arrived, then the padding).
    buf: Vec<u8>,
    skips: Vec<SkipRange>,
    /// Streamed records: octets of the records section not yet read, records parsed so far,
    /// and those not yet handed out.
    body_left: usize,
    parsed: u32,
    batch: Vec<DataRecord>,
}

/// What the client reads next.
#[derive(Debug)]
enum State {
    Greeting,
    ServerStart,
    /// The last block of Server-Start, after its clear part.
    ServerStartTime(Vec<u8>),
    /// Nothing expected (or, during a test, the first block of the server's Stop-Sessions).
    Idle,
    /// Accept-Session for this request, read into the buffer.
    AcceptSession(Vec<u8>, Box<RequestSession>, SocketAddr),
    StartAck(Vec<u8>),
    Stop,
    FetchAck(Vec<u8>, SessionId),
    /// The stored Request-Session (first part, then the slots).
    FetchRequest(Box<Fetching>),
    FetchSkips(Box<Fetching>),
    FetchRecords(Box<Fetching>),
}

/// The client side of one control connection.
///
/// Built once the TCP connection is established; it waits for the Server-Greeting. See
/// [`crate::io`] for how to drive it and [`crate::control`] for what it does.
#[derive(Debug)]
pub struct Client<R> {
    conn: Conn,
    cfg: ClientConfig,
    rng: R,
    client_iv: [u8; 16],
    state: State,
    /// Fetch-Session answers are handed out record by record.
    stream_fetch: bool,
}

impl<R: RngCore + CryptoRng> Client<R> {
    /// A client on a connection just established at `now`.
    pub fn new(now: OwampTime, cfg: ClientConfig, rng: R) -> Self {
        let flavour = match cfg.protocol {
            Protocol::Owamp => Flavour::Owamp,
            Protocol::Twamp => Flavour::TwampClient,
        };
        let mut conn = Conn::new(cfg.control_timeout, cfg.end_delay, flavour);
        conn.wait_peer(now);
        let mut c = Self {
            conn,
            cfg,
            rng,
            client_iv: [0; 16],
            state: State::Greeting,
            stream_fetch: false,
        };
        c.finish();
        c
    }

    /// Hands out the records of Fetch-Session answers as they arrive, so that a large
    /// session is never whole in memory: [`Output::FetchBegin`], then
    /// [`Output::FetchedRecords`] in batches of [`FETCH_BATCH`], then [`Output::Fetched`] with
    /// no records once the padding and the HMAC after the last record are checked. Until
    /// then the records are provisional (see [`Output::FetchedRecords`]). What the client
    /// sends does not change.
    pub fn with_streamed_fetch(mut self) -> Self {
        self.stream_fetch = true;
        self
    }

    /// Turns streamed Fetch-Session answers on ([`Self::with_streamed_fetch`]).
    pub(crate) fn stream_fetches(&mut self) {
        self.stream_fetch = true;
    }

    /// The mode of the connection (open until set-up completes); in RFC 5618 mixed mode,
    /// [`Mode::Authenticated`], whose control handling mixed mode shares.
    pub fn mode(&self) -> Mode {
        self.conn.mode
    }

    /// The protocol spoken: OWAMP or TWAMP.
    pub fn protocol(&self) -> Protocol {
        self.cfg.protocol
    }

    /// Whether the connection runs RFC 5618 mixed mode (TWAMP only).
    pub fn is_mixed(&self) -> bool {
        self.conn.mixed
    }

    /// The mode of the test packets: the connection's, or open in mixed mode.
    pub fn packet_mode(&self) -> Mode {
        self.conn.packet_mode()
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.conn.closed
    }

    /// When to feed [`Input::Timer`] at the latest (the connection's deadline); `None` once
    /// closed.
    pub fn poll_timeout(&self) -> Option<OwampTime> {
        self.conn.deadline
    }

    /// Whether the client can take a command now (set up, nothing outstanding, no test).
    pub fn is_ready(&self) -> bool {
        !self.conn.closed && matches!(self.state, State::Idle) && self.conn.test.is_none()
    }

    /// A random draw from the client's RNG (the connection's test port choice).
    pub(crate) fn draw_u32(&mut self) -> u32 {
        self.rng.next_u32()
    }

    /// Whether a test is running: from Start-Ack until both Stop-Sessions are exchanged.
    pub fn in_test(&self) -> bool {
        !self.conn.closed && self.conn.test.is_some()
    }

    /// The next action for the caller, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.conn.out.pop_front()
    }

    /// Feeds one input at time `now`. Errors are misuse by the application (a command in the
    /// wrong state, a server-only input); problems caused by the peer close the connection
    /// ([`Output::Close`]) instead.
    pub fn handle_input(&mut self, now: OwampTime, input: Input<'_>) -> Result<(), ControlError> {
        if self.conn.closed {
            return Ok(());
        }
        let r = match input {
            Input::Received(bytes) => {
                self.conn.stream.push(bytes);
                Ok(())
            }
            Input::Timer => {
                self.on_timer(now);
                Ok(())
            }
            Input::PeerClosed => {
                self.conn.abort_receivers();
                self.conn.close(CloseReason::PeerClosed);
                Ok(())
            }
            Input::SessionFinished(report) => {
                if self.conn.session_finished(now, report) {
                    Ok(())
                } else {
                    Err(ControlError::UnknownSession)
                }
            }
            Input::Command(cmd) => self.on_command(now, cmd),
            Input::StopSessions => self.conn.stop_early(now),
            Input::SessionFailed { sid, accept } => self.conn.session_failed(now, sid, accept),
            Input::EndpointReady { .. }
            | Input::PortInUse { .. }
            | Input::EndpointFailed { .. }
            | Input::FetchReply(_)
            | Input::FetchRecords(_) => Err(ControlError::WrongRole("a server input")),
        };
        self.pump(now);
        self.finish();
        r
    }

    /// What the client is doing, for errors ("... is not valid while <this>").
    fn state_name(&self) -> &'static str {
        match &self.state {
            State::Idle if self.conn.test.is_some() => "a test is running",
            State::Idle => "idle",
            State::Greeting => "waiting for the Server-Greeting",
            State::ServerStart | State::ServerStartTime(_) => "waiting for Server-Start",
            State::AcceptSession(..) => "waiting for Accept-Session",
            State::StartAck(_) => "waiting for Start-Ack",
            State::Stop => "reading the server's Stop-Sessions",
            State::FetchAck(..) => "waiting for Fetch-Ack",
            State::FetchRequest(_) | State::FetchSkips(_) | State::FetchRecords(_) => {
                "reading a Fetch-Session answer"
            }
        }
    }

    fn finish(&mut self) {
        self.conn.ended.clear();
        if !self.conn.closed {
            self.conn.flush_tx();
        }
    }

    fn on_timer(&mut self, now: OwampTime) {
        let Some(d) = self.conn.deadline else { return };
        if now < d {
            return;
        }
        if self.conn.test.is_some() {
            self.conn.test_timer(now);
            if self.conn.test.is_none() && !self.conn.closed {
                self.state = State::Idle;
            }
        } else {
            self.conn.close(CloseReason::Timeout);
        }
    }

    fn on_command(&mut self, now: OwampTime, cmd: ClientCommand) -> Result<(), ControlError> {
        if let ClientCommand::Close = cmd {
            self.conn.abort_receivers();
            self.conn.close(CloseReason::Local);
            return Ok(());
        }
        if self.cfg.protocol == Protocol::Twamp && matches!(cmd, ClientCommand::Fetch { .. }) {
            // RFC 5357 3.4: TWAMP-Control has no Fetch-Session.
            return Err(ControlError::InvalidRequest("TWAMP has no Fetch-Session"));
        }
        if !self.is_ready() {
            return Err(ControlError::WrongState {
                input: cmd.name(),
                state: self.state_name(),
            });
        }
        let sent = match cmd {
            ClientCommand::RequestSession(req) => {
                let (tr, local) = self.build_request(now, &req)?;
                let s = &mut self.conn.stream;
                let r = if self.cfg.protocol == Protocol::Twamp {
                    // RFC 5357 3.5: one message, one HMAC, no slots.
                    s.send_sealed(RequestTwSession::from_request(&tr).to_bytes())
                } else {
                    let (fixed, slots) =
                        codec::split_at_first_hmac(tr.to_bytes(), codec::REQUEST_BODY_LEN);
                    // RFC 4656 3.5: first part and its HMAC, then the slots and theirs.
                    s.send_sealed(fixed).and_then(|()| s.send_sealed(slots))
                };
                self.state = State::AcceptSession(Vec::new(), Box::new(tr), local);
                r
            }
            ClientCommand::StartSessions => {
                self.state = State::StartAck(Vec::new());
                let msg = StartSessions { hmac: [0; 16] };
                self.conn.stream.send_sealed(msg.to_bytes())
            }
            ClientCommand::Fetch { sid, begin, end } => {
                self.state = State::FetchAck(Vec::new(), sid);
                let msg = FetchSession {
                    begin_seq: begin,
                    end_seq: end,
                    sid,
                    hmac: [0; 16],
                };
                self.conn.stream.send_sealed(msg.to_bytes())
            }
            ClientCommand::Close => Ok(()),
        };
        if sent.is_err() {
            self.conn.close(CloseReason::Local);
        } else {
            self.conn.wait_peer(now);
        }
        Ok(())
    }

    /// The Request-Session for `req` (RFC 4656 3.5): the client fills in its own port, and the
    /// SID when it receives.
    fn build_request(
        &mut self,
        now: OwampTime,
        req: &SessionRequest,
    ) -> Result<(RequestSession, SocketAddr), ControlError> {
        if req.slots.is_empty() || req.packets == 0 {
            return Err(ControlError::InvalidRequest("no slots or no packets"));
        }
        if self.cfg.protocol == Protocol::Twamp && req.role != Role::Sender {
            return Err(ControlError::InvalidRequest(
                "a TWAMP control-client is the session-sender",
            ));
        }
        if req.slots.len() > RequestSession::MAX_SLOTS as usize {
            return Err(ControlError::InvalidRequest("too many slots"));
        }
        let local_ip = req.local.ip();
        if local_ip.is_ipv4() != req.peer.is_ipv4() {
            return Err(ControlError::InvalidRequest("address families differ"));
        }
        let mut tr = RequestSession {
            conf_sender: false,
            conf_receiver: false,
            num_packets: req.packets,
            sender_port: 0,
            receiver_port: 0,
            sender_address: local_ip,
            receiver_address: local_ip,
            sid: SessionId::default(),
            padding_length: req.padding,
            start_time: req.start_time,
            timeout: req.timeout,
            type_p: req.type_p,
            hmac: [0; 16],
            slots: req.slots.clone(),
            slots_hmac: [0; 16],
        };
        match req.role {
            Role::Sender => {
                tr.conf_receiver = true;
                tr.sender_port = req.local.port();
                tr.receiver_address = req.peer;
            }
            Role::Receiver => {
                tr.conf_sender = true;
                tr.receiver_port = req.local.port();
                tr.sender_address = req.peer;
                let mut r = [0u8; 4];
                self.rng.fill_bytes(&mut r);
                tr.sid = make_sid(local_ip, now, r);
            }
        }
        Ok((tr, req.local))
    }

    fn pump(&mut self, now: OwampTime) {
        while !self.conn.closed {
            match self.step(now) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => self.conn.fail(e),
            }
        }
        self.conn.check_unread();
    }

    fn keep(&mut self, st: State) -> Result<bool, ProtocolError> {
        self.state = st;
        Ok(false)
    }

    fn step(&mut self, now: OwampTime) -> Result<bool, ProtocolError> {
        let s = &mut self.conn.stream;
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Greeting => match s.take_clear(ServerGreeting::LEN) {
                None => self.keep(State::Greeting),
                Some(b) => {
                    self.on_greeting(now, &b)?;
                    Ok(true)
                }
            },
            State::ServerStart => match s.take_clear(ServerStart::CLEAR_LEN) {
                None => self.keep(State::ServerStart),
                Some(b) => {
                    let accept = codec::accept_at(&b, 15)?;
                    if !accept.is_ok() {
                        // The rest is not encrypted and carries nothing: give up.
                        self.conn.close(CloseReason::SetupRejected(accept));
                        return Ok(false);
                    }
                    let mut server_iv = [0u8; 16];
                    server_iv.copy_from_slice(b.get(16..32).unwrap_or(&[0; 16]));
                    if let Some(keys) = &self.conn.keys {
                        s.set_opener(ControlOpener::new(keys, &server_iv));
                        s.set_sealer(ControlSealer::new(keys, &self.client_iv));
                    }
                    self.state = State::ServerStartTime(b);
                    Ok(true)
                }
            },
            State::ServerStartTime(mut clear) => match s.take_body(BLOCK) {
                None => self.keep(State::ServerStartTime(clear)),
                Some(b) => {
                    // The last block is the first of the server's chain and HMAC.
                    let b = b.map_err(|_| ProtocolError::Malformed("Server-Start"))?;
                    clear.extend_from_slice(&b);
                    let start = ServerStart::parse(&clear)?;
                    self.conn.out.push_back(Output::Connected {
                        mode: self.conn.mode,
                        server_start: start.start_time,
                    });
                    self.state = State::Idle;
                    self.conn.wait_peer(now);
                    Ok(true)
                }
            },
            State::Idle => {
                if s.available() == 0 {
                    return self.keep(State::Idle);
                }
                if self.conn.test.is_none() || self.cfg.protocol == Protocol::Twamp {
                    // The server speaks only when asked, except Stop-Sessions in an OWAMP
                    // test (a TWAMP server sends none, RFC 5357 3.8).
                    return Err(ProtocolError::Unexpected(0));
                }
                let Some(b) = s.take_body(BLOCK) else {
                    return self.keep(State::Idle);
                };
                let b = b.map_err(|_| ProtocolError::Malformed("Stop-Sessions"))?;
                let kind = b.first().copied().unwrap_or(0);
                if kind != codec::MSG_STOP_SESSIONS {
                    return Err(ProtocolError::Unexpected(kind));
                }
                self.conn.begin_stop(b)?;
                self.state = State::Stop;
                Ok(true)
            }
            State::Stop => {
                if self.conn.pump_stop(now)? {
                    Ok(true)
                } else {
                    self.keep(State::Stop)
                }
            }
            State::AcceptSession(mut buf, tr, local) => {
                match read_message(s, &mut buf, AcceptSession::LEN, "Accept-Session")? {
                    false => self.keep(State::AcceptSession(buf, tr, local)),
                    true => {
                        let a = AcceptSession::parse(&buf)?;
                        self.on_accept(now, a, *tr, local);
                        Ok(true)
                    }
                }
            }
            State::StartAck(mut buf) => {
                match read_message(s, &mut buf, StartAck::LEN, "Start-Ack")? {
                    false => self.keep(State::StartAck(buf)),
                    true => {
                        let accept = StartAck::parse(&buf)?.accept;
                        if !accept.is_ok() {
                            // The reference gives up on the connection.
                            self.conn.close(CloseReason::StartRejected(accept));
                            return Ok(false);
                        }
                        self.conn.start_test(now);
                        Ok(true)
                    }
                }
            }
            State::FetchAck(mut buf, sid) => {
                match read_message(s, &mut buf, FetchAck::LEN, "Fetch-Ack")? {
                    false => self.keep(State::FetchAck(buf, sid)),
                    true => {
                        let ack = FetchAck::parse(&buf)?;
                        if !ack.accept.is_ok() {
                            self.conn
                                .out
                                .push_back(Output::FetchDenied { accept: ack.accept });
                            self.conn.wait_peer(now);
                            return Ok(true);
                        }
                        let max = self.cfg.max_fetch_items;
                        if ack.num_skip_ranges > max || ack.num_records > max {
                            return Err(ProtocolError::Limit("fetched session too large"));
                        }
                        self.state = State::FetchRequest(Box::new(Fetching {
                            sid,
                            ack,
                            finished: ack.finished,
                            request: None,
                            buf: Vec::new(),
                            skips: Vec::new(),
                            body_left: 0,
                            parsed: 0,
                            batch: Vec::new(),
                        }));
                        Ok(true)
                    }
                }
            }
            State::FetchRequest(mut f) => {
                if f.buf.len() < RequestSession::FIXED_LEN {
                    // The first part and its HMAC; then the slot count gives the length.
                    let what = "fetched Request-Session";
                    if !read_part(s, &mut f.buf, codec::REQUEST_BODY_LEN, what)? {
                        return self.keep(State::FetchRequest(f));
                    }
                    let len = framing::request_session(&f.buf)?.need();
                    let n = (len - RequestSession::FIXED_LEN) / BLOCK - 1;
                    if n > self.cfg.max_fetch_items as usize {
                        return Err(ProtocolError::Limit("too many slots"));
                    }
                    self.state = State::FetchRequest(f);
                    return Ok(true);
                }
                let len = framing::request_session(&f.buf)?.need();
                if !read_part(s, &mut f.buf, len - BLOCK, "fetched slots")? {
                    return self.keep(State::FetchRequest(f));
                }
                f.request = Some(RequestSession::parse(&f.buf)?);
                f.buf.clear();
                self.state = State::FetchSkips(f);
                Ok(true)
            }
            State::FetchSkips(mut f) => {
                let n = f.ack.num_skip_ranges;
                let len = SkipRange::block_len(n)? + BLOCK;
                if !read_part(s, &mut f.buf, len - BLOCK, "fetched skip ranges")? {
                    return self.keep(State::FetchSkips(f));
                }
                f.skips = SkipRange::parse_block(&f.buf[..len - BLOCK], n, 0)?;
                f.buf.clear();
                if self.stream_fetch {
                    self.begin_streamed_records(&mut f)?;
                }
                self.state = State::FetchRecords(f);
                Ok(true)
            }
            State::FetchRecords(f) if self.stream_fetch => self.streamed_records(now, f),
            State::FetchRecords(mut f) => {
                let n = f.ack.num_records;
                let len = FetchData::records_len(n)? + BLOCK;
                if !read_part(s, &mut f.buf, len - BLOCK, "fetched records")? {
                    return self.keep(State::FetchRecords(f));
                }
                let f = *f;
                let records = FetchData::parse_records(&f.buf[..len - BLOCK], n, 0)?;
                let request = f.request.ok_or(ProtocolError::Malformed("Fetch-Session"))?;
                self.conn
                    .out
                    .push_back(Output::Fetched(Box::new(FetchedSession {
                        sid: f.sid,
                        finished: f.finished,
                        next_seqno: f.ack.next_seqno,
                        skips: f.skips,
                        request,
                        records,
                    })));
                self.conn.wait_peer(now);
                Ok(true)
            }
        }
    }

    /// A streamed Fetch-Session answer reaches its records: what came before them goes out
    /// at once ([`Output::FetchBegin`]).
    fn begin_streamed_records(&mut self, f: &mut Fetching) -> Result<(), ProtocolError> {
        let request = f
            .request
            .clone()
            .ok_or(ProtocolError::Malformed("Fetch-Session"))?;
        f.body_left = FetchData::records_len(f.ack.num_records)?;
        self.conn.out.push_back(Output::FetchBegin {
            sid: f.sid,
            head: Box::new(FetchStream {
                request,
                finished: f.finished,
                next_seqno: f.ack.next_seqno,
                skips: f.skips.clone(),
                num_records: f.ack.num_records,
            }),
        });
        Ok(())
    }

    /// The records section of a streamed Fetch-Session answer (RFC 4656 3.9: the records,
    /// zero padding to a block boundary, then an HMAC). Each whole block is decrypted and
    /// added to the HMAC as it arrives, each whole record parsed and handed out in batches;
    /// the padding and the HMAC are checked at the end, before [`Output::Fetched`].
    fn streamed_records(
        &mut self,
        now: OwampTime,
        mut f: Box<Fetching>,
    ) -> Result<bool, ProtocolError> {
        let what = "fetched records";
        let n = f.ack.num_records;
        while f.body_left > 0 {
            let take = (self.conn.stream.available() / BLOCK * BLOCK).min(f.body_left);
            if take == 0 {
                return self.keep(State::FetchRecords(f));
            }
            let Some(b) = self.conn.stream.take_body(take) else {
                return self.keep(State::FetchRecords(f));
            };
            f.buf
                .extend_from_slice(&b.map_err(|_| ProtocolError::Malformed(what))?);
            f.body_left -= take;
            let mut at = 0;
            while f.parsed < n {
                let Some(bytes) = f.buf.get(at..at + DataRecord::LEN) else {
                    break;
                };
                f.batch.push(DataRecord::parse(bytes)?);
                f.parsed += 1;
                at += DataRecord::LEN;
                if f.batch.len() >= FETCH_BATCH {
                    self.conn.out.push_back(Output::FetchedRecords {
                        sid: f.sid,
                        records: std::mem::take(&mut f.batch),
                    });
                }
            }
            f.buf.drain(..at);
        }
        let Some(h) = self.conn.stream.take_hmac() else {
            return self.keep(State::FetchRecords(f));
        };
        h.map_err(|_| ProtocolError::BadHmac(what))?;
        // What is left after the last record is the padding (checked after the HMAC, as
        // for an answer read whole).
        let pad_at = (n as usize).saturating_mul(DataRecord::LEN);
        crate::wire::error::check_mbz("Fetch-Session data", &f.buf, pad_at)?;
        let f = *f;
        if !f.batch.is_empty() {
            self.conn.out.push_back(Output::FetchedRecords {
                sid: f.sid,
                records: f.batch,
            });
        }
        let request = f.request.ok_or(ProtocolError::Malformed("Fetch-Session"))?;
        self.conn
            .out
            .push_back(Output::Fetched(Box::new(FetchedSession {
                sid: f.sid,
                finished: f.finished,
                next_seqno: f.ack.next_seqno,
                skips: f.skips,
                request,
                records: Vec::new(),
            })));
        self.conn.wait_peer(now);
        Ok(true)
    }

    /// Server-Greeting (RFC 4656 3.1): choose the mode and answer with Set-Up-Response.
    fn on_greeting(&mut self, now: OwampTime, b: &[u8]) -> Result<(), ProtocolError> {
        let g = ServerGreeting::parse(b)?;
        let mut avail = g.modes.intersection(self.cfg.modes);
        if self.cfg.identity.is_none() {
            avail = avail.without(Mode::Authenticated).without(Mode::Encrypted);
            avail = twamp::without_mixed(avail);
        }
        if self.cfg.protocol != Protocol::Twamp {
            avail = twamp::without_mixed(avail);
        }
        // Strongest first: encrypted, authenticated, then RFC 5618's mixed mode (encrypted
        // control, open test packets), then open.
        let (mode, mixed) = match avail.strongest() {
            Some(m) if m.is_secure() => (m, false),
            _ if twamp::offers_mixed(avail) => (Mode::Authenticated, true),
            Some(m) => (m, false),
            None => {
                // "No Common Modes": give up before Set-Up-Response, as the reference does.
                self.conn.close(CloseReason::NoCommonMode);
                return Ok(());
            }
        };
        let mut setup = SetUpResponse::open();
        setup.mode = mode;
        if let (true, Some(id)) = (mode.is_secure(), &self.cfg.identity) {
            // RFC 4656 3.1: the Count is the server's choice; refuse one above our bound
            // rather than spend hours deriving (and refuse 0, which PBKDF2 does not define).
            let max = self.cfg.max_kdf_count;
            let key = derive_key_with_limit(id.passphrase.as_bytes(), &g.salt, g.count, max)
                .map_err(|e| match e {
                    CryptoError::ZeroIterationCount => {
                        ProtocolError::Malformed("Server-Greeting asks for a PBKDF2 count of 0")
                    }
                    _ => ProtocolError::KdfCount {
                        count: g.count,
                        max,
                    },
                })?;
            // Order of the draws: AES key, HMAC key, Client-IV (as the reference).
            let mut keys = SessionKeys {
                aes: [0; 16],
                hmac: [0; 32],
            };
            self.rng.fill_bytes(&mut keys.aes);
            self.rng.fill_bytes(&mut keys.hmac);
            self.rng.fill_bytes(&mut self.client_iv);
            let n = id.key_id.len().min(SetUpResponse::KEY_ID_LEN);
            setup.key_id[..n].copy_from_slice(&id.key_id[..n]);
            setup.token = seal_token(&key, &g.challenge, &keys);
            setup.client_iv = self.client_iv;
            self.conn.keys = Some(keys);
        }
        self.conn.mode = mode;
        self.conn.mixed = mixed;
        let mut b = Vec::with_capacity(SetUpResponse::LEN);
        twamp::write_setup_response(&setup, mixed, &mut b);
        self.conn.stream.send_clear(&b);
        self.state = State::ServerStart;
        self.conn.wait_peer(now);
        Ok(())
    }

    /// Accept-Session for the request just sent.
    fn on_accept(
        &mut self,
        now: OwampTime,
        a: AcceptSession,
        mut tr: RequestSession,
        local: SocketAddr,
    ) {
        self.conn.wait_peer(now);
        if !a.accept.is_ok() {
            self.conn
                .out
                .push_back(Output::SessionRejected { accept: a.accept });
            return;
        }
        let (role, peer) = if tr.conf_receiver {
            // The server receives: it chose the port and the SID.
            tr.receiver_port = a.port;
            tr.sid = a.sid;
            (Role::Sender, SocketAddr::new(tr.receiver_address, a.port))
        } else {
            tr.sender_port = a.port;
            (Role::Receiver, SocketAddr::new(tr.sender_address, a.port))
        };
        tr.hmac = [0; 16];
        tr.slots_hmac = [0; 16];
        self.conn
            .out
            .push_back(Output::SessionAccepted(Box::new(SessionInfo {
                sid: tr.sid,
                role,
                mode: self.conn.packet_mode(),
                keys: self.conn.keys.clone(),
                local,
                peer,
                request: tr.clone(),
            })));
        self.conn.sessions.push(LocalSession {
            sid: tr.sid,
            role,
            request: tr,
            report: None,
        });
    }
}

/// Reads a whole `len`-octet message whose last 16 octets are its HMAC into `buf`
/// (plaintext, HMAC checked). Returns whether it is complete.
fn read_message(
    s: &mut super::framing::Stream,
    buf: &mut Vec<u8>,
    len: usize,
    what: &'static str,
) -> Result<bool, ProtocolError> {
    if !read_part(s, buf, len - BLOCK, what)? {
        return Ok(false);
    }
    Ok(buf.len() == len)
}

/// Reads body blocks into `buf` up to `body` octets, then the HMAC field after them.
/// Returns whether the HMAC was read.
fn read_part(
    s: &mut super::framing::Stream,
    buf: &mut Vec<u8>,
    body: usize,
    what: &'static str,
) -> Result<bool, ProtocolError> {
    while buf.len() < body {
        let n = (s.available() / BLOCK * BLOCK).min(body - buf.len());
        if n == 0 {
            return Ok(false);
        }
        let Some(b) = s.take_body(n) else {
            return Ok(false);
        };
        buf.extend_from_slice(&b.map_err(|_| ProtocolError::Malformed(what))?);
    }
    if buf.len() == body {
        let Some(h) = s.take_hmac() else {
            return Ok(false);
        };
        buf.extend_from_slice(&h.map_err(|_| ProtocolError::BadHmac(what))?);
    }
    Ok(true)
}
