//! The OWAMP-Control client (RFC 4656 3), one per control connection it opens.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand_core::{CryptoRng, RngCore};

use super::codec::{self, BLOCK};
use super::common::{Conn, LocalSession};
use super::{
    make_sid, AcceptCode, ClientCommand, CloseReason, ControlError, Mode, Modes, ProtocolError,
    Role, SessionRequest, TestRequest,
};
use crate::crypto::{derive_key_with_limit, seal_token, ControlOpener, ControlSealer, SessionKeys};
use crate::io::{FetchedSession, Finished, Input, Output, SessionInfo};
use crate::time::OwampTime;
use crate::wire::SessionId;

/// An identity: a KeyID (at most 80 octets) and its shared passphrase.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The KeyID sent in Set-Up-Response (the reference calls it the user name).
    pub key_id: Vec<u8>,
    /// The passphrase, raw octets without a trailing newline.
    pub passphrase: Vec<u8>,
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
    /// Modes the client is willing to use (authenticated and encrypted need `identity`).
    pub modes: Modes,
    /// The identity for authenticated and encrypted modes.
    pub identity: Option<Identity>,
    /// How long to wait for the server, and for the application when the connection is idle.
    pub control_timeout: Duration,
    /// How long a sender waits after its last packet before Stop-Sessions.
    pub end_delay: Duration,
    /// The largest PBKDF2 count accepted from a Server-Greeting.
    pub max_kdf_count: u32,
    /// The most slots, skip ranges or records accepted in a fetched session.
    pub max_fetch_items: u32,
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
        }
    }
}

/// A fetch response being read.
#[derive(Debug, Clone)]
struct Fetching {
    sid: SessionId,
    ack: codec::FetchAck,
    request: Option<TestRequest>,
    nslots: u32,
    skips: Vec<u8>,
    records: Vec<u8>,
}

/// What the client reads next.
#[derive(Debug)]
enum State {
    Greeting,
    ServerStart,
    ServerStartTime,
    /// Nothing expected (or, during a test, the first block of the server's Stop-Sessions).
    Idle,
    AcceptSession(Box<TestRequest>, SocketAddr),
    AcceptHmac(Vec<u8>, Box<TestRequest>, SocketAddr),
    StartAck,
    StartAckHmac(Vec<u8>),
    Stop,
    FetchAck(SessionId),
    FetchAckHmac(Vec<u8>, SessionId),
    FetchRequest(Box<Fetching>),
    FetchRequestHmac(Vec<u8>, Box<Fetching>),
    FetchSlots(Box<Fetching>),
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
}

impl<R: RngCore + CryptoRng> Client<R> {
    /// A client on a connection just established at `now`.
    pub fn new(now: OwampTime, cfg: ClientConfig, rng: R) -> Self {
        let mut conn = Conn::new(cfg.control_timeout, cfg.end_delay);
        conn.wait_peer(now);
        let mut c = Self {
            conn,
            cfg,
            rng,
            client_iv: [0; 16],
            state: State::Greeting,
        };
        c.finish();
        c
    }

    /// The mode of the connection (open until set-up completes).
    pub fn mode(&self) -> Mode {
        self.conn.mode
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.conn.closed
    }

    /// The deadline of the connection's timer, if armed.
    pub fn timeout(&self) -> Option<OwampTime> {
        self.conn.deadline
    }

