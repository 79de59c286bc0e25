//! Where a client's records go: the answers to its Fetch-Session requests (RFC 4656 3.9) and
//! the sessions it receives (RFC 4656 3.8), gathered in memory or written to `.owp` files as
//! they come, so that a client's memory need not grow with a session's length.
//!
//! A client connection streams its records ([`client_connection`]); the thread or task that
//! drives it keeps a [`ClientRecords`] beside its [`Host`]:
//!
//! 1. [`ClientRecords::new`] gives the store for the host: with
//!    [`ClientOptions::receive_dir`], received sessions are written to `<dir>/<SID>.owp`,
//!    and each outcome is reported ([`Report::Saved`]); without it, they are gathered in
//!    memory ([`Report::Received`]).
//! 2. Before a Fetch-Session is sent, [`ClientRecords::expect_fetch`] says where its records
//!    go: into memory, or into a `.owp` file ([`FetchFile`]: the temporary file is removed
//!    if the fetch fails, the target is replaced only once the answer is complete and its
//!    HMAC checked).
//! 3. After each step, [`ClientRecords::drain`] takes what the host has for the application
//!    and hands it over as [`Report`]s, in order.
//!
//! [`client_connection`]: crate::host::client_connection

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use owamp_core::connection::ClientEvent;
use owamp_core::control::Client;
use owamp_core::io::{FetchedSession, StoredSession};
use owamp_core::session::StreamEnd;
use owamp_core::wire::{DataRecord, RequestSession, SessionId};
use rand_core::{CryptoRng, RngCore};

use crate::host::{ClientError, ClientOptions, Host, TwoWaySessionEnd};
use crate::owp_file::FetchFile;
use crate::store::{DirectoryStore, RecordSink, SessionStore, StoreError};

/// Where the records of a Fetch-Session answer go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchTarget {
    /// Gathered in memory: [`FetchedSession::records`] holds them.
    Memory,
    /// Written to this `.owp` file as they arrive; [`FetchedSession::records`] is empty.
    File(PathBuf),
}

/// A session this client received, written to a file ([`ClientOptions::receive_dir`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSession {
    /// The session.
    pub sid: SessionId,
    /// Its file (`<dir>/<SID>.owp`): complete unless `error` says otherwise.
    pub path: PathBuf,
    /// Why the session could not be written whole (its file may then be missing, or hold
    /// part of it under a partial name).
    pub error: Option<String>,
}

/// What a client connection's thread or task hands the application.
#[derive(Debug)]
pub enum Report {
    /// A session this client received, gathered in memory.
    Received(Box<StoredSession>),
    /// A session this client received, written to a file.
    Saved(SavedSession),
    /// An event for the application.
    Event(ClientEvent),
    /// The answer to the Fetch-Session announced with [`ClientRecords::expect_fetch`]: the
    /// records are where they were to go.
    Fetched(Box<Result<FetchedSession, ClientError>>),
    /// TWAMP: a session this client sent is over (its [`ClientEvent::TwoWayEnd`], with the
    /// packets no reply answered, [`TwoWayEnd::unanswered`](owamp_core::connection::TwoWayEnd::unanswered)). Its replies came before, as
    /// [`ClientEvent::TwoWayRecords`] events.
    TwoWayEnd(Box<TwoWaySessionEnd>),
}

/// A client connection's records on their way to the application (see the
/// [module docs](self)).
#[derive(Debug, Default)]
pub struct ClientRecords {
    fetch: Option<Reception>,
    received: Option<ReceiveDir>,
}

impl ClientRecords {
    /// The records of a connection with `opts`, and the store its [`Host`] is to be given.
    pub fn new(opts: &ClientOptions) -> io::Result<(Self, Option<Arc<dyn SessionStore>>)> {
        let Some(dir) = &opts.receive_dir else {
            return Ok((Self::default(), None));
        };
        let received = ReceiveDir {
            store: DirectoryStore::new(dir)?,
            saved: Arc::default(),
        };
        let store: Arc<dyn SessionStore> = Arc::new(received.clone());
        let records = Self {
            fetch: None,
            received: Some(received),
        };
        Ok((records, Some(store)))
    }

    /// The Fetch-Session about to be sent is to put its records at `target`.
    pub fn expect_fetch(&mut self, target: FetchTarget) {
        self.fetch = Some(Reception::new(target));
    }

    /// Gives up the Fetch-Session in progress, if any (its temporary file is removed).
    pub fn abort_fetch(&mut self) {
        self.fetch = None;
    }

