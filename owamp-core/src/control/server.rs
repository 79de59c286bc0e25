//! The OWAMP-Control server (RFC 4656 3), one per accepted control connection.

use core::net::SocketAddr;
use core::time::Duration;

use rand_core::{CryptoRng, RngCore};

use super::codec::{self, BLOCK};
use super::common::{Conn, Flavour, LocalSession};
use super::{make_sid, or_fallback, ControlError, PortRange};
use crate::crypto::{
    derive_key, open_token, ControlOpener, ControlSealer, Passphrase, SessionKeys,
};
use crate::io::{
    EndpointSetup, FetchReply, FetchSelection, FetchStream, Finished, Input, Output, SessionInfo,
    StoredSession,
};
use crate::policy::{Peer, ServerPolicy, TestAdmission};
use crate::proto::{CloseReason, Protocol, ProtocolError, Role};
use crate::time::OwampTime;
use crate::wire::{
    framing, AcceptCode, AcceptSession, FetchAck, FetchData, FetchSession, Mode, Modes,
    RequestSession, RequestTwSession, ServerGreeting, ServerStart, SessionId, SetUpResponse,
    SkipRange, StartAck, StartSessions, TwampStopSessions,
};

/// Settings of a [`Server`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Start-Time of Server-Start: when the server process started (the reference sends the
    /// same value on every connection).
    pub start_time: OwampTime,
    /// The PBKDF2 iteration Count of Server-Greeting (the reference uses 2048). The server
    /// derives its own key with the bound clients apply by default,
    /// [`DEFAULT_MAX_KDF_COUNT`](crate::crypto::DEFAULT_MAX_KDF_COUNT): above it (or at 0)
    /// every authenticated or encrypted set-up is refused, so owampd's configuration refuses
    /// such a count.
    pub kdf_count: u32,
    /// Ports for test sessions; `None` lets the system choose (port 0).
    pub test_ports: Option<PortRange>,
    /// How long to wait for the client when it is its turn to talk.
    pub control_timeout: Duration,
    /// How long a sender waits after its last packet and the loss timeout before
    /// Stop-Sessions (the reference's default is 1 s).
    pub end_delay: Duration,
    /// The most packets a session in which this server receives may have. A receiver keeps
    /// a record of every packet of its session (received or lost), so the packet count the
    /// client asks for is memory the server gives out; larger requests are refused with
    /// Accept = 4 (permanent resource limitation) whatever the policy says.
    pub max_receive_packets: u32,
    /// OWAMP or TWAMP. A TWAMP server answers Request-TW-Session only (the client sends,
    /// the server reflects), refuses Fetch-Session by closing, and ends a test on the client's
    /// Stop-Sessions without sending one. It offers the policy's modes, RFC 5618's mixed-mode
    /// bit included when the policy gives it (as twampd does), and serves mixed mode when the
    /// client chooses it: control as in authenticated mode, open test packets.
    pub protocol: Protocol,
}

impl ServerConfig {
    /// Default of [`max_receive_packets`](Self::max_receive_packets): 2^22 packets (about
    /// 170 MB of records; a day at 48 packets per second).
    pub const DEFAULT_MAX_RECEIVE_PACKETS: u32 = 1 << 22;
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            start_time: OwampTime::default(),
            kdf_count: 2048,
            test_ports: None,
            control_timeout: Duration::from_secs(1800),
            end_delay: Duration::from_secs(1),
            max_receive_packets: Self::DEFAULT_MAX_RECEIVE_PACKETS,
            protocol: Protocol::Owamp,
        }
    }
}

/// What the server reads next.
#[derive(Debug)]
enum State {
    /// Set-Up-Response (164 octets in the clear).
    Setup,
    /// The first block of the next request.
    Idle,
    /// The rest of Request-Session's first part (80 octets) and its HMAC.
    RequestRest { first: Vec<u8> },
    /// The HMAC of Request-Session's first part.
    RequestHmac { body: Vec<u8> },
    /// Slots (then their HMAC) until the message is `len` octets.
    RequestSlots { buf: Vec<u8>, len: usize },
    /// The application is binding a test socket.
    AwaitEndpoint(Box<Pending>),
    /// The HMAC of Start-Sessions.
    StartHmac { first: Vec<u8> },
    /// TWAMP: the HMAC of the client's Stop-Sessions (RFC 5357 3.8).
    TwampStopHmac { first: Vec<u8> },
    /// The rest of Fetch-Session.
    FetchRest { first: Vec<u8> },
    /// The HMAC of Fetch-Session.
    FetchHmac { body: Vec<u8> },
    /// The application is looking up stored records.
    AwaitFetch { begin: u32, end: u32 },
    /// Sending a streamed Fetch-Session answer: `remaining` records to come from the
    /// application, `carry` the encoded octets short of a whole block.
    Fetching { remaining: u32, carry: Vec<u8> },
    /// The peer's Stop-Sessions (during the test).
    Stop,
}

/// A Request-Session waiting for its test socket.
/// The receive buffer of the server's test socket for `req`: sized from the session's rate and
/// packet length when the server receives, none when it sends.
fn recv_buffer_for(req: &RequestSession, role: Role, mode: Mode) -> usize {
    match role {
        Role::Receiver => {
            crate::session::recv_buffer_len(mode, &req.slots, req.num_packets, req.padding_length)
        }
        Role::Sender => 0,
    }
}

#[derive(Debug)]
struct Pending {
    req: RequestSession,
    sid: SessionId,
    role: Role,
    local: SocketAddr,
    first_port: u16,
}

