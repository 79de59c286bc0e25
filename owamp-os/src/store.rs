//! Where a server keeps the sessions it received, for Fetch-Session (RFC 4656 3.8).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use owamp_core::io::{FetchReply, StoredSession};
use owamp_core::owp::{OwpError, OwpReader, SessionHeader};
use owamp_core::wire::SessionId;

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
}

/// Keeps the sessions a server received and answers Fetch-Session from them.
///
/// Shared by every connection of a server, so it must be usable from several threads.
pub trait SessionStore: Send + Sync {
    /// Keeps a session that ended (normally, or incomplete), replacing one with the same SID.
    fn save(&self, session: &StoredSession) -> Result<(), StoreError>;

    /// The answer to a Fetch-Session for `sid`.
    fn load(&self, sid: &SessionId) -> FetchReply;
}

impl<S: SessionStore + ?Sized> SessionStore for std::sync::Arc<S> {
    fn save(&self, session: &StoredSession) -> Result<(), StoreError> {
        (**self).save(session)
    }
    fn load(&self, sid: &SessionId) -> FetchReply {
        (**self).load(sid)
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
#[derive(Debug, Clone)]
pub struct DirectoryStore {
    dir: PathBuf,
}

impl DirectoryStore {
    /// A store in `dir`, created if missing.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
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