    /// Takes what `h` has for the application and hands it to `report` in order: the
    /// sessions received, then the events; the records of a Fetch-Session answer go where
    /// [`expect_fetch`](Self::expect_fetch) said, and its end is reported as
    /// [`Report::Fetched`].
    pub fn drain<R: RngCore + CryptoRng>(
        &mut self,
        h: &mut Host<Client<R>>,
        mut report: impl FnMut(Report),
    ) {
        for s in std::mem::take(&mut h.received) {
            report(Report::Received(Box::new(s)));
        }
        if let Some(r) = &self.received {
            for s in r.take_saved() {
                report(Report::Saved(s));
            }
        }
        while let Some(e) = h.events.pop_front() {
            if let ClientEvent::TwoWayEnd(mut end) = e {
                let unanswered = std::mem::take(&mut end.unanswered);
                report(Report::TwoWayEnd(Box::new(TwoWaySessionEnd {
                    end: *end,
                    unanswered,
                })));
                continue;
            }
            let Some(f) = self.fetch.as_mut() else {
                report(Report::Event(e));
                continue;
            };
            match f.on_event(e) {
                Step::Pending => {}
                Step::Other(e) => report(Report::Event(e)),
                Step::Done(r) => {
                    self.fetch = None;
                    report(Report::Fetched(Box::new(r)));
                }
            }
        }
    }
}

/// A Fetch-Session answer being received.
#[derive(Debug)]
enum Reception {
    Memory(Vec<DataRecord>),
    File {
        path: PathBuf,
        file: Option<Box<FetchFile>>,
        error: Option<StoreError>,
    },
}

/// What an event did to the answer being received.
enum Step {
    Pending,
    Other(ClientEvent),
    Done(Result<FetchedSession, ClientError>),
}

impl Reception {
    fn new(target: FetchTarget) -> Self {
        match target {
            FetchTarget::Memory => Self::Memory(Vec::new()),
            FetchTarget::File(path) => Self::File {
                path,
                file: None,
                error: None,
            },
        }
    }

    fn on_event(&mut self, e: ClientEvent) -> Step {
        match (self, e) {
            (Self::Memory(_), ClientEvent::FetchBegin { .. }) => Step::Pending,
            (Self::File { path, file, error }, ClientEvent::FetchBegin { head, .. }) => {
                match FetchFile::create(path, &head) {
                    Ok(f) => *file = Some(Box::new(f)),
                    Err(e) => *error = Some(e.into()),
                }
                Step::Pending
            }
            (Self::Memory(all), ClientEvent::FetchedRecords { records, .. }) => {
                // The core holds the count to the answer's, within its item limit.
                all.extend(records);
                Step::Pending
            }
            (Self::File { file, error, .. }, ClientEvent::FetchedRecords { records, .. }) => {
                if let Some(f) = file.as_mut() {
                    if let Err(e) = f.append(&records) {
                        // The rest of the answer is read and dropped; the fetch fails.
                        *error = Some(e.into());
                        *file = None;
                    }
                }
                Step::Pending
            }
            (Self::Memory(all), ClientEvent::Fetched(mut f)) => {
                if f.records.is_empty() {
                    f.records = std::mem::take(all);
                }
                Step::Done(Ok(*f))
            }
            (Self::File { path, file, error }, ClientEvent::Fetched(mut f)) => {
                let r = Self::finish_file(path, file.take(), error.take(), &mut f);
                Step::Done(r.map(|()| *f))
            }
            (_, ClientEvent::FetchDenied { accept }) => {
                Step::Done(Err(ClientError::FetchDenied(accept)))
            }
            (_, e) => Step::Other(e),
        }
    }

    /// The answer is complete and intact: the file is finished (written here whole if the
    /// answer did not stream) and `f` keeps no records.
    fn finish_file(
        path: &std::path::Path,
        file: Option<Box<FetchFile>>,
        error: Option<StoreError>,
        f: &mut FetchedSession,
    ) -> Result<(), ClientError> {
        let save = |error: StoreError| ClientError::Save {
            path: path.to_owned(),
            error,
        };
        if let Some(e) = error {
            return Err(save(e));
        }
        let records = std::mem::take(&mut f.records);
        let file = match file {
            Some(file) => file,
            None => {
                let head = owamp_core::io::FetchStream {
                    request: f.request.clone(),
                    finished: f.finished,
                    next_seqno: f.next_seqno,
                    skips: f.skips.clone(),
                    num_records: u32::try_from(records.len()).unwrap_or(u32::MAX),
                };
                let mut file = FetchFile::create(path, &head).map_err(|e| save(e.into()))?;
                file.append(&records).map_err(|e| save(e.into()))?;
                Box::new(file)
            }
        };
        file.finish().map_err(|e| save(e.into()))?;
        Ok(())
    }
}

