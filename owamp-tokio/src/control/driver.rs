//! Drives one control state machine (client or server) over a Tokio `TcpStream`, carrying
//! out every output as `owamp_core::io` describes: octets to the stream, the timer, test
//! endpoints bound, started, stopped and finished, stored sessions looked up.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use owamp_core::control::ControlError;
use owamp_core::io::{FetchReply, Input, SessionReport, StoredSession};
use owamp_core::time::OwampTime;
use owamp_os::clock::Clock;
use owamp_os::store::SessionStore;
use owamp_std::control::common::{DriverState, Ending, Event, Io, Machine, Running};
use owamp_std::endpoint::EndpointConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::endpoint::{self, RunningEndpoint};
use crate::StopToken;

/// The longest single wait of a connection; the state machine always has an earlier
/// deadline, this only bounds the wait if it ever had none.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// What ended one wait of [`Driver::step`].
enum Wake {
    Report(SessionReport),
    Stop,
    Read(io::Result<usize>),
    Timer,
}

impl Running for RunningEndpoint {
    fn stop(&self) {
        RunningEndpoint::stop(self);
    }
}

/// One control connection being driven.
pub(crate) struct Driver<M> {
    pub s: DriverState<M, RunningEndpoint>,
    stream: TcpStream,
    ep: EndpointConfig,
    io_timeout: Duration,
    reports_tx: mpsc::UnboundedSender<SessionReport>,
    reports_rx: mpsc::UnboundedReceiver<SessionReport>,
    buf: Vec<u8>,
    pub closed: bool,
    /// Stops a test in progress ([`Input::StopSessions`]).
    pub stop: Option<StopToken>,
    pub stop_fed: bool,
    /// Server: the stop signal also ends an idle wait, so that the connection closes.
    close_on_stop: bool,
}

