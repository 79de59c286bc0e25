//! UDP test sockets (RFC 4656 4): binding, DSCP, receive buffer sizing, kernel receive
//! timestamps, TTL / hop limit delivery, and a `recvmsg` ([`recv_from_fd`]) and a `recvmmsg`
//! ([`recv_batch`]) that return them with each datagram.
//!
//! The pieces are usable on their own so that other adapters can share them: an async
//! adapter creates the socket with [`TestSocket::bind`] (or configures its own with
//! [`configure_test_socket`]), waits for readiness its own way, and calls [`recv_from_fd`] with
//! `MSG_DONTWAIT` semantics; [`parse_cmsgs`] parses a control buffer with bounds checks and no
//! `unsafe`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use owamp_core::control::PortRange;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// TTL / hop limit set on every test packet sent. perfSONAR owamp sends with 255, so the
/// receiver can count hops as `255 - TTL` (its owstats reports "hops = 0" on loopback).
pub const SEND_TTL: u32 = 255;

/// Octets of the control buffer handed to `recvmsg`: room for a timestamp and a TTL or hop
/// limit message with headers, with margin.
pub const CMSG_BUF_LEN: usize = 256;

/// Largest datagram a test socket reads (a UDP payload cannot exceed this).
pub const MAX_DATAGRAM: usize = 65_535;

/// One datagram read by [`TestSocket::recv`] or [`recv_from_fd`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Octets written to the buffer (at most its length).
    pub len: usize,
    /// Whether the datagram was longer than the buffer (`MSG_TRUNC`): the rest was discarded.
    pub truncated: bool,
    /// Where it came from.
    pub source: SocketAddr,
    /// The kernel's receive timestamp (`SO_TIMESTAMPNS`, `CLOCK_REALTIME`), if delivered.
    pub kernel_time: Option<SystemTime>,
    /// The IPv4 TTL or IPv6 hop limit of the packet, if delivered.
    pub ttl: Option<u8>,
}

/// What the ancillary data of one `recvmsg` held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CmsgInfo {
    /// `SCM_TIMESTAMPNS`.
    pub timestamp: Option<SystemTime>,
    /// `IP_TTL` or `IPV6_HOPLIMIT`.
    pub ttl: Option<u8>,
}

/// Which receive features the kernel accepted on a socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketFeatures {
    /// `SO_TIMESTAMPNS` is on: datagrams come with the kernel's receive time.
    pub kernel_timestamps: bool,
    /// `IP_RECVTTL` / `IPV6_RECVHOPLIMIT` is on: datagrams come with their TTL.
    pub ttl: bool,
}

/// Reads a native-endian unsigned integer of `n` octets (1, 2, 4 or 8) at `off`.
fn read_uint(b: &[u8], off: usize, n: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(n)?)?;
    Some(match n {
        1 => u64::from(s[0]),
        2 => u64::from(u16::from_ne_bytes(s.try_into().ok()?)),
        4 => u64::from(u32::from_ne_bytes(s.try_into().ok()?)),
        8 => u64::from_ne_bytes(s.try_into().ok()?),
        _ => return None,
    })
}

/// Reads a native-endian signed integer of 4 or 8 octets at `off`.
fn read_int(b: &[u8], off: usize, n: usize) -> Option<i64> {
    let s = b.get(off..off.checked_add(n)?)?;
    Some(match n {
        4 => i64::from(i32::from_ne_bytes(s.try_into().ok()?)),
        8 => i64::from_ne_bytes(s.try_into().ok()?),
        _ => return None,
    })
}

const fn align_up(n: usize, a: usize) -> usize {
    n.div_ceil(a) * a
}

/// Alignment of control messages (`CMSG_ALIGN`): that of `size_t` on Linux.
const CMSG_ALIGN: usize = std::mem::size_of::<usize>();
/// Offset of a control message's data from its header (`CMSG_LEN(0)`).
const CMSG_HDR: usize = align_up(std::mem::size_of::<libc::cmsghdr>(), CMSG_ALIGN);
const CMSG_LEVEL_OFF: usize = std::mem::offset_of!(libc::cmsghdr, cmsg_level);
const CMSG_TYPE_OFF: usize = std::mem::offset_of!(libc::cmsghdr, cmsg_type);

fn timespec_to_system_time(secs: i64, nanos: i64) -> Option<SystemTime> {
    if !(0..1_000_000_000).contains(&nanos) {
        return None;
    }
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos as u32))
}