/// A client's store of the sessions it receives ([`ClientOptions::receive_dir`]): a
/// [`DirectoryStore`] whose sessions' outcomes are kept for the application.
#[derive(Clone)]
struct ReceiveDir {
    store: DirectoryStore,
    saved: Arc<Mutex<Vec<SavedSession>>>,
}

impl std::fmt::Debug for ReceiveDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiveDir")
            .field("dir", &self.store.dir())
            .finish_non_exhaustive()
    }
}

impl ReceiveDir {
    fn report(&self, sid: SessionId, error: Option<&StoreError>) {
        report(&self.saved, sid, self.store.path_of(&sid), error);
    }

    fn take_saved(&self) -> Vec<SavedSession> {
        std::mem::take(&mut *lock(&self.saved))
    }
}

fn lock(saved: &Mutex<Vec<SavedSession>>) -> std::sync::MutexGuard<'_, Vec<SavedSession>> {
    // Every update is a single push or take: a panic elsewhere leaves it consistent.
    saved.lock().unwrap_or_else(|e| e.into_inner())
}

fn report(
    saved: &Mutex<Vec<SavedSession>>,
    sid: SessionId,
    path: PathBuf,
    error: Option<&StoreError>,
) {
    lock(saved).push(SavedSession {
        sid,
        path,
        error: error.map(ToString::to_string),
    });
}

impl SessionStore for ReceiveDir {
    fn save(&self, session: &StoredSession) -> Result<(), StoreError> {
        let r = self.store.save(session);
        self.report(session.request.sid, r.as_ref().err());
        r
    }

    fn load(&self, _sid: &SessionId) -> owamp_core::io::FetchReply {
        owamp_core::io::FetchReply::NotFound
    }

    fn begin(&self, request: &RequestSession) -> Result<Box<dyn RecordSink>, StoreError> {
        let sid = request.sid;
        match self.store.begin(request) {
            Ok(inner) => Ok(Box::new(Reported {
                inner,
                sid,
                path: self.store.path_of(&sid),
                saved: self.saved.clone(),
            })),
            Err(e) => {
                self.report(sid, Some(&e));
                Err(e)
            }
        }
    }
}

/// A received session's file, whose outcome is reported once: at its end, or at the first
/// error (after which the host drops it).
struct Reported {
    inner: Box<dyn RecordSink>,
    sid: SessionId,
    path: PathBuf,
    saved: Arc<Mutex<Vec<SavedSession>>>,
}

impl RecordSink for Reported {
    fn append(&mut self, records: &[DataRecord]) -> Result<(), StoreError> {
        let r = self.inner.append(records);
        if let Err(e) = &r {
            report(&self.saved, self.sid, self.path.clone(), Some(e));
        }
        r
    }

    fn finish(self: Box<Self>, end: &StreamEnd) -> Result<Option<StoredSession>, StoreError> {
        let r = self.inner.finish(end);
        report(&self.saved, self.sid, self.path, r.as_ref().err());
        r
    }
}

#[cfg(test)]
mod tests {
    use owamp_core::io::{FetchStream, Finished};
    use owamp_core::time::{ErrorEstimate, OwampTime};
    use owamp_core::wire::{AcceptCode, SkipRange};

    use super::*;

    fn request() -> RequestSession {
        crate::test_support::request(30, 5)
    }

    fn records(n: u32) -> Vec<DataRecord> {
        (0..n)
            .map(|seq| DataRecord {
                seq,
                send_error: ErrorEstimate::from_raw(1),
                send_time: OwampTime::from_raw(u64::from(seq + 1) << 28),
                recv_error: ErrorEstimate::from_raw(1),
                recv_time: OwampTime::from_raw((u64::from(seq + 1) << 28) + 999),
                ttl: 255,
            })
            .collect()
    }

    fn fetched(records: Vec<DataRecord>) -> FetchedSession {
        FetchedSession {
            sid: SessionId([5; 16]),
            finished: Finished::Normal,
            next_seqno: 30,
            skips: vec![SkipRange {
                first: 28,
                last: 29,
            }],
            request: request(),
            records,
        }
    }

