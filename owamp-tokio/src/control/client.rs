//! The client side of a control connection (owping).

use std::net::SocketAddr;

use owamp_core::control::{Client, ClientCommand, Mode, Role};
use owamp_core::io::{FetchedSession, Input, SessionInfo};
use owamp_core::time::OwampTime;
use owamp_core::wire::SessionId;
use owamp_os::clock::Clock;
use owamp_os::rng::OsRng;
use owamp_std::control::common::{
    incomplete, on_fetch, on_start, take_received, ClientState, Event,
};
use owamp_std::control::{
    fetched_to_stored, ClientError, ClientOptions, DirectionResult, SessionSpec, TestEnd, TestPlan,
    TestResults,
};
use tokio::net::TcpStream;

use super::driver::Driver;
use crate::StopToken;

/// A control connection to a server, set up and ready for commands.
///
/// Every method waits at most until the state machine's deadline
/// ([`ClientConfig::control_timeout`](owamp_core::control::ClientConfig::control_timeout)
/// while waiting for the server); [`connect`](Self::connect) at most
/// [`ClientOptions::connect_timeout`] for the TCP connection.
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
        let now = opts.endpoint.clock.now();
        let m = Client::new(now, opts.control.clone(), OsRng);
        let d = Driver::new(
            m,
            stream,
            opts.endpoint.clone(),
            None,
            None,
            opts.io_timeout,
        )
        .await?;
        let mut c = Self { d, st };
        loop {
            let e = c.next_event().await;
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
        self.d.now()
    }

    /// The sessions accepted so far on this connection.
    pub fn sessions(&self) -> &[SessionInfo] {
        self.st.sessions()
    }

    /// The next event; sessions received are kept aside as they come.
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            let e = self.d.next_event().await?;
            if let Some(e) = self.st.keep_received(e) {
                return Some(e);
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
        let (sock, req) = self.st.prepare_request(role, spec, start_time)?;
        self.d.s.client_socket = Some(sock);
        let fed = self
            .d
            .feed(Input::Command(ClientCommand::RequestSession(req)))
            .await;
        if let Err(e) = fed {
            self.d.s.client_socket = None;
            return Err(e.into());
        }
        loop {
            let e = self.next_event().await;
            if let Some(r) = self.st.on_request(e) {
                return r;
            }
        }
    }

    /// Starts the sessions requested (RFC 4656 3.6): returns once the server accepted, with
    /// the local senders and receivers running.
    pub async fn start(&mut self) -> Result<(), ClientError> {
        self.d
            .feed(Input::Command(ClientCommand::StartSessions))
            .await?;
        loop {
            if let Some(r) = on_start(self.next_event().await) {
                return r;
            }
        }
    }

    /// Waits for the end of the test: both sides send Stop-Sessions once their sessions are
    /// over (RFC 4656 3.8). Setting `stop` stops the test early: the local sessions end at
    /// once and Stop-Sessions is exchanged; records received so far are kept.
    pub async fn wait(&mut self, stop: Option<&StopToken>) -> Result<TestEnd, ClientError> {
        self.d.stop = stop.cloned();
        self.d.stop_fed = false;
        let ended = loop {
            if let Some(ended) = ClientState::on_wait(self.next_event().await) {
                break ended;
            }
        };
        let end = self
            .st
            .test_end(&mut self.d.s.events, ended, self.d.stop_fed);
        self.d.stop = None;
        Ok(end)
    }

    /// Fetches the records of a session the server received (RFC 4656 3.8), sequence numbers
    /// `begin..=end` (`0, u32::MAX` for all).
    pub async fn fetch(
        &mut self,
        sid: SessionId,
        begin: u32,
        end: u32,
    ) -> Result<FetchedSession, ClientError> {
        self.d
            .feed(Input::Command(ClientCommand::Fetch { sid, begin, end }))
            .await?;
        loop {
            if let Some(r) = on_fetch(self.next_event().await) {
                return r;
            }
        }
    }

    /// Closes the connection.
    pub async fn close(mut self) {
        let _ = self.d.feed(Input::Command(ClientCommand::Close)).await;
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
