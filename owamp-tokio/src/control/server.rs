//! The server side (owampd): one connection, and the accept loop.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use owamp_core::policy::ServerPolicy;
use owamp_os::host::{
    log_connection, server_connection, ConnectionCounts, ConnectionSummary, ServeConfig,
    ServerParts,
};
use owamp_os::store::SessionStore;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::driver::Driver;
use crate::StopToken;

/// Serves one accepted control connection until it closes: drives the core's
/// [`Server`](owamp_core::control::Server) state machine with `policy`, binds test sockets
/// (in the configured port range), stores received sessions in `store` and answers
/// Fetch-Session from it.
///
/// When `shutdown` is set: a test in progress is stopped (Stop-Sessions is exchanged, the
/// records are stored), and the connection is then closed; an idle connection is closed at
/// once. The flag is looked at every [`EndpointConfig::poll_interval`] at the latest.
///
/// [`EndpointConfig::poll_interval`]: owamp_os::host::EndpointConfig::poll_interval
pub async fn serve_connection<P: ServerPolicy>(
    stream: TcpStream,
    policy: P,
    config: &ServeConfig,
    store: Arc<dyn SessionStore>,
    shutdown: Option<&StopToken>,
) -> io::Result<ConnectionSummary> {
    let (conn, mut summary) =
        server_connection(config, policy, stream.local_addr()?, stream.peer_addr()?);
    let mut d = Driver::new(
        conn,
        stream,
        &config.endpoint,
        Some(store),
        config.io_timeout,
    )
    .await?;
    let mut stop_fed = false;
    loop {
        d.h.serve_events(&mut summary);
        if d.is_closed() {
            break;
        }
        if shutdown.is_some_and(StopToken::is_stopped) {
            let now = d.h.now();
            if !d.h.conn.in_test() {
                d.h.conn.close(now);
                d.close_now().await;
                continue;
            }
            if !stop_fed {
                // A test in progress is stopped: Stop-Sessions is exchanged, records kept.
                stop_fed = true;
                d.h.conn.stop_sessions(now);
            }
        }
        d.step().await;
    }
    d.h.serve_events(&mut summary);
    Ok(d.h.finish_summary(summary))
}

/// Shared view of a running [`Server`]: shut it down, count its connections.
#[derive(Debug, Clone, Default)]
pub struct ServerHandle {
    shutdown: StopToken,
    counts: ConnectionCounts,
}

impl ServerHandle {
    /// Asks the server to stop: no new connection is accepted, tests in progress are stopped,
    /// connections are closed.
    pub fn shutdown(&self) {
        self.shutdown.stop();
    }

    /// Whether shutdown was asked for.
    pub fn is_shutdown(&self) -> bool {
        self.shutdown.is_stopped()
    }

    /// Connections being served now.
    pub fn active_connections(&self) -> usize {
        self.counts.active()
    }

    /// Connections accepted and served so far.
    pub fn accepted_connections(&self) -> u64 {
        self.counts.accepted()
    }

    /// Connections closed at once because [`ServeConfig::max_connections`] were being served.
    pub fn refused_connections(&self) -> u64 {
        self.counts.refused()
    }

    /// The shutdown signal itself (to wait for it, or to set it from elsewhere).
    pub fn stop_token(&self) -> StopToken {
        self.shutdown.clone()
    }
}

/// An OWAMP server: accepts control connections and serves each on its own task.
pub struct Server<P> {
    listener: TcpListener,
    parts: ServerParts<P>,
    handle: ServerHandle,
}

impl<P> std::fmt::Debug for Server<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("config", &self.parts.config)
            .finish_non_exhaustive()
    }
}

/// How long the accept loop pauses after a failed accept (out of descriptors, for example).
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

impl<P: ServerPolicy + Clone + Send + 'static> Server<P> {
    /// Listens on `addr` (port 861 is OWAMP's; 0 picks a free one). Every connection gets a
    /// clone of `policy` (a [`Limits`](owamp_core::policy::Limits) clone shares its state).
    pub async fn bind(
        addr: SocketAddr,
        config: ServeConfig,
        policy: P,
        store: Arc<dyn SessionStore>,
    ) -> io::Result<Self> {
        Ok(Self::from_listener(
            TcpListener::bind(addr).await?,
            config,
            policy,
            store,
        ))
    }

    /// Serves connections accepted on `listener`.
    pub fn from_listener(
        listener: TcpListener,
        config: ServeConfig,
        policy: P,
        store: Arc<dyn SessionStore>,
    ) -> Self {
        Self {
            listener,
            parts: ServerParts::new(config, policy, store),
            handle: ServerHandle::default(),
        }
    }

    /// Shares `handle` with this server: servers on several listeners given the same handle
    /// shut down together and count their connections together (so
    /// [`ServeConfig::max_connections`] applies to all of them at once).
    pub fn with_handle(mut self, handle: ServerHandle) -> Self {
        self.handle = handle;
        self
    }

    /// The address listened on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle to shut the server down and watch it.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Accepts and serves connections until [`ServerHandle::shutdown`]; then waits at most
    /// [`ServeConfig::shutdown_grace`] for the connections to end (each stops its test and
    /// closes), and aborts those still running.
    pub async fn run(self) -> io::Result<()> {
        let shutdown = self.handle.shutdown.clone();
        let mut conns = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.stopped() => break,
                // Reap finished connections as they end.
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                r = self.listener.accept() => r,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                // The client may have gone already; out of descriptors and the like are
                // transient too: pause and try again.
                Err(_) => {
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            };
            // The guard keeps the connection counted as active until its task ends, however
            // it ends (aborted too).
            let Some(guard) = self.handle.counts.admit_peer(&self.parts.config, peer) else {
                drop(stream);
                continue;
            };
            let ServerParts {
                policy,
                config,
                store,
            } = self.parts.clone();
            let shutdown = shutdown.clone();
            conns.spawn(async move {
                let _guard = guard;
                let served =
                    serve_connection(stream, policy, &config, store, Some(&shutdown)).await;
                log_connection(&config, &served);
            });
        }
        // Stop listening at once; connections finish their tests within the grace period.
        drop(self.listener);
        let drained = tokio::time::timeout(self.parts.config.shutdown_grace, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            conns.shutdown().await;
        }
        Ok(())
    }

    /// Runs the server on a new task of the current runtime.
    pub fn spawn(self) -> RunningServer {
        let handle = self.handle();
        let task = tokio::spawn(self.run());
        RunningServer { handle, task }
    }
}

/// A server running on its own task ([`Server::spawn`]).
#[derive(Debug)]
pub struct RunningServer {
    handle: ServerHandle,
    task: JoinHandle<io::Result<()>>,
}

impl RunningServer {
    /// The server's handle.
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// Shuts the server down and waits for its accept loop to end (which waits at most the
    /// shutdown grace for connections).
    pub async fn shutdown(self) -> io::Result<()> {
        self.handle.shutdown();
        self.task
            .await
            .map_err(|_| io::Error::other("the server task panicked"))?
    }
}