/// Parses the control messages `recvmsg` wrote (the first `msg_controllen` octets of the
/// control buffer), keeping the receive timestamp and the TTL or hop limit. Every length is
/// checked against the buffer: a malformed buffer yields what could be read before the
/// problem, never a panic.
pub fn parse_cmsgs(control: &[u8]) -> CmsgInfo {
    let mut info = CmsgInfo::default();
    let mut off = 0usize;
    let int = std::mem::size_of::<libc::c_int>();
    while let Some(len) = read_uint(control, off, std::mem::size_of::<usize>()) {
        let Ok(len) = usize::try_from(len) else { break };
        // A header that claims less than itself, or more than the buffer holds, ends parsing.
        let Some(end) = off.checked_add(len) else {
            break;
        };
        if len < CMSG_HDR || end > control.len() {
            break;
        }
        let level = read_int(control, off + CMSG_LEVEL_OFF, int);
        let kind = read_int(control, off + CMSG_TYPE_OFF, int);
        let data = &control[off + CMSG_HDR..end];
        match (level, kind) {
            (Some(l), Some(t))
                if l == i64::from(libc::SOL_SOCKET) && t == i64::from(libc::SCM_TIMESTAMPNS) =>
            {
                // struct timespec: two 64-bit fields (64-bit ABIs, and the time64 variant on
                // 32-bit ones), or two 32-bit fields (old 32-bit ABI).
                let half = data.len() / 2;
                if half == 8 || half == 4 {
                    if let (Some(s), Some(ns)) =
                        (read_int(data, 0, half), read_int(data, half, half))
                    {
                        info.timestamp = timespec_to_system_time(s, ns);
                    }
                }
            }
            (Some(l), Some(t))
                if (l == i64::from(libc::IPPROTO_IP) && t == i64::from(libc::IP_TTL))
                    || (l == i64::from(libc::IPPROTO_IPV6)
                        && t == i64::from(libc::IPV6_HOPLIMIT)) =>
            {
                // An int; the kernel sends a whole int for both. Out of range = unknown.
                if let Some(v) = read_int(data, 0, int) {
                    info.ttl = u8::try_from(v).ok();
                }
            }
            _ => {}
        }
        off = match off.checked_add(align_up(len, CMSG_ALIGN)) {
            Some(o) => o,
            None => break,
        };
    }
    info
}

/// Sets an `int` socket option.
fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `fd` is an open socket owned by the caller for the duration of the call; the
    // option value points to a live `c_int` whose size is passed alongside.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Configures a UDP socket for OWAMP-Test: send TTL / hop limit 255, kernel receive
/// timestamps, TTL / hop limit delivery. Returns which receive features the kernel accepted
/// (a kernel that refuses one still gives a usable socket: the receiver then stamps packets
/// itself, or records an unknown TTL).
pub fn configure_test_socket(sock: &Socket, ipv6: bool) -> io::Result<SocketFeatures> {
    let fd = sock.as_raw_fd();
    if ipv6 {
        sock.set_unicast_hops_v6(SEND_TTL)?;
    } else {
        sock.set_ttl_v4(SEND_TTL)?;
    }
    let kernel_timestamps = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1).is_ok();
    let ttl = if ipv6 {
        sock.set_recv_hoplimit_v6(true).is_ok()
    } else {
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_RECVTTL, 1).is_ok()
    };
    Ok(SocketFeatures {
        kernel_timestamps,
        ttl,
    })
}

/// Sets the DSCP of the packets a socket sends (IP_TOS or IPV6_TCLASS; the ECN bits stay
/// zero). RFC 4656 3.5: the Type-P descriptor of the session.
pub fn set_dscp(sock: &Socket, ipv6: bool, dscp: u8) -> io::Result<()> {
    if dscp > 63 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a DSCP has six bits",
        ));
    }
    let tos = u32::from(dscp) << 2;
    if ipv6 {
        sock.set_tclass_v6(tos)
    } else {
        sock.set_tos_v4(tos)
    }
}

/// A relative `ppoll(2)` timeout: nanosecond resolution (`poll(2)` rounds to milliseconds,
/// which would wake a sender up to a millisecond after its packet was due), at most a day.
fn timespec(d: Duration) -> libc::timespec {
    let d = d.min(Duration::from_secs(86_400));
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// Waits until `fd` is readable or `timeout` has passed (`ppoll(2)`); returns whether it is
/// readable (or has an error pending, which the next read reports). Interrupted waits
/// return `false` early rather than looping, so callers re-check their own deadlines.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let ts = timespec(timeout);
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid, writable `pollfd` and the count passed is 1; `ts` is a live
    // timespec; a null signal mask leaves the thread's mask as it is.
    let r = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(r > 0)
}

/// Waits until one of `fds` is readable or `timeout` has passed (`ppoll(2)`), and sets
/// `ready[i]` for each readable one (`ready` is resized to `fds.len()`). Returns whether any
/// is. An interrupted wait returns `false` early, so callers re-check their own deadlines.
/// A loop that waits often keeps a [`Poller`] instead (no allocation a wait).
pub fn wait_any_readable(
    fds: &[RawFd],
    timeout: Duration,
    ready: &mut Vec<bool>,
) -> io::Result<bool> {
    Poller::default().wait(fds, timeout, ready)
}

