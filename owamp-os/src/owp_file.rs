//! `.owp` session files on disk, written atomically.
//!
//! The core encodes a file ([`owamp_core::owp::encode`]) into any [`Write`]; this module puts
//! the bytes on disk so that a reader (owstats, a Fetch-Session answer) never sees half a
//! file, even after a crash.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use owamp_core::io::FetchStream;
use owamp_core::owp::{self, OwpError, OwpReader, SessionHeader, StreamWriter};
use owamp_core::session::StreamEnd;
use owamp_core::wire::{DataRecord, RequestSession};

/// Writes a `.owp` file so that `path` holds either its old content or the complete new one:
/// the bytes go to a temporary file in the same directory, which is synced to disk and then
/// renamed over `path`; the directory is synced last. The records are encoded one by one, so a
/// large session need not be in memory twice.
pub fn write<I>(path: &Path, header: &SessionHeader, records: I) -> Result<(), OwpError>
where
    I: IntoIterator<Item = DataRecord>,
    I::IntoIter: ExactSizeIterator,
{
    write_atomically(path, |w| owp::encode(w, header, records))
}

/// Distinguishes the temporary files of concurrent writes from one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `.<name>.<pid>.<n>.tmp` beside `path`.
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".{}.{n}.tmp", std::process::id()));
    Ok(path.with_file_name(tmp))
}

/// Runs `fill` on a temporary file beside `path`, syncs it and renames it over `path`; on any
/// error the temporary file is removed and `path` is left as it was.
fn write_atomically<F>(path: &Path, fill: F) -> Result<(), OwpError>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<(), OwpError>,
{
    let tmp = temp_path(path)?;
    let result = (|| {
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let mut w = BufWriter::new(file);
        fill(&mut w)?;
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
    sync_parent(path);
    Ok(())
}

/// A `.owp` file written while its session runs ([`StreamWriter`]): the records go to
/// `<path>.i` as they come (each batch handed to the kernel at once, so a crash of the
/// process loses none of them, and the file reads as a session not finished); at the end the
/// file is completed, synced and renamed to `path`.
#[derive(Debug)]
pub struct StreamFile {
    writer: StreamWriter<BufWriter<File>>,
    partial: PathBuf,
    path: PathBuf,
}

/// The file a session's records go to while it runs: `<path>.i`.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".i");
    PathBuf::from(p)
}

impl StreamFile {
    /// Creates `<path>.i` (replacing any) with the header of a session not yet finished.
    pub fn create(path: &Path, request: &RequestSession) -> Result<Self, OwpError> {
        let partial = partial_path(path);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)?;
        let mut writer = StreamWriter::begin(BufWriter::new(file), request)?;
        writer.get_mut().flush()?;
        Ok(Self {
            writer,
            partial,
            path: path.to_owned(),
        })
    }

    /// Where the records go while the session runs.
    pub fn partial(&self) -> &Path {
        &self.partial
    }

    /// Appends records and hands them to the kernel.
    pub fn append(&mut self, records: &[DataRecord]) -> Result<(), OwpError> {
        self.writer.append(records)?;
        self.writer.get_mut().flush()?;
        Ok(())
    }

    /// Completes the file as `end` says (the tail appended; when records already written
    /// must go, the file is rewritten without them), syncs it and renames it to the final
    /// path. On error the partial file stays, readable, with what it holds.
    pub fn finish(mut self, end: &StreamEnd) -> Result<PathBuf, OwpError> {
        self.writer.append(&end.tail)?;
        if let Some(prune) = end.prune {
            return self.rewrite(end, |r| prune.keeps(r));
        }
        let out = self
            .writer
            .finish(end.finished, end.next_seqno, &end.skips)?;
        let file = out.into_inner().map_err(|e| OwpError::Io(e.into_error()))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.partial, &self.path)?;
        sync_parent(&self.path);
        Ok(self.path)
    }

    /// Copies the records `keep` keeps into a new file, finishes that, and removes the
    /// partial file.
    fn rewrite(
        mut self,
        end: &StreamEnd,
        keep: impl Fn(&DataRecord) -> bool,
    ) -> Result<PathBuf, OwpError> {
        self.writer.get_mut().flush()?;
        let request = {
            let r = OwpReader::new(File::open(&self.partial)?)?;
            r.header().request.clone()
        };
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".p");
        let tmp = PathBuf::from(tmp);
        let mut next = StreamFile::create(&tmp, &request)?;
        let mut reader = OwpReader::new(File::open(&self.partial)?)?;
        let mut batch = Vec::with_capacity(1024);
        for r in reader.records()? {
            let r = r?;
            if keep(&r) {
                batch.push(r);
            }
            if batch.len() == batch.capacity() {
                next.append(&batch)?;
                batch.clear();
            }
        }
        next.append(&batch)?;
        next.path = self.path.clone();
        let done = next.finish(&StreamEnd {
            tail: Vec::new(),
            prune: None,
            ..end.clone()
        })?;
        let _ = fs::remove_file(&self.partial);
        Ok(done)
    }
}

