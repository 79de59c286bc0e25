//! owampd's metrics: control connections by outcome and refusal reason, the test sessions set
//! up or running, what the store wrote and could not write, and the local clock.

use std::sync::Arc;

use owamp_core::control::{CloseReason, SetupRefusal};
use owamp_core::io::FetchReply;
use owamp_core::io::StoredSession;
use owamp_core::owp::header::{FIXED_LEN, RECORD_LEN, SKIP_RANGE_LEN};
use owamp_core::policy::SessionsPerAddr;
use owamp_core::session::StreamEnd;
use owamp_core::wire::{DataRecord, RequestSession, SessionId};
use owamp_os::host::{ConnectionSummary, Refusal, Refused, ServeConfig};
use owamp_os::store::{FetchSource, RecordSink, SessionStore, StoreError};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::{ClockCollector, MetricsError, MetricsServer};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Default)]
struct Families {
    connections: Family<OutcomeLabels, Counter>,
    refusals: Family<ReasonLabels, Counter>,
    stored_bytes: Counter,
    store_errors: Counter,
}

/// The metrics of an owampd, and the endpoint serving them (stopped when dropped).
#[derive(Debug)]
pub struct OwampdMetrics {
    families: Arc<Families>,
    _server: MetricsServer,
}

/// The values of the `outcome` label of `owampd_control_connections_total`.
pub const OUTCOMES: [&str; 3] = ["accepted", "refused", "failed"];

/// The values of the `reason` label of `owampd_refusals_total` (`other` for a reason a later
/// version adds).
pub const REASONS: [&str; 8] = [
    "maxcontrolsessions",
    "maxcontrolsessionsperaddr",
    "no_mode_offered",
    "mode_not_offered",
    "unknown_identity",
    "wrong_passphrase",
    "limits",
    "other",
];

/// The refusal reason label of a connection closed at once by a connection limit: the
/// setting of owamp-server.conf that set the limit.
pub fn limit_reason(r: &Refusal) -> &'static str {
    match r {
        Refusal::Busy { .. } => "maxcontrolsessions",
        Refusal::PerAddr(_) => "maxcontrolsessionsperaddr",
        _ => "other",
    }
}

/// The refusal reason label of a set-up refused (RFC 4656 3.1).
pub fn setup_reason(r: SetupRefusal) -> &'static str {
    match r {
        SetupRefusal::NoModeOffered => "no_mode_offered",
        SetupRefusal::ModeNotOffered => "mode_not_offered",
        SetupRefusal::UnknownKeyId => "unknown_identity",
        SetupRefusal::WrongPassphrase => "wrong_passphrase",
        SetupRefusal::Policy(_) => "limits",
        _ => "other",
    }
}

/// The outcome label of a connection that ended: `refused` (its set-up was), `failed` (it
/// ended otherwise than closed by either side: a timeout, a protocol error, sessions that did
/// not report), `accepted` otherwise.
pub fn outcome(c: &ConnectionSummary) -> &'static str {
    if c.setup_refused.is_some() {
        return "refused";
    }
    match c.close {
        // None: closed by the server's shutdown.
        None | Some(CloseReason::Local | CloseReason::PeerClosed) => "accepted",
        Some(_) => "failed",
    }
}

impl OwampdMetrics {
    /// Starts the endpoint on `--metrics ADDR:PORT`; `sessions` is the daemon's count of test
    /// sessions set up or running (its per-address limit keeps it, whatever the limit).
    pub fn serve(addr: &str, sessions: &SessionsPerAddr) -> Result<Self, MetricsError> {
        let addr = super::parse_addr(addr)?;
        let families = Arc::new(Families::default());
        let mut r = Registry::default();
        r.register(
            "owampd_control_connections",
            "Control connections ended or refused, by outcome (accepted, refused, failed)",
            families.connections.clone(),
        );
        r.register(
            "owampd_refusals",
            "Control connections refused, by reason",
            families.refusals.clone(),
        );
        r.register_with_unit(
            "owampd_stored",
            "Octets of received sessions written to the data directory (.owp files)",
            Unit::Bytes,
            families.stored_bytes.clone(),
        );
        r.register(
            "owampd_store_errors",
            "Received sessions that could not be stored",
            families.store_errors.clone(),
        );
        // Every outcome and reason from the start, at 0: rate() and increase() then see the
        // first one.
        for outcome in OUTCOMES {
            drop(
                families
                    .connections
                    .get_or_create(&OutcomeLabels { outcome }),
            );
        }
        for reason in REASONS {
            drop(families.refusals.get_or_create(&ReasonLabels { reason }));
        }
        r.register_collector(Box::new(ActiveSessions(sessions.clone())));
        // The clock's gauges under owamp_, as powstream's: one name across the mesh.
        r.sub_registry_with_prefix("owamp")
            .register_collector(Box::new(ClockCollector));
        let server = MetricsServer::start(addr, r)?;
        Ok(Self {
            families,
            _server: server,
        })
    }

