//! The summary statistics of one session, computed the way perfSONAR's OWPStatsParse does.

use std::collections::{HashMap, VecDeque};

use super::num::{error_seconds, is_sync, num64_to_f64};
use crate::io::{FetchedSession, Finished, StoredSession};
use crate::owp::SessionHeader;
use crate::session::schedule::{Schedule, ScheduleCursor};
use crate::time::{Interval, OwampTime};
use crate::wire::{DataRecord, RequestSession, SessionId, SkipRange, Slot};

/// owstats's default histogram bucket width, 0.1 ms. owstats keeps the width in a C `float`, so
/// the width it computes with is 0.0001 rounded to single precision.
pub const DEFAULT_BUCKET_WIDTH: f64 = 0.0001f32 as f64;

/// Why statistics could not be computed. The record-level variants are the cases in which
/// perfSONAR's owstats gives up too.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StatsError {
    /// The session has no schedule slots, so no send times can be derived.
    #[error("the session has no schedule slots")]
    NoSlots,
    /// The histogram bucket width is not a positive number.
    #[error("invalid bucket width {0}: must be positive")]
    BucketWidth(f64),
    /// The requested sample range does not fit the session.
    #[error("invalid sample range [{first},{last}) for a session of {packets} packets")]
    Range {
        /// First sequence number asked for.
        first: u32,
        /// One past the last sequence number asked for.
        last: u32,
        /// Packets in the session.
        packets: u32,
    },
    /// A record refers to a packet whose loss window has already closed.
    #[error("record for seq {seq} arrives after that packet's loss window closed")]
    StaleRecord {
        /// The sequence number.
        seq: u32,
    },
    /// Every packet of the range is past its loss window before this record.
    #[error("record for seq {seq} arrives after the loss window of the last packet closed")]
    PastEnd {
        /// The sequence number.
        seq: u32,
    },
    /// A lost-packet record for a packet that was received.
    #[error("lost-packet record for seq {seq}, which was received")]
    LostAfterReceived {
        /// The sequence number.
        seq: u32,
    },
    /// A received-packet record for a packet already recorded as lost.
    #[error("received-packet record for seq {seq}, which was recorded as lost")]
    ReceivedAfterLost {
        /// The sequence number.
        seq: u32,
    },
    /// The skip ranges are not in order: their starts and their ends must both be
    /// non-decreasing, as the sender reports them (RFC 4656 3.8).
    #[error("the skip ranges are not in order")]
    SkipRanges,
    /// Deriving send times would take more schedule steps than the configured limit.
    #[error("the schedule needs more than {limit} steps (packet count {packets}): refusing")]
    ScheduleTooLong {
        /// The configured limit.
        limit: u64,
        /// Packets in the session.
        packets: u32,
    },
}

/// What the statistics need to know about a session besides its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMeta {
    /// Session identifier (it keys the exponential schedule).
    pub sid: SessionId,
    /// Scheduled start time.
    pub start_time: OwampTime,
    /// Loss timeout (the Timeout of Request-Session, RFC 4656 3.5).
    pub loss_timeout: Interval,
    /// Number of packets in the session.
    pub num_packets: u32,
    /// Schedule slots.
    pub slots: Vec<Slot>,
    /// Sequence numbers the sender skipped.
    pub skip_ranges: Vec<SkipRange>,
    /// The sender's Next-Seqno, when the session ended with Stop-Sessions (RFC 4656 3.8).
    ///
    /// When set, every packet below it that was not skipped and has no record at all (neither
    /// received nor lost) counts as sent and lost: the sender says it sent it. When `None`, such
    /// a packet is not counted, as perfSONAR's owstats does.
    pub next_seqno: Option<u32>,
}

impl SessionMeta {
    /// The session described by a .owp file header.
    ///
    /// `next_seqno` is left `None` so that the statistics of a file are exactly owstats's
    /// (perfSONAR counts only packets with records); set it to count missing records as lost.
    pub fn from_header(h: &SessionHeader) -> Self {
        Self {
            sid: h.request.sid,
            start_time: h.request.start_time,
            loss_timeout: h.request.timeout,
            num_packets: h.request.num_packets,
            slots: h.request.slots.clone(),
            skip_ranges: h.skip_ranges.clone(),
            next_seqno: None,
        }
    }

