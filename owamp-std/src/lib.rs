//! owamp-std: runs OWAMP (RFC 4656) with blocking std sockets and threads on top of the
//! sans-IO owamp-core.
//!
//! The clock, the random generator, the UDP test sockets and the session stores it uses come
//! from owamp-os, which the async adapter shares; this crate adds the threads:
//!
//! - [`endpoint`]: one test session's sender or receiver on its own thread.
//! - [`control`]: a control connection's driver: the client (owping's side) and the server
//!   (owampd's side), which keeps received sessions in an [`owamp_os::store::SessionStore`].
//!
//! The adapter makes no protocol decision: every output of the core's state machines is
//! carried out as `owamp_core::io` describes.
//!
//! # A measurement, as owping does it
//!
//! ```no_run
//! use std::time::Duration;
//! use owamp_std::control::{run_test, ClientOptions, SessionSpec, StopHandle, TestPlan};
//!
//! let plan = TestPlan {
//!     send: Some(SessionSpec::poisson(100, Duration::from_millis(100))),
//!     receive: Some(SessionSpec::poisson(100, Duration::from_millis(100))),
//!     start_delay: Duration::from_secs(1),
//! };
//! let stop = StopHandle::new(); // set it (e.g. on Ctrl-C) to stop early
//! let server = "192.0.2.1:861".parse().unwrap();
//! let results = run_test(server, &ClientOptions::default(), &plan, Some(&stop))?;
//! if let Some(to) = results.to {
//!     let session = to.data?; // the records the server received
//!     owamp_os::store::write_owp("to.owp".as_ref(), &session)?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # A server, as owampd runs it
//!
//! ```no_run
//! use std::sync::Arc;
//! use owamp_core::policy::AllowAll;
//! use owamp_os::store::DirectoryStore;
//! use owamp_std::control::{ServeConfig, Server};
//!
//! let store = Arc::new(DirectoryStore::new("/var/lib/owamp")?);
//! let server = Server::bind("0.0.0.0:861".parse()?, ServeConfig::default(), AllowAll, store)?;
//! let handle = server.handle(); // handle.shutdown() stops it
//! server.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod control;
pub mod endpoint;
