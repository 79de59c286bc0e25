//! Limits per peer address, against a client that would take every slot of a server: what
//! each address holds is counted, and a new claim past the limit is refused.
//!
//! Addresses are counted by [`addr_key`]: an IPv4 address by itself (an IPv4-mapped IPv6
//! address as the IPv4 address it maps), an IPv6 address by its /64, the prefix one host or
//! one site's subnet usually gets, so that a host cannot multiply itself by picking new
//! addresses inside its own /64.

use core::net::{IpAddr, Ipv6Addr};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::proto::Role;
use crate::wire::SessionId;

/// The key a per-address limit counts `addr` under: the IPv4 address, or the /64 of an IPv6
/// address (the host bits cleared).
pub fn addr_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(a) & !u128::from(u64::MAX))),
        },
    }
}

/// A claim refused: the address already holds `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    /// The address as counted ([`addr_key`]).
    pub key: IpAddr,
    /// The limit.
    pub max: usize,
}

impl core::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let prefix = if self.key.is_ipv6() { "/64" } else { "" };
        write!(f, "{}{prefix} already holds {}", self.key, self.max)
    }
}

/// What each address holds, against one limit. Clones share their counts, so one value
/// cloned into every connection counts for the whole server.
#[derive(Debug, Clone)]
pub struct PerAddr {
    max: usize,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerAddr {
    /// At most `max` per address; 0 means no limit.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            held: Arc::default(),
        }
    }

    /// The limit (0: none).
    pub fn max(&self) -> usize {
        self.max
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Every update is one insert or remove: a panic elsewhere leaves the map consistent.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one more for `addr`, unless it holds the limit already.
    pub fn acquire(&self, addr: IpAddr) -> Result<(), OverLimit> {
        self.acquire_up_to(addr, self.max)
    }

    /// Counts one more for `addr`, unless it holds `max` already (0: no limit), whatever
    /// limit this value was made with.
    pub fn acquire_up_to(&self, addr: IpAddr, max: usize) -> Result<(), OverLimit> {
        let key = addr_key(addr);
        let mut held = self.lock();
        let n = held.entry(key).or_insert(0);
        if max != 0 && *n >= max {
            if *n == 0 {
                held.remove(&key);
            }
            return Err(OverLimit { key, max });
        }
        *n += 1;
        Ok(())
    }

    /// Counts one less for `addr` (one [`acquire`](Self::acquire) ended).
    pub fn release(&self, addr: IpAddr) {
        let key = addr_key(addr);
        let mut held = self.lock();
        if let Some(n) = held.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&key);
            }
        }
    }

    /// What `addr` holds now.
    pub fn held(&self, addr: IpAddr) -> usize {
        self.lock().get(&addr_key(addr)).copied().unwrap_or(0)
    }
}

/// Test sessions per peer address, for a [`ServerPolicy`](super::ServerPolicy) to consult
/// in `admit_test` (before the test port is bound) and `release_test`. Clones share.
#[derive(Debug, Clone)]
pub struct SessionsPerAddr {
    count: PerAddr,
    owners: Arc<Mutex<HashMap<(SessionId, bool), IpAddr>>>,
}

impl SessionsPerAddr {
    /// At most `max` sessions set up or running per address at once; 0 means no limit.
    pub fn new(max: usize) -> Self {
        Self {
            count: PerAddr::new(max),
            owners: Arc::default(),
        }
    }

    fn owners(&self) -> MutexGuard<'_, HashMap<(SessionId, bool), IpAddr>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits session `sid` (in which the server has `role`) for a client at `addr`.
    pub fn admit(&self, addr: IpAddr, sid: SessionId, role: Role) -> Result<(), OverLimit> {
        let slot = (sid, role == Role::Sender);
        if self.owners().contains_key(&slot) {
            return Ok(());
        }
        self.count.acquire(addr)?;
        self.owners().insert(slot, addr);
        Ok(())
    }

    /// The session is over (or was not set up after all).
    pub fn release(&self, sid: &SessionId, role: Role) {
        if let Some(addr) = self.owners().remove(&(*sid, role == Role::Sender)) {
            self.count.release(addr);
        }
    }

    /// Sessions `addr` holds now.
    pub fn held(&self, addr: IpAddr) -> usize {
        self.count.held(addr)
    }

    /// Sessions set up or running now, from every address (owampd's active sessions).
    pub fn total(&self) -> usize {
        self.owners().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn keys_are_ipv4_addresses_and_ipv6_slash_64s() {
        assert_eq!(addr_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(addr_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(addr_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(addr_key(ip("::1")), ip("::"));
    }

    #[test]
    fn an_address_gets_its_limit_and_no_more() {
        let p = PerAddr::new(2);
        let other = p.clone();
        assert!(p.acquire(ip("192.0.2.1")).is_ok());
        assert!(other.acquire(ip("::ffff:192.0.2.1")).is_ok());
        let e = p.acquire(ip("192.0.2.1")).unwrap_err();
        assert_eq!(e.to_string(), "192.0.2.1 already holds 2");
        // Another address is not affected; the same /64 is.
        assert!(p.acquire(ip("192.0.2.2")).is_ok());
        assert!(p.acquire(ip("2001:db8::1")).is_ok());
        assert!(p.acquire(ip("2001:db8::2")).is_ok());
        assert!(p.acquire(ip("2001:db8::3")).is_err());
        p.release(ip("192.0.2.1"));
        assert_eq!(p.held(ip("192.0.2.1")), 1);
        assert!(p.acquire(ip("192.0.2.1")).is_ok());
        // No limit.
        let free = PerAddr::new(0);
        for _ in 0..1000 {
            assert!(free.acquire(ip("192.0.2.1")).is_ok());
        }
    }

    #[test]
    fn sessions_are_released_by_sid_and_role() {
        let s = SessionsPerAddr::new(1);
        let a = ip("192.0.2.1");
        assert!(s.admit(a, SessionId([1; 16]), Role::Receiver).is_ok());
        // The same session again (a retry) counts once.
        assert!(s.admit(a, SessionId([1; 16]), Role::Receiver).is_ok());
        assert!(s.admit(a, SessionId([2; 16]), Role::Sender).is_err());
        s.release(&SessionId([1; 16]), Role::Sender);
        assert_eq!(s.held(a), 1);
        s.release(&SessionId([1; 16]), Role::Receiver);
        assert_eq!(s.held(a), 0);
        assert!(s.admit(a, SessionId([2; 16]), Role::Sender).is_ok());
    }

    #[test]
    fn the_total_counts_every_address_and_each_session_once() {
        let s = SessionsPerAddr::new(0);
        let shared = s.clone();
        assert!(s
            .admit(ip("192.0.2.1"), SessionId([1; 16]), Role::Receiver)
            .is_ok());
        assert!(s
            .admit(ip("192.0.2.1"), SessionId([1; 16]), Role::Receiver)
            .is_ok());
        assert!(shared
            .admit(ip("2001:db8::1"), SessionId([1; 16]), Role::Sender)
            .is_ok());
        assert_eq!(s.total(), 2);
        shared.release(&SessionId([1; 16]), Role::Receiver);
        assert_eq!(s.total(), 1);
        s.release(&SessionId([9; 16]), Role::Sender);
        assert_eq!(shared.total(), 1);
    }
}
