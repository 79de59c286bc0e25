//! Reading the reference traces (testdata/traces/reference) for the session tests.
#![allow(dead_code)]

use owamp_core::time::Interval;
use owamp_core::wire::{SessionId, Slot, SlotKind};

pub mod sim;

/// Path of a reference trace file.
pub fn trace_path(name: &str) -> String {
    format!(
        "{}/../testdata/traces/reference/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// One UDP test packet of a trace.
#[derive(Debug, Clone)]
pub struct TestPacket {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
    /// The SID noted in a .plain.trace (`# sid=...`).
    pub sid: Option<SessionId>,
}

/// One test session negotiated on the control connection.
#[derive(Debug, Clone)]
pub struct TraceSession {
    pub sid: SessionId,
    pub receiver_port: u16,
    pub start_time: u64,
    pub timeout: u64,
    pub count: u32,
    pub padding: u32,
    pub slots: Vec<Slot>,
}

/// What the session tests need from one trace.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub header: Vec<String>,
    pub sessions: Vec<TraceSession>,
    pub packets: Vec<TestPacket>,
}

impl Trace {
    /// A `# key=value` style header item, e.g. `aes-session-key`.
    pub fn header_hex(&self, key: &str) -> Option<Vec<u8>> {
        let pat = format!("{key}=");
        self.header.iter().find_map(|l| {
            let at = l.find(&pat)? + pat.len();
            let v: String = l[at..]
                .chars()
                .take_while(|c| c.is_ascii_hexdigit())
                .collect();
            hex::decode(v).ok()
        })
    }

    /// Packets of the session whose receiver listens on `port`.
    pub fn packets_to(&self, port: u16) -> Vec<&TestPacket> {
        self.packets.iter().filter(|p| p.dst_port == port).collect()
    }
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}
fn sid_at(b: &[u8], at: usize) -> SessionId {
    SessionId(b[at..at + 16].try_into().unwrap())
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// Parses a .trace or .plain.trace (plain bytes are needed for A/E control messages).
pub fn load(name: &str) -> Trace {
    let text = std::fs::read_to_string(trace_path(name)).unwrap();
    let mut t = Trace::default();
    // Request-Session waiting for its slots (next C>S line) and its Accept-Session.
    let mut pending: Option<(Vec<u8>, Option<Vec<u8>>)> = None;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix('#') {
            t.header.push(h.trim().to_string());
            continue;
        }
        let mut parts = line.split_whitespace();
        match parts.next() {
            Some("C>S") => {
                let b = hex::decode(parts.next().unwrap()).unwrap();
                match pending.as_mut() {
                    Some((_, slots @ None)) => *slots = Some(b),
                    _ if b.len() >= 112 && b[0] == 1 => pending = Some((b, None)),
                    _ => {}
                }
            }
            Some("S>C") => {
                let b = hex::decode(parts.next().unwrap()).unwrap();
                if let Some((req, Some(slot_bytes))) = pending.take() {
                    assert_eq!(b.len(), 48, "Accept-Session expected");
                    assert_eq!(b[0], 0, "session accepted");
                    t.sessions.push(session_from(&req, &slot_bytes, &b));
                }
            }
            Some("T") => {
                let _time = parts.next().unwrap();
                let (src, dst) = parts.next().unwrap().split_once("->").unwrap();
                let payload = hex::decode(parts.next().unwrap()).unwrap();
                let sid = line.split_once("sid=").map(|(_, s)| {
                    let mut b = [0u8; 16];
                    hex::decode_to_slice(&s[..32], &mut b).unwrap();
                    SessionId(b)
                });
                t.packets.push(TestPacket {
                    src_port: port_of(src),
                    dst_port: port_of(dst),
                    payload,
                    sid,
                });
            }
            _ => {}
        }
    }
    t
}

/// RFC 4656 3.5 Request-Session (112 octets, slots after) and its Accept-Session.
fn session_from(req: &[u8], slot_bytes: &[u8], accept: &[u8]) -> TraceSession {
    let conf_sender = req[2];
    let nslots = be_u32(req, 4) as usize;
    let count = be_u32(req, 8);
    let req_receiver_port = be_u16(req, 14);
    let padding = be_u32(req, 64);
    let start_time = be_u64(req, 68);
    let timeout = be_u64(req, 76);
    // Slots: type(1) MBZ(7) value(8); the Request-Session may carry them on the same line.
    let all: Vec<u8> = req[112..].iter().chain(slot_bytes).copied().collect();
    let slots = (0..nslots)
        .map(|i| {
            let s = &all[16 * i..16 * i + 16];
            Slot {
                kind: if s[0] == 0 {
                    SlotKind::Exponential
                } else {
                    SlotKind::Fixed
                },
                mean: Interval::from_raw(be_u64(s, 8)),
            }
        })
        .collect();
    // A server that receives returns its port and the SID; a client that receives chose both.
    let (sid, receiver_port) = if conf_sender == 1 {
        (sid_at(req, 48), req_receiver_port)
    } else {
        (sid_at(accept, 4), be_u16(accept, 2))
    };
    TraceSession {
        sid,
        receiver_port,
        start_time,
        timeout,
        count,
        padding,
        slots,
    }
}
