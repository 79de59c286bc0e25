//! powstream's metrics: per peer and direction, the numbers of each session saved, from the
//! same summary as its `.sum` and `-j` files (owamp-core's statistics over the session's
//! records).

use std::sync::Arc;

use owamp_core::io::StoredSession;
use owamp_core::stats::{SessionMeta, Stats, StatsConfig, Summary};
use owamp_os::store::owp_header;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

use super::{ClockCollector, MetricsError, MetricsServer};

/// Upper bounds of the delay histogram's buckets, in seconds: 1-2-5 steps from 10 µs
/// (loopback) to 10 s (a congested intercontinental path).
pub const DELAY_BUCKETS: [f64; 19] = [
    10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 50e-3, 0.1, 0.2,
    0.5, 1.0, 2.0, 5.0, 10.0,
];

/// The direction of a session's packets, as owping's `--json` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the peer to this host (powstream's default).
    From,
    /// From this host to the peer (`-t`).
    To,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Its files were saved.
    Completed,
    /// It could not be set up, ran no test, its records could not be had, or its files could
    /// not be written.
    Failed,
}

impl Direction {
    /// The label value: `from` or `to`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::From => "from",
            Direction::To => "to",
        }
    }
}

impl Outcome {
    /// The label value: `completed` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PathLabels {
    peer: String,
    direction: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SessionLabels {
    peer: String,
    direction: &'static str,
    outcome: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Debug)]
struct Families {
    sent: Family<PathLabels, Counter>,
    lost: Family<PathLabels, Counter>,
    duplicates: Family<PathLabels, Counter>,
    reordered: Family<PathLabels, Counter>,
    loss_ratio: Family<PathLabels, FloatGauge>,
    delay: Family<PathLabels, Histogram, fn() -> Histogram>,
    last_min: Family<PathLabels, FloatGauge>,
    last_median: Family<PathLabels, FloatGauge>,
    last_max: Family<PathLabels, FloatGauge>,
    hops: Family<PathLabels, Gauge>,
    sessions: Family<SessionLabels, Counter>,
}

fn delay_histogram() -> Histogram {
    Histogram::new(DELAY_BUCKETS)
}

/// The metrics of one powstream process (of every peer it measures): cheap to clone and to
/// share between threads. The endpoint serving them stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct PowstreamMetrics {
    families: Arc<Families>,
    server: Option<Arc<MetricsServer>>,
}

impl Default for PowstreamMetrics {
    fn default() -> Self {
        Self::unserved()
    }
}

impl PowstreamMetrics {
    /// Starts the endpoint on `--metrics ADDR:PORT`.
    pub fn serve(addr: &str) -> Result<Self, MetricsError> {
        let addr = super::parse_addr(addr)?;
        let mut m = Self::unserved();
        let mut registry = Registry::with_prefix("owamp");
        m.register(&mut registry);
        m.server = Some(Arc::new(MetricsServer::start(addr, registry)?));
        Ok(m)
    }

    /// Metrics not served (for tests, and for [`register`](Self::register) in a registry of
    /// the caller's).
    pub fn unserved() -> Self {
        let families = Families {
            sent: Family::default(),
            lost: Family::default(),
            duplicates: Family::default(),
            reordered: Family::default(),
            loss_ratio: Family::default(),
            delay: Family::new_with_constructor(delay_histogram as fn() -> Histogram),
            last_min: Family::default(),
            last_median: Family::default(),
            last_max: Family::default(),
            hops: Family::default(),
            sessions: Family::default(),
        };
        Self {
            families: Arc::new(families),
            server: None,
        }
    }

