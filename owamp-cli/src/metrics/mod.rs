//! Prometheus metrics of powstream and owampd (`--metrics ADDR:PORT`), in the OpenMetrics text
//! format, served at `GET /metrics`. docs/metrics.md lists every metric.
//!
//! The metrics themselves are `prometheus-client` families updated by the tools
//! ([`powstream::PowstreamMetrics`], [`owampd::OwampdMetrics`]); the local clock's state
//! ([`ClockCollector`]) is read at each scrape. The endpoint is hyper's HTTP/1.1 server on a
//! Tokio runtime of one thread of its own, bounded: [`MAX_CONNECTIONS`] connections at once (the
//! others wait in the listen queue), each closed after one response and cut off after
//! [`CONNECTION_TIMEOUT`], request headers at most hyper's smallest buffer (8 KiB).

pub mod owampd;
pub mod powstream;

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::{oneshot, Semaphore};

/// The content type of a scrape's answer (OpenMetrics 1.0 text).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The path the metrics are served at; any other answers 404.
pub const METRICS_PATH: &str = "/metrics";

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 4;

/// The longest a connection may take, from accept to the end of its one response.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// hyper's smallest read buffer, which bounds the request headers.
const MAX_HEADER_BUF: usize = 8192;

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// `--metrics` is not `ADDR:PORT` (or the name does not resolve).
    #[error("--metrics {given}: {why}")]
    Address {
        /// What was given.
        given: String,
        /// Why it is not an address.
        why: String,
    },
    /// The address could not be listened on.
    #[error("--metrics: unable to listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The endpoint's thread or runtime could not be started.
    #[error("--metrics: unable to start the endpoint: {0}")]
    Start(std::io::Error),
}

/// Parses `--metrics ADDR:PORT`: an address and port (`127.0.0.1:9861`, `[::1]:9861`) or a
/// name and port (`localhost:9861`, the first address it resolves to). Port 0 asks for any
/// free port ([`MetricsServer::local_addr`] tells which).
pub fn parse_addr(s: &str) -> Result<SocketAddr, MetricsError> {
    let bad = |why: &str| MetricsError::Address {
        given: s.to_owned(),
        why: why.to_owned(),
    };
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    // A name: it must carry a port (ToSocketAddrs would take "host:port" only anyway).
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
        _ => return Err(bad("expected ADDR:PORT")),
    }
    s.to_socket_addrs()
        .map_err(|e| bad(&e.to_string()))?
        .next()
        .ok_or_else(|| bad("the name has no address"))
}

/// The metrics endpoint: a thread serving `registry` at `GET /metrics` until dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MetricsServer {
    /// Listens on `addr` (at once, so that a bad address is a start-up error) and serves
    /// `registry` from a thread of its own.
    pub fn start(addr: SocketAddr, registry: Registry) -> Result<Self, MetricsError> {
        let listener =
            TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .and_then(|a| listener.set_nonblocking(true).map(|()| a))
            .map_err(MetricsError::Start)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(MetricsError::Start)?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let registry = Arc::new(registry);
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || rt.block_on(serve(listener, registry, stop_rx)))
            .map_err(MetricsError::Start)?;
        Ok(Self {
            addr: local,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address listened on (with the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The accept loop: until `stop`, at most [`MAX_CONNECTIONS`] connections at once.
async fn serve(listener: TcpListener, registry: Arc<Registry>, mut stop: oneshot::Receiver<()>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("metrics endpoint: {e}");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = &mut stop => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors and the like: wait a little rather than spin.
                    tracing::warn!("metrics endpoint: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(answer(&req, &registry)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEADER_BUF)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            // Errors (a client gone, a timeout) concern that client only.
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(permit);
        });
    }
}

/// The answer to one request: the metrics at `GET /metrics` (and `HEAD`), 404 elsewhere, 405
/// for other methods.
fn answer(req: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let status = |code: StatusCode, text: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = code;
        r
    };
    if req.uri().path() != METRICS_PATH {
        return status(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = status(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let format = Format::accepted(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
    match format.render(registry) {
        Ok(text) => {
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            r
        }
        Err(_) => status(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
    }
}

/// The formats a scrape can get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text: the default, and what Prometheus asks for first.
    OpenMetrics,
    /// The Prometheus text format 0.0.4, for a client that accepts `text/plain` and not
    /// OpenMetrics (`promtool check metrics` reads this one: with OpenMetrics it takes a
    /// counter's `_total` sample for a family without help).
    PrometheusText,
}

impl Format {
    /// The format for a request's `Accept` header.
    pub fn accepted(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if !a.contains("application/openmetrics-text") && a.contains("text/plain") => {
                Format::PrometheusText
            }
            _ => Format::OpenMetrics,
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// The registry in this format.
    pub fn render(self, registry: &Registry) -> Result<String, std::fmt::Error> {
        match self {
            Format::OpenMetrics => render(registry),
            Format::PrometheusText => {
                let mut text = String::new();
                prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
                Ok(text)
            }
        }
    }
}

/// The registry in the OpenMetrics text format (ending with `# EOF`).
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

/// The local clock as OWAMP stamps it (RFC 4656 4.1.2: the S bit and the error estimate),
/// read from the kernel at each scrape: `<prefix>_clock_synchronized` (1 or 0) and
/// `<prefix>_clock_error_seconds`. The numbers are the core's (`owamp_core::stats::{is_sync, error_seconds}`), as
/// owstats reports them for a session's timestamps.
#[derive(Debug, Default)]
pub struct ClockCollector;

impl Collector for ClockCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = owamp_os::clock::kernel_error_estimate();
        let sync = ConstGauge::new(i64::from(owamp_core::stats::is_sync(e)));
        let m = encoder.encode_descriptor(
            "clock_synchronized",
            "Whether the local clock is synchronized (1) or not (0), as the S bit of the timestamps sent now says (RFC 4656 4.1.2)",
            None,
            sync.metric_type(),
        )?;
        sync.encode(m)?;
        let err = ConstGauge::new(owamp_core::stats::error_seconds(e));
        let m = encoder.encode_descriptor(
            "clock_error",
            "Error estimate of the local clock as the timestamps sent now carry it (RFC 4656 4.1.2)",
            Some(&Unit::Seconds),
            err.metric_type(),
        )?;
        err.encode(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_a_port() {
        assert_eq!(
            parse_addr("127.0.0.1:9861").unwrap(),
            "127.0.0.1:9861".parse().unwrap()
        );
        assert_eq!(parse_addr("[::1]:0").unwrap(), "[::1]:0".parse().unwrap());
        assert!(parse_addr("localhost:9861").unwrap().ip().is_loopback());
        for bad in [
            "127.0.0.1",
            "9861",
            ":9861",
            "localhost",
            "127.0.0.1:99999",
            "",
        ] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_clock_is_rendered_with_its_unit() {
        let mut r = Registry::with_prefix("owamp");
        r.register_collector(Box::new(ClockCollector));
        let text = render(&r).unwrap();
        assert!(
            text.contains("# TYPE owamp_clock_synchronized gauge"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT owamp_clock_error_seconds seconds"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn prometheus_text_only_when_openmetrics_is_not_accepted() {
        use Format::*;
        assert_eq!(Format::accepted(None), OpenMetrics);
        assert_eq!(Format::accepted(Some("*/*")), OpenMetrics);
        // What Prometheus 2.x sends.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::accepted(Some(prometheus)), OpenMetrics);
        assert_eq!(
            Format::accepted(Some("text/plain; version=0.0.4")),
            PrometheusText
        );
        assert!(PrometheusText.content_type().starts_with("text/plain"));
    }
}