    /// Whether the client can take a command now (set up, nothing outstanding, no test).
    pub fn is_ready(&self) -> bool {
        !self.conn.closed && matches!(self.state, State::Idle) && self.conn.test.is_none()
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
            Input::EndpointReady { .. }
            | Input::PortInUse { .. }
            | Input::EndpointFailed { .. }
            | Input::FetchReply(_) => Err(ControlError::WrongRole("a server input")),
        };
        self.pump(now);
        self.finish();
        r
    }

    fn finish(&mut self) {
        self.conn.ended.clear();
        if !self.conn.closed {
            self.conn.flush_tx();
            self.conn.sync_timer();
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
        if !self.is_ready() {
            return Err(ControlError::WrongState("a command"));
        }
        let sent = match cmd {
            ClientCommand::RequestSession(req) => {
                let (tr, local) = self.build_request(now, &req)?;
                let mut slots = Vec::with_capacity(BLOCK * (tr.slots.len() + 1));
                for s in &tr.slots {
                    slots.extend_from_slice(&codec::encode_slot(s));
                }
                slots.extend_from_slice(&[0u8; BLOCK]);
                let s = &mut self.conn.stream;
                // RFC 4656 3.5: first part and its HMAC, then the slots and theirs.
                let r = s
                    .send_sealed(codec::encode_request(&tr))
                    .and_then(|()| s.send_sealed(slots));
                self.state = State::AcceptSession(Box::new(tr), local);
                r
            }
            ClientCommand::StartSessions => {
                self.state = State::StartAck;
                self.conn.stream.send_sealed(codec::encode_start_sessions())
            }
            ClientCommand::Fetch { sid, begin, end } => {
                self.state = State::FetchAck(sid);
                self.conn
                    .stream
                    .send_sealed(codec::encode_fetch_session(begin, end, &sid))
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
    ) -> Result<(TestRequest, SocketAddr), ControlError> {
        if req.slots.is_empty() || req.packets == 0 {
            return Err(ControlError::InvalidRequest("no slots or no packets"));
        }
        let local_ip = req.local.ip();
        let ipvn = match (local_ip, req.peer) {
            (IpAddr::V4(_), IpAddr::V4(_)) => 4,
            (IpAddr::V6(_), IpAddr::V6(_)) => 6,
            _ => return Err(ControlError::InvalidRequest("address families differ")),
        };
        let mut tr = TestRequest {
            ipvn,
            conf_sender: false,
            conf_receiver: false,
            slots: req.slots.clone(),
            packets: req.packets,
            sender_port: 0,
            receiver_port: 0,
            sender: local_ip,
            receiver: local_ip,
            sid: SessionId::default(),
            padding: req.padding,
            start_time: req.start_time,
            timeout: req.timeout,
            type_p: req.type_p,
        };
        match req.role {
            Role::Sender => {
                tr.conf_receiver = true;
                tr.sender_port = req.local.port();
                tr.receiver = req.peer;
            }
            Role::Receiver => {
                tr.conf_sender = true;
                tr.receiver_port = req.local.port();
                tr.sender = req.peer;
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
    }

    fn keep(&mut self, st: State) -> Result<bool, ProtocolError> {
        self.state = st;
        Ok(false)
    }

    fn step(&mut self, now: OwampTime) -> Result<bool, ProtocolError> {
        let s = &mut self.conn.stream;
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Greeting => match s.take_clear(codec::GREETING_LEN) {
                None => self.keep(State::Greeting),
                Some(b) => {
                    self.on_greeting(now, &b)?;
                    Ok(true)
                }
            },
            State::ServerStart => match s.take_clear(codec::SERVER_START_CLEAR_LEN) {
                None => self.keep(State::ServerStart),
                Some(b) => {
                    let (accept, server_iv) = codec::decode_server_start_clear(&b)?;
                    if accept != 0 {
                        self.conn
                            .close(CloseReason::SetupRejected(AcceptCode::from_u8(accept)));
                        return Ok(false);
                    }
                    if let Some(keys) = &self.conn.keys {
                        s.set_opener(ControlOpener::new(keys, &server_iv));
                        s.set_sealer(ControlSealer::new(keys, &self.client_iv));
                    }
                    self.state = State::ServerStartTime;
                    Ok(true)
                }
            },
            State::ServerStartTime => match s.take_body(BLOCK) {
                None => self.keep(State::ServerStartTime),
                Some(b) => {
                    let b = b.map_err(|_| ProtocolError::Malformed("Server-Start"))?;
                    let server_start = codec::decode_time_block(&b);
                    self.conn.out.push_back(Output::Connected {
                        mode: self.conn.mode,
                        server_start,
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
                if self.conn.test.is_none() {
                    // The server speaks only when asked, except Stop-Sessions in a test.
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
                self.conn.begin_stop(&b)?;
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
            State::AcceptSession(tr, local) => match s.take_body(codec::ACCEPT_SESSION_BODY_LEN) {
                None => self.keep(State::AcceptSession(tr, local)),
                Some(b) => {
                    let b = b.map_err(|_| ProtocolError::Malformed("Accept-Session"))?;
                    self.state = State::AcceptHmac(b, tr, local);
                    Ok(true)
                }
            },
            State::AcceptHmac(body, tr, local) => match s.take_hmac() {
                None => self.keep(State::AcceptHmac(body, tr, local)),
                Some(r) => {
                    r.map_err(|_| ProtocolError::BadHmac("Accept-Session"))?;
                    let (accept, port, sid) = codec::decode_accept_session(&body)?;
                    self.on_accept(now, AcceptCode::from_u8(accept), port, sid, *tr, local);
                    Ok(true)
                }
            },
            State::StartAck => match s.take_body(BLOCK) {
                None => self.keep(State::StartAck),
                Some(b) => {
                    let b = b.map_err(|_| ProtocolError::Malformed("Start-Ack"))?;
                    self.state = State::StartAckHmac(b);
                    Ok(true)
                }
            },
            State::StartAckHmac(body) => match s.take_hmac() {
                None => self.keep(State::StartAckHmac(body)),
                Some(r) => {
                    r.map_err(|_| ProtocolError::BadHmac("Start-Ack"))?;
                    let accept = AcceptCode::from_u8(body.first().copied().unwrap_or(0));
                    if !accept.is_ok() {
                        // The reference gives up on the connection.
                        self.conn.close(CloseReason::StartRejected(accept));
                        return Ok(false);
                    }
                    self.conn.start_test(now);
                    Ok(true)
                }
            },
            State::FetchAck(sid) => match s.take_body(BLOCK) {
                None => self.keep(State::FetchAck(sid)),
                Some(b) => {
                    let b = b.map_err(|_| ProtocolError::Malformed("Fetch-Ack"))?;
                    self.state = State::FetchAckHmac(b, sid);
                    Ok(true)
                }
            },
            State::FetchAckHmac(body, sid) => match s.take_hmac() {
                None => self.keep(State::FetchAckHmac(body, sid)),
                Some(r) => {
                    r.map_err(|_| ProtocolError::BadHmac("Fetch-Ack"))?;
                    let ack = codec::decode_fetch_ack(&body)?;
                    if ack.accept != 0 {
                        self.conn.out.push_back(Output::FetchDenied {
                            accept: AcceptCode::from_u8(ack.accept),
                        });
                        self.conn.wait_peer(now);
                        return Ok(true);
                    }
                    let max = self.cfg.max_fetch_items;
                    if ack.num_skips > max || ack.num_records > max {
                        return Err(ProtocolError::Limit("fetched session too large"));
                    }
                    self.state = State::FetchRequest(Box::new(Fetching {
                        sid,
                        ack,
                        request: None,
                        nslots: 0,
                        skips: Vec::new(),
                        records: Vec::new(),
                    }));
                    Ok(true)
                }
            },
            State::FetchRequest(f) => match s.take_body(codec::REQUEST_BODY_LEN) {
                None => self.keep(State::FetchRequest(f)),
                Some(b) => {
                    let b = b.map_err(|_| ProtocolError::Malformed("Request-Session"))?;
                    self.state = State::FetchRequestHmac(b, f);
                    Ok(true)
                }
            },
            State::FetchRequestHmac(body, mut f) => match s.take_hmac() {
                None => self.keep(State::FetchRequestHmac(body, f)),
                Some(r) => {
                    r.map_err(|_| ProtocolError::BadHmac("fetched Request-Session"))?;
                    let (req, nslots) = codec::decode_request(&body)?;
                    if nslots > self.cfg.max_fetch_items {
                        return Err(ProtocolError::Limit("too many slots"));
                    }
                    f.request = Some(req);
                    f.nslots = nslots;
                    self.state = State::FetchSlots(f);
                    Ok(true)
                }
            },
            State::FetchSlots(mut f) => {
                let have = f.request.as_ref().map_or(0, |r| r.slots.len());
                if (have as u64) < u64::from(f.nslots) {
                    let Some(b) = s.take_body(BLOCK) else {
                        return self.keep(State::FetchSlots(f));
                    };
                    let b = b.map_err(|_| ProtocolError::Malformed("slot"))?;
                    let slot = codec::decode_slot(&b)?;
                    if let Some(r) = f.request.as_mut() {
                        r.slots.push(slot);
                    }
                    self.state = State::FetchSlots(f);
                    return Ok(true);
                }
                match s.take_hmac() {
                    None => self.keep(State::FetchSlots(f)),
                    Some(r) => {
                        r.map_err(|_| ProtocolError::BadHmac("fetched slots"))?;
                        self.state = State::FetchSkips(f);
                        Ok(true)
                    }
                }
            }
            State::FetchSkips(mut f) => {
                let want = (8 * f.ack.num_skips as usize).div_ceil(BLOCK) * BLOCK;
                if take_blocks(s, &mut f.skips, want)? {
                    return self.keep(State::FetchSkips(f));
                }
                match s.take_hmac() {
                    None => self.keep(State::FetchSkips(f)),
                    Some(r) => {
                        r.map_err(|_| ProtocolError::BadHmac("fetched skip ranges"))?;
                        self.state = State::FetchRecords(f);
                        Ok(true)
                    }
                }
            }
            State::FetchRecords(mut f) => {
                let want = (codec::RECORD_LEN * f.ack.num_records as usize).div_ceil(BLOCK) * BLOCK;
                if take_blocks(s, &mut f.records, want)? {
                    return self.keep(State::FetchRecords(f));
                }
                match s.take_hmac() {
                    None => self.keep(State::FetchRecords(f)),
                    Some(r) => {
                        r.map_err(|_| ProtocolError::BadHmac("fetched records"))?;
                        let f = *f;
                        let records = f
                            .records
                            .chunks_exact(codec::RECORD_LEN)
                            .take(f.ack.num_records as usize)
                            .map(codec::decode_record)
                            .collect();
                        let skips = codec::decode_skips(&f.skips, f.ack.num_skips);
                        self.conn
                            .out
                            .push_back(Output::Fetched(Box::new(FetchedSession {
                                sid: f.sid,
                                finished: Finished::from_u8(f.ack.finished),
                                next_seqno: f.ack.next_seqno,
                                skips,
                                request: f.request.unwrap_or_else(empty_request),
                                records,
                            })));
                        self.conn.wait_peer(now);
                        Ok(true)
                    }
                }
            }
        }
    }

    /// Server-Greeting (RFC 4656 3.1): choose the mode and answer with Set-Up-Response.
    fn on_greeting(&mut self, now: OwampTime, b: &[u8]) -> Result<(), ProtocolError> {
        let g = codec::decode_greeting(b)?;
        let mut avail = Modes(g.modes).intersect(self.cfg.modes);
        if self.cfg.identity.is_none() {
            avail = avail.without(Mode::Authenticated).without(Mode::Encrypted);
        }
        let Some(mode) = avail.strongest() else {
            // "No Common Modes": give up before Set-Up-Response, as the reference does.
            self.conn.close(CloseReason::NoCommonMode);
            return Ok(());
        };
        let mut setup = codec::SetupResponse {
            mode: mode.bit(),
            key_id: [0; 80],
            token: [0; 64],
            client_iv: [0; 16],
        };
        if let (true, Some(id)) = (mode.is_secure(), &self.cfg.identity) {
            let key =
                derive_key_with_limit(&id.passphrase, &g.salt, g.count, self.cfg.max_kdf_count)
                    .map_err(|_| ProtocolError::KdfCount(g.count))?;
            // Order of the draws: AES key, HMAC key, Client-IV (as the reference).
            let mut keys = SessionKeys {
                aes: [0; 16],
                hmac: [0; 32],
            };
            self.rng.fill_bytes(&mut keys.aes);
            self.rng.fill_bytes(&mut keys.hmac);
            self.rng.fill_bytes(&mut self.client_iv);
            let n = id.key_id.len().min(80);
            setup.key_id[..n].copy_from_slice(&id.key_id[..n]);
            setup.token = seal_token(&key, &g.challenge, &keys);
            setup.client_iv = self.client_iv;
            self.conn.keys = Some(keys);
        }
        self.conn.mode = mode;
        self.conn.stream.send_clear(&codec::encode_setup(&setup));
        self.state = State::ServerStart;
        self.conn.wait_peer(now);
        Ok(())
    }

    /// Accept-Session for the request just sent.
    fn on_accept(
        &mut self,
        now: OwampTime,
        accept: AcceptCode,
        port: u16,
        sid: SessionId,
        mut tr: TestRequest,
        local: SocketAddr,
    ) {
        self.conn.wait_peer(now);
        if !accept.is_ok() {
            self.conn.out.push_back(Output::SessionRejected { accept });
            return;
        }
        let (role, peer) = if tr.conf_receiver {
            // The server receives: it chose the port and the SID.
            tr.receiver_port = port;
            tr.sid = sid;
            (Role::Sender, SocketAddr::new(tr.receiver, port))
        } else {
            tr.sender_port = port;
            (Role::Receiver, SocketAddr::new(tr.sender, port))
        };
        self.conn
            .out
            .push_back(Output::SessionAccepted(Box::new(SessionInfo {
                sid: tr.sid,
                role,
                mode: self.conn.mode,
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

/// Reads whole blocks into `buf` until it holds `want` octets. Returns whether more are needed.
fn take_blocks(
    s: &mut super::framing::Stream,
    buf: &mut Vec<u8>,
    want: usize,
) -> Result<bool, ProtocolError> {
    while buf.len() < want {
        let n = (s.available() / BLOCK * BLOCK).min(want - buf.len());
        if n == 0 {
            return Ok(true);
        }
        let Some(b) = s.take_body(n) else {
            return Ok(true);
        };
        let b = b.map_err(|_| ProtocolError::Malformed("fetched data"))?;
        buf.extend_from_slice(&b);
    }
    Ok(false)
}

fn empty_request() -> TestRequest {
    TestRequest {
        ipvn: 4,
        conf_sender: false,
        conf_receiver: false,
        slots: Vec::new(),
        packets: 0,
        sender_port: 0,
        receiver_port: 0,
        sender: super::UNSPECIFIED,
        receiver: super::UNSPECIFIED,
        sid: SessionId::default(),
        padding: 0,
        start_time: OwampTime::default(),
        timeout: 0,
        type_p: 0,
    }
}
