//! The text owstats prints: summary, machine-readable summary (-M), per-packet lines (-v) and
//! raw records (-R), character for character.

use core::net::IpAddr;
use std::fmt::Write as _;

use super::engine::{PacketEvent, Summary};
use super::fmt::{e, f, g, g6};
use super::num::{error_seconds, is_sync, num64_to_f64, to_unix_timespec, NTP_UNIX_OFFSET};
use crate::owp::SessionHeader;
use crate::wire::{DataRecord, SessionId};

/// Unit of the delays in the human-readable output (owstats -n).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scale {
    /// Nanoseconds ("ns").
    Nanoseconds,
    /// Microseconds ("us").
    Microseconds,
    /// Milliseconds ("ms"), the default.
    #[default]
    Milliseconds,
    /// Seconds; owstats prints no unit for them.
    Seconds,
}

impl Scale {
    /// The scale for owstats's -n letter (n, u, m or s, either case).
    pub fn from_letter(c: char) -> Option<Self> {
        match c.to_ascii_lowercase() {
            'n' => Some(Self::Nanoseconds),
            'u' => Some(Self::Microseconds),
            'm' => Some(Self::Milliseconds),
            's' => Some(Self::Seconds),
            _ => None,
        }
    }

    /// Multiplier from seconds.
    pub fn factor(self) -> f64 {
        match self {
            Self::Nanoseconds => 1e9,
            Self::Microseconds => 1e6,
            Self::Milliseconds => 1e3,
            Self::Seconds => 1.0,
        }
    }

    /// The unit as printed.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Nanoseconds => "ns",
            Self::Microseconds => "us",
            Self::Milliseconds => "ms",
            Self::Seconds => "",
        }
    }
}

/// One end of the session as printed: host name, numeric address and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointName {
    /// Host name (owstats reverse-resolves it).
    pub host: String,
    /// Numeric address.
    pub addr: String,
    /// Port number.
    pub port: String,
}

impl EndpointName {
    /// A peer named by its numeric address.
    pub fn numeric(addr: IpAddr, port: u16) -> Self {
        Self {
            host: addr.to_string(),
            addr: addr.to_string(),
            port: port.to_string(),
        }
    }
}

/// Formats Unix seconds as "%FT%T"; `None` when the time cannot be shown.
pub type TimeFormatter<'a> = &'a dyn Fn(u32) -> Option<String>;

/// Everything the text needs besides the statistics.
pub struct ReportContext<'a> {
    /// The sender.
    pub from: EndpointName,
    /// The receiver.
    pub to: EndpointName,
    /// Unit of delays.
    pub scale: Scale,
    /// owstats -U: Unix timestamps in per-packet lines and the machine summary.
    pub unix_timestamps: bool,
    /// Calendar time of Unix seconds (owstats uses the local time zone).
    pub time: TimeFormatter<'a>,
}

impl std::fmt::Debug for ReportContext<'_> {
    fn fmt(&self, fm: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fm.debug_struct("ReportContext")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("scale", &self.scale)
            .finish()
    }
}

/// "YYYY-MM-DDTHH:MM:SS" of Unix seconds, in UTC.
pub fn utc_time(secs: u32) -> Option<String> {
    let days = i64::from(secs / 86_400);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    ))
}

