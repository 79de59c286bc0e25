//! The operating system's random number generator, as the `rand_core` generator the control
//! state machines take (challenges, salts, IVs, session keys, SIDs).

use std::num::NonZeroU32;

use rand_core::{CryptoRng, Error, RngCore};

/// Random octets from the operating system (`getrandom(2)`), read on every call.
///
/// The control state machines draw a few dozen octets per connection, so the cost of a system
/// call per draw does not matter, and nothing random is kept in user memory between draws.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRng;

impl RngCore for OsRng {
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
        // Without randomness no key, challenge or SID can be made safely: failing loudly is
        // the only correct answer (the kernel's generator does not fail once initialised).
        if let Err(e) = getrandom::fill(dest) {
            panic!("the operating system's random number generator failed: {e}");
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Error> {
        getrandom::fill(dest).map_err(|e| {
            let code = e
                .raw_os_error()
                .and_then(|c| NonZeroU32::new(c.unsigned_abs()))
                .or(NonZeroU32::new(Error::CUSTOM_START))
                .unwrap_or(NonZeroU32::MIN);
            Error::from(code)
        })
    }
}

impl CryptoRng for OsRng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ() {
        let mut r = OsRng;
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        r.fill_bytes(&mut a);
        r.try_fill_bytes(&mut b).unwrap();
        assert_ne!(a, b);
        assert_ne!(r.next_u64(), r.next_u64());
    }
}
