//! Encoding .owp files, into any [`Write`] (a file, a buffer); putting them on disk is the
//! caller's business.

use std::io::Write;

use super::error::OwpError;
use super::header::{encode_skip, SessionHeader, RECORD_LEN, SKIP_RANGE_LEN};
use crate::wire::DataRecord;

/// Checks that the skip ranges and the records sit back to back right after the header, in the
/// order the offsets give, so that the encoding reads back the same.
fn check_writable(h: &SessionHeader, nrecs: u64) -> Result<(), OwpError> {
    let hdr = h.header_len();
    let skips = SKIP_RANGE_LEN * h.skip_ranges.len() as u64;
    let recs = RECORD_LEN * nrecs;
    let ok = if !h.skip_ranges.is_empty() && h.skip_ranges_offset < h.records_offset {
        h.skip_ranges_offset == hdr && h.records_offset == hdr + skips
    } else if !h.skip_ranges.is_empty() {
        h.records_offset == hdr && h.skip_ranges_offset == hdr + recs
    } else {
        h.records_offset == hdr
            && (h.skip_ranges_offset == 0
                || h.skip_ranges_offset == hdr
                || h.skip_ranges_offset == hdr + recs)
    };
    if !ok {
        return Err(OwpError::Layout(format!(
            "cannot write: header of {hdr} octets, skip ranges at {} ({} of them), records at {} ({nrecs} of them) are not contiguous",
            h.skip_ranges_offset,
            h.skip_ranges.len(),
            h.records_offset
        )));
    }
    if h.is_finished() && u64::from(h.num_records) > nrecs {
        return Err(OwpError::Layout(format!(
            "cannot write: the header counts {} records, {nrecs} given",
            h.num_records
        )));
    }
    Ok(())
}

/// Encodes a whole file to `out`: header, then skip ranges and records in file order. The
/// records are consumed one by one, so a large session need not be in memory.
pub fn encode<W, I>(out: &mut W, header: &SessionHeader, records: I) -> Result<(), OwpError>
where
    W: Write,
    I: IntoIterator<Item = DataRecord>,
    I::IntoIter: ExactSizeIterator,
{
    let records = records.into_iter();
    check_writable(header, records.len() as u64)?;
    out.write_all(&header.encode_header())?;
    let skips_first =
        !header.skip_ranges.is_empty() && header.skip_ranges_offset < header.records_offset;
    if skips_first {
        for s in &header.skip_ranges {
            out.write_all(&encode_skip(s))?;
        }
    }
    for r in records {
        out.write_all(&r.to_bytes())?;
    }
    if !skips_first {
        for s in &header.skip_ranges {
            out.write_all(&encode_skip(s))?;
        }
    }
    Ok(())
}

/// Encodes a whole file into memory.
pub fn to_bytes(header: &SessionHeader, records: &[DataRecord]) -> Result<Vec<u8>, OwpError> {
    let mut v = Vec::new();
    encode(&mut v, header, records.iter().copied())?;
    Ok(v)
}
