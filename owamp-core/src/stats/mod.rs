//! Statistics over data records, as perfSONAR's owstats reports them.
//!
//! [`Stats`] reproduces owstats's algorithms exactly: loss and duplicates from the send schedule
//! and the loss timeout, delays as differences of rounded doubles, the median and other
//! percentiles from the delay histogram, jitter as P95-P50, TTL ranges and RFC 4737
//! n-reordering up to owstats's bound. [`report`] formats the results as owstats prints them.
//! Beside the histogram percentiles, [`Summary::exact_percentile`] computes them from the
//! delays themselves. [`Stats::of_fetched`] and [`Stats::of_stored`] summarize a whole session
//! as the control state machines and the receiver hand it over. Nothing here does I/O.

mod engine;
pub mod fmt;
mod num;
pub mod report;
pub mod twamp;

pub use engine::{
    PacketEvent, SessionMeta, Stats, StatsConfig, StatsError, Summarizer, Summary,
    DEFAULT_BUCKET_WIDTH,
};
pub use num::{error_seconds, is_sync, num64_to_f64, to_unix_timespec, NTP_UNIX_OFFSET};