/// [`wait_any_readable`] with the `pollfd` array kept from one wait to the next.
#[derive(Debug, Default)]
pub struct Poller {
    pfds: Vec<libc::pollfd>,
}

impl Poller {
    /// As [`wait_any_readable`].
    pub fn wait(
        &mut self,
        fds: &[RawFd],
        timeout: Duration,
        ready: &mut Vec<bool>,
    ) -> io::Result<bool> {
        let ts = timespec(timeout);
        self.pfds.clear();
        self.pfds.extend(fds.iter().map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }));
        let pfds = &mut self.pfds;
        ready.clear();
        ready.resize(fds.len(), false);
        // SAFETY: `pfds` is a live, writable array of `pfds.len()` `pollfd`s, and that is the
        // count passed; `ts` is a live timespec; a null signal mask leaves the thread's as it
        // is.
        let r = unsafe {
            libc::ppoll(
                pfds.as_mut_ptr(),
                pfds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(e);
        }
        for (flag, p) in ready.iter_mut().zip(pfds.iter()) {
            // Errors and hang-ups count as readable: the next read reports them.
            *flag = p.revents != 0;
        }
        Ok(r > 0)
    }
}

/// Control buffer with the alignment `cmsghdr` needs.
#[repr(C, align(8))]
struct CmsgBuf([u8; CMSG_BUF_LEN]);

/// One `recvmsg(2)` on `fd` with `flags` (for example `libc::MSG_DONTWAIT`): the datagram
/// into `buf`, its source address, and its kernel timestamp and TTL when the socket was set up
/// to deliver them ([`configure_test_socket`]).
pub fn recv_from_fd(fd: RawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<Received> {
    let mut control = CmsgBuf([0u8; CMSG_BUF_LEN]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control_len = 0usize;
    let mut msg_flags = 0;
    // SAFETY: `try_init` hands us a zeroed `sockaddr_storage` and its length to fill in. The
    // `msghdr` points to that storage, to one `iovec` describing `buf` (live and writable
    // for the whole call, with its true length), and to `control` (live, writable,
    // `CMSG_BUF_LEN` octets, aligned for `cmsghdr`). The kernel writes at most the lengths
    // given and reports how much it wrote in `msg_namelen` and `msg_controllen`, which are
    // copied out before the buffers go out of scope.
    let (n, addr) = unsafe {
        SockAddr::try_init(|storage, len| {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = storage.cast();
            msg.msg_namelen = *len;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = CMSG_BUF_LEN as _;
            let n = libc::recvmsg(fd, &mut msg, flags);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            *len = msg.msg_namelen;
            control_len = msg.msg_controllen as usize;
            msg_flags = msg.msg_flags;
            Ok(n as usize)
        })?
    };
    let source = addr.as_socket().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "datagram from a non-IP address")
    })?;
    let info = parse_cmsgs(
        control
            .0
            .get(..control_len.min(CMSG_BUF_LEN))
            .unwrap_or(&[]),
    );
    Ok(Received {
        len: n.min(buf.len()),
        truncated: msg_flags & libc::MSG_TRUNC != 0,
        source,
        kernel_time: info.timestamp,
        ttl: info.ttl,
    })
}

/// What a test socket's receive buffer became ([`TestSocket::set_recv_buffer`]).
///
/// Sizes are of the receive queue as the kernel accounts it: Linux doubles the value given to
/// `SO_RCVBUF` (for its bookkeeping) and charges each queued datagram at its buffer's true
/// size, about 1 KiB for a small one; `getsockopt(SO_RCVBUF)` reports the doubled value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvBufferSize {
    /// The queue wanted, in octets.
    pub wanted: usize,
    /// The queue the socket has now, in octets (`getsockopt(SO_RCVBUF)`).
    pub got: usize,
}

impl RecvBufferSize {
    /// Whether the socket has less than it wanted.
    pub fn is_short(&self) -> bool {
        self.got < self.wanted
    }

    /// The `net.core.rmem_max` (octets) that lets an unprivileged process have the queue
    /// wanted: half of it, since the kernel doubles the value set.
    pub fn rmem_max_needed(&self) -> usize {
        self.wanted.div_ceil(2)
    }
}

impl std::fmt::Display for RecvBufferSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "test socket receive buffer is {} octets, {} wanted for the session's rate; raise \
             the sysctl net.core.rmem_max to at least {} (or run with CAP_NET_ADMIN)",
            self.got,
            self.wanted,
            self.rmem_max_needed()
        )
    }
}