    /// The events of a streamed answer of `recs`, in batches of `batch`.
    fn streamed(recs: &[DataRecord], batch: usize) -> Vec<ClientEvent> {
        let f = fetched(Vec::new());
        let mut v = vec![ClientEvent::FetchBegin {
            sid: f.sid,
            head: Box::new(FetchStream {
                request: f.request.clone(),
                finished: f.finished,
                next_seqno: f.next_seqno,
                skips: f.skips.clone(),
                num_records: recs.len() as u32,
            }),
        }];
        for c in recs.chunks(batch) {
            v.push(ClientEvent::FetchedRecords {
                sid: f.sid,
                records: c.to_vec(),
            });
        }
        v.push(ClientEvent::Fetched(Box::new(f)));
        v
    }

    fn receive(target: FetchTarget, events: Vec<ClientEvent>) -> Result<FetchedSession, String> {
        let mut r = Reception::new(target);
        let n = events.len();
        for (i, e) in events.into_iter().enumerate() {
            match r.on_event(e) {
                Step::Pending => assert!(i + 1 < n, "no end"),
                Step::Done(d) => {
                    assert_eq!(i + 1, n, "ended early");
                    return d.map_err(|e| e.to_string());
                }
                Step::Other(e) => panic!("not part of the answer: {e:?}"),
            }
        }
        panic!("no end")
    }

    /// Whole or streamed, into memory or into a file: the same session, and the file is the
    /// one `write_owp` writes for it.
    #[test]
    fn every_way_of_receiving_an_answer_gives_the_same_session() {
        let recs = records(30);
        let whole = fetched(recs.clone());
        let dir = tempfile::tempdir().unwrap();
        let expect = crate::host::fetched_to_stored(whole.clone());
        let expect_file = dir.path().join("expect.owp");
        crate::store::write_owp(&expect_file, &expect).unwrap();
        let expect_bytes = std::fs::read(&expect_file).unwrap();

        let got = receive(FetchTarget::Memory, streamed(&recs, 7)).unwrap();
        assert_eq!(got, whole);
        let got = receive(
            FetchTarget::Memory,
            vec![ClientEvent::Fetched(Box::new(whole.clone()))],
        )
        .unwrap();
        assert_eq!(got, whole);
        for (name, events) in [
            ("streamed.owp", streamed(&recs, 4)),
            (
                "whole.owp",
                vec![ClientEvent::Fetched(Box::new(whole.clone()))],
            ),
        ] {
            let path = dir.path().join(name);
            let got = receive(FetchTarget::File(path.clone()), events).unwrap();
            assert!(got.records.is_empty());
            assert_eq!(got, fetched(Vec::new()));
            assert_eq!(std::fs::read(&path).unwrap(), expect_bytes, "{name}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    /// A refusal, a file that cannot be written, an answer that breaks off: an error, and no
    /// file left behind.
    #[test]
    fn failed_answers_leave_no_file() {
        let recs = records(30);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("to.owp");
        let denied = receive(
            FetchTarget::File(path.clone()),
            vec![ClientEvent::FetchDenied {
                accept: AcceptCode::Failure,
            }],
        );
        assert!(denied.unwrap_err().contains("refused"));
        let nowhere = dir.path().join("missing").join("to.owp");
        let err = receive(FetchTarget::File(nowhere.clone()), streamed(&recs, 8)).unwrap_err();
        assert!(err.contains(&nowhere.display().to_string()), "{err}");
        // Broken off after two batches: the reception is dropped with the connection.
        let mut r = Reception::new(FetchTarget::File(path.clone()));
        for e in streamed(&recs, 8).into_iter().take(3) {
            assert!(matches!(r.on_event(e), Step::Pending));
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(r);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(!path.exists());
    }

    /// Received sessions written to the directory report where they went.
    #[test]
    fn received_sessions_report_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ClientOptions {
            receive_dir: Some(dir.path().join("recv")),
            ..ClientOptions::default()
        };
        let (recs, store) = ClientRecords::new(&opts).unwrap();
        let store = store.expect("a store");
        let mut sink = store.begin(&request()).unwrap();
        sink.append(&records(20)).unwrap();
        let end = StreamEnd {
            sid: SessionId([5; 16]),
            finished: Finished::Normal,
            next_seqno: 20,
            skips: Vec::new(),
            tail: Vec::new(),
            prune: None,
        };
        assert!(sink.finish(&end).unwrap().is_none());
        let saved = recs.received.as_ref().unwrap().take_saved();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].error, None);
        let s = crate::store::read_owp(&saved[0].path).unwrap();
        assert_eq!(s.records, records(20));
        assert_eq!(s.finished, Finished::Normal);
    }
}
