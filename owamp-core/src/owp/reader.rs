//! Streaming reader of .owp files.

use std::io::{Read, Seek, SeekFrom};

use super::error::OwpError;
use super::header::{
    check_layout, check_record, field, parse_fixed, parse_request, parse_skips, request_num_slots,
    SessionHeader, RECORD_LEN, SKIP_RANGE_LEN, SLOTS_OFFSET,
};
use crate::wire::DataRecord;

/// Records read from the file per refill of the record buffer.
const RECORDS_PER_READ: usize = 256;

/// Reads a .owp file: the header at once, the data records on demand.
///
/// Nothing is allocated from a count in the file before that count has been checked against the
/// file's length.
#[derive(Debug)]
pub struct OwpReader<R> {
    inner: R,
    header: SessionHeader,
    file_len: u64,
}

impl<R: Read + Seek> OwpReader<R> {
    /// Reads and checks the header (fixed part, Request-Session, slots, skip ranges). A two-way
    /// file (perfSONAR twping's `-F`) is refused with [`OwpError::TwoWay`]: read it with
    /// [`read_two_way`](super::read_two_way).
    pub fn new(mut inner: R) -> Result<Self, OwpError> {
        let (header, file_len, two_way) = read_header(&mut inner)?;
        if two_way {
            return Err(OwpError::TwoWay);
        }
        Ok(Self {
            inner,
            header,
            file_len,
        })
    }

    /// The header.
    pub fn header(&self) -> &SessionHeader {
        &self.header
    }

    /// Length of the file in octets.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The most data records a file of this length could hold: its length over
    /// [`RECORD_LEN`](super::header::RECORD_LEN) octets, header included. No count read from the
    /// file can be trusted beyond it, so it bounds the work done on a file's behalf.
    pub fn max_records(&self) -> u64 {
        self.file_len / RECORD_LEN
    }

    /// The number of data records as perfSONAR's OWPReadDataHeader gives it: the header's count
    /// for a normally finished session, otherwise as many as fit between the records offset and
    /// the end of the file.
    pub fn record_count(&self) -> u64 {
        if self.header.is_finished() {
            u64::from(self.header.num_records)
        } else {
            (self.file_len - self.header.records_offset) / RECORD_LEN
        }
    }

    /// The number of records from record `index` on that the statistics read: up to the skip
    /// ranges when they follow the records, else up to the end of the file.
    pub fn stats_record_count(&self, index: u64) -> u64 {
        let end = self.header.records_end(self.file_len);
        let begin = self
            .header
            .records_offset
            .saturating_add(index.saturating_mul(RECORD_LEN));
        end.saturating_sub(begin) / RECORD_LEN
    }

    /// Streams the first [`record_count`](Self::record_count) records.
    pub fn records(&mut self) -> Result<Records<'_, R>, OwpError> {
        let n = self.record_count();
        self.records_from(0, n)
    }

    /// Streams `count` records starting with record `index`.
    pub fn records_from(&mut self, index: u64, count: u64) -> Result<Records<'_, R>, OwpError> {
        let offset = self
            .header
            .records_offset
            .saturating_add(index.saturating_mul(RECORD_LEN));
        self.inner.seek(SeekFrom::Start(offset))?;
        Ok(Records {
            inner: &mut self.inner,
            index,
            end: index.saturating_add(count),
            offset,
            file_len: self.file_len,
            buf: Vec::new(),
            pos: 0,
        })
    }

    /// Gives the underlying reader back.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Reads and checks a file's header; returns it, the file's length and whether the file is a
