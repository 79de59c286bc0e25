//! Byte layouts of every OWAMP-Control message and OWAMP-Test packet (RFC 4656 sections 3 and 4).

pub mod error;
pub mod record;
pub mod sid;
pub mod slot;

pub use error::WireError;
pub use record::DataRecord;
pub use sid::SessionId;
pub use slot::{Slot, SlotKind};