/// Why a server refused a control connection's set-up (RFC 4656 3.1: a Server-Start whose
/// Accept is not zero, or a close right after a Server-Greeting that offers no mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetupRefusal {
    /// The policy offers this client's address no mode (Modes zero in the Server-Greeting),
    /// as when its limits class does not allow open mode and open is all the server offers.
    NoModeOffered,
    /// The Set-Up-Response asks for a mode the Server-Greeting did not offer.
    ModeNotOffered,
    /// The KeyID has no pass-phrase here.
    UnknownKeyId,
    /// The KeyID is known but the Token does not open with its pass-phrase (RFC 4656 3.1:
    /// a wrong pass-phrase on the client's side).
    WrongPassphrase,
    /// The policy refused the connection once set up ([`ServerPolicy::allow_control`]), with
    /// the Accept code sent.
    Policy(AcceptCode),
}

/// A refused set-up as the operator's log tells it: what was asked for and why it was
/// refused. It holds no secret (no pass-phrase, key or Token): only the mode and the KeyID,
/// which travel in the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupRefused {
    /// The mode the client asked for (`None` when it was not asked: no mode was offered).
    pub mode: Option<Mode>,
    /// The KeyID the client gave (authenticated and encrypted modes), up to its first NUL.
    pub key_id: Option<Vec<u8>>,
    /// Why.
    pub reason: SetupRefusal,
}

impl core::fmt::Display for SetupRefused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The KeyID comes from the network: quoted with its control characters escaped.
        let id = self
            .key_id
            .as_deref()
            .map(|k| format!("{:?}", String::from_utf8_lossy(k)));
        match (self.reason, &id) {
            (SetupRefusal::NoModeOffered, _) => {
                f.write_str("no mode is offered to this address (the limits allow it none)")?
            }
            (SetupRefusal::ModeNotOffered, _) => f.write_str("mode not offered")?,
            (SetupRefusal::UnknownKeyId, Some(id)) => write!(f, "unknown identity {id}")?,
            (SetupRefusal::UnknownKeyId, None) => f.write_str("unknown identity")?,
            (SetupRefusal::WrongPassphrase, Some(id)) => {
                write!(f, "wrong passphrase for identity {id}")?
            }
            (SetupRefusal::WrongPassphrase, None) => f.write_str("wrong passphrase")?,
            (SetupRefusal::Policy(code), Some(id)) => write!(
                f,
                "refused by the limits for identity {id}: {code} (Accept = {})",
                code.to_u8()
            )?,
            (SetupRefusal::Policy(code), None) => write!(
                f,
                "refused by the limits: {code} (Accept = {})",
                code.to_u8()
            )?,
        }
        if let Some(m) = self.mode {
            write!(f, " (mode {m})")?;
        }
        Ok(())
    }
}

/// The server side of one control connection.
///
/// Built when a connection is accepted; it queues the Server-Greeting at once. See
/// [`crate::io`] for how to drive it and [`crate::control`] for what it does.
#[derive(Debug)]
pub struct Server<P, R> {
    conn: Conn,
    cfg: ServerConfig,
    policy: P,
    rng: R,
    local: SocketAddr,
    peer: SocketAddr,
    offered: Modes,
    challenge: [u8; 16],
    salt: [u8; 16],
    key_id: Option<Vec<u8>>,
    refused: Option<SetupRefused>,
    state: State,
}

impl<P: ServerPolicy, R: RngCore + CryptoRng> Server<P, R> {
    /// A server for a connection from `peer` accepted on `local` at `now`.
    pub fn new(
        now: OwampTime,
        cfg: ServerConfig,
        mut policy: P,
        mut rng: R,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> Self {
        let offered = match cfg.protocol {
            Protocol::Owamp => policy.modes(peer.ip()).known(),
            // RFC 5618: twampd offers the mixed-mode bit too.
            Protocol::Twamp => policy.modes(peer.ip()).intersection(Modes::from_raw(
                Modes::ALL.raw() | crate::wire::twamp::MIXED_MODE_BIT,
            )),
        };
        let mut challenge = [0u8; 16];
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut challenge);
        rng.fill_bytes(&mut salt);
        let flavour = match cfg.protocol {
            Protocol::Owamp => Flavour::Owamp,
            Protocol::Twamp => Flavour::TwampServer,
        };
        let mut conn = Conn::new(cfg.control_timeout, cfg.end_delay, flavour);
        // RFC 4656 3.1: the server speaks first.
        conn.stream.send_clear(
            &ServerGreeting {
                modes: offered,
                challenge,
                salt,
                count: cfg.kdf_count,
            }
            .to_bytes(),
        );
        let mut s = Self {
            conn,
            cfg,
            policy,
            rng,
            local,
            peer,
            offered,
            challenge,
            salt,
            key_id: None,
            refused: None,
            state: State::Setup,
        };
        if offered.is_empty() {
            // Nothing to offer: the reference closes right after the greeting.
            s.refused = Some(SetupRefused {
                mode: None,
                key_id: None,
                reason: SetupRefusal::NoModeOffered,
            });
            s.conn
                .close(CloseReason::SetupRejected(AcceptCode::Failure));
        } else {
            s.conn.wait_peer(now);
        }
        s.finish();
        s
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

    /// Whether the client chose RFC 5618 mixed mode (TWAMP only).
    pub fn is_mixed(&self) -> bool {
        self.conn.mixed
    }

    /// The mode of the test packets: the connection's, or open in mixed mode.
    pub fn packet_mode(&self) -> Mode {
        self.conn.packet_mode()
    }

    /// The KeyID the client authenticated with.
    pub fn key_id(&self) -> Option<&[u8]> {
        self.key_id.as_deref()
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.conn.closed
    }

    /// Why the set-up was refused, if it was.
    pub fn setup_refused(&self) -> Option<&SetupRefused> {
        self.refused.as_ref()
    }

    /// When to feed [`Input::Timer`] at the latest (the connection's deadline); `None` once
    /// closed.
    pub fn poll_timeout(&self) -> Option<OwampTime> {
        self.conn.deadline
    }

    /// Whether a test is running: from Start-Ack until both Stop-Sessions are exchanged.
    pub fn in_test(&self) -> bool {
        !self.conn.closed && self.conn.test.is_some()
    }

    /// The next action for the caller, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.conn.out.pop_front()
    }

