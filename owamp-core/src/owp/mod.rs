//! The session data file (.owp) of perfSONAR owamp, version 3.
//!
//! A .owp file holds one test session as the receiver saw it: a header with the stored
//! Request-Session (RFC 4656 3.5) and its schedule slots, the skip ranges the sender reported in
//! Stop-Sessions (RFC 4656 3.8), and the 25-octet data records of Fetch-Session (RFC 4656 3.8).
//! [`header`] documents the layout.
//!
//! [`OwpReader`] reads the header at once and streams the records from any `Read + Seek`;
//! [`encode`] writes a whole file to any `Write` and [`to_bytes`] into memory. [`two_way`] is
//! the variant perfSONAR's twping writes with `-F`: the same header, 50-octet records.
//! Nothing here opens a file.

mod error;
pub mod header;
mod reader;
pub mod two_way;
mod writer;

pub use error::OwpError;
pub use header::SessionHeader;
pub use reader::{OwpReader, Records};
pub use two_way::{encode_two_way, read_two_way, TwoWayEntry, TwoWayFile};
pub use writer::{encode, to_bytes, StreamWriter};
