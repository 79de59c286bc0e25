//! perfSONAR owampd's layout of the sessions a server received (RFC 4656 3.8 leaves it to the
//! server; this is what owampd 5.2.3 and its `owampd-cleanup` script expect):
//!
//! ```text
//! datadir/hierarchy/<root class>/<child class>/.../<sid>.owp    one directory per limits
//!                                                                class, nested as they are
//! datadir/catalog/<sid>.owp -> ../hierarchy/.../<sid>.owp        one link per session
//! ```
//!
//! `<sid>` is the SID in 32 lowercase hexadecimal digits, as owampd names it. A session is
//! written as `<sid>.owp.i` in its class's directory while it runs and renamed to `<sid>.owp`
//! when it ends; its catalog link is made then, before a Fetch-Session can find it, so the
//! link never dangles while the session runs (the cleanup script removes dangling links). A
//! crash leaves the `.i` file, which owstats reads as a session not finished; the next start
//! renames it into place. A Fetch-Session opens the file through the catalog, and
//! `delete_on_fetch` is that of the class whose directory holds the file.
//!
//! At start ([`HierarchyStore::rebuild`]) the catalog is emptied and rebuilt from the files
//! under `hierarchy/` in directories that are known classes at their place in the tree
//! (anything else is left alone, with a log line), and each class is charged the sizes of its
//! files, so `disk` limits hold across restarts ([`Limits::add_stored`]). Files of the older
//! flat layout (`datadir/<SID>.owp`) stay where they are and are still served, with a log
//! line; they count against no class.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use owamp_core::io::{FetchReply, StoredSession};
use owamp_core::policy::Limits;
use owamp_core::wire::{RequestSession, SessionId};

use crate::owp_file::StreamFile;
use crate::store::{
    lock_writing, read_owp, sid_hex, stream_file, write_owp, FetchSource, FileSink, OnStored,
    RecordSink, SessionStore, StoreError, Writing, WritingGuard,
};

/// The directory of the session files, in the data directory.
pub const HIERARCHY: &str = "hierarchy";
/// The directory of the links by SID, in the data directory.
pub const CATALOG: &str = "catalog";

/// Where the store's log lines go (owampd's log).
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// Receive sessions remembered between their admission and their first record (the oldest
/// are forgotten beyond this: their files then go to the default class).
const MAX_PLACED: usize = 100_000;

/// The class of each receive session admitted and not yet begun: the server's policy knows
/// the peer's class when it admits a session ([`place`](Self::place)); the store reads it
/// when the session's records begin. Clones share their state.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    inner: Arc<Mutex<Placed>>,
}

/// The class of each session placed, and the sessions in the order they were placed.
type Placed = (HashMap<SessionId, String>, VecDeque<SessionId>);

impl Placement {
    fn lock(&self) -> MutexGuard<'_, Placed> {
        // Every update is one insert or remove: a panic elsewhere leaves it consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Receive session `sid` belongs to `class`.
    pub fn place(&self, sid: SessionId, class: &str) {
        let mut g = self.lock();
        if g.0.insert(sid, class.to_owned()).is_none() {
            g.1.push_back(sid);
        }
        while g.1.len() > MAX_PLACED {
            if let Some(old) = g.1.pop_front() {
                g.0.remove(&old);
            }
        }
    }

    /// The class of `sid`, forgotten once taken.
    pub fn take(&self, sid: &SessionId) -> Option<String> {
        let mut g = self.lock();
        let class = g.0.remove(sid)?;
        g.1.retain(|s| s != sid);
        Some(class)
    }
}

/// What [`HierarchyStore::rebuild`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Sessions in the hierarchy, now in the catalog.
    pub sessions: usize,
    /// Their octets, charged to their classes.
    pub octets: u64,
    /// Partial files (`.owp.i`) a crash left, renamed into place.
    pub recovered: usize,
    /// Files of the older flat layout (`datadir/<SID>.owp`), still served from there.
    pub legacy: usize,
    /// Entries left alone (not a class at that place, not a session file).
    pub ignored: usize,
}

