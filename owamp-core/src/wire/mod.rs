//! Byte layouts of every OWAMP-Control message and OWAMP-Test packet (RFC 4656 sections 3 and 4).
//!
//! Parsing has two phases: a private zerocopy layout of each message gives names and offsets
//! to its octets (network byte order), then the typed values in this module validate lengths, MBZ fields,
//! mode words, accept codes and counts. Every typed message has `parse(&[u8])`, which takes
//! exactly one whole message, and `write_to(&mut Vec<u8>)` / `to_bytes()`. Control messages
//! are parsed as plaintext: decryption and HMACs are the crypto module's job, and HMAC fields
//! are carried here as raw octets. [`framing`] tells a stream reader how long the next message
//! is.

pub mod accept;
pub mod control;
pub mod error;
pub mod framing;
pub mod greeting;
pub mod mode;
pub(crate) mod raw;
pub mod record;
pub mod request;
pub mod sid;
pub mod slot;
pub mod stamp;
pub mod test_packet;
pub mod twamp;
pub mod typep;

pub use accept::AcceptCode;
pub use control::{
    ControlMessageKind, FetchAck, FetchData, FetchSession, Finished, SessionStop, SkipRange,
    StartAck, StartSessions, StopSessions,
};
pub use error::WireError;
pub use framing::Frame;
pub use greeting::{ServerGreeting, ServerStart, SetUpResponse};
pub use mode::{Mode, Modes};
pub use record::DataRecord;
pub use request::{AcceptSession, RequestSession};
pub use sid::SessionId;
pub use slot::{Slot, SlotKind};
pub use stamp::StampMode;
pub use test_packet::TestPacket;
pub use twamp::{ReflectorPacket, RequestTwSession, TwampStopSessions};
pub use typep::TypeP;

/// Octets of one AES block: every OWAMP-Control message is a whole number of blocks.
pub const BLOCK_LEN: usize = 16;

/// Octets of an HMAC field (HMAC-SHA1 truncated to 128 bits, RFC 4656 3.1).
pub const HMAC_LEN: usize = 16;

/// An HMAC field as carried in a message.
pub type Hmac = [u8; HMAC_LEN];

/// The operations every OWAMP-Control message offers, for generic code (tests, tracing).
pub trait ControlMessage: Sized {
    /// The message name used in errors.
    const NAME: &'static str;

    /// Decodes and validates exactly one message.
    fn parse(bytes: &[u8]) -> Result<Self, WireError>;

    /// Appends the encoding to `out`.
    fn write_to(&self, out: &mut Vec<u8>);

    /// The encoding as a new vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

/// Implements [`ControlMessage`] (and an inherent `to_bytes`) by delegating to the inherent
/// `parse` and `write_to` of each type.
macro_rules! impl_message {
    ($($t:ident),+ $(,)?) => {$(
        impl $crate::wire::ControlMessage for $t {
            const NAME: &'static str = $t::NAME;
            fn parse(bytes: &[u8]) -> Result<Self, $crate::wire::WireError> {
                $t::parse(bytes)
            }
            fn write_to(&self, out: &mut Vec<u8>) {
                $t::write_to(self, out)
            }
        }

        impl $t {
            /// The encoding as a new vector.
            pub fn to_bytes(&self) -> Vec<u8> {
                let mut v = Vec::new();
                self.write_to(&mut v);
                v
            }
        }
    )+};
}
pub(crate) use impl_message;

/// Phase one of parsing: checks that `bytes` is exactly one `T` and copies it out.
pub(crate) fn read_layout<T>(message: &'static str, bytes: &[u8]) -> Result<T, WireError>
where
    T: zerocopy::FromBytes + zerocopy::KnownLayout + zerocopy::Immutable,
{
    error::check_len(message, bytes, core::mem::size_of::<T>())?;
    T::read_from_bytes(bytes).map_err(|_| WireError::Truncated {
        message,
        needed: core::mem::size_of::<T>(),
        got: bytes.len(),
    })
}

/// `n` rounded up to a whole number of blocks; `None` on overflow.
pub(crate) fn pad_to_block(n: usize) -> Option<usize> {
    n.checked_add(BLOCK_LEN - 1)
        .map(|v| v / BLOCK_LEN * BLOCK_LEN)
}
