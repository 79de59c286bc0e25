//! The client side of a control connection (owping).

use std::net::SocketAddr;
use std::path::Path;

use owamp_core::control::{Client, CloseReason, ControlError, Mode, Role, SessionRequest};
use owamp_core::io::{FetchedSession, SessionInfo, StoredSession};
use owamp_core::time::OwampTime;
use owamp_core::wire::SessionId;
use owamp_os::client_records::{ClientRecords, FetchTarget, Report, SavedSession};
use owamp_os::clock::{Clock, SharedClock};
use owamp_os::host::{
    client_connection, fetched_to_stored, incomplete, take_received, ClientError, ClientOptions,
    ClientState, DirectionResult, Next, SessionSpec, TestEnd, TestPlan, TestResults,
};
use owamp_os::rng::OsRng;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::driver::Driver;
use crate::StopToken;

/// What the application asks of the connection's task.
enum Cmd {
    Request(SessionRequest),
    Start,
    Stop,
    Fetch(SessionId, u32, u32, FetchTarget),
    Close,
}

/// What the connection's task tells the application.
enum Msg {
    Report(Report),
    /// The answer to a command (an error is misuse: a command in the wrong state).
    Done(Result<(), ControlError>),
    Closed(CloseReason),
}

/// A control connection to a server, set up and ready for commands.
///
/// The connection and its test sessions run on a task of their own (spawned on the current
/// Tokio runtime), so sessions keep to their schedule between calls; the methods send it
/// commands and wait for its answers. Every method waits at most until the connection's
/// deadline ([`ClientConfig::control_timeout`](owamp_core::control::ClientConfig::control_timeout)
/// while waiting for the server); [`connect`](Self::connect) at most
/// [`ClientOptions::connect_timeout`] for the TCP connection. Dropping the connection closes
/// it.
pub struct ClientConnection {
    cmds: mpsc::UnboundedSender<Cmd>,
    msgs: mpsc::UnboundedReceiver<Msg>,
    task: Option<JoinHandle<()>>,
    clock: SharedClock,
    st: ClientState,
    received: Vec<StoredSession>,
    saved: Vec<SavedSession>,
    closed: Option<CloseReason>,
    /// Stop commands sent by [`next`](Self::next) whose answer has not come yet.
    unanswered: usize,
    stop_sent: bool,
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

/// The connection's task: carries out commands, drives the connection, reports. Records go
/// where `records` says here, in the task: only a batch is in memory at a time.
async fn serve(
    mut d: Driver<Client<OsRng>>,
    mut records: ClientRecords,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    msgs: mpsc::UnboundedSender<Msg>,
) {
    let apply = |d: &mut Driver<Client<OsRng>>, records: &mut ClientRecords, cmd: Cmd| {
        let now = d.h.now();
        let c = &mut d.h.conn;
        let r = match cmd {
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
        Msg::Done(r)
    };
    let report = |r| {
        let _ = msgs.send(Msg::Report(r));
    };
    loop {
        d.flush().await;
        records.drain(&mut d.h, report);
        if let Some(r) = d.h.closed.clone() {
            d.close_now().await;
            records.drain(&mut d.h, report);
            // A fetch broken off: its file goes before the application hears of the end.
            records.abort_fetch();
            let _ = msgs.send(Msg::Closed(r));
            return;
        }
        tokio::select! {
            cmd = cmds.recv() => {
                // The handle is gone: close.
                let cmd = cmd.unwrap_or(Cmd::Close);
                let _ = msgs.send(apply(&mut d, &mut records, cmd));
            }
            () = d.wait_once() => {}
        }
    }
}

impl ClientConnection {
    /// Connects to `server` and completes the set-up (RFC 4656 3.1): the strongest mode both
    /// allow is used.
    pub async fn connect(server: SocketAddr, opts: &ClientOptions) -> Result<Self, ClientError> {
        let stream =
            match tokio::time::timeout(opts.connect_timeout, TcpStream::connect(server)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(ClientError::Connect(e)),
                Err(_) => return Err(ClientError::Connect(std::io::ErrorKind::TimedOut.into())),
            };
        Self::from_stream(stream, opts).await
    }

    /// Completes the set-up on a connected stream.
    pub async fn from_stream(stream: TcpStream, opts: &ClientOptions) -> Result<Self, ClientError> {
        let st = ClientState::new(opts, stream.local_addr()?, stream.peer_addr()?);
        let conn = client_connection(opts);
        let (records, store) = ClientRecords::new(opts)?;
        let d = Driver::new(conn, stream, &opts.endpoint, store, opts.io_timeout).await?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (msg_tx, msg_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve(d, records, cmd_rx, msg_tx));
        let mut c = Self {
            cmds: cmd_tx,
            msgs: msg_rx,
            task: Some(task),
            clock: opts.endpoint.clock.clone(),
            st,
            received: Vec::new(),
            saved: Vec::new(),
            closed: None,
            unanswered: 0,
            stop_sent: false,
        };
        loop {
            let e = c.next(None).await;
            if let Some(r) = c.st.on_setup(e) {
                return r.map(|()| c);
            }
        }
    }

    /// The mode in use.
    pub fn mode(&self) -> Mode {
        self.st.mode()
    }

    /// The server's Start-Time from Server-Start.
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

    /// Sends a command to the connection's task and waits for its answer.
    async fn command(&mut self, cmd: Cmd) -> Result<(), ClientError> {
        if let Some(r) = &self.closed {
            return Err(ClientError::Closed(r.clone()));
        }
        if self.cmds.send(cmd).is_err() {
            return Err(ClientError::Closed(CloseReason::Local));
        }
        loop {
            match self.msgs.recv().await {
                Some(Msg::Done(_)) if self.unanswered > 0 => self.unanswered -= 1,
                Some(Msg::Done(r)) => return r.map_err(ClientError::from),
                Some(m) => self.keep(m),
                None => {
                    let r = self.closed.clone().unwrap_or(CloseReason::Local);
                    return Err(ClientError::Closed(r));
                }
            }
        }
    }

    /// Keeps what the task reports outside of an answer.
    fn keep(&mut self, m: Msg) {
        match m {
            Msg::Report(Report::Received(s)) => self.received.push(*s),
            Msg::Report(Report::Saved(s)) => self.saved.push(s),
            Msg::Closed(r) => self.closed = Some(r),
            Msg::Done(_) => self.unanswered = self.unanswered.saturating_sub(1),
            Msg::Report(Report::Event(_) | Report::Fetched(_) | Report::TwoWayEnd(_)) => {}
        }
    }

    /// The next event (or the end of the connection). While a test runs, setting `stop`
    /// stops it early.
    async fn next(&mut self, stop: Option<&StopToken>) -> Next {
        loop {
            if let Some(r) = &self.closed {
                return Next::Closed(r.clone());
            }
            if !self.stop_sent && stop.is_some_and(StopToken::is_stopped) {
                self.stop_sent = true;
                self.unanswered += 1;
                // Outside a test this is refused, which changes nothing.
                let _ = self.cmds.send(Cmd::Stop);
            }
            let m = match stop {
                Some(s) if !self.stop_sent => tokio::select! {
                    m = self.msgs.recv() => m,
                    () = s.stopped() => continue,
                },
                _ => self.msgs.recv().await,
            };
            match m {
                Some(Msg::Report(Report::Event(e))) => return Next::Event(e),
                Some(Msg::Report(Report::Fetched(r))) => return Next::Fetched(r),
                Some(m) => self.keep(m),
                None => {
                    self.closed.get_or_insert(CloseReason::Local);
                }
            }
        }
    }

    /// Requests one test session (RFC 4656 3.5) in which this client has `role`
    /// ([`Role::Sender`]: packets go to the server; [`Role::Receiver`]: they come from it),
    /// starting at `start_time`. Returns the session as both sides agreed on it.
    pub async fn request_session(
        &mut self,
        role: Role,
        spec: &SessionSpec,
        start_time: OwampTime,
    ) -> Result<SessionInfo, ClientError> {
        let req = self.st.request(role, spec, start_time)?;
        self.command(Cmd::Request(req)).await?;
        loop {
            let e = self.next(None).await;
            if let Some(r) = self.st.on_request(e) {
                return r;
            }
        }
    }

    /// Starts the sessions requested (RFC 4656 3.6): returns once the server accepted, with
    /// the local senders and receivers running.
    pub async fn start(&mut self) -> Result<(), ClientError> {
        self.command(Cmd::Start).await?;
        loop {
            if let Some(r) = ClientState::on_start(self.next(None).await) {
                return r;
            }
        }
    }

    /// Waits for the end of the test: both sides send Stop-Sessions once their sessions are
    /// over (RFC 4656 3.8). Setting `stop` stops the test early: the local sessions end at
    /// once and Stop-Sessions is exchanged; records received so far are kept.
    pub async fn wait(&mut self, stop: Option<&StopToken>) -> Result<TestEnd, ClientError> {
        let (complete, closed) = loop {
            let e = self.next(stop).await;
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
            stopped_early: stop.is_some_and(StopToken::is_stopped),
            server_failure: self.st.take_server_failure(),
            received: std::mem::take(&mut self.received),
            saved: std::mem::take(&mut self.saved),
        })
    }

    /// Fetches the records of a session the server received (RFC 4656 3.9), sequence numbers
    /// `begin..=end` (`0, u32::MAX` for all).
    pub async fn fetch(
        &mut self,
        sid: SessionId,
        begin: u32,
        end: u32,
    ) -> Result<FetchedSession, ClientError> {
        self.fetch_into(sid, begin, end, FetchTarget::Memory).await
    }

    /// Fetches like [`fetch`](Self::fetch), writing the records to the `.owp` file `path` as
    /// they arrive (only a batch is in memory at a time) instead of returning them: the
    /// answer comes back without records. The file is written under a temporary name
    /// beside `path` and renamed over it once the answer is complete and its HMAC checked;
    /// if the fetch fails, the temporary file is removed and `path` is left as it was.
    pub async fn fetch_to(
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
            .await
    }

    async fn fetch_into(
        &mut self,
        sid: SessionId,
        begin: u32,
        end: u32,
        target: FetchTarget,
    ) -> Result<FetchedSession, ClientError> {
        self.command(Cmd::Fetch(sid, begin, end, target)).await?;
        loop {
            if let Some(r) = ClientState::on_fetch(self.next(None).await) {
                return r;
            }
        }
    }

    /// Closes the connection and waits for its task to end.
    pub async fn close(mut self) {
        let _ = self.cmds.send(Cmd::Close);
        if let Some(t) = self.task.take() {
            // The task ends once the close is carried out (its writes are bounded by the
            // I/O timeout).
            let _ = t.await;
        }
    }
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        // The task sees the command (or the closed channel) and closes the connection.
        let _ = self.cmds.send(Cmd::Close);
    }
}

