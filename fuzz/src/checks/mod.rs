//! What each fuzz target checks, as plain functions of the input bytes.
//!
//! Every function takes arbitrary octets and panics only if a property that must hold is
//! broken (or if the code under test panics). The fuzz targets call them, and so do the replay
//! tests, which feed them the committed seeds and regression inputs on a stable toolchain.
//!
//! Targets that need more than one value (a mode, keys, counts) read them from the front of
//! the input with [`Input`]; missing octets read as zero, so every input is usable.

mod cli;
mod conformance;
mod control;
mod crypto;
mod owp;
pub mod replay;
mod session;
mod stamp;
mod time;
mod twamp;
mod wire;

pub use self::cli::{cli_argv, config_limits, config_pfs, config_server, owping_schedule};
pub use self::conformance::{
    conformance_frame, conformance_pcap, conformance_replay, conformance_trace, conformance_twamp,
    FRAME_KINDS,
};
pub use self::control::{control_client, control_server, KEY_ID, PASSPHRASE, TEST_PORTS};
pub use self::crypto::{crypto_control, crypto_test_packet, crypto_token};
pub use self::owp::owp_reader;
pub use self::session::session_receiver;
pub use self::stamp::{session_stamp_reflector, wire_stamp_packet};
pub use self::time::time_conversions;
pub use self::twamp::{
    crypto_reflector_packet, session_twamp, wire_reflector_packet, wire_request_tw_session,
    wire_twamp_stop_sessions,
};
pub use self::wire::{
    wire_accept_session, wire_data_record, wire_fetch_ack, wire_fetch_data, wire_fetch_session,
    wire_framing, wire_request_session, wire_server_greeting, wire_server_start,
    wire_set_up_response, wire_slot, wire_start_ack, wire_start_sessions, wire_stop_sessions,
    wire_test_packet,
};

/// A fuzz target's check.
pub type Check = fn(&[u8]);

/// Every target, by name (the name of its `fuzz_targets/<name>.rs` and of its seed folder).
pub const TARGETS: &[(&str, Check)] = &[
    ("wire_server_greeting", wire_server_greeting),
    ("wire_set_up_response", wire_set_up_response),
    ("wire_server_start", wire_server_start),
    ("wire_request_session", wire_request_session),
    ("wire_accept_session", wire_accept_session),
    ("wire_start_sessions", wire_start_sessions),
    ("wire_start_ack", wire_start_ack),
    ("wire_stop_sessions", wire_stop_sessions),
    ("wire_fetch_session", wire_fetch_session),
    ("wire_fetch_ack", wire_fetch_ack),
    ("wire_fetch_data", wire_fetch_data),
    ("wire_framing", wire_framing),
    ("wire_test_packet", wire_test_packet),
    ("wire_data_record", wire_data_record),
    ("wire_slot", wire_slot),
    ("crypto_test_packet", crypto_test_packet),
    ("crypto_control", crypto_control),
    ("crypto_token", crypto_token),
    ("time_conversions", time_conversions),
    ("session_receiver", session_receiver),
    ("conformance_trace", conformance_trace),
    ("conformance_pcap", conformance_pcap),
    ("conformance_frame", conformance_frame),
    ("conformance_replay", conformance_replay),
    ("owp_reader", owp_reader),
    ("control_server", control_server),
    ("control_client", control_client),
    ("config_server", config_server),
    ("config_limits", config_limits),
    ("config_pfs", config_pfs),
    ("cli_argv", cli_argv),
    ("owping_schedule", owping_schedule),
    ("wire_request_tw_session", wire_request_tw_session),
    ("wire_twamp_stop_sessions", wire_twamp_stop_sessions),
    ("wire_reflector_packet", wire_reflector_packet),
    ("crypto_reflector_packet", crypto_reflector_packet),
    ("session_twamp", session_twamp),
    ("wire_stamp_packet", wire_stamp_packet),
    ("session_stamp_reflector", session_stamp_reflector),
    ("conformance_twamp", conformance_twamp),
];

/// Reads typed values off the front of a fuzz input. Past the end, values read as zero and
/// slices as empty, so no input is rejected for being short.
pub struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    /// Starts reading `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Up to `n` octets (fewer if the input ends).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = tail;
        head
    }

    /// `N` octets, zero-filled past the end of the input.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        let b = self.bytes(N);
        a[..b.len()].copy_from_slice(b);
        a
    }

    /// One octet.
    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    /// A big-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }

    /// A big-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array())
    }

    /// A big-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array())
    }

    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Everything left.
    pub fn rest(self) -> &'a [u8] {
        self.rest
    }
}