    /// The session a receiver stored (see [`StoredSession`]); when it finished normally, its
    /// Next-Seqno makes packets without records count as lost.
    pub fn from_stored(s: &StoredSession) -> Self {
        Self::from_parts(&s.request, s.finished, s.next_seqno, &s.skips)
    }

    /// The session a client fetched (see [`FetchedSession`]); when it finished normally, its
    /// Next-Seqno makes packets without records count as lost.
    pub fn from_fetched(f: &FetchedSession) -> Self {
        Self::from_parts(&f.request, f.finished, f.next_seqno, &f.skips)
    }

    fn from_parts(
        request: &RequestSession,
        finished: Finished,
        next_seqno: u32,
        skips: &[SkipRange],
    ) -> Self {
        Self {
            sid: request.sid,
            start_time: request.start_time,
            loss_timeout: request.timeout,
            num_packets: request.num_packets,
            slots: request.slots.clone(),
            skip_ranges: skips.to_vec(),
            // RFC 4656 3.8: Next-Seqno is meaningful only after Stop-Sessions.
            next_seqno: (finished == Finished::Normal).then_some(next_seqno),
        }
    }

    /// Packets per second (OWPTestPacketRate): slots over the sum of their means.
    fn packet_rate(&self) -> f64 {
        let total = self
            .slots
            .iter()
            .fold(0u64, |acc, s| acc.wrapping_add(s.mean.raw()));
        if self.slots.is_empty() || total == 0 {
            return 0.0;
        }
        self.slots.len() as f64 / num64_to_f64(total)
    }
}

/// Settings of the statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatsConfig {
    /// Width of a delay histogram bucket, in seconds.
    pub bucket_width: f64,
    /// Refuse to compute more than this many schedule offsets in total (a corrupt packet count
    /// could otherwise ask for billions); `None` for no limit, as perfSONAR.
    pub schedule_limit: Option<u64>,
    /// Keep every delay for [`Summary::exact_percentile`] and [`Summary::delays`] (8 octets
    /// per packet received). Without them the memory used does not grow with the session;
    /// owstats's numbers do not need them.
    pub keep_delays: bool,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            bucket_width: DEFAULT_BUCKET_WIDTH,
            schedule_limit: None,
            keep_delays: true,
        }
    }
}

/// What the reference's delta generator (OWPScheduleContextGenerateNextDelta) returns once the
/// schedule is exhausted: its FATAL error code (-4) taken as a 32.32 offset. Its statistics add
/// it to the send time like any delta (when a range starts at the packet count).
const EXHAUSTED: u64 = (-4i64) as u64;

/// The next delta of the schedule, as the reference's statistics see it.
fn next_delta(cursor: &mut ScheduleCursor, schedule: &Schedule) -> u64 {
    cursor.next_gap(schedule).map_or(EXHAUSTED, Interval::raw)
}

/// Sizes of the reference's hash tables, from which its histogram order follows.
const TABLE_PRIMES: [u32; 12] = [
    31, 67, 127, 251, 509, 1021, 2053, 4093, 8191, 16381, 32771, 65521,
];

fn table_size(hint: u64) -> u32 {
    TABLE_PRIMES
        .iter()
        .rev()
        .copied()
        .find(|&p| u64::from(p) <= hint)
        .unwrap_or(TABLE_PRIMES[0])
}

/// Statistics over one session, possibly in several consecutive sample ranges (owstats -N).
///
/// The schedule position is kept from one range to the next, as the reference keeps it.
#[derive(Debug)]
pub struct Stats {
    info: SessionMeta,
    bucket_width: f64,
    schedule_limit: Option<u64>,
    keep_delays: bool,
    steps: u64,
    /// The send schedule (RFC 4656 Appendix B) and the position of the newest packet.
    schedule: Schedule,
    sched: ScheduleCursor,
    /// Number of offsets generated so far.
    sched_count: u64,
    /// Send time of the last packet generated.
    end_time: u64,
    /// The reference's packet buffer length, which bounds the reordering it can see.
    reorder_bound: u64,
    bucket_table: u32,
    inf_delay: f64,
}

