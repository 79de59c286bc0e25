//! Conformance tools for OWAMP (RFC 4656) implementations: a text trace format, an importer
//! from pcap/pcapng captures, message framing checks, decryption and HMAC verification of
//! authenticated and encrypted traces, replay of traces through our server and client cores,
//! and a runner for named conformance vectors.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod frame;
pub mod import;
pub mod live;
pub mod replay;
pub mod runner;
pub mod secure;
pub mod trace;
pub mod twamp;
pub mod vectors;
