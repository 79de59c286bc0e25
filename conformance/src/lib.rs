//! Conformance tools for OWAMP (RFC 4656) implementations: a text trace format, an importer
//! from pcap/pcapng captures, and a runner for named conformance vectors.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod import;
pub mod trace;