/// A Fetch-Session answer written to a `.owp` file as its records arrive (RFC 4656 3.9), so
/// that a session of any length is never whole in memory.
///
/// The file is written to a temporary name beside `path` ([`StreamWriter::begin_with_skips`]:
/// the skip ranges first, as the answer sends them), and [`finish`](Self::finish) renames it
/// over `path` once every record announced is there: the finished file is byte for byte what
/// [`write`](fn@write) writes for the same session, and `path` holds either its old content or the
/// whole new file. Dropped before it is finished (the fetch failed), the temporary file is
/// removed.
#[derive(Debug)]
pub struct FetchFile {
    writer: Option<StreamWriter<BufWriter<File>>>,
    head: FetchStream,
    tmp: PathBuf,
    path: PathBuf,
}

impl FetchFile {
    /// Checks, before anything is asked of a server, that an answer could be saved at
    /// `path`: its temporary file can be created beside it (then removed) and `path` is not
    /// a directory. A client calls it before Fetch-Session, so that a bad path costs
    /// nothing on the server (whose `delete_on_fetch` would otherwise delete the session
    /// for an answer nobody could keep).
    pub fn check_destination(path: &Path) -> Result<(), OwpError> {
        if path.is_dir() {
            return Err(OwpError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a directory",
            )));
        }
        let tmp = temp_path(path)?;
        OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        fs::remove_file(&tmp)?;
        Ok(())
    }

    /// Starts the file of an answer whose head (everything but the records) is `head`.
    pub fn create(path: &Path, head: &FetchStream) -> Result<Self, OwpError> {
        let tmp = temp_path(path)?;
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        // From here on, dropping `f` removes the temporary file.
        let mut f = Self {
            writer: None,
            head: head.clone(),
            tmp,
            path: path.to_owned(),
        };
        f.writer = Some(StreamWriter::begin_with_skips(
            BufWriter::new(file),
            &head.request,
            &head.skips,
        )?);
        Ok(f)
    }

    /// Where the records go until the file is finished.
    pub fn partial(&self) -> &Path {
        &self.tmp
    }

    /// Appends records of the answer, in order; more than the head announced is an error.
    pub fn append(&mut self, records: &[DataRecord]) -> Result<(), OwpError> {
        let Some(w) = self.writer.as_mut() else {
            return Err(OwpError::Layout("the file is finished".into()));
        };
        if w.records() + records.len() as u64 > u64::from(self.head.num_records) {
            return Err(OwpError::Layout(format!(
                "the answer announced {} records, more came",
                self.head.num_records
            )));
        }
        w.append(records)
    }

    /// Completes the file with the head's state, Next-Seqno and skip ranges, syncs it and
    /// renames it to its path, which it returns. Fewer records than announced is an error
    /// (and the temporary file is removed).
    pub fn finish(mut self) -> Result<PathBuf, OwpError> {
        let Some(w) = self.writer.take() else {
            return Err(OwpError::Layout("the file is finished".into()));
        };
        if w.records() != u64::from(self.head.num_records) {
            return Err(OwpError::Layout(format!(
                "the answer announced {} records, {} came",
                self.head.num_records,
                w.records()
            )));
        }
        let h = &self.head;
        let out = w.finish(h.finished, h.next_seqno, &h.skips)?;
        let file = out.into_inner().map_err(|e| OwpError::Io(e.into_error()))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.tmp, &self.path)?;
        // Renamed: nothing left to remove.
        self.tmp = PathBuf::new();
        sync_parent(&self.path);
        Ok(std::mem::take(&mut self.path))
    }
}

