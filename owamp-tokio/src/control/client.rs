//! The client side of a control connection (owping).

use std::net::SocketAddr;

use owamp_core::connection::Connection;
use owamp_core::control::{Client, Mode, Role};
use owamp_core::io::{FetchedSession, SessionInfo};
use owamp_core::time::OwampTime;
use owamp_core::wire::SessionId;
use owamp_os::host::{
    client_connection, fetched_to_stored, incomplete, take_received, ClientError, ClientOptions,
    ClientState, DirectionResult, Next, SessionSpec, TestEnd, TestPlan, TestResults,
};
use owamp_os::rng::OsRng;
use tokio::net::TcpStream;

use super::driver::Driver;
use crate::StopToken;

/// A control connection to a server, set up and ready for commands.
///
/// The connection and its test sessions run while a method is awaited: between calls nothing
/// is sent or read. A method's future may be dropped (by a timeout, for example): the test
/// then pauses until the next call, but if it was dropped while a control message was being
/// written the connection is broken and should be dropped. Every method waits at most until the state machine's deadline
/// ([`ClientConfig::control_timeout`](owamp_core::control::ClientConfig::control_timeout)
/// while waiting for the server); [`connect`](Self::connect) at most
/// [`ClientOptions::connect_timeout`] for the TCP connection.
pub struct ClientConnection {
    d: Driver<Client<OsRng>>,
    st: ClientState,
    /// Whether the stop signal of [`wait`](Self::wait) has been given to the connection.
    stop_fed: bool,
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
        let d = Driver::new(conn, stream, &opts.endpoint, None, opts.io_timeout).await?;
        let mut c = Self {
            d,
            st,
            stop_fed: false,
        };
        loop {
            let e = c.next(None).await;
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
    async fn next(&mut self, stop: Option<&StopToken>) -> Next {
        loop {
            if let Some(e) = self.d.h.events.pop_front() {
                return Next::Event(e);
            }
            if let Some(r) = &self.d.h.closed {
                return Next::Closed(r.clone());
            }
            if !self.stop_fed && stop.is_some_and(StopToken::is_stopped) && self.d.h.conn.in_test()
            {
                self.stop_fed = true;
                let now = self.now();
                let _ = self.conn().stop_sessions(now);
            }
            self.d.step().await;
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
        let now = self.now();
        self.conn().request_session(now, req)?;
        loop {
            let e = self.next(None).await;
            if let Some(r) = self.st.on_request(e) {
                return r;
            }
        }
    }

    /// Starts the sessions requested (RFC 4656 3.6): returns once the server accepted, with
    /// the local senders and receivers running (while the connection is awaited).
    pub async fn start(&mut self) -> Result<(), ClientError> {
        let now = self.now();
        self.conn().start_sessions(now)?;
        loop {
            if let Some(r) = ClientState::on_start(self.next(None).await) {
                return r;
            }
        }
    }

    /// Runs the test to its end: both sides send Stop-Sessions once their sessions are over
    /// (RFC 4656 3.8). Setting `stop` stops the test early: the local sessions end at once
    /// and Stop-Sessions is exchanged; records received so far are kept.
    pub async fn wait(&mut self, stop: Option<&StopToken>) -> Result<TestEnd, ClientError> {
        self.stop_fed = false;
        let (complete, closed) = loop {
            if let Some(ended) = ClientState::on_wait(self.next(stop).await) {
                break ended;
            }
        };
        Ok(TestEnd {
            complete,
            closed,
            stopped_early: stop.is_some_and(StopToken::is_stopped),
            received: std::mem::take(&mut self.d.h.received),
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
        let now = self.now();
        self.conn().fetch(now, sid, begin, end)?;
        loop {
            if let Some(r) = ClientState::on_fetch(self.next(None).await) {
                return r;
            }
        }
    }

    /// Closes the connection.
    pub async fn close(mut self) {
        let now = self.now();
        self.conn().close(now);
        self.d.close_now().await;
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