/// two-way one.
///
/// Nothing is allocated from a count in the file before that count has been checked against
/// the file's length.
pub(crate) fn read_header<R: Read + Seek>(
    inner: &mut R,
) -> Result<(SessionHeader, u64, bool), OwpError> {
    let file_len = inner.seek(SeekFrom::End(0))?;
    inner.seek(SeekFrom::Start(0))?;
    // The fixed part and the Request-Session: at most SLOTS_OFFSET octets.
    let first = read_up_to(inner, SLOTS_OFFSET.min(file_len))?;
    let fixed = parse_fixed(&first, file_len)?;
    // The whole fixed part of the request must be there before its slot count is used.
    field(&first, file_len, 40, SLOTS_OFFSET - 40, "Request-Session")?;
    let num_slots = request_num_slots(&first, file_len)?;
    let hdr_end = check_layout(&fixed, num_slots, file_len)?;
    // hdr_end <= file_len was checked: the allocation is bounded by the file.
    let mut head = first;
    head.extend_from_slice(&read_up_to(inner, hdr_end - SLOTS_OFFSET)?);
    let request = parse_request(&head, file_len, hdr_end)?;
    let skip_ranges = if fixed.num_skips > 0 {
        inner.seek(SeekFrom::Start(fixed.skip_oset))?;
        let raw = read_up_to(inner, SKIP_RANGE_LEN * u64::from(fixed.num_skips))?;
        parse_skips(&raw)
    } else {
        Vec::new()
    };
    let header = SessionHeader {
        finished: fixed.finished,
        next_seqno: fixed.next_seqno,
        num_records: fixed.num_records,
        skip_ranges_offset: fixed.skip_oset,
        records_offset: fixed.rec_oset,
        request,
        skip_ranges,
    };
    Ok((header, file_len, fixed.two_way))
}

/// Reads exactly `len` octets (the caller has checked they are in the file).
pub(crate) fn read_up_to<R: Read>(r: &mut R, len: u64) -> Result<Vec<u8>, OwpError> {
    let mut v = Vec::new();
    r.take(len).read_to_end(&mut v)?;
    Ok(v)
}

/// Iterator over data records, read a few hundred at a time.
#[derive(Debug)]
pub struct Records<'a, R> {
    inner: &'a mut R,
    index: u64,
    end: u64,
    offset: u64,
    file_len: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl<R: Read> Records<'_, R> {
    /// Index of the next record to be returned.
    pub fn next_index(&self) -> u64 {
        self.index
    }

    fn refill(&mut self) -> Result<(), OwpError> {
        let want = (self.end - self.index).min(RECORDS_PER_READ as u64) * RECORD_LEN;
        self.buf.clear();
        self.pos = 0;
        (&mut *self.inner).take(want).read_to_end(&mut self.buf)?;
        if (self.buf.len() as u64) < RECORD_LEN {
            return Err(OwpError::Truncated {
                field: "data record",
                offset: self.offset,
                needed: RECORD_LEN,
                available: self.file_len.saturating_sub(self.offset),
            });
        }
        Ok(())
    }
}

impl<R: Read> Iterator for Records<'_, R> {
    type Item = Result<DataRecord, OwpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.end {
            return None;
        }
        if self.buf.len() - self.pos < DataRecord::LEN {
            if let Err(e) = self.refill() {
                self.end = self.index;
                return Some(Err(e));
            }
        }
        let rec = match self.buf.get(self.pos..) {
            Some(b) => DataRecord::parse(b),
            None => return None,
        };
        let rec = match rec {
            Ok(r) => r,
            Err(_) => {
                self.end = self.index;
                return Some(Err(OwpError::Truncated {
                    field: "data record",
                    offset: self.offset,
                    needed: RECORD_LEN,
                    available: self.file_len.saturating_sub(self.offset),
                }));
            }
        };
        let checked = check_record(&rec, self.index, self.offset);
        self.pos += DataRecord::LEN;
        self.index += 1;
        self.offset += RECORD_LEN;
        match checked {
            Ok(()) => Some(Ok(rec)),
            Err(e) => {
                self.end = self.index;
                Some(Err(e))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.end - self.index).unwrap_or(usize::MAX);
        (0, Some(n))
    }
}
