//! Connection setup messages: Server-Greeting, Set-Up-Response and Server-Start (RFC 4656 3.1).

use zerocopy::network_endian::{U32, U64};
use zerocopy::IntoBytes;

use super::error::{check_mbz, WireError};
use super::{read_layout, AcceptCode, Mode, Modes};
use crate::time::OwampTime;

/// Server-Greeting: the first message of a control connection, server to client, 64 octets
/// (RFC 4656 3.1).
///
/// The first 12 octets are unused: ignored when parsing and sent as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerGreeting {
    /// The modes the server offers. Empty means it refuses the client.
    pub modes: Modes,
    /// Random challenge for the client to encrypt in its Token.
    pub challenge: [u8; 16],
    /// Salt for the PBKDF2 key derivation.
    pub salt: [u8; 16],
    /// PBKDF2 iteration count.
    pub count: u32,
}

impl ServerGreeting {
    /// Octets of the message.
    pub const LEN: usize = 64;
    const NAME: &'static str = "Server-Greeting";

    /// Decodes and validates the message (the trailing 12 MBZ octets must be zero).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let r: super::raw::ServerGreeting = read_layout(Self::NAME, bytes)?;
        // RFC 4656 3.1: the first 12 octets are unused (not MBZ); the last 12 are MBZ.
        check_mbz(Self::NAME, &r.mbz, 52)?;
        Ok(Self {
            modes: Modes::from_raw(r.modes.get()),
            challenge: r.challenge,
            salt: r.salt,
            count: r.count.get(),
        })
    }

    /// Appends the 64-octet encoding to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let r = super::raw::ServerGreeting {
            unused: [0; 12],
            modes: U32::new(self.modes.raw()),
            challenge: self.challenge,
            salt: self.salt,
            count: U32::new(self.count),
            mbz: [0; 12],
        };
        out.extend_from_slice(r.as_bytes());
    }
}

/// Set-Up-Response: the client's choice of mode and its credentials, 164 octets (RFC 4656 3.1).
///
/// In open mode the reference implementation sends every octet after Mode as zero; the fields
/// are carried as received in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SetUpResponse {
    /// The chosen mode.
    pub mode: Mode,
    /// KeyID: the user name, padded with NULs to 80 octets.
    pub key_id: [u8; 80],
    /// Token: AES-CBC encryption of challenge, AES session key and HMAC session key.
    pub token: [u8; 64],
    /// Client-IV: the IV of the client-to-server CBC chain.
    pub client_iv: [u8; 16],
}

impl SetUpResponse {
    /// Octets of the message.
    pub const LEN: usize = 164;
    /// Octets of the KeyID field.
    pub const KEY_ID_LEN: usize = 80;
    const NAME: &'static str = "Set-Up-Response";

    /// An open-mode response: every field after Mode zero.
    pub fn open() -> Self {
        Self {
            mode: Mode::Open,
            key_id: [0; 80],
            token: [0; 64],
            client_iv: [0; 16],
        }
    }

    /// The KeyID field for a user name: its octets followed by NUL padding. `None` if the name
    /// is longer than 80 octets or contains a NUL.
    pub fn key_id_from_name(name: &[u8]) -> Option<[u8; 80]> {
        if name.len() > Self::KEY_ID_LEN || name.contains(&0) {
            return None;
        }
        let mut k = [0u8; 80];
        k[..name.len()].copy_from_slice(name);
        Some(k)
    }

    /// The user name in the KeyID field: the octets before the first NUL.
    pub fn key_id_name(&self) -> &[u8] {
        let end = self
            .key_id
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.key_id.len());
        &self.key_id[..end]
    }

    /// Decodes and validates the message: Mode must be exactly one of 1, 2 or 4.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let r: super::raw::SetUpResponse = read_layout(Self::NAME, bytes)?;
        let raw_mode = r.mode.get();
        let mode =
            Mode::from_bits(raw_mode).ok_or(WireError::invalid(Self::NAME, "mode", 0, raw_mode))?;
        Ok(Self {
            mode,
            key_id: r.key_id,
            token: r.token,
            client_iv: r.client_iv,
        })
    }

    /// Appends the 164-octet encoding to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let r = super::raw::SetUpResponse {
            mode: U32::new(self.mode.bits()),
            key_id: self.key_id,
            token: self.token,
            client_iv: self.client_iv,
        };
        out.extend_from_slice(r.as_bytes());
    }
}

