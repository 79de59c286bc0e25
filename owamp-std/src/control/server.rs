//! The server side (owampd): one connection, and the accept loop.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use owamp_core::policy::ServerPolicy;
use owamp_os::host::{
    log_connection, server_connection, ConnectionCounts, ConnectionSummary, ServeConfig,
    ServerParts, StopHandle,
};
use owamp_os::net::wait_readable;
use owamp_os::store::SessionStore;

use super::driver::Driver;

/// Serves one accepted control connection until it closes: drives the core's
/// [`Server`](owamp_core::control::Server) state machine with `policy`, binds test endpoints
/// (in the configured port range), stores received sessions in `store` and answers
/// Fetch-Session from it.
///
/// When `shutdown` is set: a test in progress is stopped (Stop-Sessions is exchanged, the
/// records are stored), and the connection is then closed.
///
/// The connection runs on the calling thread, whose timer slack is set to 1 ns
/// ([`tighten_timer_slack`](owamp_os::timing::tighten_timer_slack)) so that test packets leave
/// on time.
pub fn serve_connection<P: ServerPolicy>(
    stream: TcpStream,
    policy: P,
    config: &ServeConfig,
    store: Arc<dyn SessionStore>,
    shutdown: Option<&StopHandle>,
) -> io::Result<ConnectionSummary> {
    let (conn, mut summary) =
        server_connection(config, policy, stream.local_addr()?, stream.peer_addr()?);
    // This thread sends test packets: its waits should end when asked. A kernel that refuses
    // only makes packets leave a little later.
    let _ = owamp_os::timing::tighten_timer_slack();
    let mut d = Driver::new(
        conn,
        stream,
        &config.endpoint,
        Some(store),
        config.io_timeout,
    )?;
    let mut stop_fed = false;
    loop {
        d.h.serve_events(&mut summary);
        if d.is_closed() {
            break;
        }
        if shutdown.is_some_and(|s| s.is_stopped()) {
            let now = d.h.now();
            if !stop_fed && d.h.conn.in_test() {
                // A test in progress is stopped: Stop-Sessions is exchanged, records kept.
                stop_fed = true;
                d.h.conn.stop_sessions(now);
            } else if !d.h.conn.in_test() {
                d.h.conn.close(now);
                d.close_now();
                continue;
            }
        }
        d.step();
    }
    d.h.serve_events(&mut summary);
    Ok(d.h.finish_summary(summary))
}

/// Shared view of a running [`Server`]: shut it down, count its connections.
#[derive(Debug, Clone, Default)]
pub struct ServerHandle {
    shutdown: StopHandle,
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

    /// The stop flag itself (for example to set from a signal handler).
    pub fn stop_handle(&self) -> StopHandle {
        self.shutdown.clone()
    }
}

/// An OWAMP server: accepts control connections and serves each on its own thread.
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

/// How often the accept loop looks at the shutdown flag.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

impl<P: ServerPolicy + Clone + Send + 'static> Server<P> {
    /// Listens on `addr` (port 861 is OWAMP's; 0 picks a free one). Every connection gets a
    /// clone of `policy` (a [`Limits`](owamp_core::policy::Limits) clone shares its state).
    pub fn bind(
        addr: SocketAddr,
        config: ServeConfig,
        policy: P,
        store: Arc<dyn SessionStore>,
    ) -> io::Result<Self> {
        Ok(Self::from_listener(
            TcpListener::bind(addr)?,
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
    /// closes).
    pub fn run(self) -> io::Result<()> {
        let fd = self.listener.as_raw_fd();
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        while !self.handle.is_shutdown() {
            threads.retain(|t| !t.is_finished());
            if !wait_readable(fd, ACCEPT_POLL)? {
                continue;
            }
            let (stream, peer) = match self.listener.accept() {
                Ok(a) => a,
                // The client may have gone between poll and accept; out of descriptors and
                // the like are transient too: wait and try again.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            // The guard keeps the connection counted as active until its thread ends.
            let Some(guard) = self.handle.counts.admit_peer(&self.parts.config, peer) else {
                drop(stream);
                continue;
            };
            let ServerParts {
                policy,
                config,
                store,
            } = self.parts.clone();
            let shutdown = self.handle.shutdown.clone();
            let spawned = std::thread::Builder::new()
                .name("owamp-conn".into())
                .spawn(move || {
                    let _guard = guard;
                    let _ = stream.set_nonblocking(false);
                    let served = serve_connection(stream, policy, &config, store, Some(&shutdown));
                    log_connection(&config, &served);
                });
            match spawned {
                Ok(t) => threads.push(t),
                // The guard moved into the closure was dropped with it: the count is right.
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        let deadline = Instant::now() + self.parts.config.shutdown_grace;
        while self.handle.active_connections() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for t in threads {
            if t.is_finished() {
                let _ = t.join();
            }
        }
        Ok(())
    }

    /// Runs the server on a new thread.
    pub fn spawn(self) -> io::Result<RunningServer> {
        let handle = self.handle();
        let thread = std::thread::Builder::new()
            .name("owamp-accept".into())
            .spawn(move || self.run())?;
        Ok(RunningServer { handle, thread })
    }
}

/// A server running on its own thread ([`Server::spawn`]).
#[derive(Debug)]
pub struct RunningServer {
    handle: ServerHandle,
    thread: JoinHandle<io::Result<()>>,
}

impl RunningServer {
    /// The server's handle.
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// Shuts the server down and waits for its accept loop to end (which waits at most the
    /// shutdown grace for connections).
    pub fn shutdown(self) -> io::Result<()> {
        self.handle.shutdown();
        self.thread
            .join()
            .map_err(|_| io::Error::other("the server thread panicked"))?
    }
}