fn sid_hex(sid: &SessionId) -> String {
    sid.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// The block owstats prints before the per-packet lines and each summary.
pub fn stats_header(sid: &SessionId, ctx: &ReportContext<'_>) -> String {
    format!(
        "\n--- owping statistics from [{}]:{} to [{}]:{} ---\nSID:\t{}\n",
        ctx.from.host,
        ctx.from.port,
        ctx.to.host,
        ctx.to.port,
        sid_hex(sid)
    )
}

/// Seconds since 1970 of an NTP timestamp, as a double (for -U).
fn unix_double(t: u64) -> f64 {
    num64_to_f64(t) - NTP_UNIX_OFFSET as f64
}

/// One owstats -v line.
pub fn packet_line(ev: &PacketEvent, ctx: &ReportContext<'_>) -> String {
    let (k, u) = (ctx.scale.factor(), ctx.scale.unit());
    match *ev {
        PacketEvent::Lost { seq } => format!("seq_no={seq:<10} *LOST*\n"),
        PacketEvent::Received {
            seq,
            delay,
            sync: true,
            error,
            send_time,
            recv_time,
        } => {
            if ctx.unix_timestamps {
                format!(
                    "seq_no={} delay={} {u} (sync, err={} {u}) sent={} recv={}\n",
                    seq as i32,
                    e(delay * k, 6),
                    g(error * k, 3),
                    f(unix_double(send_time.raw()), 6),
                    f(unix_double(recv_time.raw()), 6)
                )
            } else {
                format!(
                    "seq_no={seq:<10} delay={} {u}\t(sync, err={} {u})\n",
                    g(delay * k, 3),
                    g(error * k, 3)
                )
            }
        }
        PacketEvent::Received { seq, delay, .. } => {
            format!("seq_no={seq:<10} delay={} {u}\t(unsync)\n", g(delay * k, 3))
        }
    }
}

/// One owstats -R line: "SEQ STIME SSYNC SERR RTIME RSYNC RERR TTL".
pub fn raw_line(r: &DataRecord) -> String {
    format!(
        "{} {:020} {} {} {:020} {} {} {}\n",
        r.seq,
        r.send_time.raw(),
        u8::from(is_sync(r.send_error)),
        g6(error_seconds(r.send_error)),
        r.recv_time.raw(),
        u8::from(is_sync(r.recv_error)),
        g6(error_seconds(r.recv_error)),
        r.ttl
    )
}

/// What "first:"/"last:" show for a time the caller cannot turn into a calendar date (as
/// perfSONAR's owstats and twping print it).
pub const UNREPRESENTABLE_DATE: &str = "XXX";

/// "first:"/"last:" time: calendar time and milliseconds, the way owstats rounds them.
fn time_of(t: u64, ctx: &ReportContext<'_>) -> String {
    let (sec, nsec) = to_unix_timespec(t);
    let date = (ctx.time)(sec).unwrap_or_else(|| UNREPRESENTABLE_DATE.to_string());
    // owstats divides a float by a million and prints it with "%03.0f".
    let ms = nsec as f32 / 1_000_000f32;
    format!("{date}.{:03.0}", f64::from(ms))
}

fn opt_g3(v: Option<f64>, k: f64) -> String {
    v.map_or_else(|| "nan".to_string(), |x| g(x * k, 3))
}

/// The "Percentiles:" block that owstats, owping and twping print for `-a`: one line per level
/// (a percentage, as the C float it is parsed into), the delay at it from `percentile` (which
/// takes a fraction, 0..=1) times `factor`, then `unit`. Empty when no levels were asked for.
pub fn percentile_lines(
    percentiles: &[f32],
    percentile: impl Fn(f64) -> Option<f64>,
    factor: f64,
    unit: &str,
) -> String {
    let mut o = String::new();
    if !percentiles.is_empty() {
        o.push_str("Percentiles:\n");
        for &p in percentiles {
            let v = percentile(f64::from(p) / 100.0);
            let _ = writeln!(o, "\t{}: {} {unit}", f(f64::from(p), 1), opt_g3(v, factor));
        }
    }
    o
}

/// The human-readable summary (owstats default output). `percentiles` are owstats -a values.
pub fn summary(
    s: &Summary,
    h: &SessionHeader,
    ctx: &ReportContext<'_>,
    percentiles: &[f32],
) -> String {
    let (k, u) = (ctx.scale.factor(), ctx.scale.unit());
    let mut o = stats_header(&h.request.sid, ctx);
    let _ = writeln!(
        o,
        "first:\t{}\nlast:\t{}",
        time_of(s.start_time.raw(), ctx),
        time_of(s.end_time.raw(), ctx)
    );
    let _ = writeln!(
        o,
        "{} sent, {} lost ({}%), {} duplicates",
        s.sent,
        s.lost,
        f(100.0 * s.loss_fraction(), 3),
        s.duplicates
    );
    let _ = write!(
        o,
        "one-way delay min/median/max = {}/{}/{} {u}, ",
        opt_g3(s.min_delay(), k),
        opt_g3(s.median(), k),
        opt_g3(s.max_delay(), k)
    );
    if s.sync {
        let _ = writeln!(o, "(err={} {u})", g(s.max_error * k, 3));
    } else {
        o.push_str("(unsync)\n");
    }
    let _ = writeln!(
        o,
        "one-way jitter = {} {u} (P95-P50)",
        opt_g3(s.jitter(), k)
    );
    o.push_str(&percentile_lines(percentiles, |a| s.percentile(a), k, u));
    // owstats counts distinct TTLs in an 8-bit variable.
    let (n, min, max) = s.ttl_range();
    match n % 256 {
        0 => o.push_str("TTL not reported\n"),
        1 => {
            let _ = writeln!(o, "hops = {} (consistently)", 255 - i32::from(min));
        }
        n => {
            let _ = writeln!(
                o,
                "hops takes {n} values; min hops = {}, max hops = {}",
                255 - i32::from(max),
                255 - i32::from(min)
            );
        }
    }
    let bound = s.reorder_bound;
    let mut i = 0u64;
    while i < bound {
        let c = s.reordering.get(i as usize).copied().unwrap_or(0);
        if c == 0 {
            break;
        }
        let pct = 100.0 * f64::from(c) / f64::from(s.reorder_seen);
        let _ = writeln!(o, "{}-reordering = {}%", i + 1, f(pct, 6));
        i += 1;
    }
    if i == 0 {
        o.push_str("no reordering\n");
    } else if i < bound {
        let _ = writeln!(o, "no {}-reordering", i + 1);
    } else {
        let _ = writeln!(o, "{}-reordering not handled", bound + 1);
    }
    o.push('\n');
    o
}

/// The machine-readable summary (owstats -M), format version 3.0.
pub fn machine(s: &Summary, h: &SessionHeader, ctx: &ReportContext<'_>) -> String {
    let r = &h.request;
    let mut o = String::new();
    let _ = writeln!(o, "SUMMARY\t3.00\nSID\t{}", sid_hex(&r.sid));
    for (name, p) in [("FROM", &ctx.from), ("TO", &ctx.to)] {
        let _ = writeln!(
            o,
            "{name}_HOST\t{}\n{name}_ADDR\t{}\n{name}_PORT\t{}",
            p.host, p.addr, p.port
        );
    }
    let _ = writeln!(o, "START_TIME\t{:020}", s.start_time.raw());
    let _ = writeln!(o, "END_TIME\t{:020}", s.end_time.raw());
    if ctx.unix_timestamps {
        let _ = writeln!(
            o,
            "UNIX_START_TIME\t{}",
            f(unix_double(s.start_time.raw()), 6)
        );
        let _ = writeln!(o, "UNIX_END_TIME\t{}", f(unix_double(s.end_time.raw()), 6));
    }
    // Type-P holds a DSCP only when nothing but its 6 bits is set.
    let type_p = r.type_p.0;
    if type_p & !0x3F00_0000 == 0 {
        let _ = writeln!(o, "DSCP\t0x{:02x}", type_p >> 24);
    }
    let _ = writeln!(o, "LOSS_TIMEOUT\t{}", r.timeout.raw());
    let _ = writeln!(o, "PACKET_PADDING\t{}", r.padding_length);
    let _ = writeln!(o, "SESSION_PACKET_COUNT\t{}", r.num_packets);
    let _ = writeln!(o, "SAMPLE_PACKET_COUNT\t{}", s.last - s.first);
    let _ = writeln!(o, "BUCKET_WIDTH\t{}", g6(s.bucket_width));
    let _ = writeln!(o, "SESSION_FINISHED\t{}", u8::from(h.is_finished()));
    let _ = writeln!(o, "SENT\t{}", s.sent);
    let _ = writeln!(o, "SYNC\t{}", u8::from(s.sync));
    let _ = writeln!(o, "MAXERR\t{}", g6(s.max_error));
    let _ = writeln!(o, "DUPS\t{}", s.duplicates);
    let _ = writeln!(o, "LOST\t{}", s.lost);
    if let Some(v) = s.min_delay() {
        let _ = writeln!(o, "MIN\t{}", g6(v));
    }
    if let Some(v) = s.median() {
        let _ = writeln!(o, "MEDIAN\t{}", g6(v));
    }
    if let Some(v) = s.max_delay() {
        let _ = writeln!(o, "MAX\t{}", g6(v));
    }
    if let Some(v) = s.jitter() {
        let _ = writeln!(o, "PDV\t{}", g6(v));
    }
    if s.sent > s.lost {
        o.push_str("<BUCKETS>\n");
        for &(b, c) in &s.buckets_print_order {
            let _ = writeln!(o, "\t{b}\t{c}");
        }
        o.push_str("</BUCKETS>\n");
    }
    let (n, min, max) = s.ttl_range();
    let _ = writeln!(o, "MINTTL\t{min}\nMAXTTL\t{max}");
    if n % 256 > 0 {
        o.push_str("<TTLBUCKETS>\n");
        for (t, &c) in s.ttl.iter().enumerate() {
            if c > 0 {
                let _ = writeln!(o, "\t{t}\t{c}");
            }
        }
        o.push_str("</TTLBUCKETS>\n");
    }
    o.push('\n');
    o.push_str("<NREORDERING>\n");
    let bound = s.reorder_bound;
    let mut j = 0u64;
    while j < bound {
        let c = s.reordering.get(j as usize).copied().unwrap_or(0);
        if c == 0 {
            break;
        }
        let _ = writeln!(o, "\t{}\t{c}", (j as u32).wrapping_add(1));
        j += 1;
    }
    if j == 0 || j >= bound {
        let _ = writeln!(o, "\t{}\t0", (j as u32).wrapping_add(1));
    }
    o.push_str("</NREORDERING>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_calendar() {
        assert_eq!(utc_time(0).unwrap(), "1970-01-01T00:00:00");
        assert_eq!(utc_time(951_782_400).unwrap(), "2000-02-29T00:00:00");
        assert_eq!(utc_time(1_795_677_983).unwrap(), "2026-11-26T07:26:23");
    }

    #[test]
    fn scale_letters() {
        assert_eq!(Scale::from_letter('U'), Some(Scale::Microseconds));
        assert_eq!(Scale::from_letter('x'), None);
        assert_eq!(Scale::Seconds.unit(), "");
    }
}