    /// The endpoint's address, when served.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().map(|s| s.local_addr())
    }

    /// Registers every metric (names without the `owamp_` prefix: give the registry that
    /// prefix) and the clock's.
    pub fn register(&self, r: &mut Registry) {
        let f = &self.families;
        r.register(
            "packets_sent",
            "Test packets of the saved sessions with a record, received or lost (duplicates once)",
            f.sent.clone(),
        );
        r.register(
            "packets_lost",
            "Test packets of the saved sessions recorded lost",
            f.lost.clone(),
        );
        r.register(
            "packets_duplicates",
            "Extra copies of test packets received",
            f.duplicates.clone(),
        );
        r.register(
            "packets_reordered",
            "Test packets received out of order (RFC 4737 1-reordering)",
            f.reordered.clone(),
        );
        r.register(
            "loss_ratio",
            "Lost over sent packets of the last session saved (0 to 1)",
            f.loss_ratio.clone(),
        );
        r.register_with_unit(
            "delay",
            "One-way delay of the test packets received (duplicates left out)",
            Unit::Seconds,
            f.delay.clone(),
        );
        r.register_with_unit(
            "last_session_min_delay",
            "Smallest one-way delay of the last session saved",
            Unit::Seconds,
            f.last_min.clone(),
        );
        r.register_with_unit(
            "last_session_median_delay",
            "Median one-way delay of the last session saved (exact, or the histogram's for sessions of over 4 Mi packets)",
            Unit::Seconds,
            f.last_median.clone(),
        );
        r.register_with_unit(
            "last_session_max_delay",
            "Largest one-way delay of the last session saved",
            Unit::Seconds,
            f.last_max.clone(),
        );
        r.register(
            "hops",
            "Hops the test packets of the last session crossed (255 minus the largest TTL received); absent until a session had TTLs",
            f.hops.clone(),
        );
        r.register(
            "sessions",
            "Test sessions ended, by outcome",
            f.sessions.clone(),
        );
        r.register_collector(Box::new(ClockCollector));
    }

    /// A session's files were saved: its numbers, `summary` from [`summarize`].
    pub fn session_saved(&self, peer: &str, direction: Direction, summary: &Summary) {
        let f = &self.families;
        let path = PathLabels {
            peer: peer.to_owned(),
            direction: direction.as_str(),
        };
        f.sent.get_or_create(&path).inc_by(u64::from(summary.sent));
        f.lost.get_or_create(&path).inc_by(u64::from(summary.lost));
        f.duplicates
            .get_or_create(&path)
            .inc_by(u64::from(summary.duplicates));
        f.reordered
            .get_or_create(&path)
            .inc_by(u64::from(summary.reordering.first().copied().unwrap_or(0)));
        f.loss_ratio
            .get_or_create(&path)
            .set(summary.loss_fraction());
        {
            let h = f.delay.get_or_create(&path);
            observe_delays(&h, summary);
        }
        // owstats --json's median: exact when the delays were kept, else the histogram's.
        let median = summary.exact_median().or_else(|| summary.median());
        for (g, v) in [
            (&f.last_min, summary.min_delay()),
            (&f.last_median, median),
            (&f.last_max, summary.max_delay()),
        ] {
            match v {
                Some(v) => {
                    g.get_or_create(&path).set(v);
                }
                // Nothing received: no delay to show, rather than a stale one.
                None => {
                    g.remove(&path);
                }
            }
        }
        let (n, _, max_ttl) = summary.ttl_range();
        if n > 0 {
            f.hops.get_or_create(&path).set(255 - i64::from(max_ttl));
        }
        self.session_ended(peer, direction, Outcome::Completed);
    }

    /// A session ended otherwise than saved (see [`Outcome::Failed`]).
    pub fn session_failed(&self, peer: &str, direction: Direction) {
        self.session_ended(peer, direction, Outcome::Failed);
    }

    fn session_ended(&self, peer: &str, direction: Direction, outcome: Outcome) {
        let labels = |outcome: Outcome| SessionLabels {
            peer: peer.to_owned(),
            direction: direction.as_str(),
            outcome: outcome.as_str(),
        };
        // Both outcomes of a peer from its first session on, so that the first failure is a
        // change from 0 that rate() sees.
        for o in [Outcome::Completed, Outcome::Failed] {
            let c = self.families.sessions.get_or_create(&labels(o));
            if o == outcome {
                c.inc();
            }
        }
    }
}

