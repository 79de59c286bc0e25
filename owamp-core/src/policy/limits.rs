//! owampd-like limit classes: each identity (or, without one, the client's network, or else the
//! default class) has a class with bandwidth and disk limits shared by all of its running
//! sessions, and a flag allowing open mode. Classes may have a parent: a session must then fit
//! the limits of its class and of every ancestor, and counts against all of them.

use core::net::IpAddr;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Peer, ServerPolicy, TestAdmission};
use crate::crypto::Passphrase;
use crate::proto::Role;
use crate::wire::{AcceptCode, Mode, Modes, SessionId};

/// The limits of one class (a `limit` line of owamp-server.limits). Zero means unlimited, as
/// in the reference.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassLimits {
    /// Bits per second all the class's sessions may use together.
    pub bandwidth_bps: u64,
    /// Octets of session files all the class's receive sessions may use together.
    pub disk_octets: u64,
    /// Whether clients of this class may use open mode.
    pub allow_open_mode: bool,
}

impl Default for ClassLimits {
    fn default() -> Self {
        Self {
            bandwidth_bps: 0,
            disk_octets: 0,
            allow_open_mode: true,
        }
    }
}

#[derive(Default)]
struct Inner {
    modes: Modes,
    classes: HashMap<String, ClassLimits>,
    default_class: String,
    users: HashMap<Vec<u8>, String>,
    /// `assign net` lines: network address (host bits zero), prefix length, class.
    nets: Vec<(IpAddr, u8, String)>,
    parents: HashMap<String, String>,
    passphrases: HashMap<Vec<u8>, Passphrase>,
    used: HashMap<String, (f64, u64)>,
    /// What each admitted session reserved, and on which classes (its class and ancestors).
    reserved: HashMap<(SessionId, bool), (Vec<String>, f64, u64)>,
    disk_fudge: f64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The passphrases are secrets: only the identities that have one are shown.
        let mut ids: Vec<String> = self
            .passphrases
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        ids.sort();
        f.debug_struct("Limits")
            .field("modes", &self.modes)
            .field("classes", &self.classes)
            .field("default_class", &self.default_class)
            .field("users", &self.users)
            .field("nets", &self.nets)
            .field("parents", &self.parents)
            .field(
                "passphrases",
                &format_args!("<{} redacted: {ids:?}>", ids.len()),
            )
            .field("used", &self.used)
            .field("reserved", &self.reserved)
            .field("disk_fudge", &self.disk_fudge)
            .finish()
    }
}

/// A [`ServerPolicy`] with limit classes. Clones share their state (resources in use), so
/// one value can be cloned into every connection of a server.
#[derive(Debug, Clone)]
pub struct Limits {
    inner: Arc<Mutex<Inner>>,
}

