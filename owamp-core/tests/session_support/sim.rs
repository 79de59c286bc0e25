//! An in-memory network between a session `Sender` and `Receiver`: the caller decides, packet
//! by packet, how many copies arrive, when and with which TTL, so that what was injected is
//! known exactly.

use owamp_core::crypto::{SecureMode, SessionKeys, TestPacketCrypto};
use owamp_core::session::{Accepted, PacketProtection, Receiver, Sender, SessionParams};
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::{DataRecord, SessionId};

/// One second in 32.32 fixed point.
pub const SEC: u64 = 1 << 32;

/// The three modes of RFC 4656 test packets: open, authenticated, encrypted.
pub const MODES: [Option<SecureMode>; 3] = [
    None,
    Some(SecureMode::Authenticated),
    Some(SecureMode::Encrypted),
];

/// Fixed session keys for the sealed modes (any keys do: both ends share them).
pub fn keys() -> SessionKeys {
    SessionKeys {
        aes: core::array::from_fn(|i| 3 * i as u8 + 1),
        hmac: core::array::from_fn(|i| 0x55 ^ (7 * i) as u8),
    }
}

/// Test packet protection for `mode` in the session `sid`.
pub fn protection(mode: Option<SecureMode>, sid: &SessionId) -> PacketProtection {
    match mode {
        None => PacketProtection::Open,
        Some(m) => PacketProtection::Sealed(TestPacketCrypto::new(m, &sid.0, &keys())),
    }
}

/// One copy of a packet the network delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Arrival time at the receiver.
    pub at: OwampTime,
    /// TTL (or hop limit) the receiver sees.
    pub ttl: u8,
}

/// A datagram on its way to the receiver.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub seq: u32,
    pub at: OwampTime,
    pub ttl: u8,
    pub bytes: Vec<u8>,
}

/// Sends every packet of `sender` stamped at its due time with `send_error`; `fate(seq, due)`
/// says which copies arrive (none: lost). Returns the arrivals in arrival order; copies that
/// arrive at the same instant keep the order in which they were sent.
pub fn transmit(
    sender: &mut Sender,
    send_error: ErrorEstimate,
    mut fate: impl FnMut(u32, OwampTime) -> Vec<Delivery>,
) -> Vec<Arrival> {
    let mut buf = vec![0u8; sender.packet_len()];
    let mut arrivals = Vec::new();
    while let Some((seq, due)) = sender.next_due() {
        let len = sender.build(&mut buf, due, send_error).unwrap();
        for d in fate(seq, due) {
            arrivals.push(Arrival {
                seq,
                at: d.at,
                ttl: d.ttl,
                bytes: buf[..len].to_vec(),
            });
        }
    }
    // Stable: simultaneous copies stay in send order.
    arrivals.sort_by_key(|a| a.at);
    arrivals
}

/// Feeds `arrivals` to a new receiver of `params`, then ends the session well after the last
/// arrival (every packet sent, none skipped) and returns the records as Fetch-Session would.
pub fn receive_all(
    params: &SessionParams,
    protection: PacketProtection,
    arrivals: &[Arrival],
    recv_error: ErrorEstimate,
) -> (Vec<Accepted>, Vec<DataRecord>) {
    let mut rx = Receiver::new(params.clone(), protection);
    let accepted: Vec<Accepted> = arrivals
        .iter()
        .map(|a| rx.receive(&a.bytes, a.at, recv_error, a.ttl).unwrap())
        .collect();
    let last = arrivals.last().map_or(params.start, |a| a.at);
    // Past every deadline: the remaining missing packets are declared lost.
    let end = OwampTime::from_raw(last.raw() + params.timeout.raw() + 3 * SEC);
    rx.poll(end, recv_error);
    assert!(rx.is_complete());
    let records = rx
        .finish(end, Some(params.schedule.count()), recv_error)
        .unwrap();
    (accepted, records)
}