/// A session file found under `hierarchy/`.
struct Found {
    sid: SessionId,
    class: String,
    path: PathBuf,
    octets: u64,
    modified: Option<SystemTime>,
    /// `<sid>.owp.i`: being written, or left by a crash.
    partial: bool,
}

/// The sessions a server received, kept in perfSONAR owampd's layout (see the
/// [module](self)). Clones share the set of sessions being written.
#[derive(Clone)]
pub struct HierarchyStore {
    datadir: PathBuf,
    limits: Limits,
    delete_on_fetch: HashSet<String>,
    placement: Placement,
    writing: Writing,
    log: Log,
}

impl std::fmt::Debug for HierarchyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HierarchyStore")
            .field("datadir", &self.datadir)
            .field("delete_on_fetch", &self.delete_on_fetch)
            .finish_non_exhaustive()
    }
}

/// A session's file name: `<sid>.owp`, the SID in lowercase hexadecimal as owampd writes it.
pub fn file_name(sid: &SessionId) -> String {
    format!("{}.owp", sid_hex(sid).to_ascii_lowercase())
}

/// The SID of a session file's name (`<32 hex digits>.owp`, or `.owp.i` for a partial one,
/// `true` then); `None` for any other name.
fn sid_of_name(name: &str) -> Option<(SessionId, bool)> {
    let (hex, partial) = match name.strip_suffix(".owp.i") {
        Some(h) => (h, true),
        None => (name.strip_suffix(".owp")?, false),
    };
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut sid = [0u8; 16];
    for (i, b) in sid.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((SessionId(sid), partial))
}

impl HierarchyStore {
    /// A store in `datadir` whose classes (their nesting and `disk` limits) are `limits`'s.
    /// Nothing is touched on disk until [`rebuild`](Self::rebuild) or a session.
    pub fn new(datadir: impl Into<PathBuf>, limits: Limits) -> Self {
        Self {
            datadir: datadir.into(),
            limits,
            delete_on_fetch: HashSet::new(),
            placement: Placement::default(),
            writing: Writing::default(),
            log: Arc::new(|_| {}),
        }
    }

    /// Files in the directories of these classes are deleted once fetched completely
    /// ([`SessionStore::fetch_complete`]).
    pub fn with_delete_on_fetch(mut self, classes: impl IntoIterator<Item = String>) -> Self {
        self.delete_on_fetch = classes.into_iter().collect();
        self
    }

    /// Where log lines go.
    pub fn with_log(mut self, log: Log) -> Self {
        self.log = log;
        self
    }

    /// The handle through which the policy says which class each receive session is of.
    pub fn placement(&self) -> Placement {
        self.placement.clone()
    }

    /// The data directory.
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// `datadir/hierarchy`.
    pub fn hierarchy_dir(&self) -> PathBuf {
        self.datadir.join(HIERARCHY)
    }

    /// `datadir/catalog`.
    pub fn catalog_dir(&self) -> PathBuf {
        self.datadir.join(CATALOG)
    }

    /// The catalog link of `sid`.
    pub fn catalog_link(&self, sid: &SessionId) -> PathBuf {
        self.catalog_dir().join(file_name(sid))
    }

    /// The directories of `class` under `hierarchy/`, root class first; `None` for a class
    /// the limits do not define.
    pub fn class_path(&self, class: &str) -> Option<Vec<String>> {
        if !self.limits.has_class(class) {
            return None;
        }
        let mut chain = self.limits.chain(class);
        chain.reverse();
        Some(chain)
    }

