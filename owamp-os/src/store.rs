//! Where a server keeps the sessions it received, for Fetch-Session (RFC 4656 3.8).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use owamp_core::io::{FetchReply, FetchSelection, FetchStream, Finished, StoredSession};
use owamp_core::owp::{OwpError, OwpReader, SessionHeader};
use owamp_core::session::StreamEnd;
use owamp_core::wire::{DataRecord, RequestSession, SessionId};

use crate::owp_file::StreamFile;

/// Why a session could not be stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Writing the file failed.
    #[error("{0}")]
    Owp(#[from] OwpError),
    /// Another I/O error.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Writing or reading this file failed.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: OwpError,
    },
}

impl StoreError {
    /// The operating system's error underneath, if there is one.
    pub fn os_error(&self) -> Option<&io::Error> {
        match self {
            StoreError::Io(e)
            | StoreError::Owp(OwpError::Io(e))
            | StoreError::File {
                source: OwpError::Io(e),
                ..
            } => Some(e),
            _ => None,
        }
    }

    /// Whether the disk (or the quota) is full: `ENOSPC` or `EDQUOT`.
    pub fn is_no_space(&self) -> bool {
        self.os_error()
            .and_then(io::Error::raw_os_error)
            .is_some_and(|n| n == libc::ENOSPC || n == libc::EDQUOT)
    }
}

/// Keeps the sessions a server received and answers Fetch-Session from them.
///
/// Shared by every connection of a server, so it must be usable from several threads.
pub trait SessionStore: Send + Sync {
    /// Keeps a session that ended (normally, or incomplete), replacing one with the same SID.
    fn save(&self, session: &StoredSession) -> Result<(), StoreError>;

    /// The answer to a Fetch-Session for `sid`.
    fn load(&self, sid: &SessionId) -> FetchReply;

    /// Opens a session this end receives, for its records as they come
    /// ([`owamp_core::connection::RecordStream`]). By default they are gathered in memory
    /// and the session is [`save`](Self::save)d whole at its end; a store that writes them
    /// out at once keeps memory bounded and loses nothing to a crash.
    fn begin(&self, request: &RequestSession) -> Result<Box<dyn RecordSink>, StoreError> {
        Ok(gather(request))
    }

    /// The answer to a Fetch-Session for records `begin..=end` of `sid`. By default the
    /// session is [`load`](Self::load)ed whole; a store of files streams the records instead.
    fn fetch(&self, sid: &SessionId, begin: u32, end: u32) -> FetchSource {
        let _ = (begin, end);
        FetchSource::Reply(self.load(sid))
    }

    /// A streamed answer for `sid` that held every record stored for it
    /// ([`FetchSource::Stream`] with `covers_all`) was handed whole to the connection, without
    /// error. A store that deletes sessions once fetched (owampd's `delete_on_fetch`) does it
    /// here, and only here: a partial, empty or broken-off fetch keeps the session.
    fn fetch_complete(&self, sid: &SessionId) {
        let _ = sid;
    }
}

/// The records of a streamed Fetch-Session answer, in order.
pub type RecordIter = Box<dyn Iterator<Item = Result<DataRecord, StoreError>> + Send>;

/// How a store answers a Fetch-Session ([`SessionStore::fetch`]).
pub enum FetchSource {
    /// Whole, or a refusal.
    Reply(FetchReply),
    /// The header now, the selected records as the connection takes them.
    Stream {
        /// The header, with the number of records that follow.
        head: FetchStream,
        /// Exactly `head.num_records` records.
        records: RecordIter,
        /// Whether these are every record stored for the session (the range covered them
        /// all): only such an answer, once handed over whole, is a complete fetch
        /// ([`SessionStore::fetch_complete`]).
        covers_all: bool,
    },
    /// The session is still being written (its connection is reading the peer's
    /// Stop-Sessions, or it is still running): ask again a little later. The host waits a
    /// bounded time for it before it answers that there is no such session.
    Pending,
}