impl Limits {
    /// Offers `modes`; clients without an identity get `default_class`, whose limits are
    /// `default_limits`.
    pub fn new(modes: Modes, default_class: &str, default_limits: ClassLimits) -> Self {
        let mut inner = Inner {
            modes,
            default_class: default_class.to_owned(),
            disk_fudge: 1.0,
            ..Inner::default()
        };
        inner
            .classes
            .insert(default_class.to_owned(), default_limits);
        Self {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the maps inconsistent: every update is one insert.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Defines (or replaces) a class.
    pub fn add_class(&self, name: &str, limits: ClassLimits) {
        self.lock().classes.insert(name.to_owned(), limits);
    }

    /// Assigns an identity (KeyID) to a class.
    pub fn assign_user(&self, key_id: &[u8], class: &str) {
        self.lock().users.insert(key_id.to_vec(), class.to_owned());
    }

    /// Makes `parent` the parent of `class`: sessions of `class` must also fit the limits of
    /// `parent` (and its ancestors) and count against them.
    pub fn set_parent(&self, class: &str, parent: &str) {
        self.lock()
            .parents
            .insert(class.to_owned(), parent.to_owned());
    }

    /// Assigns clients whose address is in `addr/prefix` to a class (owampd's `assign net`).
    /// Without an identity, a client gets the class of the longest matching prefix, else the
    /// default class. Host bits of `addr` are ignored; an IPv4-mapped IPv6 client address
    /// matches IPv4 networks.
    pub fn assign_net(&self, addr: IpAddr, prefix: u8, class: &str) {
        let net = mask(addr, prefix);
        let mut inner = self.lock();
        inner.nets.retain(|(a, p, _)| !(*a == net && *p == prefix));
        inner.nets.push((net, prefix, class.to_owned()));
    }

    /// The class of a client at `addr` with identity `key_id` (`None` in open mode).
    pub fn class_for(&self, addr: IpAddr, key_id: Option<&[u8]>) -> String {
        self.lock().class_of(addr, key_id)
    }

    /// Sets the passphrase of an identity (a line of the pfs file). A passphrase it replaces
    /// is wiped.
    pub fn set_passphrase(&self, key_id: &[u8], passphrase: impl Into<Passphrase>) {
        self.lock()
            .passphrases
            .insert(key_id.to_vec(), passphrase.into());
    }

    /// Multiplies the disk estimate of each session (owampd's `diskfudge`).
    pub fn set_disk_fudge(&self, fudge: f64) {
        self.lock().disk_fudge = fudge;
    }

    /// Bandwidth (bits per second) and disk (octets) a class holds: what its running
    /// sessions reserved, and the session files it keeps ([`add_stored`](Self::add_stored)).
    pub fn in_use(&self, class: &str) -> (f64, u64) {
        self.lock().used.get(class).copied().unwrap_or((0.0, 0))
    }

    /// Whether `class` is defined.
    pub fn has_class(&self, class: &str) -> bool {
        self.lock().classes.contains_key(class)
    }

    /// The class of clients no `assign` line matches.
    pub fn default_class(&self) -> String {
        self.lock().default_class.clone()
    }

    /// `class` and its ancestors, nearest first, as its sessions count against them (a
    /// parent cycle is cut where it repeats).
    pub fn chain(&self, class: &str) -> Vec<String> {
        self.lock().chain(class)
    }

    /// A session file of `class` of `octets` is kept: it counts against the `disk` limits of
    /// the class and its ancestors until [`remove_stored`](Self::remove_stored), as owampd
    /// counts the files it holds (so a limit holds across restarts once the files found at
    /// start-up are added).
    pub fn add_stored(&self, class: &str, octets: u64) {
        let mut inner = self.lock();
        for c in inner.chain(class) {
            let u = inner.used.entry(c).or_insert((0.0, 0));
            u.1 = u.1.saturating_add(octets);
        }
    }

    /// A session file counted by [`add_stored`](Self::add_stored) is gone.
    pub fn remove_stored(&self, class: &str, octets: u64) {
        let mut inner = self.lock();
        for c in inner.chain(class) {
            if let Some(u) = inner.used.get_mut(&c) {
                u.1 = u.1.saturating_sub(octets);
            }
        }
    }
}

/// `addr` with every bit past the first `prefix` cleared.
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    fn keep(bits: u128, width: u32, prefix: u8) -> u128 {
        let p = u32::from(prefix).min(width);
        if p == 0 {
            0
        } else {
            bits & (u128::MAX << (width - p)) & (u128::MAX >> (128 - width))
        }
    }
    match addr {
        IpAddr::V4(a) => {
            let b = keep(u128::from(u32::from(a)), 32, prefix);
            IpAddr::V4(core::net::Ipv4Addr::from(b as u32))
        }
        IpAddr::V6(a) => IpAddr::V6(core::net::Ipv6Addr::from(keep(u128::from(a), 128, prefix))),
    }
}

impl Inner {
    fn class_of(&self, addr: IpAddr, key_id: Option<&[u8]>) -> String {
        if let Some(c) = key_id.and_then(|k| self.users.get(k)) {
            return c.clone();
        }
        self.class_of_addr(addr)
    }

    /// The class of the longest `assign net` prefix holding `addr`, else the default class.
    fn class_of_addr(&self, addr: IpAddr) -> String {
        let addr = match addr {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        self.nets
            .iter()
            .filter(|(net, prefix, _)| {
                net.is_ipv4() == addr.is_ipv4() && mask(addr, *prefix) == *net
            })
            .max_by_key(|(_, prefix, _)| *prefix)
            .map_or_else(|| self.default_class.clone(), |(_, _, c)| c.clone())
    }

    /// `class` and its ancestors, nearest first (a parent cycle is cut where it repeats).
    fn chain(&self, class: &str) -> Vec<String> {
        let mut chain = vec![class.to_owned()];
        while let Some(p) = chain.last().and_then(|c| self.parents.get(c)) {
            if chain.contains(p) {
                break;
            }
            chain.push(p.clone());
        }
        chain
    }

    fn limits(&self, class: &str) -> ClassLimits {
        self.classes.get(class).cloned().unwrap_or_default()
    }
}

impl ServerPolicy for Limits {
    fn modes(&mut self, addr: IpAddr) -> Modes {
        let inner = self.lock();
        let class = inner.class_of_addr(addr);
        if inner.limits(&class).allow_open_mode {
            inner.modes
        } else {
            inner.modes.without(Mode::Open)
        }
    }

