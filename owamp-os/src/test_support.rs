//! What the unit tests of this crate share.

use std::net::{IpAddr, Ipv4Addr};

use owamp_core::time::{Interval, OwampTime};
use owamp_core::wire::{RequestSession, SessionId, Slot, SlotKind, TypeP};

/// A loopback Request-Session of `packets` packets, one every 1/16 s, SID all `sid` octets,
/// HMAC fields zero.
pub(crate) fn request(packets: u32, sid: u8) -> RequestSession {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    RequestSession {
        conf_sender: false,
        conf_receiver: true,
        num_packets: packets,
        sender_port: 1,
        receiver_port: 2,
        sender_address: lo,
        receiver_address: lo,
        sid: SessionId([sid; 16]),
        padding_length: 0,
        start_time: OwampTime::from_raw(0xeeb2_5d00_0000_0000),
        timeout: Interval::from_raw(1 << 32),
        type_p: TypeP::BEST_EFFORT,
        hmac: [0; 16],
        slots: vec![Slot {
            kind: SlotKind::Fixed,
            mean: Interval::from_raw(1 << 28),
        }],
        slots_hmac: [0; 16],
    }
}
