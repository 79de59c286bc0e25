//! Turns a pcap or pcapng capture of an OWAMP or TWAMP exchange into a [`Trace`].
//!
//! - Link types: Ethernet (with 802.1Q/802.1ad tags), Linux cooked v1 and v2, raw IP, BSD
//!   loopback (`NULL`, `LOOP`). Network: IPv4 and IPv6 (extension headers skipped; fragments
//!   are not reassembled and are reported).
//! - Control connections: TCP connections whose server side uses port 861 (OWAMP) or 862
//!   (TWAMP, RFC 5357 2) or sends a Server-Greeting first (64 octets, 12 unused zero octets, a
//!   non-zero Modes word below 256, 12 zero MBZ octets; RFC 4656 3.1, RFC 5357 3.1). The client
//!   is the side that sent the SYN; without a SYN, the side that did not send the Greeting.
//! - The protocol: TWAMP when the server port is 862 or the client's first command after an
//!   open-mode Set-Up-Response is Request-TW-Session (5, RFC 5357 3.5), written as a
//!   `protocol: twamp` header; otherwise no header (OWAMP, or TWAMP encrypted past the set-up,
//!   which the capture alone cannot tell).
//! - Each direction is put in sequence-number order; retransmitted and duplicate bytes are
//!   dropped; a segment that overlaps bytes already seen keeps only its new bytes. One `C>S` or
//!   `S>C` line is written per segment, at the point in the capture where its bytes became
//!   contiguous (for an in-order capture: capture order).
//! - Test packets: UDP packets whose two addresses both belong to the control connection's
//!   hosts (every UDP packet when the capture holds no control connection), as `T` lines with
//!   the time since the first captured frame. Empty datagrams are skipped and counted.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pcap_parser::pcapng::Block;
use pcap_parser::{Linktype, PcapBlockOwned};

use crate::trace::{Direction, Event, Mode, Trace};

/// The well-known OWAMP-Control port (RFC 4656 2).
pub const OWAMP_PORT: u16 = 861;

/// The well-known TWAMP-Control port (RFC 5357 2).
pub const TWAMP_PORT: u16 = 862;

/// Why a capture could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// Neither a pcap nor a pcapng file.
    #[error("not a pcap or pcapng capture: {0}")]
    Format(String),
    /// A link type the importer does not decode.
    #[error("unsupported link type {0}")]
    Linktype(i32),
    /// The requested control connection does not exist.
    #[error("control connection {want} requested, the capture holds {have}")]
    NoSuchConnection {
        /// The index asked for (0-based).
        want: usize,
        /// How many control connections were found.
        have: usize,
    },
}

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Which control connection to take (0-based, in order of first appearance).
    pub connection: usize,
    /// The capture's file name, recorded in the `provenance` and `scenario` headers.
    pub name: String,
}

/// One captured frame: its time in nanoseconds and its link layer.
struct Frame<'a> {
    ns: i128,
    linktype: Linktype,
    data: &'a [u8],
}