impl Stats {
    /// Statistics over `info` with `config`.
    pub fn new(info: SessionMeta, config: StatsConfig) -> Result<Self, StatsError> {
        if info.slots.is_empty() {
            return Err(StatsError::NoSlots);
        }
        if config.bucket_width.is_nan() || config.bucket_width <= 0.0 {
            return Err(StatsError::BucketWidth(config.bucket_width));
        }
        // In order, a record's skip range is found by binary search (see `in_skips`).
        if !info
            .skip_ranges
            .windows(2)
            .all(|w| w[0].first <= w[1].first && w[0].last <= w[1].last)
        {
            return Err(StatsError::SkipRanges);
        }
        // Packet buffer: rate * timeout * 3.5, at least 10 (OWPStatsCreate).
        let d = info.packet_rate() * num64_to_f64(info.loss_timeout.raw()) * 3.5;
        let plist = if d > 2_147_483_647.0 {
            2_147_483_647
        } else {
            d as u64
        };
        // Bucket table: the raw 32.32 timeout over the width, between 10 and 2048.
        let d = info.loss_timeout.raw() as f64 / config.bucket_width;
        let blist = if d > 2_147_483_647.0 {
            2_147_483_647
        } else {
            d as u64
        };
        let schedule = Schedule::new(info.sid, &info.slots, info.num_packets)
            .map_err(|_| StatsError::NoSlots)?;
        Ok(Self {
            bucket_width: config.bucket_width,
            schedule_limit: config.schedule_limit,
            keep_delays: config.keep_delays,
            steps: 0,
            sched: ScheduleCursor::new(&schedule),
            schedule,
            sched_count: 0,
            end_time: info.start_time.raw(),
            reorder_bound: plist.max(10),
            bucket_table: table_size(blist.clamp(10, 2048)),
            inf_delay: num64_to_f64(info.loss_timeout.raw().wrapping_add(1)),
            info,
        })
    }

    /// The statistics of a whole session from its records, in the order they were stored or
    /// fetched: [`Stats::new`], one [`Stats::summarize`] over every packet, and
    /// [`Summarizer::finish`].
    pub fn summarize_all<'r>(
        meta: SessionMeta,
        records: impl IntoIterator<Item = &'r DataRecord>,
        config: StatsConfig,
    ) -> Result<Summary, StatsError> {
        let mut stats = Stats::new(meta, config)?;
        let mut s = stats.summarize(0, None)?;
        for r in records {
            s.push(r)?;
        }
        s.finish()
    }

    /// The statistics of a session a client fetched (RFC 4656 3.8), with the default settings.
    pub fn of_fetched(f: &FetchedSession) -> Result<Summary, StatsError> {
        Self::summarize_all(
            SessionMeta::from_fetched(f),
            &f.records,
            StatsConfig::default(),
        )
    }

    /// The statistics of a session a receiver stored, with the default settings.
    pub fn of_stored(s: &StoredSession) -> Result<Summary, StatsError> {
        Self::summarize_all(
            SessionMeta::from_stored(s),
            &s.records,
            StatsConfig::default(),
        )
    }

    /// The session.
    pub fn info(&self) -> &SessionMeta {
        &self.info
    }

    /// The histogram bucket width.
    pub fn bucket_width(&self) -> f64 {
        self.bucket_width
    }

    /// Fails at once if `n` more schedule steps would pass the limit: a corrupt packet count
    /// is refused before the work, not after `limit` steps of it.
    fn check_steps(&self, n: u64) -> Result<(), StatsError> {
        match self.schedule_limit {
            Some(limit) if self.steps.saturating_add(n) > limit => {
                Err(StatsError::ScheduleTooLong {
                    limit,
                    packets: self.info.num_packets,
                })
            }
            _ => Ok(()),
        }
    }

    fn count_step(&mut self) -> Result<(), StatsError> {
        self.steps += 1;
        match self.schedule_limit {
            Some(limit) if self.steps > limit => Err(StatsError::ScheduleTooLong {
                limit,
                packets: self.info.num_packets,
            }),
            _ => Ok(()),
        }
    }

    /// Starts a summary of the packets with sequence numbers in `first..last` (`last` `None`:
    /// to the end of the session). Feed it the records from where the previous range's
    /// [`Summarizer::next_index`] said, or all of them.
    pub fn summarize(
        &mut self,
        first: u32,
        last: Option<u32>,
    ) -> Result<Summarizer<'_>, StatsError> {
        let packets = self.info.num_packets;
        let last = last.unwrap_or(packets);
        if first > last || last > packets {
            return Err(StatsError::Range {
                first,
                last,
                packets,
            });
        }
        // Bring the schedule to packet `first`.
        if first == 0 || u64::from(first) < self.sched_count {
            self.sched = ScheduleCursor::new(&self.schedule);
            self.sched_count = 0;
            self.end_time = self.info.start_time.raw();
        }
        self.check_steps((u64::from(first) + 1).saturating_sub(self.sched_count))?;
        while self.sched_count <= u64::from(first) {
            self.count_step()?;
            self.end_time = self
                .end_time
                .wrapping_add(next_delta(&mut self.sched, &self.schedule));
            self.sched_count += 1;
        }
        let start = self.end_time;
        let begin_sched = self.sched.clone();
        Ok(Summarizer {
            first,
            last,
            start_time: start,
            end_seq: first,
            begin_seq: first,
            begin_time: start,
            begin_sched,
            flushed_time: start,
            nodes: HashMap::new(),
            iskip: 0,
            pushed: 0,
            next_index: None,
            sent: 0,
            lost: 0,
            dups: 0,
            sync: true,
            maxerr: 0.0,
            min_delay: self.inf_delay,
            max_delay: -self.inf_delay,
            buckets: HashMap::new(),
            ttl: [0; 256],
            arrivals: 0,
            barriers: VecDeque::new(),
            deep: Vec::new(),
            reorder_seen: 0,
            delays: Vec::new(),
            stats: self,
        })
    }
}