/// The delays of a session into the histogram: each received packet's when they were kept,
/// else each histogram bucket's upper edge as many times as it counts.
fn observe_delays(h: &Histogram, s: &Summary) {
    if !s.delays().is_empty() || s.sent == s.lost {
        for &d in s.delays() {
            h.observe(d);
        }
        return;
    }
    for &(b, count) in &s.buckets {
        let edge = f64::from(b) * s.bucket_width;
        for _ in 0..count {
            h.observe(edge);
        }
    }
}

/// The most records whose delays are kept for the histogram and the exact median (as owstats
/// `--json` keeps them).
const EXACT_RECORDS: usize = crate::owstats::JSON_EXACT_RECORDS as usize;

/// A saved session's summary, as its `.sum` and `-j` files give it: the session as its `.owp`
/// file holds it (`SessionMeta::from_header`: records only, as owstats reads them) with
/// `bucket_width` (`-b`).
pub fn summarize(d: &StoredSession, bucket_width: f64) -> Result<Summary, String> {
    let header = owp_header(d);
    let records = d.records.len() as u64;
    Stats::summarize_all(
        SessionMeta::from_header(&header),
        &d.records,
        StatsConfig {
            bucket_width,
            schedule_limit: Some(crate::owstats::schedule_limit(records)),
            keep_delays: d.records.len() <= EXACT_RECORDS,
        },
    )
    .map_err(|e| e.to_string())
}

impl Direction {
    /// The direction of the sessions in which this host has `role`.
    pub fn of(role: owamp_core::control::Role) -> Self {
        match role {
            owamp_core::control::Role::Sender => Direction::To,
            owamp_core::control::Role::Receiver => Direction::From,
        }
    }
}

/// The `peer` label of a server: `host:port` as given, with the port it was given or the
/// default, and an IPv6 address in brackets.
pub fn peer_label(node: &str, port: u16) -> String {
    if node.contains(':') {
        format!("[{node}]:{port}")
    } else {
        format!("{node}:{port}")
    }
}

impl PowstreamMetrics {
    /// A session ended: saved (`Some`: its numbers, from [`summarize`] with `bucket_width`)
    /// or not (`None`).
    pub fn session_end(
        &self,
        peer: &str,
        direction: Direction,
        saved: Option<&StoredSession>,
        bucket_width: f64,
    ) {
        match saved.map(|d| summarize(d, bucket_width)) {
            Some(Ok(s)) => self.session_saved(peer, direction, &s),
            Some(Err(e)) => {
                tracing::warn!("metrics: session of {peer}: {e}");
                self.session_failed(peer, direction);
            }
            None => self.session_failed(peer, direction),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_peer_and_direction() {
        assert_eq!(peer_label("example.net", 861), "example.net:861");
        assert_eq!(peer_label("::1", 8610), "[::1]:8610");
        assert_eq!(
            Direction::of(owamp_core::control::Role::Sender),
            Direction::To
        );
    }

    #[test]
    fn a_saved_session_updates_its_series_only() {
        let m = PowstreamMetrics::unserved();
        let mut r = Registry::with_prefix("owamp");
        m.register(&mut r);
        m.session_failed("a:861", Direction::From);
        let text = super::super::render(&r).unwrap();
        assert!(
            text.contains(
                r#"owamp_sessions_total{peer="a:861",direction="from",outcome="failed"} 1"#
            ),
            "{text}"
        );
        // The other outcome is there from the first session on, at 0.
        assert!(
            text.contains(
                r#"owamp_sessions_total{peer="a:861",direction="from",outcome="completed"} 0"#
            ),
            "{text}"
        );
        // No numbers before a session was saved.
        assert!(!text.contains("owamp_loss_ratio{"), "{text}");
        assert!(!text.contains("owamp_delay_seconds_count{"), "{text}");
    }
}