fn read_frames<'a>(
    data: &'a [u8],
    warnings: &mut Vec<String>,
) -> Result<Vec<Frame<'a>>, ImportError> {
    if let Ok((mut rem, header)) = pcap_parser::pcap::parse_pcap_header(data) {
        let parse = if header.is_modified_format() {
            pcap_parser::pcap::parse_pcap_frame_modified
        } else if header.is_bigendian() {
            pcap_parser::pcap::parse_pcap_frame_be
        } else {
            pcap_parser::pcap::parse_pcap_frame
        };
        let frac_ns: i128 = if header.is_nanosecond_precision() {
            1
        } else {
            1000
        };
        let mut out = Vec::new();
        while !rem.is_empty() {
            match parse(rem) {
                Ok((r, b)) => {
                    out.push(Frame {
                        ns: i128::from(b.ts_sec) * 1_000_000_000 + i128::from(b.ts_usec) * frac_ns,
                        linktype: header.network,
                        data: b.data,
                    });
                    rem = r;
                }
                Err(_) => {
                    warnings.push(format!(
                        "capture ends inside frame {} ({} octets left over)",
                        out.len() + 1,
                        rem.len()
                    ));
                    break;
                }
            }
        }
        return Ok(out);
    }
    let slice = pcap_parser::PcapNGSlice::from_slice(data)
        .map_err(|_| ImportError::Format("no pcap header or pcapng section header".into()))?;
    // (linktype, units per second, offset in seconds) per interface of the current section.
    let mut ifaces: Vec<(Linktype, u64, i64)> = Vec::new();
    let mut out = Vec::new();
    let mut last_ns = 0i128;
    for block in slice {
        let block = match block {
            Ok(PcapBlockOwned::NG(b)) => b,
            Ok(_) => continue,
            Err(_) => {
                warnings.push(format!(
                    "pcapng block after frame {} cannot be read; the rest is ignored",
                    out.len()
                ));
                break;
            }
        };
        match block {
            Block::SectionHeader(_) => ifaces.clear(),
            Block::InterfaceDescription(idb) => {
                let res = idb.ts_resolution().unwrap_or(1_000_000);
                ifaces.push((idb.linktype, res.max(1), idb.ts_offset()));
            }
            Block::EnhancedPacket(epb) => {
                let Some(&(linktype, res, off)) = ifaces.get(epb.if_id as usize) else {
                    warnings.push(format!(
                        "frame {}: unknown interface {}; skipped",
                        out.len() + 1,
                        epb.if_id
                    ));
                    continue;
                };
                let ts = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                let ns = i128::from(ts) * 1_000_000_000 / i128::from(res)
                    + i128::from(off) * 1_000_000_000;
                last_ns = ns;
                let len = (epb.caplen as usize).min(epb.data.len());
                out.push(Frame {
                    ns,
                    linktype,
                    data: &epb.data[..len],
                });
            }
            Block::SimplePacket(spb) => {
                // No timestamp: take the previous frame's time (pcapng 4.4).
                let Some(&(linktype, _, _)) = ifaces.first() else {
                    continue;
                };
                let len = (spb.origlen as usize).min(spb.data.len());
                out.push(Frame {
                    ns: last_ns,
                    linktype,
                    data: &spb.data[..len],
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// An IP packet's transport payload.
struct Ip<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    payload: &'a [u8],
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Strips the link layer; returns the IP packet, or `None` for non-IP frames.
fn by_ethertype(t: u16, rest: &[u8]) -> Option<&[u8]> {
    (t == ETH_IPV4 || t == ETH_IPV6).then_some(rest)
}

fn link_payload(linktype: Linktype, d: &[u8]) -> Result<Option<&[u8]>, ImportError> {
    Ok(match linktype {
        Linktype::ETHERNET => {
            let mut at = 12;
            let mut t = be16(d, at);
            // 802.1Q / 802.1ad tags.
            while matches!(t, Some(0x8100 | 0x88a8 | 0x9100)) {
                at += 4;
                t = be16(d, at);
            }
            t.and_then(|t| by_ethertype(t, d.get(at + 2..)?))
        }
        Linktype::LINUX_SLL => be16(d, 14).and_then(|t| by_ethertype(t, d.get(16..)?)),
        Linktype::LINUX_SLL2 => be16(d, 0).and_then(|t| by_ethertype(t, d.get(20..)?)),
        // LINKTYPE_RAW, and the DLT_RAW values some systems write (12, 14).
        Linktype::RAW | Linktype::IPV4 | Linktype::IPV6 | Linktype(12) | Linktype(14) => Some(d),
        Linktype::NULL | Linktype::LOOP => {
            // A 4-octet address family: host byte order for NULL, network order for LOOP.
            // AF_INET is 2 everywhere; AF_INET6 is 10, 24, 28 or 30 depending on the system.
            // The IP version nibble decides, so either byte order works.
            d.get(4..)
                .filter(|ip| ip.first().is_some_and(|v| v >> 4 == 4 || v >> 4 == 6))
        }
        other => return Err(ImportError::Linktype(other.0)),
    })
}

/// Parses an IPv4 or IPv6 header. `Err` describes why a packet is skipped.
fn ip_packet(d: &[u8]) -> Result<Ip<'_>, &'static str> {
    let v = d.first().ok_or("empty IP packet")? >> 4;
    match v {
        4 => {
            let ihl = usize::from(d[0] & 0x0f) * 4;
            let total = usize::from(be16(d, 2).ok_or("IPv4 header truncated")?);
            if ihl < 20 || d.len() < ihl {
                return Err("IPv4 header truncated");
            }
            if total > d.len() {
                return Err("IPv4 packet truncated by the capture");
            }
            let frag = be16(d, 6).ok_or("IPv4 header truncated")?;
            if frag & 0x3fff != 0 {
                return Err("IPv4 fragment (not reassembled)");
            }
            let src: [u8; 4] = d[12..16].try_into().map_err(|_| "IPv4 header truncated")?;
            let dst: [u8; 4] = d[16..20].try_into().map_err(|_| "IPv4 header truncated")?;
            Ok(Ip {
                src: Ipv4Addr::from(src).into(),
                dst: Ipv4Addr::from(dst).into(),
                proto: d[9],
                payload: d.get(ihl..total.max(ihl)).ok_or("IPv4 header truncated")?,
            })
        }
        6 => {
            if d.len() < 40 {
                return Err("IPv6 header truncated");
            }
            let plen = usize::from(be16(d, 4).ok_or("IPv6 header truncated")?);
            if 40 + plen > d.len() {
                return Err("IPv6 packet truncated by the capture");
            }
            let src: [u8; 16] = d[8..24].try_into().map_err(|_| "IPv6 header truncated")?;
            let dst: [u8; 16] = d[24..40].try_into().map_err(|_| "IPv6 header truncated")?;
            let mut next = d[6];
            let mut at = 40;
            let end = 40 + plen;
            // Hop-by-hop, routing and destination options extension headers.
            while matches!(next, 0 | 43 | 60) {
                let h = d.get(at..at + 2).ok_or("IPv6 extension header truncated")?;
                next = h[0];
                at += (usize::from(h[1]) + 1) * 8;
            }
            if next == 44 {
                return Err("IPv6 fragment (not reassembled)");
            }
            Ok(Ip {
                src: Ipv6Addr::from(src).into(),
                dst: Ipv6Addr::from(dst).into(),
                proto: next,
                payload: d.get(at..end).ok_or("IPv6 extension header truncated")?,
            })
        }
        _ => Err("not IPv4 or IPv6"),
    }
}

/// One TCP segment with data or SYN.
struct Segment {
    frame: usize,
    src: SocketAddr,
    seq: u32,
    syn: bool,
    ack: bool,
    data: Vec<u8>,
}

/// A UDP datagram.
struct Datagram {
    frame: usize,
    ns: i128,
    src: SocketAddr,
    dst: SocketAddr,
    payload: Vec<u8>,
}

/// A TCP connection: its segments in capture order.
struct Connection {
    /// The endpoint seen first, and the other one.
    a: SocketAddr,
    b: SocketAddr,
    segments: Vec<Segment>,
}

/// The Server-Greeting shape (RFC 4656 3.1): 12 unused octets, Modes, Challenge, Salt, Count,
/// 12 MBZ. owampd leaves the unused octets zero.
fn looks_like_greeting(b: &[u8]) -> bool {
    let Some(modes) = be32(b, 12) else {
        return false;
    };
    b.len() >= 64
        && b[..12].iter().all(|&x| x == 0)
        && b[52..64].iter().all(|&x| x == 0)
        && modes != 0
        && modes < 256
}

/// One direction of a TCP connection being put back in order.
#[derive(Default)]
struct Half {
    base: Option<u32>,
    next: u64,
    pending: BTreeMap<u64, Vec<u8>>,
    dropped: usize,
}

impl Half {
    /// Takes a segment at stream offset `off`; returns the segments that became contiguous.
    fn push(&mut self, off: u64, data: Vec<u8>) -> Vec<Vec<u8>> {
        if off + data.len() as u64 <= self.next {
            self.dropped += 1;
            return Vec::new();
        }
        match self.pending.get(&off) {
            Some(old) if old.len() >= data.len() => self.dropped += 1,
            _ => {
                self.pending.insert(off, data);
            }
        }
        let mut out = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            let o = *entry.key();
            if o > self.next {
                break;
            }
            let d = entry.remove();
            let end = o + d.len() as u64;
            if end <= self.next {
                self.dropped += 1;
                continue;
            }
            let skip = usize::try_from(self.next - o).unwrap_or(usize::MAX);
            out.push(d.get(skip..).unwrap_or_default().to_vec());
            self.next = end;
        }
        out
    }
}

/// The result of reassembling one control connection.
struct Control {
    client: SocketAddr,
    server: SocketAddr,
    /// (frame index at which the bytes became contiguous, direction, bytes).
    lines: Vec<(usize, Direction, Vec<u8>)>,
    warnings: Vec<String>,
}

fn is_control_port(port: u16) -> bool {
    port == OWAMP_PORT || port == TWAMP_PORT
}

fn reassemble(conn: &Connection) -> Option<Control> {
    // Who is the client: the sender of a bare SYN; else the peer of port 861; else the peer of
    // the side that sent a Greeting first.
    let syn_from = conn
        .segments
        .iter()
        .find(|s| s.syn && !s.ack)
        .map(|s| s.src);
    // The first 64 octets an endpoint sent (in capture order; enough to spot a Greeting even
    // when it was split over several segments).
    let prefix = |ep: SocketAddr| {
        let mut b = Vec::new();
        for s in conn.segments.iter().filter(|s| s.src == ep) {
            if b.len() >= 64 {
                break;
            }
            b.extend_from_slice(&s.data);
        }
        b
    };
    let greeting_from = [conn.a, conn.b]
        .into_iter()
        .find(|&ep| looks_like_greeting(&prefix(ep)));
    let server = if let Some(c) = syn_from {
        if c == conn.a {
            conn.b
        } else {
            conn.a
        }
    } else if is_control_port(conn.b.port()) {
        conn.b
    } else if is_control_port(conn.a.port()) {
        conn.a
    } else {
        greeting_from?
    };
    let client = if server == conn.a { conn.b } else { conn.a };
    let is_control = is_control_port(server.port()) || greeting_from == Some(server);
    if !is_control {
        return None;
    }

    let mut halves: [Half; 2] = Default::default();
    let idx = |src: SocketAddr| usize::from(src == server);
    // Sequence base per direction: the SYN's sequence number + 1, else the lowest data
    // sequence number (compared as signed 32-bit differences to survive wrap-around).
    for s in &conn.segments {
        let h = &mut halves[idx(s.src)];
        if s.syn {
            h.base = Some(s.seq.wrapping_add(1));
        }
    }
    for s in &conn.segments {
        let h = &mut halves[idx(s.src)];
        if s.syn || s.data.is_empty() {
            continue;
        }
        match h.base {
            None => h.base = Some(s.seq),
            Some(b) if syn_from.is_none() && (s.seq.wrapping_sub(b) as i32) < 0 => {
                h.base = Some(s.seq)
            }
            _ => {}
        }
    }
    let mut lines = Vec::new();
    for s in &conn.segments {
        if s.data.is_empty() {
            continue;
        }
        let i = idx(s.src);
        let h = &mut halves[i];
        let base = h.base.unwrap_or(s.seq);
        // SYN data starts one past the SYN's sequence number.
        let seq = if s.syn { s.seq.wrapping_add(1) } else { s.seq };
        let off = u64::from(seq.wrapping_sub(base));
        let dir = if i == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        for d in h.push(off, s.data.clone()) {
            lines.push((s.frame, dir, d));
        }
    }
    let mut warnings = Vec::new();
    for (i, h) in halves.iter().enumerate() {
        let tag = if i == 0 { "C>S" } else { "S>C" };
        if h.dropped > 0 {
            warnings.push(format!(
                "{tag}: {} retransmitted or duplicate segment(s) dropped",
                h.dropped
            ));
        }
        if let Some((o, _)) = h.pending.first_key_value() {
            let n: usize = h.pending.values().map(Vec::len).sum();
            warnings.push(format!(
                "{tag}: bytes missing at stream offset {}; {n} octet(s) captured after the gap left out (starting at offset {o})",
                h.next
            ));
        }
    }
    Some(Control {
        client,
        server,
        lines,
        warnings,
    })
}

/// Reads a capture and returns its trace.
pub fn import(data: &[u8], opts: &ImportOptions) -> Result<Trace, ImportError> {
    let mut warnings = Vec::new();
    let frames = read_frames(data, &mut warnings)?;
    let t0 = frames.first().map(|f| f.ns).unwrap_or(0);
    let linktypes: Vec<Linktype> = {
        let mut v: Vec<Linktype> = Vec::new();
        for f in &frames {
            if !v.contains(&f.linktype) {
                v.push(f.linktype);
            }
        }
        v
    };

    let mut conns: Vec<Connection> = Vec::new();
    let mut datagrams = Vec::new();
    let mut skipped: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (n, f) in frames.iter().enumerate() {
        let Some(ipd) = link_payload(f.linktype, f.data)? else {
            continue;
        };
        let ip = match ip_packet(ipd) {
            Ok(ip) => ip,
            Err(why) => {
                *skipped.entry(why).or_default() += 1;
                continue;
            }
        };
        let p = ip.payload;
        match ip.proto {
            6 => {
                let (Some(sp), Some(dp), Some(seq)) = (be16(p, 0), be16(p, 2), be32(p, 4)) else {
                    *skipped.entry("TCP header truncated").or_default() += 1;
                    continue;
                };
                let hl = usize::from(p.get(12).copied().unwrap_or(0) >> 4) * 4;
                let flags = p.get(13).copied().unwrap_or(0);
                let Some(data) = p.get(hl..).filter(|_| hl >= 20) else {
                    *skipped.entry("TCP header truncated").or_default() += 1;
                    continue;
                };
                let src = SocketAddr::new(ip.src, sp);
                let dst = SocketAddr::new(ip.dst, dp);
                let seg = Segment {
                    frame: n,
                    src,
                    seq,
                    syn: flags & 0x02 != 0,
                    ack: flags & 0x10 != 0,
                    data: data.to_vec(),
                };
                if seg.data.is_empty() && !seg.syn {
                    continue;
                }
                // Keyed by the address pair: a reused pair continues the same connection.
                match conns
                    .iter_mut()
                    .find(|c| (c.a == src && c.b == dst) || (c.a == dst && c.b == src))
                {
                    Some(c) => c.segments.push(seg),
                    None => conns.push(Connection {
                        a: src,
                        b: dst,
                        segments: vec![seg],
                    }),
                }
            }
            17 => {
                let (Some(sp), Some(dp), Some(ul)) = (be16(p, 0), be16(p, 2), be16(p, 4)) else {
                    *skipped.entry("UDP header truncated").or_default() += 1;
                    continue;
                };
                let Some(payload) = p.get(8..usize::from(ul)) else {
                    *skipped.entry("UDP datagram truncated").or_default() += 1;
                    continue;
                };
                if payload.is_empty() {
                    // No test packet is empty (RFC 4656 4.1.2), and a `T` line needs a payload.
                    *skipped.entry("UDP datagram empty").or_default() += 1;
                    continue;
                }
                datagrams.push(Datagram {
                    frame: n,
                    ns: f.ns,
                    src: SocketAddr::new(ip.src, sp),
                    dst: SocketAddr::new(ip.dst, dp),
                    payload: payload.to_vec(),
                });
            }
            _ => {}
        }
    }
    for (why, n) in &skipped {
        warnings.push(format!("{n} packet(s) skipped: {why}"));
    }

    let controls: Vec<Control> = conns.iter().filter_map(reassemble).collect();
    let control = if controls.is_empty() && opts.connection == 0 {
        None
    } else {
        Some(
            controls
                .get(opts.connection)
                .ok_or(ImportError::NoSuchConnection {
                    want: opts.connection,
                    have: controls.len(),
                })?,
        )
    };

    // Test packets: UDP between the control connection's hosts (all UDP without one).
    let hosts: Vec<IpAddr> = control
        .map(|c| vec![c.client.ip(), c.server.ip()])
        .unwrap_or_default();
    let tests: Vec<&Datagram> = datagrams
        .iter()
        .filter(|d| {
            hosts.is_empty() || (hosts.contains(&d.src.ip()) && hosts.contains(&d.dst.ip()))
        })
        .collect();

    // Merge control lines and test packets in capture order.
    let mut trace = Trace::default();
    let stem = opts
        .name
        .rsplit('/')
        .next()
        .unwrap_or(&opts.name)
        .trim_end_matches(".pcapng")
        .trim_end_matches(".pcap");
    trace.push_header("scenario", stem);
    trace.push_header(
        "provenance",
        &format!("imported from {} by conformance import", opts.name),
    );
    let c2s: Vec<u8> = control
        .map(|c| {
            c.lines
                .iter()
                .filter(|l| l.1 == Direction::ClientToServer)
                .flat_map(|l| l.2.iter().copied())
                .collect()
        })
        .unwrap_or_default();
    let mode_word = be32(&c2s, 0);
    let mode = mode_word.and_then(Mode::from_word);
    // RFC 5357 2, 3.5: the TWAMP port, or a Request-TW-Session in the clear.
    let twamp_command = mode == Some(Mode::Open)
        && c2s.get(owamp_core::wire::SetUpResponse::LEN)
            == Some(&owamp_core::wire::RequestTwSession::COMMAND);
    if control.is_some_and(|c| c.server.port() == TWAMP_PORT) || twamp_command {
        trace.push_header("protocol", "twamp");
    }
    trace.push_header(
        "mode",
        &match (mode, mode_word) {
            (Some(m), _) => format!("{} (Set-Up-Response Mode word {})", m.name(), m.word()),
            (None, Some(w)) => format!("unknown (Set-Up-Response Mode word {w:#010x})"),
            (None, None) => "unknown (no Set-Up-Response captured)".to_string(),
        },
    );
    let identity = c2s.get(4..84).map(|k| {
        let end = k.iter().position(|&b| b == 0).unwrap_or(k.len());
        String::from_utf8_lossy(&k[..end]).into_owned()
    });
    let identity = match identity {
        Some(i) if !i.is_empty() => i,
        Some(_) => "<none>".to_string(),
        None => "unknown".to_string(),
    };
    trace.push_header("identity", &identity);
    let pass = if mode == Some(Mode::Open) {
        "<none>"
    } else {
        "unknown"
    };
    trace.push_header("passphrase", pass);
    trace.push_header("passphrase-hex", pass);
    if let Some(c) = control {
        trace.push_header("server-control", &c.server.to_string());
        trace.push_header("client-control", &c.client.to_string());
    }
    trace.push_header("control-connections", &controls.len().to_string());
    if let Some(c) = control {
        let s2c: usize = c
            .lines
            .iter()
            .filter(|l| l.1 == Direction::ServerToClient)
            .map(|l| l.2.len())
            .sum();
        trace.push_header(
            "control-segments",
            &format!(
                "{} (C>S bytes={}, S>C bytes={s2c})",
                c.lines.len(),
                c2s.len()
            ),
        );
    }
    trace.push_header("test-packets", &tests.len().to_string());
    let lt: Vec<String> = linktypes.iter().map(|l| l.to_string()).collect();
    trace.push_header("linktype", &lt.join(", "));
    for w in control.iter().flat_map(|c| &c.warnings).chain(&warnings) {
        trace.push_header("import-warning", w);
    }

    let mut lines: Vec<(usize, Event)> = Vec::new();
    if let Some(c) = control {
        for (frame, dir, bytes) in &c.lines {
            lines.push((
                *frame,
                Event::Control {
                    dir: *dir,
                    bytes: bytes.clone(),
                    comment: None,
                },
            ));
        }
    }
    for d in &tests {
        // Rounded to the nearest microsecond; a frame stamped before the first one counts as 0.
        let micros = u64::try_from((d.ns - t0 + 500) / 1000).unwrap_or(0);
        lines.push((
            d.frame,
            Event::Test {
                micros,
                src: d.src,
                dst: d.dst,
                payload: d.payload.clone(),
                comment: None,
            },
        ));
    }
    // As in the reference traces: the control connection first, then the test packets, each
    // in capture order.
    lines.sort_by_key(|(f, e)| (matches!(e, Event::Test { .. }), *f));
    trace.events = lines.into_iter().map(|(_, e)| e).collect();
    Ok(trace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::equivalent;

    const TRACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/traces");

    fn import_file(path: &str) -> Trace {
        let data = std::fs::read(path).unwrap();
        import(
            &data,
            &ImportOptions {
                connection: 0,
                name: path.rsplit('/').next().unwrap().to_string(),
            },
        )
        .unwrap()
    }

    #[test]
    fn reference_captures_import_to_the_reference_traces() {
        for s in [
            "reference/a_open",
            "reference/b_auth",
            "reference/c_encrypted",
            "reference/d_authfail",
            "reference/owp/summary/session",
        ] {
            let got = import_file(&format!("{TRACES}/{s}.pcap"));
            let text = std::fs::read_to_string(format!("{TRACES}/{s}.trace")).unwrap();
            let want = Trace::parse(&text).unwrap();
            equivalent(&got, &want).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(got.mode(), want.mode(), "{s}");
            assert_eq!(got.identity(), want.identity(), "{s}");
            // The imported text reads back as the same trace.
            assert_eq!(Trace::parse(&got.to_text()).unwrap(), got);
        }
    }

    #[test]
    fn esnet_captures_import() {
        // (file, mode, identity, control lines, C>S bytes, S>C bytes)
        let cases = [
            ("owamp-O", Some(Mode::Open), None, 19, 0, 0),
            (
                "owamp-auth-A",
                Some(Mode::Authenticated),
                Some("mrowamp"),
                19,
                0,
                0,
            ),
            (
                "owamp-auth-E",
                Some(Mode::Encrypted),
                Some("mrowamp"),
                18,
                0,
                0,
            ),
            (
                "owamp-auth-failed",
                Some(Mode::Authenticated),
                Some("dopheide"),
                3,
                164,
                112,
            ),
        ];
        for (name, mode, id, lines, c2s, s2c) in cases {
            let t = import_file(&format!("{TRACES}/esnet/{name}.pcap"));
            assert_eq!(t.mode(), mode, "{name}");
            assert_eq!(t.identity(), id, "{name}");
            assert_eq!(t.events.len(), lines, "{name}");
            assert_eq!(t.header("linktype"), Some("ETHERNET"));
            assert_eq!(
                t.header("server-control").unwrap().rsplit(':').next(),
                Some("861")
            );
            if c2s > 0 {
                assert_eq!(t.stream(Direction::ClientToServer).len(), c2s);
                assert_eq!(t.stream(Direction::ServerToClient).len(), s2c);
            }
            assert!(t.header("import-warning").is_none(), "{name}: {t}");
            let Some(Event::Control { dir, bytes, .. }) = t.events.first() else {
                panic!("{name}: no control line")
            };
            assert_eq!(*dir, Direction::ServerToClient);
            assert!(looks_like_greeting(bytes));
        }
    }

    /// A minimal reader for the little-endian microsecond pcap files in testdata.
    fn frames(pcap: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 24;
        while at < pcap.len() {
            let w = |o: usize| u32::from_le_bytes(pcap[at + o..at + o + 4].try_into().unwrap());
            let (s, us, cl) = (w(0), w(4), w(8) as usize);
            out.push((s, us, pcap[at + 16..at + 16 + cl].to_vec()));
            at += 16 + cl;
        }
        out
    }

    fn write_pcap(linktype: u32, frames: &[(u32, u32, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&65535u32.to_le_bytes());
        out.extend_from_slice(&linktype.to_le_bytes());
        for (s, us, d) in frames {
            for v in [*s, *us, d.len() as u32, d.len() as u32] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(d);
        }
        out
    }

    /// pcapng: section header, one interface with nanosecond resolution, enhanced packets.
    fn write_pcapng(linktype: u16, frames: &[(u32, u32, Vec<u8>)]) -> Vec<u8> {
        fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
            let pad = (4 - body.len() % 4) % 4;
            let len = (12 + body.len() + pad) as u32;
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(&vec![0; pad]);
            out.extend_from_slice(&len.to_le_bytes());
        }
        let mut out = Vec::new();
        let mut shb = Vec::new();
        shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        block(&mut out, 0x0a0d_0d0a, &shb);
        let mut idb = Vec::new();
        idb.extend_from_slice(&linktype.to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&0u32.to_le_bytes());
        // if_tsresol = 9 (nanoseconds), then opt_endofopt.
        idb.extend_from_slice(&9u16.to_le_bytes());
        idb.extend_from_slice(&1u16.to_le_bytes());
        idb.extend_from_slice(&[9, 0, 0, 0]);
        idb.extend_from_slice(&[0; 4]);
        block(&mut out, 1, &idb);
        for (s, us, d) in frames {
            let ts = u64::from(*s) * 1_000_000_000 + u64::from(*us) * 1000;
            let mut epb = Vec::new();
            epb.extend_from_slice(&0u32.to_le_bytes());
            epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
            epb.extend_from_slice(&(ts as u32).to_le_bytes());
            epb.extend_from_slice(&(d.len() as u32).to_le_bytes());
            epb.extend_from_slice(&(d.len() as u32).to_le_bytes());
            epb.extend_from_slice(d);
            epb.extend_from_slice(&vec![0; (4 - d.len() % 4) % 4]);
            block(&mut out, 6, &epb);
        }
        out
    }

    /// Rewrites an IPv4 packet as IPv6 (::ffff:0:a.b.c.d style addresses, a hop-by-hop
    /// extension header in front), keeping the transport payload.
    fn to_ipv6(ip4: &[u8]) -> Vec<u8> {
        let ihl = usize::from(ip4[0] & 15) * 4;
        let total = usize::from(u16::from_be_bytes([ip4[2], ip4[3]]));
        let l4 = &ip4[ihl..total];
        let mut v = vec![0x60, 0, 0, 0];
        v.extend_from_slice(&((l4.len() + 8) as u16).to_be_bytes());
        v.push(0); // next header: hop-by-hop
        v.push(64);
        for a in [&ip4[12..16], &ip4[16..20]] {
            v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0]);
            v.extend_from_slice(a);
        }
        v.extend_from_slice(&[ip4[9], 0, 1, 4, 0, 0, 0, 0]); // PadN option
        v.extend_from_slice(l4);
        v
    }

    fn ip_of(eth: &[u8]) -> Vec<u8> {
        eth[14..].to_vec()
    }

    fn import_bytes(data: &[u8]) -> Trace {
        import(
            data,
            &ImportOptions {
                connection: 0,
                name: "x.pcap".into(),
            },
        )
        .unwrap()
    }

    #[test]
    fn every_link_type_gives_the_same_trace() {
        let pcap = std::fs::read(format!("{TRACES}/reference/a_open.pcap")).unwrap();
        let want = import_bytes(&pcap);
        assert_eq!(want.events.len(), 60);
        let fr = frames(&pcap);
        let map = |f: &dyn Fn(&[u8]) -> Vec<u8>| -> Vec<(u32, u32, Vec<u8>)> {
            fr.iter().map(|(s, us, d)| (*s, *us, f(d))).collect()
        };
        let variants: Vec<(&str, Vec<u8>)> = vec![
            ("raw", write_pcap(101, &map(&ip_of))),
            (
                "null",
                write_pcap(0, &map(&|d| [&2u32.to_le_bytes()[..], &d[14..]].concat())),
            ),
            (
                "loop",
                write_pcap(108, &map(&|d| [&2u32.to_be_bytes()[..], &d[14..]].concat())),
            ),
            (
                "sll",
                write_pcap(113, &map(&|d| [&[0u8; 14][..], &[8, 0], &d[14..]].concat())),
            ),
            (
                "sll2",
                write_pcap(276, &map(&|d| [&[8u8, 0][..], &[0; 18], &d[14..]].concat())),
            ),
            (
                "vlan",
                write_pcap(
                    1,
                    &map(&|d| [&d[..12], &[0x81, 0, 0, 5], &d[12..]].concat()),
                ),
            ),
            ("pcapng", write_pcapng(1, &fr)),
        ];
        for (name, data) in variants {
            let got = import_bytes(&data);
            equivalent(&got, &want).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // IPv6: same bytes, other addresses.
        let v6 = import_bytes(&write_pcap(101, &map(&|d| to_ipv6(&d[14..]))));
        assert_eq!(v6.events.len(), want.events.len());
        for (a, b) in v6.events.iter().zip(&want.events) {
            match (a, b) {
                (Event::Control { bytes: x, .. }, Event::Control { bytes: y, .. }) => {
                    assert_eq!(x, y)
                }
                (
                    Event::Test {
                        micros: t1,
                        src,
                        payload: x,
                        ..
                    },
                    Event::Test {
                        micros: t2,
                        payload: y,
                        ..
                    },
                ) => {
                    assert_eq!((t1, x), (t2, y));
                    assert!(src.is_ipv6());
                }
                _ => panic!("event kinds differ"),
            }
        }
        assert_eq!(v6.header("server-control"), Some("[2001:db8::7f00:1]:8610"));
    }

    #[test]
    fn retransmissions_and_reordering() {
        let pcap = std::fs::read(format!("{TRACES}/reference/a_open.pcap")).unwrap();
        let want = import_bytes(&pcap);
        let mut fr = frames(&pcap);
        // Frames carrying TCP payload.
        let data_frames: Vec<usize> = (0..fr.len())
            .filter(|&i| {
                let ip = &fr[i].2[14..];
                let ihl = usize::from(ip[0] & 15) * 4;
                let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
                ip[9] == 6 && total > ihl + usize::from(ip[ihl + 12] >> 4) * 4
            })
            .collect();
        // Duplicate the third data frame right after itself and at the end (retransmissions).
        let dup = fr[data_frames[2]].clone();
        fr.insert(data_frames[2] + 1, dup.clone());
        fr.push(dup);
        let got = import_bytes(&write_pcap(1, &fr));
        equivalent(&got, &want).unwrap();
        assert!(got
            .header("import-warning")
            .unwrap()
            .contains("2 retransmitted"));

        // Swap two consecutive segments of the same direction: the later one is held until
        // the gap fills, so the stream is still in order.
        let mut fr = frames(&pcap);
        let (i, j) = (data_frames[11], data_frames[12]);
        fr.swap(i, j);
        let got = import_bytes(&write_pcap(1, &fr));
        assert_eq!(
            got.stream(Direction::ClientToServer),
            want.stream(Direction::ClientToServer)
        );
        assert_eq!(
            got.stream(Direction::ServerToClient),
            want.stream(Direction::ServerToClient)
        );

        // A lost segment: the bytes after it are left out and the gap is reported.
        let mut fr = frames(&pcap);
        fr.remove(data_frames[3]);
        let got = import_bytes(&write_pcap(1, &fr));
        let w: Vec<&str> = got
            .headers()
            .into_iter()
            .filter(|(k, _)| *k == "import-warning")
            .map(|(_, v)| v)
            .collect();
        assert!(w.iter().any(|w| w.contains("bytes missing")), "{w:?}");
    }

    #[test]
    fn rejects_garbage_and_missing_connections() {
        assert!(matches!(
            import(b"not a capture at all", &ImportOptions::default()),
            Err(ImportError::Format(_))
        ));
        let pcap = std::fs::read(format!("{TRACES}/reference/a_open.pcap")).unwrap();
        let e = import(
            &pcap,
            &ImportOptions {
                connection: 1,
                name: String::new(),
            },
        )
        .unwrap_err();
        assert_eq!(e, ImportError::NoSuchConnection { want: 1, have: 1 });
        let fr = frames(&pcap);
        assert_eq!(
            import(&write_pcap(147, &fr), &ImportOptions::default()).unwrap_err(),
            ImportError::Linktype(147)
        );
    }

    /// An IPv4 UDP packet from 127.0.0.1:9000 to 127.0.0.1:9001.
    fn udp4(payload: &[u8]) -> Vec<u8> {
        let total = (28 + payload.len()) as u16;
        let mut v = vec![0x45, 0];
        v.extend_from_slice(&total.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        for x in [9000, 9001, total - 20, 0] {
            v.extend_from_slice(&u16::to_be_bytes(x));
        }
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn empty_datagrams_are_skipped() {
        // Found by fuzzing the importer: an empty UDP payload became a `T` line without hex,
        // which the trace parser rejects.
        let packet = [0u8, 0, 0, 1, 0xee, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let fr = vec![(1, 0, udp4(&[])), (1, 5, udp4(&packet))];
        let t = import_bytes(&write_pcap(101, &fr));
        assert_eq!(t.events.len(), 1);
        assert!(matches!(&t.events[0], Event::Test { payload, .. } if payload[..] == packet));
        assert_eq!(
            t.header("import-warning"),
            Some("1 packet(s) skipped: UDP datagram empty")
        );
        assert_eq!(Trace::parse(&t.to_text()).unwrap(), t);
    }
}