/// One packet as owstats -v prints it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PacketEvent {
    /// A lost-packet record.
    Lost {
        /// Sequence number.
        seq: u32,
    },
    /// A received packet (duplicates included).
    Received {
        /// Sequence number.
        seq: u32,
        /// One-way delay in seconds.
        delay: f64,
        /// Both clocks were synchronised.
        sync: bool,
        /// Sum of the two error estimates, in seconds.
        error: f64,
        /// Send timestamp.
        send_time: OwampTime,
        /// Receive timestamp.
        recv_time: OwampTime,
    },
}

/// Arrivals `index..index + len`, numbered `seq..seq + len` (see `Summarizer::barriers`).
#[derive(Debug, Clone, Copy)]
struct Barriers {
    index: u64,
    seq: u32,
    len: u32,
}

impl Barriers {
    /// Index of the last arrival of the run.
    fn last_index(&self) -> u64 {
        self.index + u64::from(self.len) - 1
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Node {
    seen: u32,
    lost: bool,
}

/// Accumulates one sample range; created by [`Stats::summarize`].
#[derive(Debug)]
pub struct Summarizer<'a> {
    stats: &'a mut Stats,
    first: u32,
    last: u32,
    start_time: u64,
    /// Highest packet whose send time is known (the reference's list end).
    end_seq: u32,
    /// Oldest packet still open (the reference's list begin), its send time and a schedule
    /// positioned after it.
    begin_seq: u32,
    begin_time: u64,
    begin_sched: ScheduleCursor,
    flushed_time: u64,
    /// State of the open packets that have records.
    nodes: HashMap<u32, Node>,
    iskip: usize,
    pushed: u64,
    next_index: Option<u64>,
    sent: u32,
    lost: u32,
    dups: u32,
    sync: bool,
    maxerr: f64,
    min_delay: f64,
    max_delay: f64,
    /// Histogram: bucket -> (count, order of creation).
    buckets: HashMap<i32, (u32, u64)>,
    ttl: [u32; 256],
    /// Arrivals considered for reordering so far.
    arrivals: u64,
    /// The arrivals that can still stop a later arrival's look back: each one's number is not
    /// above those after it, and none is more than the reorder bound back. Kept as runs of
    /// consecutive arrivals with consecutive numbers, so that packets arriving in order (the
    /// usual case) take a few runs, not one entry each, however long the bound.
    barriers: VecDeque<Barriers>,
    /// deep[m]: arrivals that came right after exactly m arrivals with higher numbers (m
    /// capped at the reorder bound). An arrival with m counts as 1- to m-reordered
    /// (RFC 4737 n-reordering).
    deep: Vec<u32>,
    reorder_seen: u32,
    /// Delays of the received packets, duplicates excluded (for the exact percentiles).
    delays: Vec<f64>,
}

/// reordering[i] = arrivals that were (i+1)-reordered: those that came right after more than
/// i arrivals with higher numbers, from the counts of each depth.
fn n_reordering(deep: &[u32]) -> Vec<u32> {
    let mut out = vec![0u32; deep.len().saturating_sub(1)];
    let mut above = 0u32;
    for i in (0..out.len()).rev() {
        above = above.wrapping_add(deep[i + 1]);
        out[i] = above;
    }
    out
}

/// C's MAX macro (the second value wins ties and NaN).
fn c_max(a: f64, b: f64) -> f64 {
    if a > b {
        a
    } else {
        b
    }
}

/// C's MIN macro.
fn c_min(a: f64, b: f64) -> f64 {
    if a < b {
        a
    } else {
        b
    }
}

/// Whether `seq` lies in one of the skip ranges from index `from` on, as owstats checks
/// (it looks at every range from there). With starts and ends both non-decreasing (checked by
/// [`Stats::new`]), the last range starting at or before `seq` ends last among those, so it
/// alone decides.
fn in_skips(skips: &[SkipRange], from: usize, seq: u32) -> bool {
    let rest = skips.get(from..).unwrap_or(&[]);
    let n = rest.partition_point(|s| s.first <= seq);
    n > 0 && rest.get(n - 1).is_some_and(|s| seq <= s.last)
}

impl Summarizer<'_> {
    /// Number of records pushed before the first one beyond this range: where the next range
    /// should start reading (`None`: no such record yet).
    pub fn next_index(&self) -> Option<u64> {
        self.next_index
    }