    /// Feeds one input at time `now`. Errors are misuse by the application; problems caused
    /// by the peer close the connection ([`Output::Close`]) instead.
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
                // Receivers are reported before the sessions are released (which forgets them).
                self.conn.abort_receivers();
                self.release_all();
                self.conn.close(CloseReason::PeerClosed);
                Ok(())
            }
            Input::EndpointReady { sid, port } => self.on_endpoint(now, sid, Ok(port)),
            Input::PortInUse { sid } => self.on_endpoint(now, sid, Err(None)),
            Input::EndpointFailed { sid, accept } => self.on_endpoint(now, sid, Err(Some(accept))),
            Input::SessionFinished(report) => {
                if self.conn.session_finished(now, report) {
                    Ok(())
                } else {
                    Err(ControlError::UnknownSession)
                }
            }
            Input::FetchReply(reply) => self.on_fetch_reply(now, reply),
            Input::FetchRecords(records) => self.on_fetch_records(now, records),
            Input::StopSessions => self.conn.stop_early(now),
            Input::SessionFailed { sid, accept } => self.conn.session_failed(now, sid, accept),
            Input::Command(_) => Err(ControlError::WrongRole("a client command")),
        };
        self.pump(now);
        self.finish();
        r
    }

    /// Closes the connection at once (the host shuts down): receive sessions of a running
    /// test are reported incomplete first.
    pub(crate) fn abort(&mut self) {
        if self.conn.closed {
            return;
        }
        self.conn.abort_receivers();
        self.release_all();
        self.conn.close(CloseReason::Local);
        self.finish();
    }

    /// `input` refused in the current state, naming what the server is doing.
    fn wrong_state(&self, input: &'static str) -> ControlError {
        let state = match &self.state {
            State::Idle if self.conn.test.is_some() => "a test is running",
            State::Idle => "waiting for a request",
            State::Setup => "waiting for Set-Up-Response",
            State::RequestRest { .. } | State::RequestHmac { .. } | State::RequestSlots { .. } => {
                "reading Request-Session"
            }
            State::AwaitEndpoint(_) => "waiting for a test endpoint",
            State::StartHmac { .. } => "reading Start-Sessions",
            State::FetchRest { .. } | State::FetchHmac { .. } => "reading Fetch-Session",
            State::AwaitFetch { .. } => "waiting for a fetch reply",
            State::Fetching { .. } => "sending fetched records",
            State::Stop | State::TwampStopHmac { .. } => "reading the client's Stop-Sessions",
        };
        ControlError::WrongState { input, state }
    }

    fn finish(&mut self) {
        if self.conn.closed {
            self.release_all();
            return;
        }
        self.conn.flush_tx();
    }

    fn release_all(&mut self) {
        let ended = std::mem::take(&mut self.conn.ended);
        for s in std::mem::take(&mut self.conn.sessions)
            .into_iter()
            .chain(ended)
        {
            self.policy.release_test(&s.sid, s.role);
        }
        if matches!(self.state, State::AwaitEndpoint(_)) {
            if let State::AwaitEndpoint(p) = std::mem::replace(&mut self.state, State::Idle) {
                self.policy.release_test(&p.sid, p.role);
            }
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
                self.after_test();
            }
        } else {
            self.release_all();
            self.conn.abort_receivers();
            self.conn.close(CloseReason::Timeout);
        }
    }

    /// Reads every complete message that has arrived.
    fn pump(&mut self, now: OwampTime) {
        while !self.conn.closed {
            match self.step(now) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    // Receivers are reported before the sessions are released.
                    self.conn.fail(e);
                    self.release_all();
                }
            }
        }
        if self.conn.check_unread() {
            self.release_all();
        }
    }

    /// Advances by one piece of input; `Ok(false)` when more octets are needed.
    fn step(&mut self, now: OwampTime) -> Result<bool, ProtocolError> {
        let s = &mut self.conn.stream;
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Setup => match s.take_clear(SetUpResponse::LEN) {
                None => self.keep(State::Setup),
                Some(b) => {
                    self.on_setup(now, &b)?;
                    Ok(true)
                }
            },
            State::Idle => {
                let Some(b) = s.take_body(BLOCK) else {
                    return self.keep(State::Idle);
                };
                let b = b.map_err(|_| ProtocolError::Malformed("request"))?;
                self.on_request_type(now, b)
            }
            State::RequestRest { first } => match s.take_body(codec::REQUEST_BODY_LEN - BLOCK) {
                None => self.keep(State::RequestRest { first }),
                Some(rest) => {
                    let rest = rest.map_err(|_| ProtocolError::Malformed("Request-Session"))?;
                    let mut body = first;
                    body.extend_from_slice(&rest);
                    self.state = State::RequestHmac { body };
                    Ok(true)
                }
            },
            State::RequestHmac { mut body } => match s.take_hmac() {
                None => self.keep(State::RequestHmac { body }),
                Some(r) => {
                    let h = r.map_err(|_| ProtocolError::BadHmac("Request-Session"))?;
                    body.extend_from_slice(&h);
                    if body.first() == Some(&RequestTwSession::COMMAND) {
                        // RFC 5357 3.5: one HMAC, no slots.
                        let req = RequestTwSession::parse(&body)?;
                        self.on_twamp_request(now, req);
                        return Ok(true);
                    }
                    // The slot count says how long the message is (at most 2^16 slots).
                    let len = framing::request_session(&body)?.need();
                    self.state = State::RequestSlots { buf: body, len };
                    Ok(true)
                }
            },
            State::RequestSlots { mut buf, len } => {
                if buf.len() + BLOCK < len {
                    let n = (s.available() / BLOCK * BLOCK).min(len - BLOCK - buf.len());
                    let Some(b) = (n > 0).then(|| s.take_body(n)).flatten() else {
                        return self.keep(State::RequestSlots { buf, len });
                    };
                    let b = b.map_err(|_| ProtocolError::Malformed("slot"))?;
                    buf.extend_from_slice(&b);
                    self.state = State::RequestSlots { buf, len };
                    return Ok(true);
                }
                match s.take_hmac() {
                    None => self.keep(State::RequestSlots { buf, len }),
                    Some(r) => {
                        let h = r.map_err(|_| ProtocolError::BadHmac("Request-Session slots"))?;
                        buf.extend_from_slice(&h);
                        // An invalid slot or address breaks the request: the reference closes.
                        let req = RequestSession::parse(&buf)?;
                        self.on_request(now, req);
                        Ok(true)
                    }
                }
            }
            State::StartHmac { mut first } => match s.take_hmac() {
                None => self.keep(State::StartHmac { first }),
                Some(r) => {
                    let h = r.map_err(|_| ProtocolError::BadHmac("Start-Sessions"))?;
                    first.extend_from_slice(&h);
                    StartSessions::parse(&first)?;
                    self.on_start(now)?;
                    Ok(true)
                }
            },
            State::TwampStopHmac { mut first } => match s.take_hmac() {
                None => self.keep(State::TwampStopHmac { first }),
                Some(r) => {
                    let h = r.map_err(|_| ProtocolError::BadHmac("Stop-Sessions"))?;
                    first.extend_from_slice(&h);
                    let msg = TwampStopSessions::parse(&first)?;
                    self.conn.twamp_stop(now, msg)?;
                    if self.conn.test.is_none() {
                        self.after_test();
                    }
                    Ok(true)
                }
            },
            State::FetchRest { first } => match s.take_body(BLOCK) {
                None => self.keep(State::FetchRest { first }),
                Some(rest) => {
                    let rest = rest.map_err(|_| ProtocolError::Malformed("Fetch-Session"))?;
                    let mut body = first;
                    body.extend_from_slice(&rest);
                    self.state = State::FetchHmac { body };
                    Ok(true)
                }
            },
            State::FetchHmac { mut body } => match s.take_hmac() {
                None => self.keep(State::FetchHmac { body }),
                Some(r) => {
                    let h = r.map_err(|_| ProtocolError::BadHmac("Fetch-Session"))?;
                    body.extend_from_slice(&h);
                    let f = FetchSession::parse(&body)?;
                    self.on_fetch(now, f.begin_seq, f.end_seq, f.sid);
                    Ok(true)
                }
            },
            State::Stop => {
                if self.conn.pump_stop(now)? {
                    if self.conn.test.is_none() {
                        self.after_test();
                    } else {
                        self.conn.update_test_deadline();
                    }
                    Ok(true)
                } else {
                    self.keep(State::Stop)
                }
            }
            st @ (State::AwaitEndpoint(_) | State::AwaitFetch { .. } | State::Fetching { .. }) => {
                // Waiting for the application; the client should be waiting too.
                self.keep(st)
            }
        }
    }

    fn keep(&mut self, st: State) -> Result<bool, ProtocolError> {
        self.state = st;
        Ok(false)
    }

    /// Set-Up-Response (RFC 4656 3.1).
    fn on_setup(&mut self, now: OwampTime, b: &[u8]) -> Result<(), ProtocolError> {
        // A Mode that is not exactly one mode fails to parse: the reference closes without
        // answering.
        let (setup, mixed) = match self.cfg.protocol {
            Protocol::Owamp => (SetUpResponse::parse(b)?, false),
            // RFC 5618 3.1: Mode 8 is mixed mode, whose control is as authenticated mode's.
            Protocol::Twamp => crate::wire::twamp::parse_setup_response(b)?,
        };
        let mode = setup.mode;
        let key_id = mode.is_secure().then(|| setup.key_id_name().to_vec());
        let refused = |reason| SetupRefused {
            mode: Some(mode),
            key_id: key_id.clone(),
            reason,
        };
        let offered = if mixed {
            crate::wire::twamp::offers_mixed(self.offered)
        } else {
            self.offered.contains(mode)
        };
        if !offered {
            self.reject_setup(AcceptCode::Failure, refused(SetupRefusal::ModeNotOffered));
            return Ok(());
        }
        let mut keys: Option<SessionKeys> = None;
        let mut server_iv = [0u8; 16];
        if let Some(key_id) = &key_id {
            let pass = self.policy.passphrase(key_id);
            // Derive and decrypt even for an unknown KeyID, so both cases take as long.
            let derived = derive_key(
                pass.as_ref().map_or(&[][..], Passphrase::as_bytes),
                &self.salt,
                self.cfg.kdf_count,
            );
            let opened = derived
                .ok()
                .and_then(|k| open_token(&k, &setup.token, &self.challenge).ok());
            match (pass, opened) {
                (Some(_), Some(k)) => keys = Some(k),
                (None, _) => {
                    self.reject_setup(AcceptCode::Failure, refused(SetupRefusal::UnknownKeyId));
                    return Ok(());
                }
                (Some(_), None) => {
                    self.reject_setup(AcceptCode::Failure, refused(SetupRefusal::WrongPassphrase));
                    return Ok(());
                }
            }
            self.rng.fill_bytes(&mut server_iv);
            self.key_id = Some(key_id.clone());
        }
        self.conn.mode = mode;
        self.conn.mixed = mixed;
        let peer = Peer {
            addr: self.peer.ip(),
            mode,
            key_id: self.key_id.as_deref(),
        };
        if let Err(code) = self.policy.allow_control(peer) {
            let code = if code.is_ok() {
                AcceptCode::Failure
            } else {
                code
            };
            self.conn.mode = Mode::Open;
            self.conn.mixed = false;
            self.reject_setup(code, refused(SetupRefusal::Policy(code)));
            return Ok(());
        }
        let msg = ServerStart {
            accept: AcceptCode::Ok,
            server_iv,
            start_time: self.cfg.start_time,
        }
        .to_bytes();
        let (clear, last) = msg.split_at(ServerStart::CLEAR_LEN);
        let s = &mut self.conn.stream;
        s.send_clear(clear);
        match &keys {
            Some(k) => {
                // The last block starts the server's CBC chain and its first HMAC.
                s.set_sealer(ControlSealer::new(k, &server_iv));
                s.set_opener(ControlOpener::new(k, &setup.client_iv));
                s.send_update(last.to_vec())
                    .map_err(|_| ProtocolError::Malformed("Server-Start"))?;
            }
            None => s.send_clear(last),
        }
        self.conn.keys = keys;
        self.state = State::Idle;
        self.conn.wait_peer(now);
        Ok(())
    }

    /// Server-Start with a non-zero Accept: Server-IV, Start-Time and MBZ zero, in the clear.
    fn reject_setup(&mut self, code: AcceptCode, why: SetupRefused) {
        self.refused = Some(why);
        let msg = ServerStart {
            accept: code,
            server_iv: [0; 16],
            start_time: OwampTime::default(),
        };
        self.conn.stream.send_clear(&msg.to_bytes());
        self.conn.close(CloseReason::SetupRejected(code));
    }

    /// The first block of a request: dispatch on its type (RFC 4656 3.4).
    fn on_request_type(&mut self, now: OwampTime, first: Vec<u8>) -> Result<bool, ProtocolError> {
        let kind = first.first().copied().unwrap_or(0);
        let in_test = self.conn.test.is_some();
        let twamp = self.cfg.protocol == Protocol::Twamp;
        // TWAMP between tests knows Request-TW-Session and Start-Sessions only (RFC 5357 3.4,
        // 3.5, 3.7). Neither RFC 5357 nor RFC 4656 says what a Server does with another
        // command number (later ones come with modes this Server does not offer). perfSONAR's
        // twampd answers each such 16-octet block with an Accept-Session whose Accept is 3,
        // "some aspect of request is not supported" (RFC 4656 3.3), and reads on: so does
        // this one.
        if twamp
            && !in_test
            && kind != RequestTwSession::COMMAND
            && kind != codec::MSG_START_SESSIONS
        {
            self.refuse(now, AcceptCode::NotSupported);
            return Ok(true);
        }
        // Only Stop-Sessions during a test, and only during a test (the reference closes).
        if in_test != (kind == codec::MSG_STOP_SESSIONS) {
            return Err(ProtocolError::Unexpected(kind));
        }
        match kind {
            // RFC 5357 3.4: TWAMP has Request-TW-Session instead, and no Fetch-Session.
            codec::MSG_REQUEST_SESSION | codec::MSG_FETCH_SESSION if twamp => {
                return Err(ProtocolError::Unexpected(kind))
            }
            RequestTwSession::COMMAND if twamp => self.state = State::RequestRest { first },
            codec::MSG_STOP_SESSIONS if twamp => self.state = State::TwampStopHmac { first },
            codec::MSG_REQUEST_SESSION => self.state = State::RequestRest { first },
            codec::MSG_START_SESSIONS => self.state = State::StartHmac { first },
            codec::MSG_STOP_SESSIONS => {
                self.conn.begin_stop(first)?;
                self.state = State::Stop;
            }
            codec::MSG_FETCH_SESSION => self.state = State::FetchRest { first },
            other => return Err(ProtocolError::Unexpected(other)),
        }
        // The whole request must arrive within the timeout.
        if !in_test {
            self.conn.wait_peer(now);
        }
        Ok(true)
    }

    /// Answers a Request-Session (or a TWAMP command not known) with a refusal.
    fn refuse(&mut self, now: OwampTime, code: AcceptCode) {
        let msg = AcceptSession {
            accept: code,
            port: 0,
            sid: SessionId::default(),
            hmac: [0; 16],
        };
        if self.conn.stream.send_sealed(msg.to_bytes()).is_err() {
            self.conn.close(CloseReason::Local);
            return;
        }
        self.state = State::Idle;
        self.conn.wait_peer(now);
    }

    /// A complete, authenticated Request-Session (RFC 4656 3.5).
    fn on_request(&mut self, now: OwampTime, req: RequestSession) {
        self.state = State::Idle;
        // This server configures its own endpoint only: exactly one role (as the reference).
        if req.conf_sender == req.conf_receiver
            || req.slots.is_empty()
            || req.num_packets == 0
            || !supported_packets(&req, self.conn.packet_mode())
        {
            return self.refuse(now, AcceptCode::NotSupported);
        }
        let role = if req.conf_receiver {
            Role::Receiver
        } else {
            Role::Sender
        };
        // Memory for the records is given out before any policy check can account for it.
        if role == Role::Receiver && req.num_packets > self.cfg.max_receive_packets {
            return self.refuse(now, AcceptCode::PermanentResourceLimit);
        }
        self.admit_session(now, req, role);
    }

    /// A complete, authenticated Request-TW-Session (RFC 5357 3.5): the server is the
    /// session-reflector. The session is kept as an OWAMP request in which the server
    /// receives ([`RequestTwSession::to_request`]): no slots, the SID made here.
    fn on_twamp_request(&mut self, now: OwampTime, tw: RequestTwSession) {
        self.state = State::Idle;
        let req = tw.to_request();
        if !supported_packets(&req, self.conn.packet_mode()) {
            return self.refuse(now, AcceptCode::NotSupported);
        }
        // As RFC 4656 7 for an OWAMP sender: in open mode the reflector only sends to the
        // client itself, so that it cannot be aimed at a third party.
        if self.conn.mode == Mode::Open
            && or_fallback(req.sender_address, self.peer.ip()) != self.peer.ip()
        {
            return self.refuse(now, AcceptCode::Failure);
        }
        self.admit_session(now, req, Role::Receiver);
    }

    /// A request the server can serve: make the SID, ask the policy, pick the port.
    fn admit_session(&mut self, now: OwampTime, mut req: RequestSession, role: Role) {
        let local_ip = match role {
            Role::Receiver => or_fallback(req.receiver_address, self.local.ip()),
            Role::Sender => or_fallback(req.sender_address, self.local.ip()),
        };
        let sid = match role {
            Role::Receiver => {
                let mut r = [0u8; 4];
                self.rng.fill_bytes(&mut r);
                make_sid(or_fallback(req.receiver_address, self.local.ip()), now, r)
            }
            Role::Sender => {
                // RFC 4656 7: in open mode the server only sends to the client itself.
                if self.conn.mode == Mode::Open
                    && or_fallback(req.receiver_address, self.peer.ip()) != self.peer.ip()
                {
                    return self.refuse(now, AcceptCode::Failure);
                }
                req.sid
            }
        };
        if self.conn.has_session(&sid) {
            return self.refuse(now, AcceptCode::Failure);
        }
        req.sid = sid;
        let admission = TestAdmission {
            peer: Peer {
                addr: self.peer.ip(),
                mode: self.conn.mode,
                key_id: self.key_id.as_deref(),
            },
            sid,
            role,
            request: &req,
        };
        if let Err(code) = self.policy.admit_test(&admission) {
            let code = if code.is_ok() {
                AcceptCode::Failure
            } else {
                code
            };
            return self.refuse(now, code);
        }
        let port = match self.cfg.test_ports {
            Some(range) => {
                let mut d = [0u8; 4];
                self.rng.fill_bytes(&mut d);
                range.pick(u32::from_be_bytes(d))
            }
            None => 0,
        };
        let local = SocketAddr::new(local_ip, port);
        self.conn
            .out
            .push_back(Output::PrepareTestEndpoint(EndpointSetup {
                sid,
                role,
                local,
                recv_buffer: recv_buffer_for(&req, role, self.conn.packet_mode()),
            }));
        self.state = State::AwaitEndpoint(Box::new(Pending {
            req,
            sid,
            role,
            local,
            first_port: port,
        }));
        self.conn.wait_peer(now);
    }

    /// The application's answer to [`Output::PrepareTestEndpoint`].
    fn on_endpoint(
        &mut self,
        now: OwampTime,
        sid: SessionId,
        result: Result<u16, Option<AcceptCode>>,
    ) -> Result<(), ControlError> {
        let refused = self.wrong_state("an endpoint answer");
        let State::AwaitEndpoint(p) = std::mem::replace(&mut self.state, State::Idle) else {
            return Err(refused);
        };
        if p.sid != sid {
            self.state = State::AwaitEndpoint(p);
            return Err(ControlError::UnknownSession);
        }
        let mut p = *p;
        let port = match result {
            Ok(port) => port,
            Err(None) => {
                // Port in use: try the next one of the range, up to a full turn.
                let next = self
                    .cfg
                    .test_ports
                    .map(|r| r.next(p.local.port()))
                    .filter(|&n| n != p.first_port);
                match next {
                    Some(n) => {
                        p.local.set_port(n);
                        self.conn
                            .out
                            .push_back(Output::PrepareTestEndpoint(EndpointSetup {
                                sid,
                                role: p.role,
                                local: p.local,
                                recv_buffer: recv_buffer_for(
                                    &p.req,
                                    p.role,
                                    self.conn.packet_mode(),
                                ),
                            }));
                        self.state = State::AwaitEndpoint(Box::new(p));
                        return Ok(());
                    }
                    None => {
                        self.policy.release_test(&sid, p.role);
                        self.refuse(now, AcceptCode::TemporaryResourceLimit);
                        return Ok(());
                    }
                }
            }
            Err(Some(code)) => {
                self.policy.release_test(&sid, p.role);
                let code = if code.is_ok() {
                    AcceptCode::Failure
                } else {
                    code
                };
                self.refuse(now, code);
                return Ok(());
            }
        };
        let mut req = p.req;
        let peer = match p.role {
            Role::Receiver => {
                req.receiver_port = port;
                SocketAddr::new(
                    or_fallback(req.sender_address, self.peer.ip()),
                    req.sender_port,
                )
            }
            Role::Sender => {
                req.sender_port = port;
                SocketAddr::new(
                    or_fallback(req.receiver_address, self.peer.ip()),
                    req.receiver_port,
                )
            }
        };
        let msg = AcceptSession {
            accept: AcceptCode::Ok,
            port,
            sid,
            hmac: [0; 16],
        };
        if self.conn.stream.send_sealed(msg.to_bytes()).is_err() {
            self.conn.close(CloseReason::Local);
            return Ok(());
        }
        let mut local = p.local;
        local.set_port(port);
        self.conn
            .out
            .push_back(Output::SessionAccepted(Box::new(SessionInfo {
                sid,
                role: p.role,
                mode: self.conn.packet_mode(),
                keys: self.conn.keys.clone(),
                local,
                peer,
                request: req.clone(),
            })));
        self.conn.sessions.push(LocalSession {
            sid,
            role: p.role,
            request: req,
            report: None,
        });
        self.conn.wait_peer(now);
        Ok(())
    }

    /// Start-Sessions (RFC 4656 3.6): acknowledged at once; the application starts the
    /// endpoints.
    fn on_start(&mut self, now: OwampTime) -> Result<(), ProtocolError> {
        let ack = StartAck {
            accept: AcceptCode::Ok,
            hmac: [0; 16],
        };
        self.conn
            .stream
            .send_sealed(ack.to_bytes())
            .map_err(|_| ProtocolError::Malformed("Start-Ack"))?;
        self.state = State::Idle;
        self.conn.start_test(now);
        if self.conn.test.is_none() {
            self.after_test();
        }
        Ok(())
    }

    /// The test is over: its sessions' resources are released.
    fn after_test(&mut self) {
        for s in std::mem::take(&mut self.conn.ended) {
            self.policy.release_test(&s.sid, s.role);
        }
        self.state = State::Idle;
    }

    /// Fetch-Session (RFC 4656 3.9).
    fn on_fetch(&mut self, now: OwampTime, begin: u32, end: u32, sid: SessionId) {
        if let Err(code) = self.policy.allow_fetch(
            Peer {
                addr: self.peer.ip(),
                mode: self.conn.mode,
                key_id: self.key_id.as_deref(),
            },
            &sid,
        ) {
            let code = if code.is_ok() {
                AcceptCode::Failure
            } else {
                code
            };
            self.fetch_refuse(now, code);
            return;
        }
        self.conn
            .out
            .push_back(Output::FetchRequest { sid, begin, end });
        self.state = State::AwaitFetch { begin, end };
        self.conn.wait_peer(now);
    }

    fn fetch_refuse(&mut self, now: OwampTime, code: AcceptCode) {
        let ack = FetchAck {
            accept: code,
            finished: Finished::No,
            next_seqno: 0,
            num_skip_ranges: 0,
            num_records: 0,
            hmac: [0; 16],
        };
        if self.conn.stream.send_sealed(ack.to_bytes()).is_err() {
            self.conn.close(CloseReason::Local);
            return;
        }
        self.state = State::Idle;
        self.conn.wait_peer(now);
    }

    /// The application's answer to [`Output::FetchRequest`].
    fn on_fetch_reply(&mut self, now: OwampTime, reply: FetchReply) -> Result<(), ControlError> {
        let State::AwaitFetch { begin, end, .. } = self.state else {
            return Err(self.wrong_state("a fetch reply"));
        };
        let stored = match reply {
            FetchReply::NotFound => {
                self.fetch_refuse(now, AcceptCode::Failure);
                return Ok(());
            }
            FetchReply::Failed => {
                self.fetch_refuse(now, AcceptCode::InternalError);
                return Ok(());
            }
            FetchReply::Found(s) => s,
            FetchReply::Streamed(s) => return self.on_fetch_stream(now, begin, end, *s),
        };
        // A whole session can only be fetched once it is complete (RFC 4656 3.9).
        if FetchSelection::refused(begin, end, stored.finished) {
            self.fetch_refuse(now, AcceptCode::Failure);
            return Ok(());
        }
        if let Err(_e) = self.send_fetch(begin, end, &stored) {
            self.conn.close(CloseReason::Local);
            return Ok(());
        }
        self.state = State::Idle;
        self.conn.wait_peer(now);
        Ok(())
    }

    /// A streamed answer: Fetch-Ack, request and skip ranges now, the records as the
    /// application feeds them ([`Input::FetchRecords`]).
    fn on_fetch_stream(
        &mut self,
        now: OwampTime,
        begin: u32,
        end: u32,
        s: FetchStream,
    ) -> Result<(), ControlError> {
        if FetchSelection::refused(begin, end, s.finished) {
            self.fetch_refuse(now, AcceptCode::Failure);
            return Ok(());
        }
        let head = self.send_fetch_head(
            &s.request,
            s.finished,
            s.next_seqno,
            &s.skips,
            s.num_records,
        );
        if head.is_err() {
            self.conn.close(CloseReason::Local);
            return Ok(());
        }
        self.state = State::Fetching {
            remaining: s.num_records,
            carry: Vec::new(),
        };
        self.on_fetch_records(now, &[])
    }

    /// Records of a streamed answer: encrypted and added to the HMAC a whole block at a
    /// time; after the last one, the padding and the HMAC (RFC 4656 3.9).
    fn on_fetch_records(
        &mut self,
        now: OwampTime,
        records: &[crate::wire::DataRecord],
    ) -> Result<(), ControlError> {
        let State::Fetching { remaining, carry } = &mut self.state else {
            return Err(self.wrong_state("fetched records"));
        };
        let n = u32::try_from(records.len()).unwrap_or(u32::MAX);
        if n > *remaining {
            return Err(ControlError::InvalidRequest(
                "more fetched records than the answer announced",
            ));
        }
        *remaining -= n;
        for r in records {
            r.write_to(carry);
        }
        let last = *remaining == 0;
        let whole = carry.len() / BLOCK * BLOCK;
        let mut blocks: Vec<u8> = carry.drain(..whole).collect();
        if last {
            blocks.append(carry);
            blocks.resize(blocks.len().next_multiple_of(BLOCK), 0);
            blocks.extend_from_slice(&[0u8; BLOCK]);
        }
        let sent = if last {
            self.conn.stream.send_sealed(blocks)
        } else if blocks.is_empty() {
            Ok(())
        } else {
            self.conn.stream.send_update(blocks)
        };
        if sent.is_err() {
            self.conn.close(CloseReason::Local);
            return Ok(());
        }
        if last {
            self.state = State::Idle;
            self.conn.wait_peer(now);
        }
        Ok(())
    }

    /// Records of a streamed answer still to be fed ([`Input::FetchRecords`]).
    pub fn fetch_remaining(&self) -> u32 {
        match &self.state {
            State::Fetching { remaining, .. } if !self.conn.closed => *remaining,
            _ => 0,
        }
    }

    /// Fetch-Ack, the stored request, skip ranges and records, each part with its HMAC
    /// (RFC 4656 3.9).
    fn send_fetch(
        &mut self,
        begin: u32,
        end: u32,
        stored: &StoredSession,
    ) -> Result<(), crate::crypto::CryptoError> {
        let records = select_records(stored, begin, end);
        self.send_fetch_head(
            &stored.request,
            stored.finished,
            stored.next_seqno,
            &stored.skips,
            records.len() as u32,
        )?;
        let mut recs = Vec::new();
        FetchData::write_records(&records, &mut recs);
        recs.extend_from_slice(&[0u8; BLOCK]);
        self.conn.stream.send_sealed(recs)
    }

    /// Fetch-Ack, the stored request and the skip ranges (RFC 4656 3.9); `num_records` records
    /// follow.
    fn send_fetch_head(
        &mut self,
        request: &crate::wire::RequestSession,
        state: Finished,
        next_seqno: u32,
        skips: &[SkipRange],
        num_records: u32,
    ) -> Result<(), crate::crypto::CryptoError> {
        let finished = state.is_finished();
        let skips: &[SkipRange] = if finished { skips } else { &[] };
        let ack = FetchAck {
            accept: AcceptCode::Ok,
            finished: state,
            next_seqno: if finished { next_seqno } else { 0 },
            num_skip_ranges: skips.len() as u32,
            num_records,
            hmac: [0; 16],
        };
        let s = &mut self.conn.stream;
        s.send_sealed(ack.to_bytes())?;
        // The stored request, with HMACs of this connection (as a Request-Session).
        let mut req = request.clone();
        req.hmac = [0; 16];
        req.slots_hmac = [0; 16];
        let (fixed, slots) = codec::split_at_first_hmac(req.to_bytes(), codec::REQUEST_BODY_LEN);
        s.send_sealed(fixed)?;
        s.send_sealed(slots)?;
        let mut sk = Vec::new();
        SkipRange::write_block(skips, &mut sk);
        sk.extend_from_slice(&[0u8; BLOCK]);
        s.send_sealed(sk)
    }
}