impl std::fmt::Debug for FetchSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reply(r) => f.debug_tuple("Reply").field(r).finish(),
            Self::Stream {
                head, covers_all, ..
            } => f
                .debug_struct("Stream")
                .field("head", head)
                .field("covers_all", covers_all)
                .finish(),
            Self::Pending => f.write_str("Pending"),
        }
    }
}

/// A sink that gathers a session in memory and hands it whole to
/// [`finish`](RecordSink::finish)'s caller (the default of [`SessionStore::begin`]).
pub fn gather(request: &RequestSession) -> Box<dyn RecordSink> {
    Box::new(Gather(StoredSession {
        request: request.clone(),
        finished: owamp_core::io::Finished::No,
        next_seqno: 0,
        skips: Vec::new(),
        records: Vec::new(),
    }))
}

/// Where the records of one receive session go while it runs ([`SessionStore::begin`]).
pub trait RecordSink: Send {
    /// Appends records, in order.
    fn append(&mut self, records: &[DataRecord]) -> Result<(), StoreError>;

    /// The session is over. Returns the whole session when the store wants it
    /// [`save`](SessionStore::save)d (a sink that only gathered it), `None` when it is kept
    /// already.
    fn finish(self: Box<Self>, end: &StreamEnd) -> Result<Option<StoredSession>, StoreError>;
}

/// Gathers a session in memory, to be saved whole at its end.
struct Gather(StoredSession);

impl RecordSink for Gather {
    fn append(&mut self, records: &[DataRecord]) -> Result<(), StoreError> {
        self.0.records.extend_from_slice(records);
        Ok(())
    }

    fn finish(self: Box<Self>, end: &StreamEnd) -> Result<Option<StoredSession>, StoreError> {
        let mut s = self.0;
        if let Some(p) = end.prune {
            s.records.retain(|r| p.keeps(r));
        }
        s.records.extend_from_slice(&end.tail);
        s.finished = end.finished;
        s.next_seqno = end.next_seqno;
        s.skips = end.skips.clone();
        Ok(Some(s))
    }
}

/// What a store does with a session's file once it is complete under its final name, before
/// the session leaves the set of those being written (a catalog link, disk accounting).
pub(crate) type OnStored = Box<dyn FnOnce(&Path) + Send>;

/// Writes a session's records to its `.owp` file as they come; errors name the file. While
/// it lives, its SID is in the store's set of sessions being written ([`Writing`]).
pub(crate) struct FileSink {
    pub(crate) file: Option<StreamFile>,
    pub(crate) on_stored: Option<OnStored>,
    pub(crate) _writing: WritingGuard,
}

impl RecordSink for FileSink {
    fn append(&mut self, records: &[DataRecord]) -> Result<(), StoreError> {
        match self.file.as_mut() {
            Some(f) => f.append(records).map_err(|source| StoreError::File {
                path: f.partial().to_owned(),
                source,
            }),
            None => Ok(()),
        }
    }

    fn finish(mut self: Box<Self>, end: &StreamEnd) -> Result<Option<StoredSession>, StoreError> {
        // The file is renamed into place before the guard leaves the set (when `self`
        // drops): a fetch that finds the SID no longer being written finds its file.
        if let Some(f) = self.file.take() {
            let path = f.partial().to_owned();
            let done = f
                .finish(end)
                .map_err(|source| StoreError::File { path, source })?;
            if let Some(on_stored) = self.on_stored.take() {
                on_stored(&done);
            }
        }
        Ok(None)
    }
}

/// The SIDs of the sessions a [`DirectoryStore`] is writing (shared by its clones).
pub(crate) type Writing = Arc<Mutex<HashSet<SessionId>>>;

/// Takes a SID out of the set of sessions being written when dropped, however the sink ends.
pub(crate) struct WritingGuard {
    set: Writing,
    sid: SessionId,
}