/// The most datagrams one [`recv_batch`] reads.
pub const MAX_BATCH: usize = 32;

/// Octets of datagram buffer a [`RecvBatch`] allocates at most (the batch is shorter for long
/// datagrams).
const BATCH_BYTES: usize = 256 * 1024;

/// Buffers for reading several datagrams with one `recvmmsg(2)` ([`recv_batch`]): for each, its
/// payload, source address and control messages, and what was read.
pub struct RecvBatch {
    len: usize,
    count: usize,
    data: Vec<u8>,
    control: Vec<CmsgBuf>,
    names: Vec<libc::sockaddr_storage>,
    read: Vec<Received>,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("len", &self.len)
            .field("count", &self.count)
            .field("read", &self.read.len())
            .finish_non_exhaustive()
    }
}

impl RecvBatch {
    /// Buffers for up to [`MAX_BATCH`] datagrams of `len` octets each (fewer when they are
    /// long, at least one); a longer datagram is truncated and says so.
    pub fn new(len: usize) -> Self {
        let mut b = Self {
            len: 0,
            count: 0,
            data: Vec::new(),
            control: Vec::new(),
            names: Vec::new(),
            read: Vec::with_capacity(MAX_BATCH),
        };
        b.set_datagram_len(len);
        b
    }

    /// Makes each buffer `len` octets long (at most [`MAX_DATAGRAM`]).
    pub fn set_datagram_len(&mut self, len: usize) {
        let len = len.clamp(1, MAX_DATAGRAM);
        if len == self.len {
            return;
        }
        self.len = len;
        self.count = (BATCH_BYTES / len).clamp(1, MAX_BATCH);
        self.data = vec![0u8; self.count * len];
        self.control
            .resize_with(self.count, || CmsgBuf([0u8; CMSG_BUF_LEN]));
        // SAFETY: sockaddr_storage is plain integers and bytes; all zeroes is a valid value.
        let zero: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        self.names.resize(self.count, zero);
        self.read.clear();
    }

    /// How many datagrams one call reads at most.
    pub fn capacity(&self) -> usize {
        self.count
    }

    /// How many datagrams the last [`recv_batch`] read.
    pub fn len(&self) -> usize {
        self.read.len()
    }

    /// Whether the last [`recv_batch`] read nothing.
    pub fn is_empty(&self) -> bool {
        self.read.is_empty()
    }

    /// The `i`-th datagram the last [`recv_batch`] read, with its payload.
    pub fn get(&self, i: usize) -> Option<(&Received, &[u8])> {
        let r = self.read.get(i)?;
        let start = i.checked_mul(self.len)?;
        let payload = self.data.get(start..start.checked_add(r.len)?)?;
        Some((r, payload))
    }
}

/// One `recvmmsg(2)` on `fd` with `flags` (for example `libc::MSG_DONTWAIT`): up to
/// [`RecvBatch::capacity`] datagrams into `batch`, each with its source address, kernel
/// timestamp and TTL as [`recv_from_fd`] gives them. Returns how many were read (also
/// [`RecvBatch::len`]); with `MSG_DONTWAIT`, fewer than the capacity means the queue is
/// empty, and none is an error of kind [`io::ErrorKind::WouldBlock`].
pub fn recv_batch(fd: RawFd, batch: &mut RecvBatch, flags: libc::c_int) -> io::Result<usize> {
    batch.read.clear();
    let count = batch.count;
    let len = batch.len;
    // SAFETY: iovec and mmsghdr are plain integers and pointers; all zeroes is valid (null
    // pointers, zero lengths), and every entry used is filled in below.
    let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let name_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let bufs = batch.data.chunks_exact_mut(len);
    let slots = iovs
        .iter_mut()
        .zip(msgs.iter_mut())
        .zip(bufs)
        .zip(batch.control.iter_mut())
        .zip(batch.names.iter_mut());
    for ((((iov, m), buf), control), name) in slots {
        iov.iov_base = buf.as_mut_ptr().cast();
        iov.iov_len = buf.len();
        m.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
        m.msg_hdr.msg_namelen = name_len;
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
        m.msg_hdr.msg_control = control.0.as_mut_ptr().cast();
        m.msg_hdr.msg_controllen = CMSG_BUF_LEN as _;
    }
    // SAFETY: the first `count` entries of `msgs` each point to one live `iovec` describing a
    // distinct, writable `len`-octet chunk of `batch.data`, to a live, writable
    // `sockaddr_storage` of `batch.names` with its true size, and to a live, writable,
    // `cmsghdr`-aligned control buffer of `batch.control` of `CMSG_BUF_LEN` octets. All of
    // them, and `iovs`, outlive the call, and nothing else touches them meanwhile. The kernel
    // writes at most the lengths given and reports the lengths it wrote in each header.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            count as libc::c_uint,
            flags,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (n as usize).min(count);
    for (i, (m, storage)) in msgs.iter().zip(&batch.names).enumerate().take(n) {
        // Not an IP address cannot happen on a UDP socket; the unspecified address (which no
        // session's peer has) keeps the entries in step with their buffers.
        let source = socket_addr_of(storage, m.msg_hdr.msg_namelen)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        // A `size_t` here, a `socklen_t` on some other C libraries.
        #[allow(clippy::unnecessary_cast)]
        let control_len = (m.msg_hdr.msg_controllen as usize).min(CMSG_BUF_LEN);
        let info = batch
            .control
            .get(i)
            .map(|c| parse_cmsgs(&c.0[..control_len]))
            .unwrap_or_default();
        batch.read.push(Received {
            len: (m.msg_len as usize).min(len),
            truncated: m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            source,
            kernel_time: info.timestamp,
            ttl: info.ttl,
        });
    }
    Ok(batch.read.len())
}