    /// The directory of `class`, created (mode 0755) with its parents if missing.
    fn class_dir(&self, class: &str) -> io::Result<PathBuf> {
        let path = self.class_path(class).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no class \"{class}\""))
        })?;
        let mut dir = self.hierarchy_dir();
        for c in &path {
            // Class names with '/' are refused by the limits parser; "." and ".." too.
            if Path::new(c).components().count() != 1
                || !matches!(Path::new(c).components().next(), Some(Component::Normal(_)))
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("class \"{c}\" cannot name a directory"),
                ));
            }
            dir.push(c);
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)?;
        Ok(dir)
    }

    /// The class of a receive session: as the policy placed it, else the default class.
    fn class_of(&self, sid: &SessionId) -> String {
        self.placement
            .take(sid)
            .filter(|c| self.limits.has_class(c))
            .unwrap_or_else(|| self.limits.default_class())
    }

    /// Links `catalog/<sid>.owp` to `file` (under `hierarchy/`), replacing any link.
    fn link(&self, sid: &SessionId, file: &Path) -> io::Result<()> {
        let rel = file
            .strip_prefix(&self.datadir)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "outside the datadir"))?;
        let target = Path::new("..").join(rel);
        let link = self.catalog_link(sid);
        match fs::remove_file(&link) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::os::unix::fs::symlink(target, link)
    }

    /// What to do once a session of `class` is complete at its path: charge its size to the
    /// class and link it in the catalog.
    fn on_stored(&self, sid: SessionId, class: String) -> OnStored {
        let store = self.clone();
        Box::new(move |path: &Path| {
            let octets = fs::metadata(path).map_or(0, |m| m.len());
            store.limits.add_stored(&class, octets);
            if let Err(e) = store.link(&sid, path) {
                (store.log)(&format!(
                    "{}: cannot link {}: {e}",
                    store.catalog_link(&sid).display(),
                    path.display()
                ));
            }
        })
    }

    /// The file of `sid`, through its catalog link, else in the older flat layout.
    fn locate(&self, sid: &SessionId) -> Option<PathBuf> {
        let link = self.catalog_link(sid);
        if link.is_file() {
            return Some(link);
        }
        let old = self.datadir.join(format!("{}.owp", sid_hex(sid)));
        if old.is_file() {
            (self.log)(&format!(
                "session {} read from the old flat layout: {}",
                sid_hex(sid),
                old.display()
            ));
            return Some(old);
        }
        None
    }

    /// The file a catalog link points at, and its class, when the link is one this store
    /// made: `../hierarchy/<class path>/<sid>.owp` with a known class at that place.
    fn linked_file(&self, sid: &SessionId) -> Option<(PathBuf, String)> {
        let target = fs::read_link(self.catalog_link(sid)).ok()?;
        let rel = target.strip_prefix(Path::new("..").join(HIERARCHY)).ok()?;
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| match c {
                Component::Normal(s) => s.to_str().map(str::to_owned),
                _ => None,
            })
            .collect::<Option<_>>()?;
        let name = parts.pop()?;
        let class = parts.last()?.clone();
        if sid_of_name(&name) != Some((*sid, false)) || self.class_path(&class)? != parts {
            return None;
        }
        Some((self.hierarchy_dir().join(rel), class))
    }

    /// Every session file under `hierarchy/` in a directory that is a known class at its
    /// place; `ignored` hears of every other entry (left alone).
    fn walk(&self, found: &mut dyn FnMut(Found), ignored: &mut dyn FnMut(&Path, &str)) {
        let root = self.hierarchy_dir();
        if !root.is_dir() {
            return;
        }
        let mut stack = vec![(root, Vec::<String>::new())];
        // Bounded: only directories of known classes at their place are entered, and each
        // class has one place.
        while let Some((dir, path)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) => {
                    ignored(&dir, &e.to_string());
                    continue;
                }
            };
            for entry in entries.flatten() {
                let p = entry.path();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    ignored(&p, "not a UTF-8 name");
                    continue;
                };
                if kind.is_dir() {
                    let mut child = path.clone();
                    child.push(name.clone());
                    if self.class_path(&name).as_ref() == Some(&child) {
                        stack.push((p, child));
                    } else {
                        ignored(&p, "not a limits class at this place in the tree");
                    }
                    continue;
                }
                let class = path.last();
                match (kind.is_file(), class, sid_of_name(&name)) {
                    (true, Some(class), Some((sid, partial))) => {
                        let md = entry.metadata().ok();
                        found(Found {
                            sid,
                            class: class.clone(),
                            path: p,
                            octets: md.as_ref().map_or(0, |m| m.len()),
                            modified: md.and_then(|m| m.modified().ok()),
                            partial,
                        });
                    }
                    _ => ignored(&p, "not a session file of a class directory"),
                }
            }
        }
    }

    /// At start: empties the catalog and rebuilds it from `hierarchy/`, renames the partial
    /// files a crash left into place, and charges each class the sizes of its files.
    /// Call it once, before serving (and not while sessions are written).
    pub fn rebuild(&self) -> io::Result<Rebuilt> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.datadir)?;
        let catalog = self.catalog_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&catalog)?;
        let mut out = Rebuilt::default();
        for entry in fs::read_dir(&catalog)?.flatten() {
            let p = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                (self.log)(&format!(
                    "{}: a directory in the catalog: left alone",
                    p.display()
                ));
                continue;
            }
            if let Err(e) = fs::remove_file(&p) {
                (self.log)(&format!(
                    "{}: cannot remove it from the catalog: {e}",
                    p.display()
                ));
            }
        }
        let log = self.log.clone();
        let mut files = Vec::new();
        self.walk(&mut |f| files.push(f), &mut |p, why| {
            out.ignored += 1;
            log(&format!("{}: {why}: ignored", p.display()));
        });
        for mut f in files {
            if f.partial {
                if lock_writing(&self.writing).contains(&f.sid) {
                    continue;
                }
                let done = f.path.with_file_name(file_name(&f.sid));
                if done.exists() {
                    (self.log)(&format!(
                        "{}: a partial file beside a complete one: ignored",
                        f.path.display()
                    ));
                    out.ignored += 1;
                    continue;
                }
                if let Err(e) = fs::rename(&f.path, &done) {
                    (self.log)(&format!(
                        "{}: cannot rename it: {e}: ignored",
                        f.path.display()
                    ));
                    out.ignored += 1;
                    continue;
                }
                (self.log)(&format!(
                    "{}: left by a crash, kept as {} (a session not finished)",
                    f.path.display(),
                    done.display()
                ));
                f.path = done;
                out.recovered += 1;
            }
            self.link(&f.sid, &f.path)?;
            self.limits.add_stored(&f.class, f.octets);
            out.sessions += 1;
            out.octets = out.octets.saturating_add(f.octets);
        }
        out.legacy = fs::read_dir(&self.datadir)?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(sid_of_name)
                    .is_some_and(|(_, partial)| !partial)
            })
            .count();
        Ok(out)
    }

    /// Deletes the complete session files last written before `cutoff` (never one being
    /// written) with their catalog links, and frees their classes' disk; returns how many.
    pub fn remove_older_than(&self, cutoff: SystemTime) -> usize {
        let mut old = Vec::new();
        self.walk(
            &mut |f| {
                if !f.partial && f.modified.is_some_and(|m| m < cutoff) {
                    old.push(f);
                }
            },
            &mut |_, _| {},
        );
        let mut n = 0;
        for f in old {
            if lock_writing(&self.writing).contains(&f.sid) {
                continue;
            }
            if fs::remove_file(&f.path).is_err() {
                continue;
            }
            if self
                .linked_file(&f.sid)
                .is_some_and(|(linked, _)| linked == f.path)
            {
                let _ = fs::remove_file(self.catalog_link(&f.sid));
            }
            self.limits.remove_stored(&f.class, f.octets);
            n += 1;
        }
        n
    }
}