    /// The endpoint's address.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self._server.local_addr()
    }

    /// Counts what `cfg` reports (refusals at the limits, connections that end), after its
    /// own callbacks.
    pub fn instrument(&self, cfg: &mut ServeConfig) {
        let f = self.families.clone();
        let refused = cfg.refused.take();
        cfg.refused = Some(Arc::new(move |r: &Refused| {
            if let Some(log) = &refused {
                log(r);
            }
            f.connection("refused", Some(limit_reason(&r.reason)));
        }));
        let f = self.families.clone();
        let ended = cfg.log.take();
        cfg.log = Some(Arc::new(move |c: &ConnectionSummary| {
            if let Some(log) = &ended {
                log(c);
            }
            let reason = c.setup_refused.as_ref().map(|r| setup_reason(r.reason));
            f.connection(outcome(c), reason);
            f.store_errors.inc_by(c.store_errors as u64);
        }));
    }

    /// `store`, counting the octets of the sessions it writes.
    pub fn store(&self, store: Arc<dyn SessionStore>) -> Arc<dyn SessionStore> {
        Arc::new(MeteredStore {
            inner: store,
            families: self.families.clone(),
        })
    }
}

impl Families {
    fn connection(&self, outcome: &'static str, reason: Option<&'static str>) {
        self.connections
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        if let Some(reason) = reason {
            self.refusals.get_or_create(&ReasonLabels { reason }).inc();
        }
    }
}

/// `owampd_active_sessions`, read at each scrape.
#[derive(Debug)]
struct ActiveSessions(SessionsPerAddr);

impl Collector for ActiveSessions {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let g = ConstGauge::new(i64::try_from(self.0.total()).unwrap_or(i64::MAX));
        let m = encoder.encode_descriptor(
            "owampd_active_sessions",
            "Test sessions set up or running now (both directions)",
            None,
            g.metric_type(),
        )?;
        g.encode(m)
    }
}

/// The size of a session's `.owp` file: header (fixed part and Request-Session), records,
/// skip ranges.
fn owp_octets(request: &RequestSession, records: u64, skips: usize) -> u64 {
    FIXED_LEN
        .saturating_add(request.encoded_len() as u64)
        .saturating_add(records.saturating_mul(RECORD_LEN))
        .saturating_add((skips as u64).saturating_mul(SKIP_RANGE_LEN))
}

/// A store that counts the octets of what it keeps.
struct MeteredStore {
    inner: Arc<dyn SessionStore>,
    families: Arc<Families>,
}

impl SessionStore for MeteredStore {
    fn save(&self, session: &StoredSession) -> Result<(), StoreError> {
        self.inner.save(session)?;
        self.families.stored_bytes.inc_by(owp_octets(
            &session.request,
            session.records.len() as u64,
            session.skips.len(),
        ));
        Ok(())
    }

    fn load(&self, sid: &SessionId) -> FetchReply {
        self.inner.load(sid)
    }

    fn begin(&self, request: &RequestSession) -> Result<Box<dyn RecordSink>, StoreError> {
        let inner = self.inner.begin(request)?;
        Ok(Box::new(MeteredSink {
            inner,
            request: request.clone(),
            records: 0,
            families: self.families.clone(),
        }))
    }

    fn fetch(&self, sid: &SessionId, begin: u32, end: u32) -> FetchSource {
        self.inner.fetch(sid, begin, end)
    }

    fn fetch_complete(&self, sid: &SessionId) {
        self.inner.fetch_complete(sid)
    }
}

struct MeteredSink {
    inner: Box<dyn RecordSink>,
    request: RequestSession,
    records: u64,
    families: Arc<Families>,
}

impl RecordSink for MeteredSink {
    fn append(&mut self, records: &[DataRecord]) -> Result<(), StoreError> {
        self.inner.append(records)?;
        self.records = self.records.saturating_add(records.len() as u64);
        Ok(())
    }

    fn finish(self: Box<Self>, end: &StreamEnd) -> Result<Option<StoredSession>, StoreError> {
        let this = *self;
        let whole = this.inner.finish(end)?;
        // A sink that only gathered hands the session back to be saved (and counted there).
        if whole.is_none() {
            // A rare prune (RFC 4656 3.8) makes the file a few records shorter than counted.
            let records = this.records.saturating_add(end.tail.len() as u64);
            this.families
                .stored_bytes
                .inc_by(owp_octets(&this.request, records, end.skips.len()));
        }
        Ok(whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_reasons_name_the_setting_or_the_set_up_failure() {
        assert_eq!(
            limit_reason(&Refusal::Busy { max: 3 }),
            "maxcontrolsessions"
        );
        assert_eq!(
            setup_reason(SetupRefusal::WrongPassphrase),
            "wrong_passphrase"
        );
        assert_eq!(setup_reason(SetupRefusal::NoModeOffered), "no_mode_offered");
    }
}
