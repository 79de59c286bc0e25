//! The client side of a control connection (owping).

use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use owamp_core::connection::ClientEvent;
use owamp_core::control::{Client, CloseReason, ControlError, Mode, Role, SessionRequest};
use owamp_core::io::{FetchedSession, SessionInfo, StoredSession};
use owamp_core::session::twamp::TwoWayRecord;
use owamp_core::time::OwampTime;
use owamp_core::wire::SessionId;
use owamp_os::client_records::{ClientRecords, FetchTarget, Report, SavedSession};
use owamp_os::clock::{Clock, SharedClock};
use owamp_os::host::{
    client_connection, fetched_to_stored, incomplete, take_received, ClientError, ClientOptions,
    ClientState, DirectionResult, Next, SessionSpec, StopHandle, TestEnd, TestPlan, TestResults,
    TwoWaySessionEnd, TwoWayTestEnd,
};
use owamp_os::progress::ProgressWatch;
use owamp_os::rng::OsRng;

use super::driver::Driver;

/// What the application asks of the connection's thread.
enum Cmd {
    Request(SessionRequest),
    Start,
    Stop,
    Fetch(SessionId, u32, u32, FetchTarget),
    /// Answered by [`Msg::PacketMode`].
    PacketMode,
    Close,
}

/// What the connection's thread tells the application.
enum Msg {
    Report(Report),
    /// The answer to a command (an error is misuse: a command in the wrong state).
    Done(Result<(), ControlError>),
    /// The mode of the test packets ([`Cmd::PacketMode`]).
    PacketMode(Mode),
    Closed(CloseReason),
}

/// A control connection to a server, set up and ready for commands.
///
/// The connection and its test sessions run on a thread of their own, so that sessions keep
/// to their schedule whatever the application does meanwhile (set up the next connection,
/// for example); the methods send it commands and wait for its answers.
pub struct ClientConnection {
    cmds: mpsc::Sender<Cmd>,
    msgs: mpsc::Receiver<Msg>,
    waker: UnixDatagram,
    thread: Option<JoinHandle<()>>,
    clock: SharedClock,
    st: ClientState,
    received: Vec<StoredSession>,
    saved: Vec<SavedSession>,
    /// TWAMP sessions this client sent that ended, not yet handed out.
    two_way: Vec<TwoWaySessionEnd>,
    /// The mode of the test packets, learnt at set-up.
    packet_mode: Mode,
    closed: Option<CloseReason>,
    /// Stop commands sent by [`next`](Self::next) whose answer has not come yet.
    unanswered: usize,
    stop_sent: bool,
    progress: ProgressWatch,
    /// How often a wait with a stop flag looks at it ([`EndpointConfig::poll_interval`]).
    ///
    /// [`EndpointConfig::poll_interval`]: owamp_os::host::EndpointConfig::poll_interval
    poll_interval: Duration,
}

impl std::fmt::Debug for ClientConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConnection")
            .field("server", &self.st.server_ip())
            .field("mode", &self.st.mode())
            .field("sessions", &self.st.sessions().len())
            .finish_non_exhaustive()
    }
}

/// The connection's thread: carries out commands, drives the connection, reports. Records
/// go where `records` says here, on this thread: only a batch is in memory at a time.
fn serve(
    mut d: Driver<Client<OsRng>>,
    mut records: ClientRecords,
    cmds: mpsc::Receiver<Cmd>,
    msgs: mpsc::Sender<Msg>,
    progress: ProgressWatch,
) {
    let mut published = std::time::Instant::now();
    let report = |r| {
        let _ = msgs.send(Msg::Report(r));
    };
    // This thread sends test packets: its waits should end when asked. A kernel that refuses
    // only makes packets leave a little later.
    let _ = owamp_os::timing::tighten_timer_slack();
    loop {
        while let Ok(cmd) = cmds.try_recv() {
            let now = d.h.now();
            let c = &mut d.h.conn;
            let r = match cmd {
                Cmd::PacketMode => {
                    let _ = msgs.send(Msg::PacketMode(c.machine().packet_mode()));
                    continue;
                }
                Cmd::Request(req) => c.request_session(req),
                Cmd::Start => c.start_sessions(now),
                Cmd::Stop => c.stop_sessions(now),
                Cmd::Fetch(sid, b, e, target) => {
                    let r = c.fetch(now, sid, b, e);
                    if r.is_ok() {
                        records.expect_fetch(target);
                    }
                    r
                }
                Cmd::Close => {
                    c.close(now);
                    Ok(())
                }
            };
            let _ = msgs.send(Msg::Done(r));
        }
        records.drain(&mut d.h, report);
        if let Some(r) = d.h.closed.clone() {
            d.close_now();
            records.drain(&mut d.h, report);
            // A fetch broken off: its file goes before the application hears of the end.
            records.abort_fetch();
            let _ = msgs.send(Msg::Closed(r));
            return;
        }
        // A snapshot a few times a second is plenty for a display.
        if published.elapsed() >= PROGRESS_EVERY {
            progress.publish(owamp_os::progress::of(&d.h.conn));
            published = std::time::Instant::now();
        }
        d.step();
    }
}