/// The IP address and port of a socket address the kernel wrote (`len` octets of it).
fn socket_addr_of(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, which is smaller than a
            // sockaddr_storage and needs no stricter alignment.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6, which is smaller than a
            // sockaddr_storage and needs no stricter alignment.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                std::net::Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Why [`TestSocket::bind_in_range`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Every port of the range is in use.
    #[error("every port of {low}-{high} is in use")]
    AllInUse {
        /// Lowest port of the range.
        low: u16,
        /// Highest port of the range.
        high: u16,
    },
    /// Binding failed for another reason.
    #[error("binding a test socket failed: {0}")]
    Io(#[from] io::Error),
}

/// Binds `sock` to the network interface `name` (`SO_BINDTODEVICE`): what it sends leaves by
/// that interface and it receives only what arrived there. The name is checked first, so
/// that an interface that does not exist is named as such (kind
/// [`io::ErrorKind::NotFound`]) rather than as the kernel's "No such device".
pub fn bind_device(sock: &Socket, name: &str) -> io::Result<()> {
    if !interface_exists(name) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no network interface named \"{}\"", name.escape_debug()),
        ));
    }
    sock.bind_device(Some(name.as_bytes()))
        .map_err(|e| io::Error::new(e.kind(), format!("SO_BINDTODEVICE {name}: {e}")))
}

/// Whether a network interface of this name exists (`if_nametoindex`).
pub fn interface_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: if_nametoindex reads the NUL-terminated string it is given and keeps nothing.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// A UDP socket for one OWAMP test session.
#[derive(Debug)]
pub struct TestSocket {
    sock: Socket,
    local: SocketAddr,
    features: SocketFeatures,
}

/// Whether an I/O error means "address in use".
pub fn is_addr_in_use(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::AddrInUse
}

impl TestSocket {
    /// Binds a test socket to `addr` (port 0: any free port) and configures it
    /// ([`configure_test_socket`]). An IPv6 socket is IPv6-only; an IPv4-mapped IPv6 address
    /// (what a dual-stack listener reports for IPv4 clients) gives an IPv4 socket. A port in
    /// use gives an error of kind [`io::ErrorKind::AddrInUse`] (see [`is_addr_in_use`]).
    pub fn bind(addr: SocketAddr) -> io::Result<TestSocket> {
        Self::bind_on(addr, None)
    }

    /// As [`bind`](Self::bind), on the network interface `device` when given
    /// (`SO_BINDTODEVICE`, set before the bind so that the port is taken on that interface):
    /// an interface that does not exist gives an error of kind [`io::ErrorKind::NotFound`].
    pub fn bind_on(addr: SocketAddr, device: Option<&str>) -> io::Result<TestSocket> {
        let addr = canonical(addr);
        let ipv6 = addr.is_ipv6();
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if ipv6 {
            sock.set_only_v6(true)?;
        }
        if let Some(d) = device {
            bind_device(&sock, d)?;
        }
        sock.bind(&SockAddr::from(addr))?;
        let features = configure_test_socket(&sock, ipv6)?;
        let local = sock
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket"))?;
        Ok(TestSocket {
            sock,
            local,
            features,
        })
    }

    /// Binds to the first free port of `range` on `ip`, trying `first` first, then upwards,
    /// wrapping past the top of the range.
    pub fn bind_in_range(
        ip: IpAddr,
        range: PortRange,
        first: u16,
    ) -> Result<TestSocket, BindError> {
        let mut port = if (range.low..=range.high).contains(&first) {
            first
        } else {
            range.low
        };
        for _ in 0..range.len() {
            match TestSocket::bind(SocketAddr::new(ip, port)) {
                Ok(s) => return Ok(s),
                Err(e) if is_addr_in_use(&e) => port = range.next(port),
                Err(e) => return Err(BindError::Io(e)),
            }
        }
        Err(BindError::AllInUse {
            low: range.low,
            high: range.high,
        })
    }

