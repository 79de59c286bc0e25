//! Statistics of the reference sessions equal what perfSONAR's owstats printed for them.

use std::io::Cursor;

use owamp_core::owp::OwpReader;
use owamp_core::stats::report::{self, EndpointName, ReportContext, Scale};
use owamp_core::stats::{SessionMeta, Stats, StatsConfig, Summary};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/traces/reference/owp/summary/"
);

fn expected(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}{name}")).unwrap()
}

fn run(dir: &str) -> (owamp_core::owp::SessionHeader, Summary, String) {
    let bytes = std::fs::read(format!("{DIR}{dir}.owp")).unwrap();
    let mut r = OwpReader::new(Cursor::new(bytes)).unwrap();
    let h = r.header().clone();
    let mut stats = Stats::new(SessionMeta::from_header(&h), StatsConfig::default()).unwrap();
    let ctx = context(&h);
    let mut verbose = report::stats_header(&h.request.sid, &ctx);
    let n = r.stats_record_count(0);
    let mut sum = stats.summarize(0, None).unwrap();
    for rec in r.records_from(0, n).unwrap() {
        if let Some(ev) = sum.push(&rec.unwrap()).unwrap() {
            verbose.push_str(&report::packet_line(&ev, &ctx));
        }
    }
    (h, sum.finish().unwrap(), verbose)
}

fn context(h: &owamp_core::owp::SessionHeader) -> ReportContext<'static> {
    let r = &h.request;
    // owstats resolved 127.0.0.1 to "localhost".
    let peer = |addr, port: u16| EndpointName {
        host: "localhost".into(),
        addr: format!("{addr}"),
        port: port.to_string(),
    };
    ReportContext {
        from: peer(r.sender_address, r.sender_port),
        to: peer(r.receiver_address, r.receiver_port),
        scale: Scale::Milliseconds,
        unix_timestamps: false,
        time: &report::utc_time,
    }
}

#[test]
fn machine_summary_matches_owstats() {
    for dir in ["from", "to"] {
        let (h, s, _) = run(dir);
        let got = report::machine(&s, &h, &context(&h));
        assert_eq!(
            got,
            expected(&format!("owstats_{dir}_machine.txt")),
            "{dir}"
        );
    }
}

#[test]
fn default_summary_matches_owstats() {
    for dir in ["from", "to"] {
        let (h, s, _) = run(dir);
        let got = report::summary(&s, &h, &context(&h), &[]);
        assert_eq!(
            got,
            expected(&format!("owstats_{dir}_default.txt")),
            "{dir}"
        );
    }
}

#[test]
fn verbose_output_matches_owstats() {
    for dir in ["from", "to"] {
        let (h, s, mut got) = run(dir);
        got.push_str(&report::summary(&s, &h, &context(&h), &[]));
        assert_eq!(
            got,
            expected(&format!("owstats_{dir}_verbose.txt")),
            "{dir}"
        );
    }
}

#[test]
fn raw_lines_match_owstats() {
    for dir in ["from", "to"] {
        let bytes = std::fs::read(format!("{DIR}{dir}.owp")).unwrap();
        let mut r = OwpReader::new(Cursor::new(bytes)).unwrap();
        let got: String = r
            .records()
            .unwrap()
            .map(|rec| report::raw_line(&rec.unwrap()))
            .collect();
        assert_eq!(got, expected(&format!("owstats_{dir}_raw.txt")), "{dir}");
    }
}