impl WritingGuard {
    /// Puts `sid` in `set` until the guard drops.
    pub(crate) fn enter(set: &Writing, sid: SessionId) -> Self {
        lock_writing(set).insert(sid);
        Self {
            set: set.clone(),
            sid,
        }
    }
}

impl Drop for WritingGuard {
    fn drop(&mut self) {
        lock_writing(&self.set).remove(&self.sid);
    }
}

pub(crate) fn lock_writing(set: &Writing) -> MutexGuard<'_, HashSet<SessionId>> {
    // Every update is one insert or remove: a panic elsewhere leaves the set consistent.
    set.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S: SessionStore + ?Sized> SessionStore for std::sync::Arc<S> {
    fn save(&self, session: &StoredSession) -> Result<(), StoreError> {
        (**self).save(session)
    }
    fn fetch(&self, sid: &SessionId, begin: u32, end: u32) -> FetchSource {
        (**self).fetch(sid, begin, end)
    }
    fn begin(&self, request: &RequestSession) -> Result<Box<dyn RecordSink>, StoreError> {
        (**self).begin(request)
    }
    fn load(&self, sid: &SessionId) -> FetchReply {
        (**self).load(sid)
    }
    fn fetch_complete(&self, sid: &SessionId) {
        (**self).fetch_complete(sid)
    }
}