    /// Extends the known send times to packet `seq`.
    fn extend_to(&mut self, seq: u32) -> Result<(), StatsError> {
        self.stats
            .check_steps(u64::from(seq.saturating_sub(self.end_seq)))?;
        while self.end_seq < seq {
            self.stats.count_step()?;
            let d = next_delta(&mut self.stats.sched, &self.stats.schedule);
            self.stats.end_time = self.stats.end_time.wrapping_add(d);
            self.stats.sched_count += 1;
            self.end_seq += 1;
        }
        Ok(())
    }

    /// Closes the oldest open packet: counts it lost or duplicated, then moves on. False when
    /// it was the last packet of the range.
    fn flush_begin(&mut self) -> Result<bool, StatsError> {
        let seq = self.begin_seq;
        let node = self.nodes.remove(&seq).unwrap_or_default();
        let skips = &self.stats.info.skip_ranges;
        while self.iskip < skips.len() && seq > skips[self.iskip].last {
            self.iskip += 1;
        }
        let skipped = self.iskip < skips.len() && seq >= skips[self.iskip].first;
        if !skipped {
            if node.lost {
                self.lost = self.lost.wrapping_add(1);
            } else if node.seen > 0 {
                self.dups = self.dups.wrapping_add(node.seen - 1);
            } else if self.stats.info.next_seqno.is_some_and(|n| seq < n) {
                // No record at all, below the sender's Next-Seqno: the sender sent it (RFC 4656
                // 3.8), so it was lost.
                self.sent = self.sent.wrapping_add(1);
                self.lost = self.lost.wrapping_add(1);
            }
        }
        self.flushed_time = self.begin_time;
        if seq < self.end_seq {
            self.stats.count_step()?;
            let d = next_delta(&mut self.begin_sched, &self.stats.schedule);
            self.begin_time = self.begin_time.wrapping_add(d);
            self.begin_seq += 1;
            Ok(true)
        } else if seq.wrapping_add(1) < self.last && seq < u32::MAX {
            self.extend_to(seq + 1)?;
            self.begin_sched = self.stats.sched.clone();
            self.begin_seq = self.end_seq;
            self.begin_time = self.stats.end_time;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Feeds the next record of the file; returns what owstats -v would print for it.
    pub fn push(&mut self, rec: &DataRecord) -> Result<Option<PacketEvent>, StatsError> {
        let seq = rec.seq;
        if self.next_index.is_none() && seq >= self.last {
            self.next_index = Some(self.pushed);
        }
        self.pushed += 1;
        if seq < self.first || seq >= self.last {
            return Ok(None);
        }
        // Close the packets that can no longer be affected.
        if rec.is_lost() {
            while self.begin_seq < seq {
                if !self.flush_begin()? {
                    return Err(StatsError::PastEnd { seq });
                }
            }
        } else {
            let thresh = rec
                .recv_time
                .raw()
                .wrapping_sub(self.stats.info.loss_timeout.raw());
            while self.begin_time < thresh {
                if !self.flush_begin()? {
                    return Err(StatsError::PastEnd { seq });
                }
            }
        }
        if seq > self.end_seq {
            self.extend_to(seq)?;
        } else if seq < self.begin_seq {
            return Err(StatsError::StaleRecord { seq });
        }
        // Packets the sender skipped are not counted.
        if in_skips(&self.stats.info.skip_ranges, self.iskip, seq) {
            return Ok(None);
        }
        let node = self.nodes.entry(seq).or_default();
        if rec.is_lost() {
            if node.seen > 0 {
                return Err(StatsError::LostAfterReceived { seq });
            }
            node.lost = true;
            self.sent = self.sent.wrapping_add(1);
            if !is_sync(rec.recv_error) {
                self.sync = false;
            }
            let err = error_seconds(rec.recv_error);
            self.maxerr = c_max(self.maxerr, err);
            return Ok(Some(PacketEvent::Lost { seq }));
        }
        if node.lost {
            return Err(StatsError::ReceivedAfterLost { seq });
        }
        if node.seen == 0 {
            self.sent = self.sent.wrapping_add(1);
        }
        node.seen = node.seen.saturating_add(1);
        let duplicate = node.seen > 1;

        // RFC 4737 n-reordering: how many of the latest arrivals (at most the bound) had
        // higher numbers, up to the first that did not. owstats looks back one arrival at a
        // time; the nearest earlier arrival numbered at most `seq` gives the same count in
        // constant amortised time, whatever the order of the records.
        let bound = self.stats.reorder_bound;
        let k = self.arrivals;
        // The arrivals numbered above `seq` stop no later look back any more.
        while let Some(r) = self.barriers.back_mut() {
            if r.seq > seq {
                self.barriers.pop_back();
                continue;
            }
            // Those of the run numbered up to `seq` stay (fewer than `len`: it fits).
            let keep = u64::from(seq - r.seq) + 1;
            if keep < u64::from(r.len) {
                r.len = keep as u32;
            }
            break;
        }
        let m = match self.barriers.back() {
            Some(r) => k - r.last_index() - 1,
            None => k,
        }
        .min(bound);
        // Counts stay below the number of records: the vector is bounded by the input.
        let m = usize::try_from(m).unwrap_or(usize::MAX);
        if m > 0 {
            if self.deep.len() <= m {
                self.deep.resize(m + 1, 0);
            }
            self.deep[m] = self.deep[m].wrapping_add(1);
        }
        match self.barriers.back_mut() {
            Some(r)
                if r.index + u64::from(r.len) == k
                    && u64::from(r.seq) + u64::from(r.len) == u64::from(seq)
                    && r.len < u32::MAX =>
            {
                r.len += 1;
            }
            _ => self.barriers.push_back(Barriers {
                index: k,
                seq,
                len: 1,
            }),
        }
        // A barrier more than the bound back would give a count of at least the bound: the
        // arrivals before `cut` go.
        let cut = (k + 1).saturating_sub(bound);
        while let Some(r) = self.barriers.front_mut() {
            if r.index >= cut {
                break;
            }
            let old = cut - r.index;
            if old >= u64::from(r.len) {
                self.barriers.pop_front();
            } else {
                // Fewer than `len` (a u32), and the run's numbers are consecutive u32s.
                r.index = cut;
                r.seq += old as u32;
                r.len -= old as u32;
                break;
            }
        }
        self.arrivals = k + 1;
        self.reorder_seen = self.reorder_seen.wrapping_add(1);

        if !is_sync(rec.send_error) || !is_sync(rec.recv_error) {
            self.sync = false;
        }
        let delay = num64_to_f64(rec.recv_time.raw()) - num64_to_f64(rec.send_time.raw());
        let error = error_seconds(rec.send_error) + error_seconds(rec.recv_error);
        self.maxerr = c_max(self.maxerr, error);
        let event = PacketEvent::Received {
            seq,
            delay,
            sync: is_sync(rec.send_error) && is_sync(rec.recv_error),
            error,
            send_time: rec.send_time,
            recv_time: rec.recv_time,
        };
        self.min_delay = c_min(self.min_delay, delay);
        self.max_delay = c_max(self.max_delay, delay);
        if duplicate {
            return Ok(Some(event));
        }
        // Buckets round away from zero (the reference's ceil/floor).
        let d = delay / self.stats.bucket_width;
        let b = if d < 0.0 { d.floor() } else { d.ceil() } as i32;
        let order = self.buckets.len() as u64;
        let count = &mut self.buckets.entry(b).or_insert((0, order)).0;
        *count = count.wrapping_add(1);
        let t = &mut self.ttl[usize::from(rec.ttl)];
        *t = t.wrapping_add(1);
        if self.stats.keep_delays {
            self.delays.push(delay);
        }
        Ok(Some(event))
    }

    /// Closes the remaining packets and returns the summary.
    pub fn finish(mut self) -> Result<Summary, StatsError> {
        while self.flush_begin()? {}
        let table = self.stats.bucket_table;
        let mut histogram: Vec<(i32, u32, u64)> =
            self.buckets.iter().map(|(&b, &(c, o))| (b, c, o)).collect();
        histogram.sort_by_key(|&(b, _, _)| b);
        // The reference prints its bucket hash table in slot order, newest first within a slot;
        // the slot is the byte sum of the little-endian bucket number modulo the table size.
        let mut print_order: Vec<(i32, u32, u64)> = histogram.clone();
        print_order.sort_by_key(|&(b, _, o)| {
            let slot = b.to_le_bytes().iter().map(|&x| u32::from(x)).sum::<u32>() % table;
            (slot, std::cmp::Reverse(o))
        });
        let mut delays = self.delays;
        delays.sort_by(f64::total_cmp);
        Ok(Summary {
            delays,
            first: self.first,
            last: self.last,
            start_time: OwampTime::from_raw(self.start_time),
            end_time: OwampTime::from_raw(self.flushed_time),
            sent: self.sent,
            lost: self.lost,
            duplicates: self.dups,
            sync: self.sync,
            max_error: self.maxerr,
            min_delay_raw: self.min_delay,
            max_delay_raw: self.max_delay,
            inf_delay: self.stats.inf_delay,
            bucket_width: self.stats.bucket_width,
            buckets: histogram.iter().map(|&(b, c, _)| (b, c)).collect(),
            buckets_print_order: print_order.iter().map(|&(b, c, _)| (b, c)).collect(),
            ttl: self.ttl,
            reordering: n_reordering(&self.deep),
            reorder_bound: self.stats.reorder_bound,
            reorder_seen: self.reorder_seen,
        })
    }
}

/// The statistics of one sample range, as owstats reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// First sequence number of the range.
    pub first: u32,
    /// One past the last sequence number of the range.
    pub last: u32,
    /// When the first packet of the range was due.
    pub start_time: OwampTime,
    /// When the last packet of the range was due.
    pub end_time: OwampTime,
    /// Packets with a record (received or lost), duplicates counted once.
    pub sent: u32,
    /// Packets recorded lost.
    pub lost: u32,
    /// Extra copies of received packets.
    pub duplicates: u32,
    /// Every timestamp came from a synchronised clock.
    pub sync: bool,
    /// Largest sum of send and receive error estimates, in seconds.
    pub max_error: f64,
    min_delay_raw: f64,
    max_delay_raw: f64,
    inf_delay: f64,
    /// Histogram bucket width in seconds.
    pub bucket_width: f64,
    /// Delay histogram: (bucket number, packets), by bucket number. Bucket `b` holds delays in
    /// ((b-1)w, bw] for positive delays.
    pub buckets: Vec<(i32, u32)>,
    /// The same buckets in the order owstats -M prints them.
    pub buckets_print_order: Vec<(i32, u32)>,
    /// Received packets (not duplicates) by TTL.
    pub ttl: [u32; 256],
    /// `reordering[n-1]`: packets that were n-reordered (RFC 4737), up to the first zero.
    pub reordering: Vec<u32>,
    /// Largest n for which n-reordering is tracked.
    pub reorder_bound: u64,
    /// Received packets considered for reordering (duplicates included).
    pub reorder_seen: u32,
    /// Delays of the received packets (duplicates excluded), ascending.
    delays: Vec<f64>,
}

impl Summary {
    /// Smallest one-way delay in seconds (`None` when no packet arrived within the timeout).
    pub fn min_delay(&self) -> Option<f64> {
        (self.min_delay_raw < self.inf_delay).then_some(self.min_delay_raw)
    }