    fn passphrase(&mut self, key_id: &[u8]) -> Option<Passphrase> {
        self.lock().passphrases.get(key_id).cloned()
    }

    fn allow_control(&mut self, peer: Peer<'_>) -> Result<(), AcceptCode> {
        let inner = self.lock();
        let class = inner.class_of(peer.addr, peer.key_id);
        if peer.mode == Mode::Open && !inner.limits(&class).allow_open_mode {
            return Err(AcceptCode::Failure);
        }
        Ok(())
    }

    fn admit_test(&mut self, test: &TestAdmission<'_>) -> Result<(), AcceptCode> {
        let mut inner = self.lock();
        let class = inner.class_of(test.peer.addr, test.peer.key_id);
        let chain = inner.chain(&class);
        let bw = test.bandwidth_bps();
        let disk = if test.role == Role::Receiver {
            (test.disk_octets() as f64 * inner.disk_fudge) as u64
        } else {
            0
        };
        // The session must fit its class and every ancestor (zero means unlimited).
        for c in &chain {
            let limits = inner.limits(c);
            let (used_bw, used_disk) = inner.used.get(c).copied().unwrap_or((0.0, 0));
            if limits.bandwidth_bps != 0 && used_bw + bw > limits.bandwidth_bps as f64 {
                return Err(AcceptCode::Failure);
            }
            if limits.disk_octets != 0 && used_disk.saturating_add(disk) > limits.disk_octets {
                return Err(AcceptCode::Failure);
            }
        }
        for c in &chain {
            let u = inner.used.entry(c.clone()).or_insert((0.0, 0));
            u.0 += bw;
            u.1 = u.1.saturating_add(disk);
        }
        inner
            .reserved
            .insert((test.sid, test.role == Role::Sender), (chain, bw, disk));
        Ok(())
    }