/// Sessions kept in memory, the oldest forgotten beyond a count.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<(HashMap<SessionId, StoredSession>, VecDeque<SessionId>)>,
    max_sessions: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store keeping at most 1024 sessions.
    pub fn new() -> Self {
        Self::with_limit(1024)
    }

    /// A store keeping at most `max_sessions` sessions (at least one).
    pub fn with_limit(max_sessions: usize) -> Self {
        Self {
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
            max_sessions: max_sessions.max(1),
        }
    }

    #[allow(clippy::type_complexity)]
    fn lock(&self) -> MutexGuard<'_, (HashMap<SessionId, StoredSession>, VecDeque<SessionId>)> {
        // Every update is a single insert or remove: a panic elsewhere leaves it consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of a stored session.
    pub fn get(&self, sid: &SessionId) -> Option<StoredSession> {
        self.lock().0.get(sid).cloned()
    }

    /// The SIDs stored, oldest first.
    pub fn sids(&self) -> Vec<SessionId> {
        self.lock().1.iter().copied().collect()
    }

    /// Number of sessions stored.
    pub fn len(&self) -> usize {
        self.lock().0.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SessionStore for MemoryStore {
    fn save(&self, session: &StoredSession) -> Result<(), StoreError> {
        let mut g = self.lock();
        let sid = session.request.sid;
        if g.0.insert(sid, session.clone()).is_none() {
            g.1.push_back(sid);
        }
        while g.1.len() > self.max_sessions {
            if let Some(old) = g.1.pop_front() {
                g.0.remove(&old);
            }
        }
        Ok(())
    }

    fn load(&self, sid: &SessionId) -> FetchReply {
        match self.get(sid) {
            Some(s) => FetchReply::Found(Box::new(s)),
            None => FetchReply::NotFound,
        }
    }
}

/// Sessions kept as perfSONAR-compatible `.owp` files (readable by owstats), one per session,
/// named by the SID in hexadecimal.
///
/// Clones share the set of sessions being written, so a Fetch-Session that comes on another
/// connection while a session's file is being completed is told to wait
/// ([`FetchSource::Pending`]) rather than that there is no such session.
#[derive(Debug, Clone)]
pub struct DirectoryStore {
    dir: PathBuf,
    writing: Writing,
}

impl DirectoryStore {
    /// A store in `dir`, created if missing.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            writing: Writing::default(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of a session: `<SID in hex>.owp`.
    pub fn path_of(&self, sid: &SessionId) -> PathBuf {
        self.dir.join(format!("{}.owp", sid_hex(sid)))
    }
}

/// A SID as 32 uppercase hexadecimal digits, as owping prints it.
pub fn sid_hex(sid: &SessionId) -> String {
    sid.0.iter().map(|b| format!("{b:02X}")).collect()
}

/// The `.owp` header of a stored session ([`SessionHeader::of_stored`]).
pub fn owp_header(s: &StoredSession) -> SessionHeader {
    SessionHeader::of_stored(s)
}

/// Writes a session as a perfSONAR-compatible `.owp` file (atomically: `path` holds either
/// its old content or the whole new file), as owping does with the records it fetched or
/// received.
pub fn write_owp(path: &Path, s: &StoredSession) -> Result<(), OwpError> {
    crate::owp_file::write(path, &owp_header(s), s.records.iter().copied())
}

/// Reads a stored session back from a `.owp` file.
pub fn read_owp(path: &Path) -> Result<StoredSession, OwpError> {
    let mut r = OwpReader::new(File::open(path)?)?;
    let h = r.header().clone();
    let records = r.records()?.collect::<Result<Vec<_>, _>>()?;
    Ok(h.into_stored(records))
}

impl SessionStore for DirectoryStore {
    fn save(&self, session: &StoredSession) -> Result<(), StoreError> {
        write_owp(&self.path_of(&session.request.sid), session)?;
        Ok(())
    }

    /// Records go to `<SID>.owp.i` as they come; at the end the file is completed and
    /// renamed to `<SID>.owp`. After a crash, the `.i` file holds what was received, and
    /// owstats reads it as a session not finished.
    fn begin(&self, request: &RequestSession) -> Result<Box<dyn RecordSink>, StoreError> {
        let guard = WritingGuard::enter(&self.writing, request.sid);
        let path = self.path_of(&request.sid);
        let f = StreamFile::create(&path, request).map_err(|source| StoreError::File {
            path: crate::owp_file::partial_path(&path),
            source,
        })?;
        Ok(Box::new(FileSink {
            file: Some(f),
            on_stored: None,
            _writing: guard,
        }))
    }

    /// Streams the records from the file: the memory used does not grow with the session. A
    /// session still being written is [`FetchSource::Pending`]: when the server sent its
    /// Stop-Sessions first, the client's answer ends the test on the client before the server
    /// has read it and completed the file, and the client may then fetch on another
    /// connection at once.
    fn fetch(&self, sid: &SessionId, begin: u32, end: u32) -> FetchSource {
        // The set first: a sink renames its file before it leaves the set.
        if lock_writing(&self.writing).contains(sid) {
            return FetchSource::Pending;
        }
        let path = self.path_of(sid);
        if !path.exists() {
            return FetchSource::Reply(FetchReply::NotFound);
        }
        match stream_file(&path, begin, end) {
            Ok((head, records, covers_all)) => FetchSource::Stream {
                head,
                records,
                covers_all,
            },
            Err(_) => FetchSource::Reply(FetchReply::Failed),
        }
    }

    fn load(&self, sid: &SessionId) -> FetchReply {
        let path = self.path_of(sid);
        if !path.exists() {
            return FetchReply::NotFound;
        }
        match read_owp(&path) {
            Ok(s) => FetchReply::Found(Box::new(s)),
            Err(_) => FetchReply::Failed,
        }
    }
}

/// Records read from the file per batch while streaming a Fetch-Session answer.
const FETCH_BATCH: u64 = 1024;

/// Opens `path` for a streamed Fetch-Session of `begin..=end`: reads the file once to count
/// the records served (twice for a session not finished normally, to find its last received
/// packet), and returns them as an iterator that reads a batch at a time, and whether they
/// are every record of the file.
pub(crate) fn stream_file(
    path: &Path,
    begin: u32,
    end: u32,
) -> Result<(FetchStream, RecordIter, bool), StoreError> {
    let open = || -> Result<OwpReader<io::BufReader<File>>, StoreError> {
        Ok(OwpReader::new(io::BufReader::new(File::open(path)?))?)
    };
    let mut r = open()?;
    let h = r.header().clone();
    let stored = h.clone().into_stored(Vec::new());
    let finished = stored.finished;
    let mut max_received = None;
    if finished != Finished::Normal {
        for rec in r.records()? {
            let rec = rec?;
            if !rec.is_lost() {
                max_received = max_received.max(Some(rec.seq));
            }
        }
    }
    let sel = FetchSelection::new(begin, end, finished, || max_received);
    let mut n: u32 = 0;
    for rec in r.records()? {
        if sel.keeps(&rec?) {
            n = n.saturating_add(1);
        }
    }
    let total = r.record_count();
    let covers_all = u64::from(n) == total;
    let head = FetchStream {
        request: stored.request,
        finished,
        next_seqno: stored.next_seqno,
        skips: stored.skips,
        num_records: n,
    };
    let records = FileRecords {
        reader: r,
        sel,
        next: 0,
        total,
        batch: Vec::new().into_iter(),
    };
    Ok((head, Box::new(records), covers_all))
}

/// The selected records of a file, read a batch at a time.
struct FileRecords {
    reader: OwpReader<io::BufReader<File>>,
    sel: FetchSelection,
    next: u64,
    total: u64,
    batch: std::vec::IntoIter<DataRecord>,
}

impl Iterator for FileRecords {
    type Item = Result<DataRecord, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.batch.by_ref().find(|r| self.sel.keeps(r)) {
                return Some(Ok(r));
            }
            if self.next >= self.total {
                return None;
            }
            let n = FETCH_BATCH.min(self.total - self.next);
            let batch: Result<Vec<_>, _> = match self.reader.records_from(self.next, n) {
                Ok(it) => it.collect(),
                Err(e) => Err(e),
            };
            match batch {
                Ok(b) => {
                    self.next += n;
                    self.batch = b.into_iter();
                }
                Err(e) => {
                    self.next = self.total;
                    return Some(Err(e.into()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use owamp_core::io::Finished;
    use owamp_core::session::Prune;
    use owamp_core::time::{ErrorEstimate, OwampTime};
    use owamp_core::wire::SkipRange;

    use super::*;

    fn request() -> RequestSession {
        RequestSession {
            hmac: [1; 16],
            slots_hmac: [2; 16],
            ..crate::test_support::request(100, 7)
        }
    }

    fn rec(seq: u32, lost: bool) -> DataRecord {
        let sent = 0xeeb2_5d00_0000_0000 + (u64::from(seq) << 28);
        DataRecord {
            seq,
            send_error: ErrorEstimate::from_raw(1),
            send_time: OwampTime::from_raw(sent),
            recv_error: ErrorEstimate::from_raw(1),
            recv_time: OwampTime::from_raw(if lost { 0 } else { sent + 1000 }),
            ttl: 255,
        }
    }

    fn end(tail: Vec<DataRecord>, prune: Option<Prune>) -> StreamEnd {
        StreamEnd {
            sid: SessionId([7; 16]),
            finished: Finished::Normal,
            next_seqno: 40,
            skips: vec![SkipRange {
                first: 30,
                last: 31,
            }],
            tail,
            prune,
        }
    }

    /// Records are on disk, in a file readable as a session not finished, while the session
    /// runs; at the end the file is complete under its final name and Fetch-Session reads it.
    #[test]
    fn directory_store_streams_to_a_readable_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirectoryStore::new(dir.path()).unwrap();
        let req = request();
        let mut sink = store.begin(&req).unwrap();
        let recs: Vec<_> = (0..40).map(|s| rec(s, s % 5 == 0)).collect();
        sink.append(&recs[..25]).unwrap();
        let path = store.path_of(&req.sid);
        let partial = crate::owp_file::partial_path(&path);
        let midway = read_owp(&partial).unwrap();
        assert_eq!(midway.finished, Finished::No);
        assert_eq!(midway.records, recs[..25]);
        assert_eq!(midway.request.sid, req.sid);
        assert!(matches!(store.load(&req.sid), FetchReply::NotFound));
        sink.append(&recs[25..30]).unwrap();
        let kept = sink.finish(&end(recs[30..].to_vec(), None)).unwrap();
        assert!(kept.is_none(), "a directory store keeps the file itself");
        assert!(!partial.exists());
        let FetchReply::Found(s) = store.load(&req.sid) else {
            panic!("not found")
        };
        assert_eq!(s.finished, Finished::Normal);
        assert_eq!((s.next_seqno, s.skips.len()), (40, 1));
        assert_eq!(s.records, recs);
        assert_eq!(s.request.hmac, [0; 16], "no HMAC in files");
    }

    /// While a session is being written, a fetch is told to wait; once it is done, the
    /// answer says whether its range covered every stored record.
    #[test]
    fn a_session_being_written_is_pending_and_whole_ranges_cover_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirectoryStore::new(dir.path()).unwrap();
        let req = request();
        let other = DirectoryStore::clone(&store);
        let mut sink = store.begin(&req).unwrap();
        let recs: Vec<_> = (0..40).map(|s| rec(s, false)).collect();
        sink.append(&recs[..10]).unwrap();
        assert!(matches!(
            other.fetch(&req.sid, 0, u32::MAX),
            FetchSource::Pending
        ));
        assert!(matches!(
            store.fetch(&SessionId([9; 16]), 0, u32::MAX),
            FetchSource::Reply(FetchReply::NotFound)
        ));
        sink.finish(&end(recs[10..].to_vec(), None)).unwrap();
        let covers = |begin, end| match other.fetch(&req.sid, begin, end) {
            FetchSource::Stream {
                head, covers_all, ..
            } => (head.num_records, covers_all),
            f => panic!("{f:?}"),
        };
        assert_eq!(covers(0, u32::MAX), (40, true));
        assert_eq!(covers(0, 39), (40, true));
        assert_eq!(covers(0, 4), (5, false));
        assert_eq!(covers(5, 3), (0, false));
        // A sink dropped without finishing (the connection broke) leaves the set too.
        let req2 = RequestSession {
            sid: SessionId([8; 16]),
            ..request()
        };
        drop(store.begin(&req2).unwrap());
        assert!(matches!(
            other.fetch(&req2.sid, 0, u32::MAX),
            FetchSource::Reply(FetchReply::NotFound)
        ));
    }

    /// When records already written must go (RFC 4656 3.8), the file is rewritten without
    /// them; the memory store gets the same session whole.
    #[test]
    fn prune_rewrites_the_file_and_matches_the_memory_store() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DirectoryStore::new(dir.path()).unwrap();
        let mem = MemoryStore::new();
        let req = request();
        // Packets 0..50: received, then 40.. declared lost before Next-Seqno 40 came.
        let written: Vec<_> = (0..50).map(|s| rec(s, s >= 40 || s == 3)).collect();
        let prune = Prune {
            below: 40,
            lost_sent_by: None,
        };
        for store in [&disk as &dyn SessionStore, &mem] {
            let mut sink = store.begin(&req).unwrap();
            sink.append(&written).unwrap();
            if let Some(whole) = sink.finish(&end(Vec::new(), Some(prune))).unwrap() {
                store.save(&whole).unwrap();
            }
        }
        let (FetchReply::Found(a), FetchReply::Found(b)) =
            (disk.load(&req.sid), mem.load(&req.sid))
        else {
            panic!("not found")
        };
        assert_eq!(a.records, written[..40]);
        assert_eq!(a.records, b.records);
        assert_eq!((a.finished, a.next_seqno), (b.finished, b.next_seqno));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no file left over"
        );
    }
}
