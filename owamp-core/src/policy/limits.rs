//! owampd-like limit classes: each identity (or, without one, the default class) has a class
//! with bandwidth and disk limits shared by all of its running sessions, and a flag allowing
//! open mode.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Peer, ServerPolicy, TestAdmission};
use crate::control::{AcceptCode, Mode, Modes, Role};
use crate::wire::SessionId;

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

#[derive(Debug, Default)]
struct Inner {
    modes: Modes,
    classes: HashMap<String, ClassLimits>,
    default_class: String,
    users: HashMap<Vec<u8>, String>,
    passphrases: HashMap<Vec<u8>, Vec<u8>>,
    used: HashMap<String, (f64, u64)>,
    reserved: HashMap<(SessionId, bool), (String, f64, u64)>,
    disk_fudge: f64,
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

    /// Sets the passphrase of an identity (a line of the pfs file).
    pub fn set_passphrase(&self, key_id: &[u8], passphrase: &[u8]) {
        self.lock()
            .passphrases
            .insert(key_id.to_vec(), passphrase.to_vec());
    }

    /// Multiplies the disk estimate of each session (owampd's `diskfudge`).
    pub fn set_disk_fudge(&self, fudge: f64) {
        self.lock().disk_fudge = fudge;
    }

    /// Bandwidth (bits per second) and disk (octets) reserved by a class's running sessions.
    pub fn in_use(&self, class: &str) -> (f64, u64) {
        self.lock().used.get(class).copied().unwrap_or((0.0, 0))
    }
}

impl Inner {
    fn class_of(&self, key_id: Option<&[u8]>) -> String {
        key_id
            .and_then(|k| self.users.get(k))
            .cloned()
            .unwrap_or_else(|| self.default_class.clone())
    }

    fn limits(&self, class: &str) -> ClassLimits {
        self.classes.get(class).cloned().unwrap_or_default()
    }
}

impl ServerPolicy for Limits {
    fn modes(&mut self, _addr: IpAddr) -> Modes {
        let inner = self.lock();
        let class = inner.default_class.clone();
        if inner.limits(&class).allow_open_mode {
            inner.modes
        } else {
            inner.modes.without(Mode::Open)
        }
    }

    fn passphrase(&mut self, key_id: &[u8]) -> Option<Vec<u8>> {
        self.lock().passphrases.get(key_id).cloned()
    }

    fn allow_control(&mut self, peer: Peer<'_>) -> Result<(), AcceptCode> {
        let inner = self.lock();
        let class = inner.class_of(peer.key_id);
        if peer.mode == Mode::Open && !inner.limits(&class).allow_open_mode {
            return Err(AcceptCode::Failure);
        }
        Ok(())
    }

    fn admit_test(&mut self, test: &TestAdmission<'_>) -> Result<(), AcceptCode> {
        let mut inner = self.lock();
        let class = inner.class_of(test.peer.key_id);
        let limits = inner.limits(&class);
        let bw = test.bandwidth_bps();
        let disk = if test.role == Role::Receiver {
            (test.disk_octets() as f64 * inner.disk_fudge) as u64
        } else {
            0
        };
        let (used_bw, used_disk) = inner.used.get(&class).copied().unwrap_or((0.0, 0));
        if limits.bandwidth_bps != 0 && used_bw + bw > limits.bandwidth_bps as f64 {
            return Err(AcceptCode::Failure);
        }
        if limits.disk_octets != 0 && used_disk.saturating_add(disk) > limits.disk_octets {
            return Err(AcceptCode::Failure);
        }
        inner.used.insert(
            class.clone(),
            (used_bw + bw, used_disk.saturating_add(disk)),
        );
        inner
            .reserved
            .insert((test.sid, test.role == Role::Sender), (class, bw, disk));
        Ok(())
    }

    fn release_test(&mut self, sid: &SessionId, role: Role) {
        let mut inner = self.lock();
        if let Some((class, bw, disk)) = inner.reserved.remove(&(*sid, role == Role::Sender)) {
            if let Some(u) = inner.used.get_mut(&class) {
                u.0 = (u.0 - bw).max(0.0);
                u.1 = u.1.saturating_sub(disk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::RequestSession;
    use crate::time::OwampTime;
    use crate::wire::{Slot, SlotKind, TypeP};
    use std::net::Ipv4Addr;

    fn request(mean: u64, packets: u32) -> RequestSession {
        RequestSession {
            conf_sender: false,
            conf_receiver: true,
            slots: vec![Slot {
                kind: SlotKind::Exponential,
                mean,
            }],
            num_packets: packets,
            sender_port: 1,
            receiver_port: 0,
            sender_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            receiver_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sid: SessionId::default(),
            padding_length: 0,
            start_time: OwampTime::default(),
            timeout: 2 << 32,
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
}
