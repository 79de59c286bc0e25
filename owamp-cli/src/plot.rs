//! `owstats --plot FILE.svg`: a picture of one session, one-way delay over the session's time
//! with its losses marked, and the distribution of the delays.
//!
//! Memory stays bounded whatever the session's length: the records are read twice from the
//! file (once for the ranges, once to fill a fixed number of columns and histogram bins), and
//! each of the [`COLUMNS`] columns of the time plot shows the smallest, mean and largest delay
//! of the packets sent in its slice of the session, and how many of them were lost.

use std::io::{Read, Seek};
use std::path::Path;

use owamp_core::owp::OwpReader;
use owamp_core::wire::DataRecord;
use plotters::prelude::*;

/// Columns of the delay-over-time plot.
pub const COLUMNS: usize = 1000;
/// Bins of the delay histogram.
pub const BINS: usize = 100;

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 800;

/// One column of the time plot.
#[derive(Debug, Clone, Copy, Default)]
struct Column {
    received: u64,
    lost: u64,
    min: f64,
    max: f64,
    sum: f64,
}

/// What the two passes over the records found.
#[derive(Debug, Default)]
struct Picture {
    /// Send time of the first and last record, seconds since the session's first.
    span: f64,
    delay_range: (f64, f64),
    columns: Vec<Column>,
    bins: Vec<u64>,
    received: u64,
    lost: u64,
}

/// Delay in milliseconds of a received record.
fn delay_ms(r: &DataRecord) -> f64 {
    let (s, rv) = (r.send_time.raw(), r.recv_time.raw());
    // 32.32 fixed point: the signed difference, in seconds, then milliseconds.
    (rv.wrapping_sub(s) as i64) as f64 / 4_294_967_296.0 * 1e3
}

fn secs(t: u64) -> f64 {
    t as f64 / 4_294_967_296.0
}

fn gather<R: Read + Seek>(reader: &mut OwpReader<R>) -> Result<Picture, String> {
    let count = reader.stats_record_count(0);
    // Pass 1: the send-time span and the delay range.
    let mut t0 = u64::MAX;
    let mut t1 = 0u64;
    let (mut dmin, mut dmax) = (f64::INFINITY, f64::NEG_INFINITY);
    for rec in reader.records_from(0, count).map_err(|e| e.to_string())? {
        let rec = rec.map_err(|e| e.to_string())?;
        let t = rec.send_time.raw();
        t0 = t0.min(t);
        t1 = t1.max(t);
        if !rec.is_lost() {
            let d = delay_ms(&rec);
            dmin = dmin.min(d);
            dmax = dmax.max(d);
        }
    }
    if t0 > t1 {
        return Err("the session has no records to plot".into());
    }
    let span = secs(t1 - t0);
    let mut p = Picture {
        span,
        delay_range: if dmin <= dmax {
            (dmin, dmax)
        } else {
            (0.0, 0.0)
        },
        columns: vec![Column::default(); COLUMNS],
        bins: vec![0; BINS],
        ..Picture::default()
    };
    // Pass 2: columns and histogram.
    let bin_width = ((dmax - dmin) / BINS as f64).max(f64::MIN_POSITIVE);
    for rec in reader.records_from(0, count).map_err(|e| e.to_string())? {
        let rec = rec.map_err(|e| e.to_string())?;
        let x = secs(rec.send_time.raw().saturating_sub(t0));
        let i = if span > 0.0 {
            ((x / span) * (COLUMNS - 1) as f64) as usize
        } else {
            0
        }
        .min(COLUMNS - 1);
        let c = &mut p.columns[i];
        if rec.is_lost() {
            c.lost += 1;
            p.lost += 1;
            continue;
        }
        let d = delay_ms(&rec);
        if c.received == 0 {
            c.min = d;
            c.max = d;
        } else {
            c.min = c.min.min(d);
            c.max = c.max.max(d);
        }
        c.sum += d;
        c.received += 1;
        p.received += 1;
        let b = (((d - dmin) / bin_width) as usize).min(BINS - 1);
        p.bins[b] += 1;
    }
    Ok(p)
}

/// Draws the session `reader` holds into the SVG file `path`; `title` heads the picture.
pub fn plot<R: Read + Seek>(
    reader: &mut OwpReader<R>,
    path: &Path,
    title: &str,
) -> Result<(), String> {
    let p = gather(reader)?;
    draw(&p, path, title).map_err(|e| format!("{}: {e}", path.display()))
}

