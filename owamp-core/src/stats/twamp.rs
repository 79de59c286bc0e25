//! Two-way statistics of a TWAMP session, as twping 5.2.3 reports them: round trip, each
//! one-way leg, reflector processing time, jitter (P95-P50), duplicates and hops per direction.
//!
//! Delays are differences of timestamps converted to doubles (as the reference computes them,
//! so they come in steps of 2^-21 s at today's NTP times); medians and jitter come from a
//! histogram of [`DEFAULT_BUCKET_WIDTH`] buckets (twping's `-b` changes the width), read as
//! owstats reads its own ([`super::Summary::percentile`]): the upper edge of the first bucket at
//! which the running count reaches alpha times the packets sent.

use std::collections::{BTreeMap, HashSet};

use super::engine::DEFAULT_BUCKET_WIDTH;
use super::num::{error_seconds, is_sync, num64_to_f64};
use crate::session::twamp::TwoWayRecord;
use crate::time::{ErrorEstimate, OwampTime};

/// One direction's (or the round trip's) delays.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DelayStats {
    /// Smallest delay in seconds (`None` when nothing came back).
    pub min: Option<f64>,
    /// Largest delay in seconds.
    pub max: Option<f64>,
    /// Largest error estimate of a delay, in seconds (the sum of the estimates of the
    /// timestamps it is computed from).
    pub max_error: f64,
    /// Histogram: (bucket number, packets), ascending; bucket `b` holds ((b-1)w, bw].
    pub buckets: Vec<(i32, u32)>,
    /// The histogram's bucket width in seconds.
    pub bucket_width: f64,
    sent: u32,
}

impl DelayStats {
    fn new(delays: &[(f64, f64)], sent: u32, bucket_width: f64) -> Self {
        let mut hist: BTreeMap<i32, u32> = BTreeMap::new();
        let mut s = Self {
            sent,
            bucket_width,
            ..Self::default()
        };
        for &(d, err) in delays {
            s.min = Some(s.min.map_or(d, |m: f64| m.min(d)));
            s.max = Some(s.max.map_or(d, |m: f64| m.max(d)));
            s.max_error = s.max_error.max(err);
            // Buckets round away from zero, as owstats's.
            let x = d / bucket_width;
            let b = if x < 0.0 { x.floor() } else { x.ceil() };
            let b = b.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32;
            *hist.entry(b).or_insert(0) += 1;
        }
        s.buckets = hist.into_iter().collect();
        s
    }

    /// The `alpha` quantile from the histogram (see the module docs).
    pub fn percentile(&self, alpha: f64) -> Option<f64> {
        let target = alpha * f64::from(self.sent);
        let mut sum = 0.0;
        for &(b, count) in &self.buckets {
            if f64::from(count) + sum < target {
                sum += f64::from(count);
            } else {
                return Some(f64::from(b) * self.bucket_width);
            }
        }
        None
    }

    /// The median (from the histogram).
    pub fn median(&self) -> Option<f64> {
        self.percentile(0.5)
    }

    /// Jitter as twping reports it: P95 minus P50.
    pub fn jitter(&self) -> Option<f64> {
        Some(self.percentile(0.95)? - self.percentile(0.5)?)
    }
}

/// Hop counts of one direction: 255 minus the TTL seen (twping's sender and reflector both
/// send with TTL 255).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hops {
    /// Fewest hops.
    pub min: u8,
    /// Most hops.
    pub max: u8,
}

/// The statistics twping prints for one session.
#[derive(Debug, Clone, PartialEq)]
pub struct TwoWaySummary {
    /// Packets sent.
    pub sent: u32,
    /// Packets sent that no reply answered.
    pub lost: u32,
    /// Sender packets the reflector answered more than once (several reflector sequence
    /// numbers for one sender sequence number).
    pub send_duplicates: u32,
    /// Replies that arrived more than once (the same reflector sequence number again).
    pub reflect_duplicates: u32,
    /// Round trip minus the reflector's processing time.
    pub round_trip: DelayStats,
    /// Sender to reflector.
    pub send: DelayStats,
    /// Reflector to sender.
    pub reflect: DelayStats,
    /// Reflector processing time: its send time minus its receive time.
    pub processing: DelayStats,
    /// Hops sender to reflector (`None` when nothing came back).
    pub send_hops: Option<Hops>,
    /// Hops reflector to sender.
    pub reflect_hops: Option<Hops>,
    /// Send time of the first and last packets answered.
    pub first_last: Option<(OwampTime, OwampTime)>,
    /// Whether the error estimates hold (twping prints "(unsync)" for the delays otherwise):
    /// false once a lost packet's recorded error estimate lacks the S bit (see
    /// [`with_lost`](Self::with_lost)).
    pub sync: bool,
}

fn diff(a: OwampTime, b: OwampTime) -> f64 {
    num64_to_f64(a.raw()) - num64_to_f64(b.raw())
}

