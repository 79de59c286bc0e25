//! Live conformance testing: [`probe`] plays the client against a running OWAMP server and
//! checks it step by step ([`twamp`] does the same against a TWAMP server); [`serve`] is a
//! strict OWAMP server that reports what a client does wrong.
//! Both record every exchange as a trace in the format of [`crate::trace`], which
//! `conformance run` reads.
//!
//! Both stand on [`driver::Driver`], a blocking host for one core connection
//! (`owamp_core::connection`) with the sockets and clock of `owamp_os`, that records what it
//! sends and receives and can alter what it sends. The checks are protocol-specific (OWAMP,
//! RFC 4656). The core's connection layer speaks OWAMP only, so the TWAMP probe
//! ([`twamp::twamp_checks`]) has its own small blocking host around `control::Client` with
//! `Protocol::Twamp`, and reuses the recorder and the report.

pub mod driver;
pub mod probe;
pub mod report;
pub mod serve;
pub mod twamp;

use std::path::Path;

/// The passphrase of `identity` in a perfSONAR `.pfs` file (`identity hex-passphrase` per
/// line; `#` starts a comment).
pub fn read_pfs(path: &Path, identity: &str) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    pfs_lookup(&text, identity)
        .ok_or_else(|| format!("{}: no identity {identity:?}", path.display()))
}

/// Every `(identity, passphrase)` of a `.pfs` file's text; lines that do not read are left
/// out.
pub fn pfs_entries(text: &str) -> Vec<(String, Vec<u8>)> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let id = w.next()?;
            let pass = hex::decode(w.next()?).ok()?;
            Some((id.to_string(), pass))
        })
        .collect()
}

fn pfs_lookup(text: &str, identity: &str) -> Option<Vec<u8>> {
    pfs_entries(text)
        .into_iter()
        .find(|(id, _)| id == identity)
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pfs_lines() {
        let text = "# comment\nalice\t636f7272656374\n\nbob 6f  # trailing\nbad zz\n";
        assert_eq!(pfs_lookup(text, "alice"), Some(b"correct".to_vec()));
        assert_eq!(pfs_lookup(text, "bob"), Some(b"o".to_vec()));
        assert_eq!(pfs_lookup(text, "bad"), None);
        assert_eq!(pfs_entries(text).len(), 2);
    }
}