impl<M: Machine> Driver<M> {
    pub async fn new(
        m: M,
        stream: TcpStream,
        ep: EndpointConfig,
        store: Option<Arc<dyn SessionStore>>,
        stop: Option<StopToken>,
        io_timeout: Duration,
    ) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let close_on_stop = stop.is_some();
        let mut d = Self {
            s: DriverState::new(m, ep.clock.clone(), store),
            stream,
            ep,
            io_timeout: io_timeout.max(Duration::from_millis(1)),
            reports_tx,
            reports_rx,
            buf: vec![0u8; 16 * 1024],
            closed: false,
            stop,
            stop_fed: false,
            close_on_stop,
        };
        // The state machine may have queued outputs when it was built (Server-Greeting).
        d.drain().await;
        Ok(d)
    }

    pub fn now(&self) -> OwampTime {
        self.s.clock.now()
    }

    /// Feeds one input and carries out everything that follows from it.
    pub async fn feed(&mut self, input: Input<'_>) -> Result<(), ControlError> {
        let r = self.s.handle(input);
        self.drain().await;
        r
    }

    async fn drain(&mut self) {
        while let Some(io) = self.s.next_io() {
            match io {
                Io::Transmit(bytes) => {
                    if !self.closed {
                        // A peer that stops reading cannot hold us for longer than this.
                        let w =
                            tokio::time::timeout(self.io_timeout, self.stream.write_all(&bytes));
                        if !matches!(w.await, Ok(Ok(()))) {
                            self.s.peer_closed();
                        }
                    }
                }
                Io::StartSessions => {
                    let (ep, tx) = (&self.ep, &self.reports_tx);
                    self.s
                        .start_sessions(|e| endpoint::spawn(e, ep, Some(tx.clone())));
                }
                Io::Finish(ended) => {
                    for (r, ending) in ended {
                        if let Some(s) = ending.stored(r.finish().await) {
                            self.keep(s).await;
                        }
                    }
                }
                Io::TestComplete => {
                    self.finish_endpoints().await;
                    self.s.events.push_back(Event::TestComplete);
                }
                Io::Fetch { sid, store } => {
                    // Stores may read files: off the async workers.
                    let reply = tokio::task::spawn_blocking(move || store.load(&sid))
                        .await
                        .unwrap_or(FetchReply::Failed);
                    self.s.fetch_reply(reply);
                }
                Io::Close(reason) => {
                    self.close_now().await;
                    self.s.events.push_back(Event::Closed(reason));
                }
            }
        }
    }

    /// A local receive session is over: store it (server) and tell the application.
    async fn keep(&mut self, s: StoredSession) {
        let Some(store) = self.s.store().cloned() else {
            self.s.received(s, true);
            return;
        };
        // Stores may write files: off the async workers.
        let saved = tokio::task::spawn_blocking(move || {
            let ok = store.save(&s).is_ok();
            (s, ok)
        })
        .await;
        match saved {
            Ok((s, ok)) => self.s.received(s, ok),
            // The blocking task panicked: the session is gone.
            Err(_) => self.s.store_errors += 1,
        }
    }

    /// Stops and joins every endpoint task still there.
    async fn finish_endpoints(&mut self) {
        for r in self.s.end_endpoints() {
            let _ = r.finish().await;
        }
    }

    /// Closes the connection at once and ends every endpoint. A receiver still running (the
    /// state machine normally reports it first with `SessionsAborted`) is kept as incomplete,
    /// so records received are never thrown away.
    pub async fn close_now(&mut self) {
        if !self.closed {
            self.closed = true;
            // Everything queued was written by `write_all`; FIN both ways.
            let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Both);
        }
        for r in self.s.abort_endpoints() {
            if let Some(s) = Ending::Aborted.stored(r.finish().await) {
                self.keep(s).await;
            }
        }
        self.finish_endpoints().await;
    }

    /// Waits once, at most until the state machine's deadline, and handles what happened:
    /// an endpoint report, the stop signal, octets from the peer, the timer.
    pub async fn step(&mut self) {
        if self.closed {
            return;
        }
        while let Ok(report) = self.reports_rx.try_recv() {
            // A report about a session of a test already over is not an error.
            let _ = self.feed(Input::SessionFinished(report)).await;
        }
        if self.closed || self.s.m.closed() {
            return;
        }
        let Some(wait) = self.s.wait_limit(MAX_WAIT) else {
            let _ = self.feed(Input::Timer).await;
            return;
        };
        // The stop signal matters during a test (until fed), and for a server at any time.
        let in_test = self.s.in_test;
        let stop = match &self.stop {
            Some(s) if (in_test && !self.stop_fed) || (!in_test && self.close_on_stop) => {
                Some(s.clone())
            }
            _ => None,
        };
        let wake = tokio::select! {
            Some(r) = self.reports_rx.recv() => Wake::Report(r),
            _ = wait_stop(stop.as_ref()) => Wake::Stop,
            r = self.stream.read(&mut self.buf) => Wake::Read(r),
            _ = tokio::time::sleep(wait) => Wake::Timer,
        };
        match wake {
            Wake::Report(r) => {
                let _ = self.feed(Input::SessionFinished(r)).await;
            }
            Wake::Stop => {
                if self.s.in_test {
                    self.stop_fed = true;
                    let _ = self.feed(Input::StopSessions).await;
                } else {
                    // Outside a test a stopped server closes the connection.
                    self.close_now().await;
                }
            }
            Wake::Read(Ok(0)) | Wake::Read(Err(_)) => {
                let _ = self.feed(Input::PeerClosed).await;
            }
            Wake::Read(Ok(n)) => {
                let buf = std::mem::take(&mut self.buf);
                let _ = self
                    .feed(Input::Received(buf.get(..n).unwrap_or(&[])))
                    .await;
                self.buf = buf;
            }
            Wake::Timer => {
                let _ = self.feed(Input::Timer).await;
            }
        }
    }

    /// The next event, stepping until there is one; `None` once the connection is closed and
    /// every event has been taken. Every step is bounded and the state machine always has a
    /// deadline, so this returns.
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.s.events.pop_front() {
                return Some(e);
            }
            if self.closed {
                return None;
            }
            self.step().await;
        }
    }
}

/// Returns when `stop` is set; never if there is none.
async fn wait_stop(stop: Option<&StopToken>) {
    match stop {
        Some(s) => s.stopped().await,
        None => std::future::pending().await,
    }
}

impl<M> Drop for Driver<M> {
    fn drop(&mut self) {
        self.s.stop_all();
    }
}