impl SessionStore for HierarchyStore {
    fn save(&self, session: &StoredSession) -> Result<(), StoreError> {
        let sid = session.request.sid;
        let class = self.class_of(&sid);
        let path = self.class_dir(&class)?.join(file_name(&sid));
        write_owp(&path, session).map_err(|source| StoreError::File {
            path: path.clone(),
            source,
        })?;
        (self.on_stored(sid, class))(&path);
        Ok(())
    }

    /// `hierarchy/<class path>/<sid>.owp.i` as the records come, renamed to `<sid>.owp` and
    /// linked in the catalog at the end.
    fn begin(&self, request: &RequestSession) -> Result<Box<dyn RecordSink>, StoreError> {
        let sid = request.sid;
        let class = self.class_of(&sid);
        let path = self.class_dir(&class)?.join(file_name(&sid));
        let guard = WritingGuard::enter(&self.writing, sid);
        let f = StreamFile::create(&path, request).map_err(|source| StoreError::File {
            path: crate::owp_file::partial_path(&path),
            source,
        })?;
        Ok(Box::new(FileSink {
            file: Some(f),
            on_stored: Some(self.on_stored(sid, class)),
            _writing: guard,
        }))
    }

    fn load(&self, sid: &SessionId) -> FetchReply {
        match self.locate(sid) {
            None => FetchReply::NotFound,
            Some(p) => match read_owp(&p) {
                Ok(s) => FetchReply::Found(Box::new(s)),
                Err(_) => FetchReply::Failed,
            },
        }
    }

