//! Test set-up shared by the test suites of owamp-std and owamp-tokio: a test session's two
//! endpoints on loopback, built without a control connection. Test code only: it panics on
//! any failure.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use owamp_core::control::{Mode, Role};
use owamp_core::crypto::SessionKeys;
use owamp_core::io::SessionInfo;
use owamp_core::time::{duration_to_fixed_point, OwampTime};
use owamp_core::wire::{RequestSession, SessionId, Slot, SlotKind, TypeP};
use owamp_std::endpoint::{EndpointConfig, TestEndpoint};
use owamp_std::net::TestSocket;
use owamp_std::rng::OsRng;

/// `d` in the 32.32 fixed-point format of requests.
pub fn secs(d: Duration) -> u64 {
    duration_to_fixed_point(d).unwrap()
}

/// 127.0.0.1.
pub fn lo() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// The two ends of one test session.
pub struct Pair {
    /// The sending end.
    pub sender: TestEndpoint,
    /// The receiving end.
    pub receiver: TestEndpoint,
    /// The receiver's address.
    pub recv_addr: SocketAddr,
}

/// A session of `packets` packets every `interval` from one loopback socket to another,
/// with loss timeout `timeout`, starting at `start`, DSCP 46 (EF), in `mode` (fresh keys
/// unless open).
pub fn pair(
    mode: Mode,
    packets: u32,
    interval: Duration,
    timeout: Duration,
    start: OwampTime,
) -> Pair {
    let a = TestSocket::bind(SocketAddr::new(lo(), 0)).unwrap();
    let b = TestSocket::bind(SocketAddr::new(lo(), 0)).unwrap();
    let mut sid = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut OsRng, &mut sid);
    let sid = SessionId(sid);
    let request = RequestSession {
        conf_sender: false,
        conf_receiver: true,
        num_packets: packets,
        sender_port: a.local_addr().port(),
        receiver_port: b.local_addr().port(),
        sender_address: lo(),
        receiver_address: lo(),
        sid,
        padding_length: 0,
        start_time: start,
        timeout: secs(timeout),
        type_p: TypeP::from_dscp(46).unwrap(),
        hmac: [0; 16],
        slots: vec![Slot {
            kind: SlotKind::Fixed,
            mean: secs(interval),
        }],
        slots_hmac: [0; 16],
    };
    let keys = (mode != Mode::Open).then(|| SessionKeys::generate(&mut OsRng));
    let info = |role, local: SocketAddr, peer: SocketAddr| SessionInfo {
        sid,
        role,
        mode,
        keys: keys.clone(),
        local,
        peer,
        request: request.clone(),
    };
    let (al, bl) = (a.local_addr(), b.local_addr());
    Pair {
        sender: TestEndpoint::new(info(Role::Sender, al, bl), a).unwrap(),
        receiver: TestEndpoint::new(info(Role::Receiver, bl, al), b).unwrap(),
        recv_addr: bl,
    }
}

/// The endpoint configuration of the tests: the default, with senders' lateness recorded.
pub fn config() -> EndpointConfig {
    EndpointConfig {
        record_send_lateness: true,
        ..EndpointConfig::default()
    }
}