/// How often the connection's thread refreshes [`ClientConnection::progress`].
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

impl ClientConnection {
    /// Connects to `server` and completes the set-up (RFC 4656 3.1): the strongest mode both
    /// allow is used.
    pub fn connect(server: SocketAddr, opts: &ClientOptions) -> Result<Self, ClientError> {
        let stream = TcpStream::connect_timeout(&server, opts.connect_timeout)
            .map_err(ClientError::Connect)?;
        Self::from_stream(stream, opts)
    }

    /// Completes the set-up on a connected stream.
    pub fn from_stream(stream: TcpStream, opts: &ClientOptions) -> Result<Self, ClientError> {
        let (local, server) = (stream.local_addr()?, stream.peer_addr()?);
        let st = ClientState::new(opts, local, server);
        // A request without addresses (a client behind a NAT) tests between these.
        let test_ip = opts
            .test_ip
            .unwrap_or(owamp_core::control::canonical(local).ip());
        let conn = client_connection(opts)
            .with_control_addresses(test_ip, owamp_core::control::canonical(server).ip());
        let (records, store) = ClientRecords::new(opts)?;
        let mut d = Driver::new(conn, stream, &opts.endpoint, store, opts.io_timeout)?;
        let waker = d.waker()?;
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let (msg_tx, msg_rx) = mpsc::channel();
        let progress = ProgressWatch::default();
        let watch = progress.clone();
        let thread = std::thread::Builder::new()
            .name("owamp-client".into())
            .spawn(move || serve(d, records, cmd_rx, msg_tx, watch))?;
        let mut c = Self {
            cmds: cmd_tx,
            msgs: msg_rx,
            waker,
            thread: Some(thread),
            clock: opts.endpoint.clock.clone(),
            st,
            received: Vec::new(),
            saved: Vec::new(),
            two_way: Vec::new(),
            packet_mode: Mode::Open,
            closed: None,
            unanswered: 0,
            stop_sent: false,
            progress,
            poll_interval: opts.endpoint.poll_interval.max(Duration::from_millis(1)),
        };
        loop {
            let e = c.next(None);
            if let Some(r) = c.st.on_setup(e) {
                r?;
                break;
            }
        }
        c.packet_mode = c.ask_packet_mode()?;
        Ok(c)
    }

    /// Asks the connection's thread for the mode of the test packets.
    fn ask_packet_mode(&mut self) -> Result<Mode, ClientError> {
        if self.cmds.send(Cmd::PacketMode).is_err() {
            return Err(ClientError::Closed(self.closed_reason()));
        }
        let _ = self.waker.send(&[1]);
        loop {
            match self.msgs.recv() {
                Ok(Msg::PacketMode(m)) => return Ok(m),
                Ok(m) => self.keep(m),
                Err(_) => return Err(ClientError::Closed(self.closed_reason())),
            }
        }
    }

    /// The mode of the test packets: the connection's [`mode`](Self::mode), but open in
    /// TWAMP's mixed mode (RFC 5618), whose control connection is authenticated.
    pub fn packet_mode(&self) -> Mode {
        self.packet_mode
    }

    /// The mode in use.
    pub fn mode(&self) -> Mode {
        self.st.mode()
    }