impl TwoWaySummary {
    /// The statistics of a session in which `sent` packets were sent and `records` came back,
    /// in the order they arrived. Only the first reply to each sender packet counts in the
    /// delays and hops. The histograms have buckets of [`DEFAULT_BUCKET_WIDTH`].
    pub fn new(records: &[TwoWayRecord], sent: u32) -> Self {
        Self::with_bucket_width(records, sent, DEFAULT_BUCKET_WIDTH)
    }

    /// As [`new`](Self::new), with histogram buckets of `bucket_width` seconds (twping `-b`;
    /// a width that is not positive and finite is taken as [`DEFAULT_BUCKET_WIDTH`]).
    pub fn with_bucket_width(records: &[TwoWayRecord], sent: u32, bucket_width: f64) -> Self {
        let width = if bucket_width.is_finite() && bucket_width > 0.0 {
            bucket_width
        } else {
            DEFAULT_BUCKET_WIDTH
        };
        let mut seen_sender: HashSet<u32> = HashSet::new();
        let mut seen_pair: HashSet<(u32, u32)> = HashSet::new();
        let mut send_duplicates = 0;
        let mut reflect_duplicates = 0;
        let (mut rt, mut fwd, mut bck, mut proc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut send_ttl: Option<Hops> = None;
        let mut reflect_ttl: Option<Hops> = None;
        let mut first_last: Option<(OwampTime, OwampTime)> = None;
        for r in records {
            if !seen_pair.insert((r.sender_seq, r.reflector_seq)) {
                reflect_duplicates += 1;
                continue;
            }
            if !seen_sender.insert(r.sender_seq) {
                send_duplicates += 1;
                continue;
            }
            let (es, er, ed) = (
                error_seconds(r.send_error),
                error_seconds(r.reflector_error),
                error_seconds(r.recv_error),
            );
            let f = diff(r.reflector_recv_time, r.send_time);
            let b = diff(r.recv_time, r.reflector_send_time);
            let p = diff(r.reflector_send_time, r.reflector_recv_time);
            let whole = diff(r.recv_time, r.send_time);
            rt.push((whole - p, es + 2.0 * er + ed));
            fwd.push((f, es + er));
            bck.push((b, er + ed));
            proc.push((p, 2.0 * er));
            let hop = |h: &mut Option<Hops>, ttl: u8| {
                let n = 255 - ttl;
                *h = Some(h.map_or(Hops { min: n, max: n }, |x| Hops {
                    min: x.min.min(n),
                    max: x.max.max(n),
                }));
            };
            hop(&mut send_ttl, r.sender_ttl);
            hop(&mut reflect_ttl, r.reply_ttl);
            first_last = Some(first_last.map_or((r.send_time, r.send_time), |(a, z)| {
                (a.min(r.send_time), z.max(r.send_time))
            }));
        }
        let answered = u32::try_from(seen_sender.len()).unwrap_or(u32::MAX);
        Self {
            sent,
            lost: sent.saturating_sub(answered),
            send_duplicates,
            reflect_duplicates,
            round_trip: DelayStats::new(&rt, sent, width),
            send: DelayStats::new(&fwd, sent, width),
            reflect: DelayStats::new(&bck, sent, width),
            processing: DelayStats::new(&proc, sent, width),
            send_hops: send_ttl,
            reflect_hops: reflect_ttl,
            first_last,
            sync: true,
        }
    }

    /// Takes in the error estimates recorded for the lost packets (in a two-way file, the
    /// reflector receive time's; twping records its own clock's there), as twping and owstats
    /// count them: one that is not synchronized makes the summary unsynchronized, and each
    /// raises the largest error of the round trip and of both legs.
    pub fn with_lost(mut self, errors: impl IntoIterator<Item = ErrorEstimate>) -> Self {
        for e in errors {
            if !is_sync(e) {
                self.sync = false;
            }
            let err = error_seconds(e);
            for d in [&mut self.round_trip, &mut self.send, &mut self.reflect] {
                d.max_error = d.max_error.max(err);
            }
        }
        self
    }

    /// The `alpha` quantile of the round-trip time as twping's `-a` reports it: as
    /// [`DelayStats::percentile`], except that for a level of 0 it is the lowest bucket any of
    /// the round-trip, send and reflect histograms has (twping keeps the three in one table,
    /// and a level of 0 stops at its first bucket).
    pub fn round_trip_percentile(&self, alpha: f64) -> Option<f64> {
        if alpha * f64::from(self.sent) > 0.0 {
            return self.round_trip.percentile(alpha);
        }
        [&self.round_trip, &self.send, &self.reflect]
            .iter()
            .filter_map(|d| d.buckets.first().map(|b| b.0))
            .min()
            .map(|b| f64::from(b) * self.round_trip.bucket_width)
    }

    /// Lost over sent (0 when nothing was sent).
    pub fn loss_fraction(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            f64::from(self.lost) / f64::from(self.sent)
        }
    }
}
