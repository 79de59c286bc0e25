//! A UDP test socket registered with Tokio.
//!
//! The socket is set up by owamp-os ([`TestSocket::bind`]: TTL 255, kernel receive
//! timestamps, TTL delivery) and then driven by readiness: when the reactor reports it
//! readable, one non-blocking `recvmsg` ([`recv_from_fd`]) reads the datagram with its
//! kernel timestamp and TTL.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use owamp_os::net::{canonical, recv_from_fd};
pub use owamp_os::net::{Received, SocketFeatures, TestSocket};
use socket2::{SockAddr, Socket};
use tokio::io::unix::AsyncFd;

/// A test socket whose reads and writes wait on the Tokio reactor.
#[derive(Debug)]
pub struct AsyncTestSocket {
    fd: AsyncFd<Socket>,
    local: SocketAddr,
    features: SocketFeatures,
}

impl AsyncTestSocket {
    /// Registers a configured test socket with the current runtime's reactor (must be
    /// called from within a Tokio runtime).
    pub fn new(socket: TestSocket) -> io::Result<Self> {
        let local = socket.local_addr();
        let features = socket.features();
        let sock = socket.into_socket();
        sock.set_nonblocking(true)?;
        Ok(Self {
            fd: AsyncFd::new(sock)?,
            local,
            features,
        })
    }

    /// Binds and configures a test socket ([`TestSocket::bind`]) and registers it.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        Self::new(TestSocket::bind(addr)?)
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
        self.fd.get_ref()
    }

    /// Waits for a datagram and reads it into `buf`, with its source, kernel timestamp and
    /// TTL. Cancel-safe: dropping the future loses no datagram.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|fd| recv_from_fd(fd.as_raw_fd(), buf, libc::MSG_DONTWAIT)) {
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(r) => return r,
                // Readiness was stale: it is cleared, wait again.
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends one datagram at once if the kernel takes it without waiting (the usual case
    /// for UDP); otherwise fails with [`io::ErrorKind::WouldBlock`]. An IPv4-mapped IPv6
    /// destination is sent to as IPv4.
    pub fn try_send_to(&self, buf: &[u8], dest: SocketAddr) -> io::Result<usize> {
        self.fd
            .get_ref()
            .send_to(buf, &SockAddr::from(canonical(dest)))
    }

    /// Sends one datagram, waiting for room in the socket's buffer if needed.
    pub async fn send_to(&self, buf: &[u8], dest: SocketAddr) -> io::Result<usize> {
        match self.try_send_to(buf, dest) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            r => return r,
        }
        let dest = SockAddr::from(canonical(dest));
        loop {
            let mut ready = self.fd.writable().await?;
            match ready.try_io(|fd| fd.get_ref().send_to(buf, &dest)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::{Duration, SystemTime};

    #[tokio::test]
    async fn loopback_datagram_carries_ttl_and_timestamp() {
        let lo = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let a = AsyncTestSocket::bind(lo).unwrap();
        let b = AsyncTestSocket::bind(lo).unwrap();
        let before = SystemTime::now();
        a.send_to(b"hello", b.local_addr()).await.unwrap();
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_secs(2), b.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..r.len], b"hello");
        assert_eq!(r.source, a.local_addr());
        if b.features().ttl {
            assert_eq!(r.ttl, Some(255));
        }
        if b.features().kernel_timestamps {
            let t = r.kernel_time.unwrap();
            assert!(t >= before - Duration::from_millis(100) && t <= SystemTime::now());
        }
        // Nothing else is queued: a bounded wait times out.
        let none = tokio::time::timeout(Duration::from_millis(20), b.recv(&mut buf)).await;
        assert!(none.is_err());
    }
}
