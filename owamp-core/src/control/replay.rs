//! Helpers to replay recorded control traffic through [`Server`](super::Server) and
//! [`Client`](super::Client) (see the [module documentation](super) for the order of the
//! random values each side draws).

use std::collections::VecDeque;

use rand_core::{CryptoRng, RngCore};

use super::PortRange;

/// An RNG that returns octets given in advance, in order, then zeros.
///
/// For replaying recorded exchanges only: it is marked [`CryptoRng`] so that it can stand in
/// for the real generator, but its output is whatever it was given.
#[derive(Debug, Clone, Default)]
pub struct ScriptedRng {
    queue: VecDeque<u8>,
    underrun: usize,
}

impl ScriptedRng {
    /// An RNG that will return `chunks`, concatenated.
    pub fn new<I, B>(chunks: I) -> Self
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let mut s = Self::default();
        for c in chunks {
            s.push(c.as_ref());
        }
        s
    }

    /// Appends octets to return.
    pub fn push(&mut self, bytes: &[u8]) {
        self.queue.extend(bytes.iter().copied());
    }

    /// Octets given and not yet returned.
    pub fn remaining(&self) -> usize {
        self.queue.len()
    }

    /// Octets asked for after the script ran out (returned as zeros).
    pub fn underrun(&self) -> usize {
        self.underrun
    }
}

impl RngCore for ScriptedRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest.iter_mut() {
            *d = match self.queue.pop_front() {
                Some(v) => v,
                None => {
                    self.underrun += 1;
                    0
                }
            };
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for ScriptedRng {}

/// The 4 random octets that make a server with test ports `range` pick `port` (see
/// [`PortRange::pick`]). `None` if the port is outside the range.
pub fn port_draw(range: PortRange, port: u16) -> Option<[u8; 4]> {
    if port < range.low || port > range.high {
        return None;
    }
    let off = u64::from(port - range.low);
    let len = u64::from(range.len());
    // The smallest draw d with floor(d * len / 2^32) == off.
    let d = (off << 32).div_ceil(len);
    let d = u32::try_from(d).ok()?;
    Some(d.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_draw_inverts_pick() {
        let r = PortRange {
            low: 8760,
            high: 8960,
        };
        for p in [8760, 8811, 8939, 8960] {
            let d = port_draw(r, p).unwrap();
            assert_eq!(r.pick(u32::from_be_bytes(d)), p);
        }
        assert_eq!(port_draw(r, 9000), None);
    }

    #[test]
    fn scripted_rng_returns_script_then_zeros() {
        let mut rng = ScriptedRng::new([[1u8, 2], [3, 4]]);
        let mut b = [0u8; 3];
        rng.fill_bytes(&mut b);
        assert_eq!(b, [1, 2, 3]);
        let mut c = [9u8; 3];
        rng.fill_bytes(&mut c);
        assert_eq!(c, [4, 0, 0]);
        assert_eq!(rng.underrun(), 2);
    }
}
