//! The peers of a powstream that measures to several: `--peer` values and the lines of a
//! `--peers` file, each `host[:port] [key=value ...]`, and the name of each peer's directory.
//!
//! A peer's keys override the command line's flags for that peer only:
//!
//! | key | flag | value |
//! |---|---|---|
//! | `mode` | `-A` | letters A, E, O |
//! | `user` | `-u` | the identity for authenticated and encrypted modes |
//! | `interval` | `-i` | mean seconds between packets |
//! | `count` | `-c` | packets per session |
//! | `dscp` | `-D` of owping | a DSCP number or name (CS0-CS7, AF11-AF43, EF, ...) |
//! | `direction` | `-t` | `to` (this host sends) or `from` (the peer sends) |
//! | `timeout` | `-L` | loss timeout, seconds |
//!
//! Values are checked at start-up as the flags are; a bad one is refused with the file and line.

use std::path::Path;

use crate::client::{self, HostSpec};

/// One peer: where it is and what of the command line it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerLine {
    /// Where it was written, for messages: `FILE:LINE` or `--peer`.
    pub origin: String,
    /// The host as written (`host`, `host:port`, `[v6addr]:port`).
    pub host: String,
    /// Its `key=value` settings, in the order written.
    pub settings: Vec<(PeerKey, String)>,
}

/// A key of a peer line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKey {
    /// `mode` (`-A`).
    Mode,
    /// `user` (`-u`).
    User,
    /// `interval` (`-i`).
    Interval,
    /// `count` (`-c`).
    Count,
    /// `dscp` (owping's `-D`).
    Dscp,
    /// `direction`: `to` is `-t`.
    Direction,
    /// `timeout` (`-L`).
    Timeout,
}

/// The keys, as written.
pub const KEYS: &[(&str, PeerKey)] = &[
    ("mode", PeerKey::Mode),
    ("user", PeerKey::User),
    ("interval", PeerKey::Interval),
    ("count", PeerKey::Count),
    ("dscp", PeerKey::Dscp),
    ("direction", PeerKey::Direction),
    ("timeout", PeerKey::Timeout),
];

/// Parses one peer line (without its comment). `Ok(None)` for a blank one.
pub fn parse_line(origin: &str, line: &str) -> Result<Option<PeerLine>, String> {
    let line = line.split('#').next().unwrap_or("");
    let mut words = line.split_whitespace();
    let Some(host) = words.next() else {
        return Ok(None);
    };
    if host.contains('=') {
        return Err(format!(
            "{origin}: the line must start with the peer's host, not \"{host}\""
        ));
    }
    client::parse_host(host, client::CONTROL_PORT).map_err(|e| format!("{origin}: {e}"))?;
    let mut settings = Vec::new();
    for w in words {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| format!("{origin}: \"{w}\" is not key=value"))?;
        let key = KEYS
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, key)| *key)
            .ok_or_else(|| {
                let names: Vec<&str> = KEYS.iter().map(|(n, _)| *n).collect();
                format!(
                    "{origin}: unknown key \"{k}\" (known: {})",
                    names.join(", ")
                )
            })?;
        if v.is_empty() {
            return Err(format!("{origin}: no value for {k}"));
        }
        if key == PeerKey::Direction && v != "to" && v != "from" {
            return Err(format!(
                "{origin}: direction must be \"to\" or \"from\", not \"{v}\""
            ));
        }
        settings.push((key, v.to_owned()));
    }
    Ok(Some(PeerLine {
        origin: origin.to_owned(),
        host: host.to_owned(),
        settings,
    }))
}

/// The most peers a file may hold: each runs a thread and up to
/// [`MAX_IN_FLIGHT`](super::MAX_IN_FLIGHT) control connections.
pub const MAX_PEERS: usize = 1000;

/// The largest peers file read, in octets.
const MAX_FILE_LEN: u64 = 1 << 20;

/// Reads a `--peers` file: one peer a line, `#` comments and blank lines allowed.
pub fn read_file(path: &Path) -> Result<Vec<PeerLine>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    f.take(MAX_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > MAX_FILE_LEN {
        return Err(format!(
            "{}: larger than {MAX_FILE_LEN} octets",
            path.display()
        ));
    }
    let mut peers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let origin = format!("{}:{}", path.display(), i + 1);
        if let Some(p) = parse_line(&origin, line)? {
            peers.push(p);
        }
        if peers.len() > MAX_PEERS {
            return Err(format!("{origin}: more than {MAX_PEERS} peers"));
        }
    }
    Ok(peers)
}

/// The directory name of a peer: its host with every character other than a letter, digit,
/// `.` or `-` replaced by `_`, then `_` and its port (`127.0.0.1_861`, `__1_8610` for
/// `[::1]:8610`, `host.example.net_861`).
pub fn dir_name(h: &HostSpec) -> String {
    let node: String = h
        .node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{node}_{}", h.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_and_keys() {
        assert_eq!(parse_line("f:1", "   # nothing").unwrap(), None);
        assert_eq!(parse_line("f:1", "").unwrap(), None);
        let p = parse_line("f:2", "[::1]:8610 count=20 direction=to # comment")
            .unwrap()
            .unwrap();
        assert_eq!(p.host, "[::1]:8610");
        assert_eq!(
            p.settings,
            vec![
                (PeerKey::Count, "20".to_owned()),
                (PeerKey::Direction, "to".to_owned())
            ]
        );
        for (bad, why) in [
            ("h colour=red", "f:3: unknown key \"colour\""),
            ("h count", "f:3: \"count\" is not key=value"),
            ("h count=", "f:3: no value for count"),
            ("h direction=up", "f:3: direction must be"),
            ("count=3", "f:3: the line must start"),
            ("h:0", "f:3: invalid port"),
        ] {
            let e = parse_line("f:3", bad).unwrap_err();
            assert!(e.starts_with(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_file_names_the_line_of_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers");
        std::fs::write(&path, "# peers\n\na.example\nb.example:9 mode=X user=me\n").unwrap();
        let peers = read_file(&path).unwrap();
        assert_eq!(peers.len(), 2);
        assert!(peers[0].origin.ends_with("peers:3"));
        assert_eq!(peers[1].settings[0], (PeerKey::Mode, "X".to_owned()));
        std::fs::write(&path, "a.example\nb.example speed=3\n").unwrap();
        let e = read_file(&path).unwrap_err();
        assert!(e.contains("peers:2: unknown key"), "{e}");
    }

    #[test]
    fn directory_names_are_filesystem_safe() {
        let name = |s| dir_name(&client::parse_host(s, 861).unwrap());
        assert_eq!(name("127.0.0.1"), "127.0.0.1_861");
        assert_eq!(name("[::1]:8610"), "__1_8610");
        assert_eq!(name("host.example.net:9"), "host.example.net_9");
        assert_eq!(name("fe80::1%eth0"), "fe80__1_eth0_861");
        assert!(!name("../x/y").contains('/'));
    }
}
