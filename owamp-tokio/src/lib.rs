//! owamp-tokio: runs OWAMP (RFC 4656) on Tokio on top of the sans-IO owamp-core.
//!
//! The adapter is thin: the runtime-neutral host of owamp-os ([`owamp_os::host::Host`])
//! carries out a connection's outputs (test sockets bound, marked and closed, test packets
//! sent, datagrams read with kernel timestamps and TTL, received sessions stored), and owamp-os
//! provides the clock, the random generator, the session stores and the configuration and
//! result types shared with the blocking adapter. This crate only adds the task: one
//! `tokio::select!` loop per control connection over its TCP stream, its test sockets on the
//! reactor, and Tokio's timer.
//!
//! - [`control`]: the client (owping's side) and the server (owampd's side).
//! - [`net`]: a UDP test socket registered with the reactor ([`net::AsyncTestSocket`]), for
//!   applications that exchange test packets by hand.
//! - [`StopToken`]: stops a test or a server, and can be awaited.
//!
//! Everything here runs on the current Tokio runtime, which needs I/O and time enabled (a
//! runtime built with `enable_all`, or `#[tokio::main]`). Tokio's timer has a resolution of
//! one millisecond, too coarse for test packets: a connection waits on a `timerfd` of its own
//! ([`owamp_os::timing::TimerFd`]) registered with the reactor, wakes shortly before a packet
//! is due (as early as its recent wake-ups were late, at most
//! [`EndpointConfig::max_spin`](control::EndpointConfig::max_spin)) and spins to its time on
//! its worker thread.
//!
//! The adapter makes no protocol decision: every output of the core's connection is carried
//! out as `owamp_core::connection` describes.
//!
//! # A measurement, as owping does it
//!
//! `examples/ping.rs` is a minimal async owping; its core is this:
//!
//! ```no_run
//! use std::time::Duration;
//! use owamp_core::stats::{SessionMeta, Stats, StatsConfig};
//! use owamp_tokio::control::{run_test, ClientOptions, SessionSpec, TestPlan};
//!
//! # async fn ping() -> Result<(), Box<dyn std::error::Error>> {
//! let plan = TestPlan {
//!     send: Some(SessionSpec::poisson(100, Duration::from_millis(100))),
//!     receive: Some(SessionSpec::poisson(100, Duration::from_millis(100))),
//!     start_delay: Duration::from_secs(1),
//! };
//! let server = "192.0.2.1:861".parse()?;
//! let results = run_test(server, &ClientOptions::default(), &plan, None).await?;
//! if let Some(to) = results.to {
//!     let session = to.data?; // the records the server received
//!     let header = owamp_os::store::owp_header(&session);
//!     let mut stats = Stats::new(SessionMeta::from_header(&header), StatsConfig::default())?;
//!     let mut sum = stats.summarize(0, None)?;
//!     for r in &session.records {
//!         sum.push(r)?;
//!     }
//!     let summary = sum.finish()?;
//!     println!("{} sent, {} lost", summary.sent, summary.lost);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # A server, as owampd runs it
//!
//! ```no_run
//! use std::sync::Arc;
//! use owamp_core::policy::AllowAll;
//! use owamp_os::store::DirectoryStore;
//! use owamp_tokio::control::{ServeConfig, Server};
//!
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(DirectoryStore::new("/var/lib/owamp")?);
//! let server = Server::bind("0.0.0.0:861".parse()?, ServeConfig::default(), AllowAll, store)
//!     .await?;
//! let handle = server.handle(); // handle.shutdown() stops it
//! server.run().await?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod control;
pub mod net;
mod stop;

pub use stop::StopToken;