/// Largest UDP payload: 65535 octets less the UDP header, and for IPv4 its header too (the
/// IPv6 payload length does not count the IPv6 header).
const MAX_UDP_PAYLOAD_V4: u64 = 65_535 - 20 - 8;
const MAX_UDP_PAYLOAD_V6: u64 = 65_535 - 8;

/// Whether a test packet of the session (header and padding, RFC 4656 4.1.2) fits in one UDP
/// datagram of the session's address family.
fn fits_in_datagram(req: &RequestSession, mode: Mode) -> bool {
    let max = if req.ipvn() == 6 {
        MAX_UDP_PAYLOAD_V6
    } else {
        MAX_UDP_PAYLOAD_V4
    };
    let header = crate::wire::TestPacket::header_len(mode) as u64;
    header + u64::from(req.padding_length) <= max
}

/// Whether the server can send and receive the session's packets: only a DSCP in Type-P (as the
/// reference), and a test packet that fits in one UDP datagram (RFC 4656 4.1.2; a larger
/// padding would also make the sender allocate a buffer of the client's choosing). A TWAMP
/// reflector's packet is no longer than the sender's or its own header (RFC 5357 4.2.1).
fn supported_packets(req: &RequestSession, mode: Mode) -> bool {
    req.type_p.0 & !0x3F00_0000 == 0 && fits_in_datagram(req, mode)
}

/// The records a Fetch-Session gets (RFC 4656 3.9): those numbered `begin..=end`; for a
/// session that did not finish normally, none after the last packet received (later missing
/// packets may still be in flight, or were never sent).
fn select_records(stored: &StoredSession, begin: u32, end: u32) -> Vec<crate::wire::DataRecord> {
    let sel = FetchSelection::new(begin, end, stored.finished, || {
        stored
            .records
            .iter()
            .filter(|r| !r.is_lost())
            .map(|r| r.seq)
            .max()
    });
    stored
        .records
        .iter()
        .filter(|r| sel.keeps(r))
        .copied()
        .collect()
}