    /// Streamed from the file the catalog links to; a session still being written is
    /// [`FetchSource::Pending`].
    fn fetch(&self, sid: &SessionId, begin: u32, end: u32) -> FetchSource {
        // The set first: a sink links its file before it leaves the set.
        if lock_writing(&self.writing).contains(sid) {
            return FetchSource::Pending;
        }
        let Some(path) = self.locate(sid) else {
            return FetchSource::Reply(FetchReply::NotFound);
        };
        match stream_file(&path, begin, end) {
            Ok((head, records, covers_all)) => FetchSource::Stream {
                head,
                records,
                covers_all,
            },
            Err(_) => FetchSource::Reply(FetchReply::Failed),
        }
    }

    /// `delete_on_fetch` of the class whose directory holds the file: the file and its link
    /// go, and the class's disk is freed.
    fn fetch_complete(&self, sid: &SessionId) {
        let Some((file, class)) = self.linked_file(sid) else {
            return;
        };
        if !self.delete_on_fetch.contains(&class) {
            return;
        }
        let octets = fs::metadata(&file).map_or(0, |m| m.len());
        if fs::remove_file(&file).is_ok() {
            self.limits.remove_stored(&class, octets);
        }
        let _ = fs::remove_file(self.catalog_link(sid));
    }
}

#[cfg(test)]
mod tests {
    use owamp_core::control::Modes;
    use owamp_core::io::Finished;
    use owamp_core::policy::ClassLimits;
    use owamp_core::session::StreamEnd;

    use super::*;

    fn limits() -> Limits {
        let l = Limits::new(Modes::ALL, "leaf", ClassLimits::default());
        l.add_class("root", ClassLimits::default());
        l.add_class("mid", ClassLimits::default());
        l.set_parent("mid", "root");
        l.set_parent("leaf", "mid");
        l
    }

    fn end(sid: SessionId) -> StreamEnd {
        StreamEnd {
            sid,
            finished: Finished::Normal,
            next_seqno: 0,
            skips: Vec::new(),
            tail: Vec::new(),
            prune: None,
        }
    }

    fn store_session(store: &HierarchyStore, sid: SessionId, class: &str) {
        let req = RequestSession {
            sid,
            ..crate::test_support::request(100, 7)
        };
        store.placement().place(sid, class);
        let sink = store.begin(&req).unwrap();
        let partial = store
            .hierarchy_dir()
            .join("root/mid")
            .join(format!("{}.i", file_name(&sid)));
        if class == "mid" {
            assert!(partial.is_file(), "written under a temporary name");
            assert!(!store.catalog_link(&sid).exists(), "no link while written");
        }
        assert!(matches!(
            store.fetch(&sid, 0, u32::MAX),
            FetchSource::Pending
        ));
        sink.finish(&end(sid)).unwrap();
    }

    #[test]
    fn names_are_32_hex_digits() {
        let sid = SessionId([0xab; 16]);
        assert_eq!(file_name(&sid), format!("{}.owp", "ab".repeat(16)));
        assert_eq!(sid_of_name(&file_name(&sid)), Some((sid, false)));
        assert_eq!(
            sid_of_name(&format!("{}.owp.i", "AB".repeat(16))),
            Some((sid, true))
        );
        assert_eq!(sid_of_name(&format!("{}.owp", "ab".repeat(15))), None);
        assert_eq!(sid_of_name(&format!("{}.owp", "zz".repeat(16))), None);
        assert_eq!(sid_of_name("x.owp"), None);
    }