    /// Largest one-way delay in seconds.
    pub fn max_delay(&self) -> Option<f64> {
        (self.max_delay_raw > -self.inf_delay).then_some(self.max_delay_raw)
    }

    /// Lost over sent (0 when nothing was sent).
    pub fn loss_fraction(&self) -> f64 {
        if self.sent > 0 {
            f64::from(self.lost) / f64::from(self.sent)
        } else {
            0.0
        }
    }

    /// The `alpha` quantile (0..=1) of the delay, from the histogram as owstats computes it:
    /// the upper edge of the first bucket at which the running count reaches alpha * sent (lost
    /// packets included in `sent`). `None` if no bucket reaches it.
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

    /// The median delay (from the histogram).
    pub fn median(&self) -> Option<f64> {
        self.percentile(0.5)
    }

    /// The exact `alpha` quantile (0..=1) of the delays of the received packets, computed from
    /// the delays themselves rather than the histogram: the nearest-rank value, the delay of
    /// rank `ceil(alpha * n)` (at least 1) among the `n` received packets in ascending order.
    /// Duplicates and lost packets are left out. `None` when no packet was received, `alpha`
    /// is not in 0..=1, or the delays were not kept ([`StatsConfig::keep_delays`]).
    ///
    /// The result is always one of the measured delays, so it lies between
    /// [`min_delay`](Self::min_delay) and [`max_delay`](Self::max_delay): unlike the
    /// histogram's [`percentile`](Self::percentile), which gives a bucket's upper edge, the
    /// exact median never exceeds the largest delay.
    pub fn exact_percentile(&self, alpha: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&alpha) {
            return None;
        }
        let n = self.delays.len();
        let rank = ((alpha * n as f64).ceil() as usize).clamp(1, n.max(1));
        self.delays.get(rank - 1).copied()
    }