impl Drop for FetchFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            self.writer = None;
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Syncs the directory of `path`, so that a rename into it is durable.
pub fn sync_parent(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use owamp_core::owp::OwpReader;
    use owamp_core::time::{ErrorEstimate, OwampTime};

    use super::*;

    fn session(records: u32) -> (SessionHeader, Vec<DataRecord>) {
        let request = crate::test_support::request(records, 9);
        let recs: Vec<DataRecord> = (0..records)
            .map(|seq| DataRecord {
                seq,
                send_error: ErrorEstimate::from_raw(1),
                send_time: OwampTime::from_raw(u64::from(seq) << 28),
                recv_error: ErrorEstimate::from_raw(1),
                recv_time: OwampTime::from_raw((u64::from(seq) << 28) + 1000),
                ttl: 255,
            })
            .collect();
        let header = SessionHeader::new(
            request,
            Vec::new(),
            records,
            owp::header::FINISHED_NORMAL,
            records,
        );
        (header, recs)
    }

    fn dir_entries(dir: &Path) -> usize {
        fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn replaces_atomically_and_reads_back() {
        let (h, recs) = session(5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.owp");
        fs::write(&path, b"old content").unwrap();
        write(&path, &h, recs.iter().copied()).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes, owp::to_bytes(&h, &recs).unwrap());
        let mut r = OwpReader::new(File::open(&path).unwrap()).unwrap();
        assert_eq!(r.header(), &h);
        let back = r.records().unwrap().collect::<Result<Vec<_>, _>>().unwrap();
        assert_eq!(back, recs);
        // No temporary file is left behind.
        assert_eq!(dir_entries(dir.path()), 1);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let (h, recs) = session(5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.owp");
        fs::write(&path, b"old content").unwrap();
        // The header counts five records of a finished session: two cannot be written.
        let err = write(&path, &h, recs[..2].iter().copied()).unwrap_err();
        assert!(matches!(err, OwpError::Layout(_)), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"old content");
        assert_eq!(dir_entries(dir.path()), 1);
    }

    fn head_of(h: &SessionHeader, skips: Vec<owamp_core::wire::SkipRange>) -> FetchStream {
        FetchStream {
            request: h.request.clone(),
            finished: owamp_core::io::Finished::Normal,
            next_seqno: h.next_seqno,
            skips,
            num_records: h.num_records,
        }
    }

    /// A fetched answer written batch by batch is, once finished, the file `write` makes of
    /// the same session, skip ranges first; `path` keeps its old content until then.
    #[test]
    fn fetch_file_is_the_whole_file_once_finished() {
        let (h, recs) = session(7);
        let skips = vec![owamp_core::wire::SkipRange { first: 7, last: 8 }];
        let h = SessionHeader::new(h.request, skips.clone(), 7, owp::header::FINISHED_NORMAL, 9);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("to.owp");
        fs::write(&path, b"old content").unwrap();
        let mut f = FetchFile::create(&path, &head_of(&h, skips)).unwrap();
        for chunk in recs.chunks(3) {
            f.append(chunk).unwrap();
            assert_eq!(fs::read(&path).unwrap(), b"old content");
        }
        assert!(f.append(&recs[..1]).is_err(), "more records than announced");
        assert_eq!(f.finish().unwrap(), path);
        assert_eq!(fs::read(&path).unwrap(), owp::to_bytes(&h, &recs).unwrap());
        assert_eq!(dir_entries(dir.path()), 1);
    }

    /// A fetch that fails (dropped midway, or short of records) leaves nothing behind and
    /// the old file as it was.
    #[test]
    fn a_failed_fetch_file_leaves_nothing() {
        let (h, recs) = session(6);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("to.owp");
        fs::write(&path, b"old content").unwrap();
        let mut f = FetchFile::create(&path, &head_of(&h, Vec::new())).unwrap();
        f.append(&recs[..2]).unwrap();
        assert!(f.partial().exists());
        drop(f);
        assert_eq!(dir_entries(dir.path()), 1);
        let mut f = FetchFile::create(&path, &head_of(&h, Vec::new())).unwrap();
        f.append(&recs[..5]).unwrap();
        let err = f.finish().unwrap_err();
        assert!(matches!(err, OwpError::Layout(_)), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"old content");
        assert_eq!(dir_entries(dir.path()), 1);
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        let (h, recs) = session(1);
        let err = write(Path::new("/"), &h, recs).unwrap_err();
        assert!(matches!(err, OwpError::Io(_)), "{err}");
    }
}