    fn release_test(&mut self, sid: &SessionId, role: Role) {
        let mut inner = self.lock();
        if let Some((chain, bw, disk)) = inner.reserved.remove(&(*sid, role == Role::Sender)) {
            for class in chain {
                if let Some(u) = inner.used.get_mut(&class) {
                    u.0 = (u.0 - bw).max(0.0);
                    u.1 = u.1.saturating_sub(disk);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{Interval, OwampTime};
    use crate::wire::{RequestSession, Slot, SlotKind, TypeP};
    use core::net::Ipv4Addr;

    fn request(mean: u64, packets: u32) -> RequestSession {
        RequestSession {
            conf_sender: false,
            conf_receiver: true,
            slots: vec![Slot {
                kind: SlotKind::Exponential,
                mean: Interval::from_raw(mean),
            }],
            num_packets: packets,
            sender_port: 1,
            receiver_port: 0,
            sender_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            receiver_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sid: SessionId::default(),
            padding_length: 0,
            start_time: OwampTime::default(),
            timeout: Interval::from_secs(2),
            type_p: TypeP::BEST_EFFORT,
            hmac: [0; 16],
            slots_hmac: [0; 16],
        }
    }

    #[test]
    fn bandwidth_counts_42_octets_per_open_packet() {
        let mut p = Limits::new(
            Modes::ALL,
            "regular",
            ClassLimits {
                bandwidth_bps: 20_000_000,
                ..ClassLimits::default()
            },
        );
        let peer = Peer {
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            mode: Mode::Open,
            key_id: None,
        };
        // 10 packets per second: 10 * 42 * 8 = 3360 bit/s.
        let r = request(0x1999_9999, 100);
        let t = TestAdmission {
            peer,
            sid: SessionId([1; 16]),
            role: Role::Receiver,
            request: &r,
        };
        assert_eq!(t.packet_octets(), 42);
        assert!((t.bandwidth_bps() - 3360.0).abs() < 1.0);
        assert!(p.admit_test(&t).is_ok());
        // 100000 packets per second: 33.6 Mbit/s, over the limit.
        let r2 = request(42950, 100);
        let t2 = TestAdmission {
            sid: SessionId([2; 16]),
            request: &r2,
            ..t
        };
        assert_eq!(p.admit_test(&t2), Err(AcceptCode::Failure));
        p.release_test(&SessionId([1; 16]), Role::Receiver);
        assert_eq!(p.in_use("regular").1, 0);
    }

    #[test]
    fn nets_pick_the_longest_prefix_and_parents_share_limits() {
        let mut p = Limits::new(Modes::ALL, "open", ClassLimits::default());
        p.add_class(
            "root",
            ClassLimits {
                bandwidth_bps: 5000,
                ..ClassLimits::default()
            },
        );
        p.add_class("lab", ClassLimits::default());
        p.add_class(
            "jail",
            ClassLimits {
                allow_open_mode: false,
                ..ClassLimits::default()
            },
        );
        p.set_parent("open", "root");
        p.set_parent("lab", "root");
        p.set_parent("jail", "root");
        p.assign_net("10.0.0.0".parse().unwrap(), 8, "lab");
        p.assign_net("10.1.2.0".parse().unwrap(), 24, "jail");
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert_eq!(p.class_for(ip("10.9.9.9"), None), "lab");
        assert_eq!(p.class_for(ip("10.1.2.3"), None), "jail");
        assert_eq!(p.class_for(ip("::ffff:10.1.2.3"), None), "jail");
        assert_eq!(p.class_for(ip("192.0.2.1"), None), "open");
        assert_eq!(p.modes(ip("10.1.2.3")), Modes::from_raw(6));
        assert_eq!(p.modes(ip("10.9.9.9")), Modes::ALL);

        // 10 packets per second of 42 octets: 3360 bit/s each; root allows 5000 in total,
        // shared by its children.
        let r = request(0x1999_9999, 100);
        let lab = TestAdmission {
            peer: Peer {
                addr: ip("10.9.9.9"),
                mode: Mode::Open,
                key_id: None,
            },
            sid: SessionId([1; 16]),
            role: Role::Receiver,
            request: &r,
        };
        assert!(p.admit_test(&lab).is_ok());
        let other = TestAdmission {
            peer: Peer {
                addr: ip("192.0.2.1"),
                ..lab.peer
            },
            sid: SessionId([2; 16]),
            ..lab
        };
        assert_eq!(p.admit_test(&other), Err(AcceptCode::Failure));
        assert!(p.in_use("root").0 > 3000.0);
        p.release_test(&SessionId([1; 16]), Role::Receiver);
        assert_eq!(p.in_use("root").0, 0.0);
        assert!(p.admit_test(&other).is_ok());
    }

    #[test]
    fn debug_does_not_print_passphrases() {
        let p = Limits::new(Modes::ALL, "regular", ClassLimits::default());
        p.set_passphrase(b"alice", b"correct horse battery staple");
        let s = format!("{p:?}");
        assert!(s.contains("alice"), "{s}");
        assert!(!s.contains("correct horse"), "{s}");
        // Nor as the octets a derived Debug would print.
        assert!(!s.contains("99, 111, 114, 114, 101, 99, 116"), "{s}");
    }

    #[test]
    fn open_mode_can_be_withheld() {
        let mut p = Limits::new(
            Modes::ALL,
            "regular",
            ClassLimits {
                allow_open_mode: false,
                ..ClassLimits::default()
            },
        );
        assert_eq!(p.modes(IpAddr::V4(Ipv4Addr::LOCALHOST)), Modes::from_raw(6));
    }

    /// Stored files count against the disk limits of their class and its ancestors until
    /// they are removed: a session that would not fit beside them is refused.
    #[test]
    fn stored_files_count_against_disk_limits_until_removed() {
        let mut p = Limits::new(Modes::ALL, "child", ClassLimits::default());
        p.add_class(
            "root",
            ClassLimits {
                disk_octets: 10_000,
                ..ClassLimits::default()
            },
        );
        p.set_parent("child", "root");
        assert_eq!(p.chain("child"), ["child", "root"]);
        assert!(p.has_class("root") && !p.has_class("nope"));
        assert_eq!(p.default_class(), "child");
        let r = request(0x1999_9999, 100);
        let t = TestAdmission {
            peer: Peer {
                addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                mode: Mode::Open,
                key_id: None,
            },
            sid: SessionId([1; 16]),
            role: Role::Receiver,
            request: &r,
        };
        let need = t.disk_octets();
        p.add_stored("child", 10_000 - need + 1);
        assert_eq!(p.in_use("root").1, 10_000 - need + 1);
        assert_eq!(p.admit_test(&t), Err(AcceptCode::Failure));
        p.remove_stored("child", 1);
        assert!(p.admit_test(&t).is_ok());
        p.release_test(&t.sid, Role::Receiver);
        p.remove_stored("child", 10_000);
        assert_eq!((p.in_use("child").1, p.in_use("root").1), (0, 0));
    }
}