fn draw(p: &Picture, path: &Path, title: &str) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 18))?;
    let (top, bottom) = root.split_vertically(HEIGHT * 3 / 5);

    let (lo, hi) = p.delay_range;
    let pad = ((hi - lo) * 0.05).max(0.001);
    let (ylo, yhi) = (lo - pad, hi + pad * 3.0);
    let xmax = p.span.max(1e-3);
    let mut chart = ChartBuilder::on(&top)
        .margin(10)
        .caption(
            format!(
                "one-way delay: {} received, {} lost (red marks at the top)",
                p.received, p.lost
            ),
            ("sans-serif", 14),
        )
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, ylo..yhi)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first packet was sent")
        .y_desc("delay (ms)")
        .draw()?;
    let width = xmax / (COLUMNS - 1) as f64;
    let x_of = |i: usize| i as f64 * width;
    // The spread of each column, then its mean.
    chart.draw_series(
        p.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.received > 0)
            .map(|(i, c)| {
                PathElement::new(vec![(x_of(i), c.min), (x_of(i), c.max)], BLUE.mix(0.35))
            }),
    )?;
    chart.draw_series(LineSeries::new(
        p.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.received > 0)
            .map(|(i, c)| (x_of(i), c.sum / c.received as f64)),
        &BLUE,
    ))?;
    let mark = yhi - pad * 1.5;
    chart.draw_series(
        p.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.lost > 0)
            .map(|(i, _)| Cross::new((x_of(i), mark), 4, RED.stroke_width(2))),
    )?;

    let bin_width = ((hi - lo) / BINS as f64).max(1e-9);
    let ymax = p.bins.iter().copied().max().unwrap_or(0).max(1);
    let mut hist = ChartBuilder::on(&bottom)
        .margin(10)
        .caption("delay distribution", ("sans-serif", 14))
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(
            lo..(lo + bin_width * BINS as f64),
            0u64..ymax + ymax / 10 + 1,
        )?;
    hist.configure_mesh()
        .x_desc("delay (ms)")
        .y_desc("packets")
        .draw()?;
    hist.draw_series(
        p.bins
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| {
                let x0 = lo + i as f64 * bin_width;
                Rectangle::new([(x0, 0), (x0 + bin_width, n)], BLUE.mix(0.6).filled())
            }),
    )?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/traces/reference/owp/summary/from.owp"
    );

    #[test]
    fn a_reference_session_is_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("s.svg");
        let f = std::fs::File::open(FILE).unwrap();
        let mut r = OwpReader::new(std::io::BufReader::new(f)).unwrap();
        let p = gather(&mut r).unwrap();
        assert_eq!(p.received, 20);
        assert_eq!(p.lost, 0);
        assert_eq!(p.bins.iter().sum::<u64>(), 20);
        assert_eq!(
            p.columns.iter().map(|c| c.received).sum::<u64>(),
            20,
            "every packet in a column"
        );
        plot(&mut r, &out, "test").unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("20 received, 0 lost"));
    }

    /// Lost packets are counted in their columns and marked; memory does not grow with the
    /// session (fixed columns and bins).
    #[test]
    fn losses_are_counted_and_marked() {
        let f = std::fs::File::open(FILE).unwrap();
        let mut r = OwpReader::new(std::io::BufReader::new(f)).unwrap();
        let header = r.header().clone();
        let mut recs: Vec<DataRecord> = r.records().unwrap().map(|x| x.unwrap()).collect();
        for rec in recs.iter_mut().skip(5).step_by(4) {
            rec.recv_time = owamp_core::time::OwampTime::ZERO;
        }
        let lost = recs.iter().filter(|r| r.is_lost()).count() as u64;
        assert!(lost >= 3);
        let bytes = owamp_core::owp::to_bytes(&header, &recs).unwrap();
        let mut r = OwpReader::new(std::io::Cursor::new(bytes)).unwrap();
        let p = gather(&mut r).unwrap();
        assert_eq!(p.lost, lost);
        assert_eq!(p.received + p.lost, 20);
        assert_eq!(p.columns.len(), COLUMNS);
        assert_eq!(p.bins.len(), BINS);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("lost.svg");
        plot(&mut r, &out, "lost").unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.contains(&format!("{} received, {lost} lost", 20 - lost)));
        // A cross is two red lines per column with a loss.
        assert!(
            svg.matches("#FF0000").count() >= 2 * lost as usize,
            "no loss marks"
        );
    }
}