    /// A handle on the progress of the running test's sessions (refreshed a few times a
    /// second), for a display on another thread while [`wait`](Self::wait) blocks.
    pub fn progress(&self) -> ProgressWatch {
        self.progress.clone()
    }

    /// The time the server says it started (Server-Start's Start-Time, RFC 4656 3.1).
    pub fn server_start(&self) -> OwampTime {
        self.st.server_start()
    }

    /// The current time of the connection's clock.
    pub fn now(&self) -> OwampTime {
        self.clock.now()
    }

    /// The sessions accepted so far on this connection.
    pub fn sessions(&self) -> &[SessionInfo] {
        self.st.sessions()
    }

    /// Sends a command to the connection's thread and waits for its answer.
    fn command(&mut self, cmd: Cmd) -> Result<(), ClientError> {
        if let Some(r) = &self.closed {
            return Err(ClientError::Closed(r.clone()));
        }
        if self.cmds.send(cmd).is_err() {
            return Err(ClientError::Closed(CloseReason::Local));
        }
        let _ = self.waker.send(&[1]);
        loop {
            match self.msgs.recv() {
                Ok(Msg::Done(_)) if self.unanswered > 0 => self.unanswered -= 1,
                Ok(Msg::Done(r)) => return r.map_err(ClientError::from),
                Ok(m) => self.keep(m),
                Err(_) => return Err(ClientError::Closed(self.closed_reason())),
            }
        }
    }

    fn closed_reason(&self) -> CloseReason {
        self.closed.clone().unwrap_or(CloseReason::Local)
    }

    /// Keeps what the thread reports outside of an answer: events for later are not
    /// expected here, received sessions and the end are.
    fn keep(&mut self, m: Msg) {
        match m {
            Msg::Report(Report::Received(s)) => self.received.push(*s),
            Msg::Report(Report::Saved(s)) => self.saved.push(s),
            Msg::Report(Report::TwoWayEnd(e)) => self.two_way.push(*e),
            Msg::Closed(r) => self.closed = Some(r),
            Msg::Done(_) => self.unanswered = self.unanswered.saturating_sub(1),
            Msg::Report(Report::Event(_) | Report::Fetched(_)) | Msg::PacketMode(_) => {}
        }
    }