    /// The exact median delay (see [`exact_percentile`](Self::exact_percentile)); never above
    /// [`max_delay`](Self::max_delay).
    pub fn exact_median(&self) -> Option<f64> {
        self.exact_percentile(0.5)
    }

    /// The delays of the received packets (duplicates excluded), ascending; empty when they
    /// were not kept ([`StatsConfig::keep_delays`]).
    pub fn delays(&self) -> &[f64] {
        &self.delays
    }

    /// Jitter as owstats reports it: 95th minus 50th percentile ("PDV").
    pub fn jitter(&self) -> Option<f64> {
        Some(self.percentile(0.95)? - self.percentile(0.5)?)
    }

    /// Number of distinct TTL values, smallest and largest (255 and 0 when there are none).
    pub fn ttl_range(&self) -> (u32, u8, u8) {
        let mut n = 0;
        let (mut min, mut max) = (255u8, 0u8);
        for (t, &c) in self.ttl.iter().enumerate() {
            if c == 0 {
                continue;
            }
            n += 1;
            let t = t as u8;
            min = min.min(t);
            max = max.max(t);
        }
        (n, min, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Skip ranges with non-decreasing starts and ends, possibly empty or sharing points.
    fn ordered_ranges() -> impl Strategy<Value = Vec<SkipRange>> {
        proptest::collection::vec((0u32..6, 0u32..6, 0u32..4), 0..12).prop_map(|steps| {
            let (mut first, mut last) = (0u32, 0u32);
            steps
                .into_iter()
                .map(|(df, dl, len)| {
                    first += df;
                    last = (last + dl).max(first + len);
                    SkipRange { first, last }
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn in_skips_is_owstats_s_scan(
            skips in ordered_ranges(),
            from in 0usize..14,
            seq in 0u32..80,
        ) {
            let scan = skips
                .get(from..)
                .unwrap_or(&[])
                .iter()
                .any(|s| seq >= s.first && seq <= s.last);
            prop_assert_eq!(in_skips(&skips, from, seq), scan);
        }
    }
}
