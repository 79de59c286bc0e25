//! Writing .owp files, atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_path(path: &Path) -> Result<PathBuf, OwpError> {
    let name = path.file_name().ok_or_else(|| {
        OwpError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "path has no file name",
        ))
    })?;
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".{}.{n}.tmp", std::process::id()));
    Ok(path.with_file_name(tmp))
}

/// Writes a .owp file so that `path` holds either its old content or the complete new one: the
/// bytes go to a temporary file in the same directory, which is synced to disk and then renamed
/// over `path`; the directory is synced last.
pub fn write_file<I>(path: &Path, header: &SessionHeader, records: I) -> Result<(), OwpError>
where
    I: IntoIterator<Item = DataRecord>,
    I::IntoIter: ExactSizeIterator,
{
    let records = records.into_iter();
    check_writable(header, records.len() as u64)?;
    let tmp = temp_path(path)?;
    let result = (|| {
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let mut w = BufWriter::new(file);
        encode(&mut w, header, records)?;
        let file = w.into_inner().map_err(|e| OwpError::Io(e.into_error()))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
