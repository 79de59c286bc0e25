//! Encoding .owp files, into any [`Write`] (a file, a buffer); putting them on disk is the
//! caller's business.

use std::io::{Seek, SeekFrom, Write};

use super::error::OwpError;
use super::header::{encode_skip, SessionHeader, RECORD_LEN, SKIP_RANGE_LEN};
use crate::io::Finished;
use crate::wire::{DataRecord, RequestSession, SkipRange};

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

/// Writes a `.owp` file while its session runs: the header first, saying "not finished"
/// (so that a reader takes as many records as the file holds, as perfSONAR's readers do),
/// then the records as they come, and at the end the skip ranges after the records and the
/// final header over the first.
///
/// Whatever happens to the writer midway, what it wrote is a readable file of the records
/// appended so far (a record cut short at the end is not counted).
///
/// When the skip ranges are known before the records, as in a Fetch-Session answer
/// ([`begin_with_skips`](Self::begin_with_skips)), they go right after the header instead,
/// and the finished file is the one [`encode`] writes for [`SessionHeader::new`].
#[derive(Debug)]
pub struct StreamWriter<W> {
    out: W,
    request: RequestSession,
    records: u64,
    /// Skip ranges written before the records.
    leading_skips: Vec<SkipRange>,
}

impl<W: Write + Seek> StreamWriter<W> {
    /// Writes the header of a session not yet finished, for `request` (its HMAC fields are
    /// written as zero, as in every file), at the start of `out`.
    pub fn begin(out: W, request: &RequestSession) -> Result<Self, OwpError> {
        Self::begin_with_skips(out, request, &[])
    }

    /// Like [`begin`](Self::begin), for a session whose skip ranges are known before its
    /// records: a Fetch-Session answer sends them first (RFC 4656 3.9). They are written
    /// after the header, before the records, as [`SessionHeader::new`] lays out a whole
    /// file; [`finish`](Self::finish) must be given the same ranges. Midway, the file reads
    /// as a session not finished with the records appended so far.
    pub fn begin_with_skips(
        mut out: W,
        request: &RequestSession,
        skips: &[SkipRange],
    ) -> Result<Self, OwpError> {
        let request = RequestSession {
            hmac: [0; 16],
            slots_hmac: [0; 16],
            ..request.clone()
        };
        // Without skip ranges, this is also the records-first layout.
        let h = SessionHeader::new(request.clone(), skips.to_vec(), 0, 0, 0);
        out.seek(SeekFrom::Start(0))?;
        out.write_all(&h.encode_header())?;
        for s in skips {
            out.write_all(&encode_skip(s))?;
        }
        Ok(Self {
            out,
            request,
            records: 0,
            leading_skips: skips.to_vec(),
        })
    }

    /// Appends records.
    pub fn append(&mut self, records: &[DataRecord]) -> Result<(), OwpError> {
        for r in records {
            self.out.write_all(&r.to_bytes())?;
        }
        self.records += records.len() as u64;
        Ok(())
    }

    /// Records appended so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The output, to flush or sync it.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Ends the file: the skip ranges after the records (unless they were written before
    /// them), then the header with the session's state, Next-Seqno and counts. Returns the
    /// output (positioned at its end).
    pub fn finish(
        mut self,
        finished: Finished,
        next_seqno: u32,
        skips: &[SkipRange],
    ) -> Result<W, OwpError> {
        let n = u32::try_from(self.records).map_err(|_| {
            OwpError::Layout(format!(
                "cannot write: {} records do not fit in the header's count",
                self.records
            ))
        })?;
        let finished = SessionHeader::finished_word(finished);
        let h = if self.leading_skips.is_empty() {
            for s in skips {
                self.out.write_all(&encode_skip(s))?;
            }
            SessionHeader::records_first(self.request, skips.to_vec(), n, finished, next_seqno)
        } else if skips == self.leading_skips {
            SessionHeader::new(self.request, self.leading_skips, n, finished, next_seqno)
        } else {
            return Err(OwpError::Layout(
                "cannot write: the skip ranges differ from those written before the records".into(),
            ));
        };
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&h.encode_header())?;
        self.out.seek(SeekFrom::End(0))?;
        Ok(self.out)
    }
}