/// Runs a whole measurement against `server`, as owping does: connect and set up, request
/// the sessions of `plan` (both start `plan.start_delay` from now), start them, wait for the
/// end (or for `stop`), fetch the records of the session the server received, close.
///
/// Errors before the test starts are returned as `Err`; after that, each direction carries
/// its own result, so records already received are never lost.
pub async fn run_test(
    server: SocketAddr,
    opts: &ClientOptions,
    plan: &TestPlan,
    stop: Option<&StopToken>,
) -> Result<TestResults, ClientError> {
    let interrupted = || stop.is_some_and(StopToken::is_stopped);
    let mut conn = ClientConnection::connect(server, opts).await?;
    if interrupted() {
        conn.close().await;
        return Err(ClientError::Interrupted);
    }
    let start = conn.now().saturating_add(plan.start_delay);
    let to = match &plan.send {
        Some(s) => Some(conn.request_session(Role::Sender, s, start).await?),
        None => None,
    };
    let from = match &plan.receive {
        Some(s) => Some(conn.request_session(Role::Receiver, s, start).await?),
        None => None,
    };
    if interrupted() {
        conn.close().await;
        return Err(ClientError::Interrupted);
    }
    conn.start().await?;
    let mut end = conn.wait(stop).await?;
    let mut received = std::mem::take(&mut end.received);
    let from = from.map(|info| DirectionResult {
        data: take_received(&mut received, &info, &end),
        info,
    });
    let to = match to {
        Some(info) => {
            let data = if end.complete {
                conn.fetch(info.sid, 0, u32::MAX)
                    .await
                    .map(fetched_to_stored)
            } else {
                Err(incomplete(&end))
            };
            Some(DirectionResult { info, data })
        }
        None => None,
    };
    let mode = conn.mode();
    conn.close().await;
    Ok(TestResults {
        mode,
        to,
        from,
        stopped_early: end.stopped_early,
    })
}