/// Server-Start: the server's verdict on Set-Up-Response, 48 octets (RFC 4656 3.1).
///
/// In authenticated and encrypted modes the last 16 octets (Start-Time and MBZ) are the first
/// encrypted block of the server-to-client stream; parse the plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerStart {
    /// Whether the server accepts the client.
    pub accept: AcceptCode,
    /// Server-IV: the IV of the server-to-client CBC chain (zero in open mode).
    pub server_iv: [u8; 16],
    /// When the server started (the reference sends its process start time).
    pub start_time: OwampTime,
}

impl ServerStart {
    /// Octets of the message.
    pub const LEN: usize = 48;
    /// Octets sent in the clear before the first encrypted block.
    pub const CLEAR_LEN: usize = 32;
    const NAME: &'static str = "Server-Start";

    /// Decodes and validates the message (MBZ octets, Accept code).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let r: super::raw::ServerStart = read_layout(Self::NAME, bytes)?;
        check_mbz(Self::NAME, &r.mbz1, 0)?;
        check_mbz(Self::NAME, &r.mbz2, 40)?;
        Ok(Self {
            accept: AcceptCode::parse_field(Self::NAME, 15, r.accept)?,
            server_iv: r.server_iv,
            start_time: OwampTime::from_raw(r.start_time.get()),
        })
    }

    /// Appends the 48-octet encoding to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let r = super::raw::ServerStart {
            mbz1: [0; 15],
            accept: self.accept.to_u8(),
            server_iv: self.server_iv,
            start_time: U64::new(self.start_time.raw()),
            mbz2: [0; 8],
        };
        out.extend_from_slice(r.as_bytes());
    }
}

super::impl_message!(ServerGreeting, SetUpResponse, ServerStart);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_ignores_unused_but_checks_mbz() {
        let mut b = [0u8; 64];
        b[0] = 0xaa;
        b[15] = 7;
        let g = ServerGreeting::parse(&b).unwrap();
        assert_eq!(g.modes, Modes::ALL);
        assert_eq!(&g.to_bytes()[..12], &[0u8; 12]);
        b[63] = 1;
        assert_eq!(
            ServerGreeting::parse(&b),
            Err(WireError::Mbz {
                message: "Server-Greeting",
                offset: 63
            })
        );
    }

    #[test]
    fn key_id_helpers() {
        let k = SetUpResponse::key_id_from_name(b"alice").unwrap();
        let mut m = SetUpResponse::open();
        m.key_id = k;
        assert_eq!(m.key_id_name(), b"alice");
        assert_eq!(SetUpResponse::key_id_from_name(&[b'a'; 81]), None);
        assert_eq!(SetUpResponse::key_id_from_name(b"a\0b"), None);
        assert!(SetUpResponse::key_id_from_name(&[b'a'; 80]).is_some());
    }

    #[test]
    fn set_up_response_modes() {
        let mut b = [0u8; 164];
        for (v, ok) in [
            (0u8, false),
            (1, true),
            (2, true),
            (3, false),
            (4, true),
            (8, false),
        ] {
            b[3] = v;
            assert_eq!(SetUpResponse::parse(&b).is_ok(), ok, "mode {v}");
        }
        b[3] = 0;
        b[0] = 1;
        assert!(SetUpResponse::parse(&b).is_err());
    }

    #[test]
    fn server_start_checks() {
        let mut b = [0u8; 48];
        b[15] = 6;
        assert!(matches!(
            ServerStart::parse(&b),
            Err(WireError::Invalid {
                field: "accept code",
                offset: 15,
                ..
            })
        ));
        b[15] = 5;
        assert_eq!(
            ServerStart::parse(&b).unwrap().accept,
            AcceptCode::TemporaryResourceLimit
        );
        b[44] = 1;
        assert!(matches!(
            ServerStart::parse(&b),
            Err(WireError::Mbz { offset: 44, .. })
        ));
        b[44] = 0;
        b[3] = 1;
        assert!(matches!(
            ServerStart::parse(&b),
            Err(WireError::Mbz { offset: 3, .. })
        ));
        assert!(matches!(
            ServerStart::parse(&[0u8; 47]),
            Err(WireError::Truncated {
                needed: 48,
                got: 47,
                ..
            })
        ));
        assert!(matches!(
            ServerStart::parse(&[0u8; 49]),
            Err(WireError::Length {
                expected: 48,
                got: 49,
                ..
            })
        ));
    }
}