    /// Files go to their class's nested directory and are linked once complete; the
    /// rebuild at start finds them again (and a crash's partial file), charges their
    /// classes, and ignores what is not a class at its place.
    #[test]
    fn sessions_are_filed_by_class_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let l = limits();
        let store = HierarchyStore::new(dir.path(), l.clone());
        assert_eq!(store.rebuild().unwrap(), Rebuilt::default());
        let (a, b) = (SessionId([1; 16]), SessionId([2; 16]));
        store_session(&store, a, "mid");
        store_session(&store, b, "nosuchclass");
        let fa = dir.path().join("hierarchy/root/mid").join(file_name(&a));
        let fb = dir
            .path()
            .join("hierarchy/root/mid/leaf")
            .join(file_name(&b));
        assert!(fa.is_file() && fb.is_file());
        assert_eq!(
            fs::read_link(store.catalog_link(&a)).unwrap(),
            Path::new("../hierarchy/root/mid").join(file_name(&a))
        );
        let size = |p: &Path| fs::metadata(p).unwrap().len();
        assert_eq!(l.in_use("root").1, size(&fa) + size(&fb));
        assert_eq!(l.in_use("leaf").1, size(&fb));
        assert!(matches!(
            store.fetch(&a, 0, u32::MAX),
            FetchSource::Stream { .. }
        ));

        // A crash's leftovers, strays, and a restart.
        let c = SessionId([3; 16]);
        fs::copy(&fa, fa.with_file_name(format!("{}.i", file_name(&c)))).unwrap();
        fs::create_dir(dir.path().join("hierarchy/leaf")).unwrap();
        fs::write(dir.path().join("hierarchy/root/notes.txt"), "x").unwrap();
        fs::write(dir.path().join("hierarchy/root/mid/leaf/stray"), "x").unwrap();
        fs::remove_file(store.catalog_link(&a)).unwrap();
        std::os::unix::fs::symlink("/nowhere", store.catalog_link(&c)).unwrap();
        let l2 = limits();
        let again = HierarchyStore::new(dir.path(), l2.clone());
        let r = again.rebuild().unwrap();
        assert_eq!((r.sessions, r.recovered, r.ignored), (3, 1, 3), "{r:?}");
        assert_eq!(l2.in_use("root").1, 2 * size(&fa) + size(&fb));
        for sid in [a, b, c] {
            assert!(again.catalog_link(&sid).is_file(), "{sid:?}");
        }
        assert!(again.linked_file(&c).is_some());
    }

    /// delete_on_fetch is the class's of the file's directory; retention removes old files
    /// and their links; the older flat layout is still served.
    #[test]
    fn delete_on_fetch_retention_and_the_flat_layout() {
        let dir = tempfile::tempdir().unwrap();
        let l = limits();
        let store =
            HierarchyStore::new(dir.path(), l.clone()).with_delete_on_fetch(["leaf".into()]);
        store.rebuild().unwrap();
        let (a, b) = (SessionId([1; 16]), SessionId([2; 16]));
        store_session(&store, a, "mid");
        store_session(&store, b, "leaf");
        store.fetch_complete(&a);
        store.fetch_complete(&b);
        assert!(store.catalog_link(&a).is_file(), "mid keeps its files");
        assert!(fs::symlink_metadata(store.catalog_link(&b)).is_err());
        assert!(!dir
            .path()
            .join("hierarchy/root/mid/leaf")
            .join(file_name(&b))
            .exists());
        let fa = fs::metadata(store.catalog_link(&a)).unwrap().len();
        assert_eq!(l.in_use("root").1, fa);

        assert_eq!(store.remove_older_than(SystemTime::UNIX_EPOCH), 0);
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        assert_eq!(store.remove_older_than(later), 1);
        assert!(fs::symlink_metadata(store.catalog_link(&a)).is_err());
        assert_eq!(l.in_use("root").1, 0);

        let old = SessionId([9; 16]);
        fs::write(dir.path().join(format!("{}.owp", sid_hex(&old))), "junk").unwrap();
        assert!(matches!(
            store.fetch(&old, 0, u32::MAX),
            FetchSource::Reply(FetchReply::Failed)
        ));
        assert_eq!(store.rebuild().unwrap().legacy, 1);
        assert!(matches!(
            store.fetch(&SessionId([8; 16]), 0, u32::MAX),
            FetchSource::Reply(FetchReply::NotFound)
        ));
    }
}