    /// The next event (or the end of the connection). While a test runs, setting `stop`
    /// stops it early.
    fn next(&mut self, stop: Option<&StopHandle>) -> Next {
        loop {
            if let Some(r) = &self.closed {
                return Next::Closed(r.clone());
            }
            if !self.stop_sent && stop.is_some_and(|s| s.is_stopped()) {
                self.stop_sent = true;
                self.unanswered += 1;
                // Outside a test this is refused, which changes nothing.
                let _ = self.cmds.send(Cmd::Stop);
                let _ = self.waker.send(&[1]);
            }
            // The thread always reports within the connection's deadlines; the bound only
            // lets the stop flag be looked at (without one, the wait is only bounded).
            let poll = if stop.is_some() {
                self.poll_interval
            } else {
                Duration::from_secs(1)
            };
            match self.msgs.recv_timeout(poll) {
                Ok(Msg::Report(Report::Event(e))) => return Next::Event(e),
                Ok(Msg::Report(Report::Fetched(r))) => return Next::Fetched(r),
                Ok(m) => self.keep(m),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.closed.get_or_insert(CloseReason::Local);
                }
            }
        }
    }

    /// Requests one test session (RFC 4656 3.5) in which this client has `role`
    /// ([`Role::Sender`]: packets go to the server; [`Role::Receiver`]: they come from it),
    /// starting at `start_time`. Returns the session as both sides agreed on it.
    pub fn request_session(
        &mut self,
        role: Role,
        spec: &SessionSpec,
        start_time: OwampTime,
    ) -> Result<SessionInfo, ClientError> {
        let req = self.st.request(role, spec, start_time)?;
        self.request(req)
    }

    /// Requests a session as [`request_session`](Self::request_session) does, but with
    /// unspecified addresses in the request (zeros, "the control connection's": RFC 4656 3.5,
    /// kept by RFC 5357 3.5), for a client behind a NAT, whose own address means nothing to
    /// the server (twping's `-Z`). The test socket is still bound on the test address, and
    /// the session returned tests between it and the server's address.
    pub fn request_session_unaddressed(
        &mut self,
        role: Role,
        spec: &SessionSpec,
        start_time: OwampTime,
    ) -> Result<SessionInfo, ClientError> {
        let mut req = self.st.request(role, spec, start_time)?;
        let any = match req.local.ip() {
            std::net::IpAddr::V4(_) => std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            std::net::IpAddr::V6(_) => std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        req.local.set_ip(any);
        req.peer = any;
        self.request(req)
    }

    fn request(&mut self, req: SessionRequest) -> Result<SessionInfo, ClientError> {
        self.command(Cmd::Request(req))?;
        loop {
            let e = self.next(None);
            if let Some(r) = self.st.on_request(e) {
                return r;
            }
        }
    }

    /// Starts the sessions requested (RFC 4656 3.6): returns once the server accepted, with
    /// the local senders and receivers running.
    pub fn start(&mut self) -> Result<(), ClientError> {
        self.command(Cmd::Start)?;
        loop {
            if let Some(r) = ClientState::on_start(self.next(None)) {
                return r;
            }
        }
    }

    /// Waits for the end of the test: both sides send Stop-Sessions once their sessions are
    /// over (RFC 4656 3.8). Setting `stop` stops the test early: the local sessions end at
    /// once and Stop-Sessions is exchanged; records received so far are kept.
    pub fn wait(&mut self, stop: Option<&StopHandle>) -> Result<TestEnd, ClientError> {
        let end = self.wait_with(stop, &mut |_, _| {});
        self.two_way.clear();
        end
    }

    /// TWAMP ([`Protocol::Twamp`] in [`ClientOptions::control`]): waits for the end of the
    /// test as [`wait`](Self::wait) does, handing the reflector's replies (RFC 5357 4.2.1) to
    /// `replies` as they come, in batches, in the order they arrived, duplicates included:
    /// only a batch is held here at a time. Returns the end of the test and of each session
    /// this client sent (packets sent, and those no reply answered: lost, with the time each
    /// left).
    ///
    /// ```no_run
    /// use owamp_core::control::{Protocol, Role};
    /// use owamp_std::control::{ClientConnection, ClientOptions, SessionSpec};
    /// use std::time::Duration;
    ///
    /// let mut opts = ClientOptions::default();
    /// opts.control.protocol = Protocol::Twamp;
    /// let mut conn = ClientConnection::connect("127.0.0.1:862".parse()?, &opts)?;
    /// let spec = SessionSpec::periodic(10, Duration::from_millis(100));
    /// let start = conn.now().saturating_add(Duration::from_millis(500));
    /// conn.request_session(Role::Sender, &spec, start)?;
    /// conn.start()?;
    /// let mut replies = 0;
    /// let end = conn.wait_two_way(None, &mut |_sid, r| replies += r.len())?;
    /// let sent: u32 = end.sessions.iter().map(|s| s.end.sent).sum();
    /// println!("{replies} replies to {sent} packets");
    /// conn.close();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// [`Protocol::Twamp`]: owamp_core::control::Protocol::Twamp
    pub fn wait_two_way(
        &mut self,
        stop: Option<&StopHandle>,
        replies: &mut dyn FnMut(SessionId, &[TwoWayRecord]),
    ) -> Result<TwoWayTestEnd, ClientError> {
        let test = self.wait_with(stop, replies)?;
        Ok(TwoWayTestEnd {
            test,
            sessions: std::mem::take(&mut self.two_way),
        })
    }

    fn wait_with(
        &mut self,
        stop: Option<&StopHandle>,
        replies: &mut dyn FnMut(SessionId, &[TwoWayRecord]),
    ) -> Result<TestEnd, ClientError> {
        let (complete, closed) = loop {
            let e = match self.next(stop) {
                Next::Event(ClientEvent::TwoWayRecords { sid, records }) => {
                    replies(sid, &records);
                    continue;
                }
                e => e,
            };
            if let Some(ended) = self.st.on_wait(e) {
                break ended;
            }
        };
        // Sessions received are reported before the test's end.
        while let Ok(m) = self.msgs.try_recv() {
            self.keep(m);
        }
        Ok(TestEnd {
            complete,
            closed,
            stopped_early: stop.is_some_and(|s| s.is_stopped()),
            server_failure: self.st.take_server_failure(),
            received: std::mem::take(&mut self.received),
            saved: std::mem::take(&mut self.saved),
        })
    }

    /// Fetches the records of a session the server received (RFC 4656 3.9), sequence numbers
    /// `begin..=end` (`0, u32::MAX` for all).
    pub fn fetch(
        &mut self,
        sid: SessionId,
        begin: u32,
        end: u32,
    ) -> Result<FetchedSession, ClientError> {
        self.fetch_into(sid, begin, end, FetchTarget::Memory)
    }

    /// Fetches like [`fetch`](Self::fetch), writing the records to the `.owp` file `path` as
    /// they arrive (only a batch is in memory at a time) instead of returning them: the
    /// answer comes back without records. The file is written under a temporary name
    /// beside `path` and renamed over it once the answer is complete and its HMAC checked;
    /// if the fetch fails, the temporary file is removed and `path` is left as it was.
    pub fn fetch_to(
        &mut self,
        sid: SessionId,
        begin: u32,
        end: u32,
        path: &Path,
    ) -> Result<FetchedSession, ClientError> {
        owamp_os::owp_file::FetchFile::check_destination(path).map_err(|e| ClientError::Save {
            path: path.to_owned(),
            error: e.into(),
        })?;
        self.fetch_into(sid, begin, end, FetchTarget::File(path.to_owned()))
    }

    fn fetch_into(
        &mut self,
        sid: SessionId,
        begin: u32,
        end: u32,
        target: FetchTarget,
    ) -> Result<FetchedSession, ClientError> {
        self.command(Cmd::Fetch(sid, begin, end, target))?;
        loop {
            if let Some(r) = ClientState::on_fetch(self.next(None)) {
                return r;
            }
        }
    }

    /// Closes the connection (receive sessions still running are kept as incomplete, and
    /// lost with the connection: call [`wait`](Self::wait) first to collect them).
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        let _ = self.cmds.send(Cmd::Close);
        let _ = self.waker.send(&[1]);
        if let Some(t) = self.thread.take() {
            // The thread ends once the close is carried out (its writes are bounded by the
            // I/O timeout).
            let _ = t.join();
        }
    }
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Runs a whole measurement against `server`, as owping does: connect and set up, request
/// the sessions of `plan` (both start `plan.start_delay` from now), start them, wait for the
/// end (or for `stop`), fetch the records of the session the server received, close.
///
/// Errors before the test starts are returned as `Err`; after that, each direction carries
/// its own result, so records already received are never lost.
pub fn run_test(
    server: SocketAddr,
    opts: &ClientOptions,
    plan: &TestPlan,
    stop: Option<&StopHandle>,
) -> Result<TestResults, ClientError> {
    let interrupted = || stop.is_some_and(|s| s.is_stopped());
    let mut conn = ClientConnection::connect(server, opts)?;
    if interrupted() {
        conn.close();
        return Err(ClientError::Interrupted);
    }
    let start = conn.now().saturating_add(plan.start_delay);
    let to = plan
        .send
        .as_ref()
        .map(|s| conn.request_session(Role::Sender, s, start))
        .transpose()?;
    let from = plan
        .receive
        .as_ref()
        .map(|s| conn.request_session(Role::Receiver, s, start))
        .transpose()?;
    if interrupted() {
        conn.close();
        return Err(ClientError::Interrupted);
    }
    conn.start()?;
    let mut end = conn.wait(stop)?;
    let mut received = std::mem::take(&mut end.received);
    let from = from.map(|info| DirectionResult {
        data: take_received(&mut received, &info, &end),
        info,
    });
    let to = to.map(|info| {
        let data = if end.complete {
            conn.fetch(info.sid, 0, u32::MAX).map(fetched_to_stored)
        } else {
            Err(incomplete(&end))
        };
        DirectionResult { info, data }
    });
    let mode = conn.mode();
    conn.close();
    Ok(TestResults {
        mode,
        to,
        from,
        stopped_early: end.stopped_early,
    })
}