    /// The bound address and port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Which receive features the kernel accepted.
    pub fn features(&self) -> SocketFeatures {
        self.features
    }

    /// The underlying socket (for options not covered here).
    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    /// The underlying socket, for an adapter that drives it its own way.
    pub fn into_socket(self) -> Socket {
        self.sock
    }

    /// Makes the receive queue hold at least `wanted` octets of datagrams (as the kernel counts
    /// them: [`RecvBufferSize`]) if it can, and never shrinks it: the socket keeps its
    /// default when that is larger (`wanted` 0 changes nothing). Tries `SO_RCVBUFFORCE` first,
    /// which a privileged process (`CAP_NET_ADMIN`) may use beyond `net.core.rmem_max` and
    /// others get `EPERM` for, then `SO_RCVBUF`, which the kernel silently caps at
    /// `net.core.rmem_max`. Returns what the socket has now; see
    /// [`RecvBufferSize::is_short`].
    pub fn set_recv_buffer(&self, wanted: usize) -> io::Result<RecvBufferSize> {
        let before = self.sock.recv_buffer_size()?;
        if before >= wanted {
            return Ok(RecvBufferSize {
                wanted,
                got: before,
            });
        }
        // The kernel doubles the value set; at most what an int holds once doubled.
        let value = wanted.div_ceil(2).min(i32::MAX as usize / 2) as libc::c_int;
        let fd = self.sock.as_raw_fd();
        if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, value).is_err() {
            setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, value)?;
        }
        let got = self.sock.recv_buffer_size()?;
        Ok(RecvBufferSize { wanted, got })
    }

    /// Takes datagrams only from `peer` from now on (`connect(2)`; an IPv4-mapped address
    /// as IPv4): the kernel drops the others before they are queued, at no cost to the
    /// socket's receive buffer. Datagrams already queued stay.
    pub fn accept_only_from(&self, peer: SocketAddr) -> io::Result<()> {
        self.sock.connect(&SockAddr::from(canonical(peer)))
    }

    /// Sets the DSCP of packets sent ([`set_dscp`]).
    pub fn set_dscp(&self, dscp: u8) -> io::Result<()> {
        set_dscp(&self.sock, self.local.is_ipv6(), dscp)
    }

    /// Sends one datagram to `dest` (an IPv4-mapped IPv6 address is sent to as IPv4).
    pub fn send_to(&self, buf: &[u8], dest: SocketAddr) -> io::Result<usize> {
        self.sock.send_to(buf, &SockAddr::from(canonical(dest)))
    }

    /// Waits at most `timeout` for a datagram and reads it into `buf`; `Ok(None)` when none
    /// came in time. Never blocks longer than `timeout` (plus scheduling).
    pub fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<Received>> {
        let fd = self.sock.as_raw_fd();
        if !wait_readable(fd, timeout)? {
            return Ok(None);
        }
        match recv_from_fd(fd, buf, libc::MSG_DONTWAIT) {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl AsRawFd for TestSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// The same address with an IPv4-mapped IPv6 address turned into IPv4 (the core's rule).
pub use owamp_core::control::canonical;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let len = CMSG_HDR + data.len();
        let mut v = vec![0u8; align_up(len, CMSG_ALIGN)];
        v[..std::mem::size_of::<usize>()].copy_from_slice(&len.to_ne_bytes());
        v[CMSG_LEVEL_OFF..CMSG_LEVEL_OFF + 4].copy_from_slice(&level.to_ne_bytes());
        v[CMSG_TYPE_OFF..CMSG_TYPE_OFF + 4].copy_from_slice(&kind.to_ne_bytes());
        v[CMSG_HDR..CMSG_HDR + data.len()].copy_from_slice(data);
        v
    }

    #[test]
    fn parses_timestamp_and_ttl() {
        let mut ts = Vec::new();
        ts.extend_from_slice(&1_700_000_000i64.to_ne_bytes());
        ts.extend_from_slice(&123_456_789i64.to_ne_bytes());
        let mut b = cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &ts);
        b.extend(cmsg(libc::IPPROTO_IP, libc::IP_TTL, &64i32.to_ne_bytes()));
        let info = parse_cmsgs(&b);
        assert_eq!(
            info.timestamp,
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789))
        );
        assert_eq!(info.ttl, Some(64));
        let hop = cmsg(
            libc::IPPROTO_IPV6,
            libc::IPV6_HOPLIMIT,
            &255i32.to_ne_bytes(),
        );
        assert_eq!(parse_cmsgs(&hop).ttl, Some(255));
    }

    #[test]
    fn malformed_buffers_do_not_panic() {
        let mut ts = Vec::new();
        ts.extend_from_slice(&1i64.to_ne_bytes());
        ts.extend_from_slice(&2_000_000_000i64.to_ne_bytes()); // invalid nanoseconds
        let good = cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &ts);
        assert_eq!(parse_cmsgs(&good).timestamp, None);
        for cut in 0..good.len() {
            let _ = parse_cmsgs(&good[..cut]);
        }
        // Lengths that lie: too large, too small, huge.
        for len in [0usize, 1, CMSG_HDR - 1, 10_000, usize::MAX] {
            let mut b = good.clone();
            b[..std::mem::size_of::<usize>()].copy_from_slice(&len.to_ne_bytes());
            assert_eq!(parse_cmsgs(&b), CmsgInfo::default());
        }
        // Out-of-range TTL is unknown.
        let b = cmsg(libc::IPPROTO_IP, libc::IP_TTL, &300i32.to_ne_bytes());
        assert_eq!(parse_cmsgs(&b).ttl, None);
    }

    #[test]
    fn loopback_recv_reports_source_ttl_and_timestamp() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let a = TestSocket::bind(SocketAddr::new(lo, 0)).unwrap();
        let b = TestSocket::bind(SocketAddr::new(lo, 0)).unwrap();
        a.set_dscp(46).unwrap();
        let before = SystemTime::now();
        a.send_to(b"hello", b.local_addr()).unwrap();
        let mut buf = [0u8; 64];
        let r = b.recv(&mut buf, Duration::from_secs(2)).unwrap().unwrap();
        assert_eq!(&buf[..r.len], b"hello");
        assert_eq!(r.source, a.local_addr());
        assert!(!r.truncated);
        if b.features().ttl {
            assert_eq!(r.ttl, Some(255));
        }
        if b.features().kernel_timestamps {
            let t = r.kernel_time.unwrap();
            assert!(t >= before - Duration::from_millis(100));
            assert!(t <= SystemTime::now());
        }
        // Nothing more: a bounded wait returns None.
        let t0 = std::time::Instant::now();
        assert!(b
            .recv(&mut buf, Duration::from_millis(20))
            .unwrap()
            .is_none());
        assert!(t0.elapsed() < Duration::from_secs(1));
        // Truncation is reported.
        a.send_to(&[7u8; 100], b.local_addr()).unwrap();
        let r = b.recv(&mut buf, Duration::from_secs(2)).unwrap().unwrap();
        assert!(r.truncated);
        assert_eq!(r.len, 64);
    }

    /// `net.core.rmem_max`, if it can be read.
    fn rmem_max() -> Option<usize> {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    #[test]
    fn recv_buffer_gets_what_the_kernel_allows() {
        let lo = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let s = TestSocket::bind(lo).unwrap();
        let default = s.socket().recv_buffer_size().unwrap();
        // Nothing wanted, or less than the default: unchanged.
        assert_eq!(s.set_recv_buffer(0).unwrap().got, default);
        assert_eq!(s.set_recv_buffer(default / 2).unwrap().got, default);
        assert_eq!(s.socket().recv_buffer_size().unwrap(), default);
        // 4 MiB of queue: set as 2 MiB, which the kernel doubles. Unprivileged, capped at
        // rmem_max (doubled too); privileged, all of it.
        let wanted = 4 << 20;
        let r = s.set_recv_buffer(wanted).unwrap();
        assert_eq!(r.got, s.socket().recv_buffer_size().unwrap());
        if let Some(max) = rmem_max() {
            assert!(r.got >= wanted.min(max), "{r:?}, rmem_max {max}");
        }
        assert!(r.got >= default);
        assert_eq!(r.is_short(), r.got < wanted);
        assert_eq!(r.rmem_max_needed(), 2 << 20);
        let text = r.to_string();
        assert!(
            text.contains("net.core.rmem_max") && text.contains("2097152"),
            "{text}"
        );
    }

    /// Waits (bounded) until `s` has something to read.
    fn readable(s: &TestSocket) {
        assert!(wait_readable(s.as_raw_fd(), Duration::from_secs(2)).unwrap());
    }

    #[test]
    fn batch_reads_several_datagrams_with_source_ttl_and_timestamp() {
        for lo in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            let Ok(b) = TestSocket::bind(SocketAddr::new(lo, 0)) else {
                continue; // no IPv6 loopback here
            };
            let a1 = TestSocket::bind(SocketAddr::new(lo, 0)).unwrap();
            let a2 = TestSocket::bind(SocketAddr::new(lo, 0)).unwrap();
            let before = SystemTime::now();
            a1.send_to(b"one", b.local_addr()).unwrap();
            a2.send_to(b"two!", b.local_addr()).unwrap();
            a1.send_to(&[9u8; 40], b.local_addr()).unwrap();
            readable(&b);
            let mut batch = RecvBatch::new(16);
            let mut got = Vec::new();
            // Bounded: three datagrams, queued before the first read.
            for _ in 0..10 {
                match recv_batch(b.as_raw_fd(), &mut batch, libc::MSG_DONTWAIT) {
                    Ok(n) => {
                        assert_eq!(n, batch.len());
                        for i in 0..n {
                            let (r, p) = batch.get(i).unwrap();
                            got.push((*r, p.to_vec()));
                        }
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                        break;
                    }
                }
            }
            assert_eq!(got.len(), 3, "{lo}");
            assert_eq!(got[0].1, b"one");
            assert_eq!(got[0].0.source, a1.local_addr());
            assert_eq!(got[1].1, b"two!");
            assert_eq!(got[1].0.source, a2.local_addr());
            assert!(got[2].0.truncated && got[2].1 == [9u8; 16]);
            for (r, _) in &got {
                if b.features().ttl {
                    assert_eq!(r.ttl, Some(255));
                }
                if b.features().kernel_timestamps {
                    let t = r.kernel_time.unwrap();
                    assert!(t >= before - Duration::from_millis(100) && t <= SystemTime::now());
                }
            }
            assert!(batch.get(3).is_none());
        }
    }

    #[test]
    fn batch_is_bounded_by_its_capacity() {
        let lo = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let a = TestSocket::bind(lo).unwrap();
        let b = TestSocket::bind(lo).unwrap();
        // Long buffers: only a few per batch.
        let mut batch = RecvBatch::new(60_000);
        let cap = batch.capacity();
        assert!((1..MAX_BATCH).contains(&cap));
        for i in 0..cap + 2 {
            a.send_to(&[i as u8; 10], b.local_addr()).unwrap();
        }
        let mut got = Vec::new();
        // Bounded: each round waits at most 2 s for something to read.
        for _ in 0..cap + 2 {
            if got.len() == cap + 2 {
                break;
            }
            readable(&b);
            let n = recv_batch(b.as_raw_fd(), &mut batch, libc::MSG_DONTWAIT).unwrap();
            assert!((1..=cap).contains(&n), "{n} of {cap}");
            got.extend((0..n).map(|i| batch.get(i).unwrap().1.to_vec()));
        }
        let want: Vec<Vec<u8>> = (0..cap + 2).map(|i| vec![i as u8; 10]).collect();
        assert_eq!(got, want);
        let e = recv_batch(b.as_raw_fd(), &mut batch, libc::MSG_DONTWAIT).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(batch.is_empty());
        // Shorter buffers hold more.
        batch.set_datagram_len(100);
        assert_eq!(batch.capacity(), MAX_BATCH);
    }

    #[test]
    fn mapped_addresses_use_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:0".parse().unwrap();
        let a = TestSocket::bind(mapped).unwrap();
        assert!(a.local_addr().is_ipv4());
        let b = TestSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).unwrap();
        let to: SocketAddr = format!("[::ffff:127.0.0.1]:{}", b.local_addr().port())
            .parse()
            .unwrap();
        a.send_to(b"x", to).unwrap();
        let mut buf = [0u8; 4];
        let r = b.recv(&mut buf, Duration::from_secs(2)).unwrap().unwrap();
        assert_eq!(r.source, a.local_addr());
    }

    #[test]
    fn bind_in_range_skips_ports_in_use() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let a = TestSocket::bind(SocketAddr::new(lo, 0)).unwrap();
        let p = a.local_addr().port();
        let range = PortRange { low: p, high: p };
        match TestSocket::bind_in_range(lo, range, p) {
            Err(BindError::AllInUse { low, high }) => assert_eq!((low, high), (p, p)),
            other => panic!("expected AllInUse, got {other:?}"),
        }
        let e = TestSocket::bind(SocketAddr::new(lo, p)).unwrap_err();
        assert!(is_addr_in_use(&e));
    }

    #[test]
    fn test_sockets_bind_to_an_interface_that_exists() {
        let lo = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let e = TestSocket::bind_on(lo, Some("nosuchif0")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("nosuchif0"), "{e}");
        match TestSocket::bind_on(lo, Some("lo")) {
            Ok(a) => {
                // It still carries datagrams over loopback.
                let b = TestSocket::bind(lo).unwrap();
                a.send_to(b"x", b.local_addr()).unwrap();
                let got = b.recv(&mut [0u8; 8], Duration::from_secs(5)).unwrap();
                assert_eq!(got.map(|r| r.len), Some(1));
            }
            // Kernels before 5.7 let only CAP_NET_RAW bind to a device.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                eprintln!("skipped: SO_BINDTODEVICE not permitted: {e}")
            }
            Err(e) => panic!("{e}"),
        }
    }
}
