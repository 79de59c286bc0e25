//! The client side of a control connection (owping).

use std::net::{SocketAddr, TcpStream};

use owamp_core::connection::Connection;
use owamp_core::control::{Client, Mode, Role};
use owamp_core::io::{FetchedSession, SessionInfo};
use owamp_core::time::OwampTime;
use owamp_core::wire::SessionId;
use owamp_os::host::{
    client_connection, fetched_to_stored, incomplete, take_received, ClientError, ClientOptions,
    ClientState, DirectionResult, Next, SessionSpec, StopHandle, TestEnd, TestPlan, TestResults,
};
use owamp_os::rng::OsRng;

use super::driver::Driver;

/// A control connection to a server, set up and ready for commands.
pub struct ClientConnection {
    d: Driver<Client<OsRng>>,
    st: ClientState,
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
        let st = ClientState::new(opts, stream.local_addr()?, stream.peer_addr()?);
        let conn = client_connection(opts);
        let d = Driver::new(conn, stream, &opts.endpoint, None, opts.io_timeout)?;
        let mut c = Self { d, st };
        loop {
            let e = c.next(None);
            if let Some(r) = c.st.on_setup(e) {
                return r.map(|()| c);
            }
        }
    }

    fn conn(&mut self) -> &mut Connection<Client<OsRng>> {
        &mut self.d.h.conn
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
        self.d.h.now()
    }

    /// The sessions accepted so far on this connection.
    pub fn sessions(&self) -> &[SessionInfo] {
        self.st.sessions()
    }

    /// The next event, stepping the connection until there is one (or it has closed). While
    /// a test runs, setting `stop` stops it early.
    fn next(&mut self, stop: Option<&StopHandle>) -> Next {
        let mut stop_fed = false;
        loop {
            if let Some(e) = self.d.h.events.pop_front() {
                return Next::Event(e);
            }
            if let Some(r) = &self.d.h.closed {
                return Next::Closed(r.clone());
            }
            if !stop_fed && stop.is_some_and(|s| s.is_stopped()) && self.d.h.conn.in_test() {
                stop_fed = true;
                let now = self.now();
                let _ = self.conn().stop_sessions(now);
            }
            self.d.step();
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
        let now = self.now();
        self.conn().request_session(now, req)?;
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
        let now = self.now();
        self.conn().start_sessions(now)?;
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
        let (complete, closed) = loop {
            if let Some(ended) = ClientState::on_wait(self.next(stop)) {
                break ended;
            }
        };
        Ok(TestEnd {
            complete,
            closed,
            stopped_early: stop.is_some_and(|s| s.is_stopped()),
            received: std::mem::take(&mut self.d.h.received),
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
        let now = self.now();
        self.conn().fetch(now, sid, begin, end)?;
        loop {
            if let Some(r) = ClientState::on_fetch(self.next(None)) {
                return r;
            }
        }
    }

    /// Closes the connection.
    pub fn close(mut self) {
        let now = self.now();
        self.conn().close(now);
        self.d.close_now();
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
