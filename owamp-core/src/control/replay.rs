//! Helpers to replay recorded control traffic through [`Server`](super::Server) and
//! [`Client`](super::Client) (see the [module documentation](super) for the order of the
//! random values each side draws).

use std::collections::VecDeque;

use rand_core::{CryptoRng, RngCore};

use super::PortRange;
use crate::crypto::{decrypt_token, derive_key, SessionKeys};
use crate::time::OwampTime;
use crate::wire::{
    framing, AcceptSession, FetchSession, RequestSession, ServerGreeting, ServerStart, SessionId,
    SetUpResponse, WireError,
};

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

/// A Request-Session of a recorded exchange and the Accept-Session that answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The request as the client sent it (plaintext).
    pub request: RequestSession,
    /// The server's answer.
    pub accept: AcceptSession,
    /// Offset in the client-to-server stream just past the request: the input that completes
    /// it must carry [`request_time`](Self::request_time) as `now` on the side that makes the
    /// SID.
    pub end: usize,
}

impl RecordedRequest {
    /// Whether the server receives in this session (it then made the SID).
    pub fn server_receives(&self) -> bool {
        self.request.conf_receiver
    }

    /// The SID of the session: from Accept-Session when the server made it, else from the
    /// request.
    pub fn sid(&self) -> SessionId {
        if self.server_receives() {
            self.accept.sid
        } else {
            self.request.sid
        }
    }

    /// The time in the SID (RFC 4656 3.5): the `now` at which its maker handled the request.
    pub fn request_time(&self) -> OwampTime {
        sid_time(&self.sid())
    }
}

/// The timestamp in a SID (octets 4..12).
pub fn sid_time(sid: &SessionId) -> OwampTime {
    let mut t = [0u8; 8];
    t.copy_from_slice(&sid.0[4..12]);
    OwampTime::from_raw(u64::from_be_bytes(t))
}

/// What a recorded control exchange shows, read from its plaintext streams (the `.trace` of
/// an open-mode exchange, or the decrypted `.plain.trace`): everything needed to replay it.
///
/// The requests are expected before Start-Sessions, answered in order, as owping does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Server-Greeting.
    pub greeting: ServerGreeting,
    /// Set-Up-Response.
    pub setup: SetUpResponse,
    /// Server-Start.
    pub server_start: ServerStart,
    /// The Request-Sessions and their answers, in order.
    pub requests: Vec<RecordedRequest>,
    /// The Fetch-Sessions, in order.
    pub fetches: Vec<FetchSession>,
}

impl Recorded {
    /// Reads the plaintext client-to-server (`cs`) and server-to-client (`sc`) streams.
    pub fn from_plaintext(cs: &[u8], sc: &[u8]) -> Result<Self, WireError> {
        let cut = |b: &[u8], at: usize, n: usize| -> Result<Vec<u8>, WireError> {
            b.get(at..at + n)
                .map(<[u8]>::to_vec)
                .ok_or(WireError::Truncated {
                    message: "recorded stream",
                    needed: at + n,
                    got: b.len(),
                })
        };
        let greeting = ServerGreeting::parse(&cut(sc, 0, ServerGreeting::LEN)?)?;
        let setup = SetUpResponse::parse(&cut(cs, 0, SetUpResponse::LEN)?)?;
        let server_start = ServerStart::parse(&cut(sc, ServerGreeting::LEN, ServerStart::LEN)?)?;
        let mut requests = Vec::new();
        let mut fetches = Vec::new();
        let mut at = SetUpResponse::LEN;
        let mut sc_at = ServerGreeting::LEN + ServerStart::LEN;
        while at < cs.len() {
            let len = framing::client_request(&cs[at..])?.need();
            let msg = cut(cs, at, len)?;
            match msg.first().copied() {
                Some(RequestSession::COMMAND) => {
                    let request = RequestSession::parse(&msg)?;
                    let accept = AcceptSession::parse(&cut(sc, sc_at, AcceptSession::LEN)?)?;
                    sc_at += AcceptSession::LEN;
                    requests.push(RecordedRequest {
                        request,
                        accept,
                        end: at + len,
                    });
                }
                Some(FetchSession::COMMAND) => fetches.push(FetchSession::parse(&msg)?),
                _ => {}
            }
            at += len;
        }
        Ok(Self {
            greeting,
            setup,
            server_start,
            requests,
            fetches,
        })
    }

    /// The server's RNG for a replay: Challenge, Salt, Server-IV (when the set-up was
    /// accepted in authenticated or encrypted mode), then per request the SID's random octets
    /// (when the server receives) and the port draw (with a test port range).
    pub fn server_rng(&self, ports: Option<PortRange>) -> ScriptedRng {
        let mut rng = ScriptedRng::new([self.greeting.challenge, self.greeting.salt]);
        if self.setup.mode.is_secure() && self.server_start.accept.is_ok() {
            rng.push(&self.server_start.server_iv);
        }
        for r in &self.requests {
            if r.server_receives() {
                rng.push(&r.accept.sid.0[12..]);
            }
            if let Some(range) = ports {
                if let Some(d) = port_draw(range, r.accept.port) {
                    rng.push(&d);
                }
            }
        }
        rng
    }

    /// The session keys the client chose, recovered from the Token with its passphrase
    /// (`None` in open mode or if the Count is unusable).
    pub fn client_keys(&self, passphrase: &[u8]) -> Option<SessionKeys> {
        if !self.setup.mode.is_secure() {
            return None;
        }
        let key = derive_key(passphrase, &self.greeting.salt, self.greeting.count).ok()?;
        Some(decrypt_token(&key, &self.setup.token).1)
    }

    /// The client's RNG for a replay: in authenticated and encrypted modes the AES and HMAC
    /// session keys and the Client-IV, then per request in which the client receives the SID's
    /// random octets.
    pub fn client_rng(&self, keys: Option<&SessionKeys>) -> ScriptedRng {
        let mut rng = ScriptedRng::default();
        if let Some(k) = keys {
            rng.push(&k.aes);
            rng.push(&k.hmac);
            rng.push(&self.setup.client_iv);
        }
        for r in &self.requests {
            if !r.server_receives() {
                rng.push(&r.request.sid.0[12..]);
            }
        }
        rng
    }
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
