//! Pass-phrase files (`owamp-server.pfs`, owping's `-k` file), as pfstore writes them: one
//! `identity<whitespace>hex` line per identity, where `hex` is the pass-phrase's octets in
//! hexadecimal. Lines whose first non-blank character is `#` are comments. There are no
//! continuation lines and nothing may follow the hex.
//!
//! The pass-phrases are secrets: [`read`] keeps the file's text in memory that is wiped once
//! parsed, entries wipe their pass-phrase when dropped and print `<redacted>` in `Debug`, and
//! [`read`] reports a file that others than its owner may read or write ([`LooseMode`]).

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use owamp_core::crypto::Passphrase;
use zeroize::{Zeroize, Zeroizing};

use super::{ConfigError, ConfigErrorKind, FileError};

/// The largest pass-phrase file [`read`] accepts (a million identities fit).
pub const MAX_FILE_LEN: usize = 64 << 20;

/// The longest identity (RFC 4656 3.1: the KeyID field is 80 octets).
pub const MAX_IDENTITY_LEN: usize = 80;

/// One identity and its pass-phrase.
#[derive(Clone, PartialEq, Eq)]
pub struct PfsEntry {
    /// The line it was read from (1-based).
    pub line: usize,
    /// The identity (KeyID).
    pub identity: String,
    /// The pass-phrase octets (wiped when dropped).
    pub passphrase: Passphrase,
}

impl std::fmt::Debug for PfsEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PfsEntry")
            .field("line", &self.line)
            .field("identity", &self.identity)
            .field("passphrase", &"<redacted>")
            .finish()
    }
}

/// The entries of a pass-phrase file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PfsFile {
    /// The entries.
    pub entries: Vec<PfsEntry>,
}

impl PfsFile {
    /// The pass-phrase of `identity` (the first entry for it, as owping reads it).
    pub fn get(&self, identity: &str) -> Option<&Passphrase> {
        self.entries
            .iter()
            .find(|e| e.identity == identity)
            .map(|e| &e.passphrase)
    }

    /// An error for the second entry of an identity listed twice (owampd refuses such a file).
    pub fn check_unique(&self) -> Result<(), ConfigError> {
        for (i, e) in self.entries.iter().enumerate() {
            if self.entries[..i].iter().any(|p| p.identity == e.identity) {
                return Err(ConfigError::new(
                    e.line,
                    ConfigErrorKind::Syntax(format!("identity \"{}\" duplicated", e.identity)),
                ));
            }
        }
        Ok(())
    }
}

/// Parses one non-comment line.
fn parse_line(lineno: usize, line: &str) -> Result<PfsEntry, ConfigError> {
    let mut words = line.split_whitespace();
    let identity = words.next().unwrap_or_default();
    let Some(hex) = words.next() else {
        return Err(ConfigError::new(
            lineno,
            ConfigErrorKind::Syntax(format!(
                "identity \"{identity}\" has no pass-phrase (expected \"identity hex\")"
            )),
        ));
    };
    if let Some(extra) = words.next() {
        return Err(ConfigError::new(
            lineno,
            ConfigErrorKind::TrailingText(extra.to_owned()),
        ));
    }
    if identity.len() > MAX_IDENTITY_LEN {
        return Err(ConfigError::invalid(
            lineno,
            "identity",
            identity,
            format!("longer than {MAX_IDENTITY_LEN} octets"),
        ));
    }
    // The error names the line, not the value: a mistyped pass-phrase is still a secret.
    let passphrase = decode_hex(hex)
        .map_err(|reason| ConfigError::invalid(lineno, "pass-phrase", "(not shown)", reason))?;
    Ok(PfsEntry {
        line: lineno,
        identity: identity.to_owned(),
        passphrase,
    })
}

/// Decodes a non-empty, even-length hexadecimal pass-phrase. The octets go straight into
/// the [`Passphrase`]'s storage (no copy is left behind).
pub fn decode_hex(hex: &str) -> Result<Passphrase, String> {
    if hex.is_empty() || hex.len() % 2 != 0 {
        return Err("expected an even, non-zero number of hexadecimal digits".into());
    }
    // Decoded into a buffer that is wiped if the hex turns out bad half-way.
    let mut buf = Zeroizing::new(vec![0u8; hex.len() / 2]);
    hex::decode_to_slice(hex, &mut buf[..]).map_err(|_| "not hexadecimal".to_string())?;
    Ok(Passphrase::new(std::mem::take(&mut *buf)))
}

/// Whether a line carries no entry (blank or comment).
fn is_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// Parses a pass-phrase file.
pub fn parse(text: &str) -> Result<PfsFile, ConfigError> {
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if is_comment(raw) {
            continue;
        }
        entries.push(parse_line(i + 1, raw)?);
    }
    Ok(PfsFile { entries })
}

/// A pass-phrase file that its group or others may read or write. perfSONAR's tools read
/// such files without a word; ours read them too (refusing would break existing installs) and
/// warn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LooseMode {
    /// The file.
    pub file: PathBuf,
    /// Its permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

impl LooseMode {
    /// The permission bits that give group or others access to the pass-phrases.
    pub const LOOSE_BITS: u32 = 0o066;

    /// A warning for `file` when `mode` gives group or others read or write access.
    pub fn check(file: &Path, mode: u32) -> Option<Self> {
        (mode & Self::LOOSE_BITS != 0).then(|| Self {
            file: file.to_path_buf(),
            mode: mode & 0o7777,
        })
    }
}

impl fmt::Display for LooseMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut who = Vec::new();
        for (bits, name) in [(0o060, "group"), (0o006, "others")] {
            let m = self.mode & bits;
            if m != 0 {
                let how = match (m & 0o044 != 0, m & 0o022 != 0) {
                    (true, true) => "read and write",
                    (true, false) => "read",
                    _ => "write",
                };
                who.push(format!("{name} can {how} it"));
            }
        }
        write!(
            f,
            "warning: pass-phrase file {} has mode {:04o} ({}); it holds secrets: \
             chmod go-rwx it (pfstore writes 0600)",
            self.file.display(),
            self.mode,
            who.join(", ")
        )
    }
}

/// Reads and parses the pass-phrase file `path`. The text is read into memory that is wiped
/// once parsed; a mode that lets group or others at the file comes back as a [`LooseMode`]
/// for the caller to print (it does not stop the file from being used). Errors name the file
/// and never the pass-phrases.
pub fn read(path: &Path) -> Result<(PfsFile, Option<LooseMode>), FileError> {
    let (text, loose) = read_text(path)?;
    let parsed = parse(&text).map_err(|e| FileError::Config(e.in_file(path)))?;
    Ok((parsed, loose))
}

/// The text of the pass-phrase file `path` (at most [`MAX_FILE_LEN`] octets of UTF-8), in
/// memory that is wiped when dropped, and a [`LooseMode`] when group or others may read or
/// write it.
pub fn read_text(path: &Path) -> Result<(Zeroizing<String>, Option<LooseMode>), FileError> {
    let io = |e: std::io::Error| FileError::Io {
        file: path.to_path_buf(),
        error: e.to_string(),
    };
    let mut f = File::open(path).map_err(io)?;
    // The mode of the file opened, not of whatever the name points at a moment later.
    let meta = f.metadata().map_err(io)?;
    let loose = LooseMode::check(path, meta.mode());
    // Sized from the file, so that reading does not grow (and copy) the buffer; a file that
    // grows meanwhile still reads, only less tidily.
    let len = usize::try_from(meta.len()).map_or(MAX_FILE_LEN, |l| l.min(MAX_FILE_LEN));
    let mut raw = Zeroizing::new(Vec::with_capacity(len + 1));
    let limit = MAX_FILE_LEN as u64 + 1;
    f.by_ref().take(limit).read_to_end(&mut raw).map_err(io)?;
    if raw.len() > MAX_FILE_LEN {
        return Err(FileError::Io {
            file: path.to_path_buf(),
            error: format!("larger than {MAX_FILE_LEN} octets: not a pass-phrase file"),
        });
    }
    // The conversion keeps the buffer (no copy).
    match String::from_utf8(std::mem::take(&mut *raw)) {
        Ok(text) => Ok((Zeroizing::new(text), loose)),
        Err(e) => {
            let error = format!("not UTF-8 text ({})", e.utf8_error());
            e.into_bytes().zeroize();
            Err(FileError::Io {
                file: path.to_path_buf(),
                error,
            })
        }
    }
}

/// The line pfstore writes for an entry: identity, a tab, the hex pass-phrase (in memory
/// that is wiped when dropped).
pub fn format_line(identity: &str, passphrase: &[u8]) -> Zeroizing<String> {
    let mut line = Zeroizing::new(String::with_capacity(
        identity.len() + 2 + 2 * passphrase.len(),
    ));
    line.push_str(identity);
    line.push('\t');
    for b in passphrase {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        line.push(char::from(DIGITS[usize::from(b >> 4)]));
        line.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    line.push('\n');
    line
}

/// Checks an identity before it is written to a file.
pub fn check_identity(identity: &str) -> Result<(), String> {
    if identity.is_empty() {
        return Err("the identity is empty".into());
    }
    if identity.len() > MAX_IDENTITY_LEN {
        return Err(format!(
            "the identity is longer than {MAX_IDENTITY_LEN} octets"
        ));
    }
    if identity.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err("the identity may not contain blanks or '#'".into());
    }
    Ok(())
}

/// The file's text with `identity`'s entry replaced by one for `passphrase` (at the same
/// place, or appended when there was none), or removed when `passphrase` is `None`; further
/// entries for the identity are dropped. Comments and other entries are kept as they are
/// (pfstore copies them). Returns the new text (wiped when dropped) and whether the identity
/// was there.
pub fn update(
    text: &str,
    identity: &str,
    passphrase: Option<&[u8]>,
) -> Result<(Zeroizing<String>, bool), ConfigError> {
    // Large enough that it never grows (growing would leave copies behind): every line
    // of `text` once, and the new entry.
    let extra = identity.len() + 2 + 2 * passphrase.map_or(0, <[u8]>::len);
    let mut out = Zeroizing::new(String::with_capacity(text.len() + 1 + extra));
    let mut found = false;
    for (i, raw) in text.lines().enumerate() {
        if !is_comment(raw) && parse_line(i + 1, raw)?.identity == identity {
            if let (false, Some(p)) = (found, passphrase) {
                out.push_str(&format_line(identity, p));
            }
            found = true;
            continue;
        }
        out.push_str(raw);
        out.push('\n');
    }
    if let (false, Some(p)) = (found, passphrase) {
        out.push_str(&format_line(identity, p));
    }
    Ok((out, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOKBOOK: &str = "joe    a0167ac6101b360d2f4dd164abba2337\n\
bob    2dc36fc4807894cdfbe180b71d4a0f\n\
sam    3fc763fb270ce6ba6e928bd10d4984dc77d3\n";

    #[test]
    fn errors_do_not_show_the_pass_phrase() {
        let e = parse("alice 6b696c6c6d65z\n").unwrap_err();
        assert_eq!(e.line, 1);
        let shown = e.to_string();
        assert!(shown.contains("pass-phrase"), "{shown}");
        assert!(!shown.contains("6b696c6c6d65"), "{shown}");
    }

    #[test]
    fn cookbook_example() {
        let f = parse(COOKBOOK).unwrap();
        assert_eq!(f.entries.len(), 3);
        assert_eq!(f.entries[1].identity, "bob");
        assert_eq!(f.entries[1].passphrase.len(), 15);
        assert_eq!(f.get("sam").unwrap().as_bytes()[0], 0x3f);
        assert!(f.get("eve").is_none());
        f.check_unique().unwrap();
    }

    #[test]
    fn reference_alice_line() {
        let f = parse(
            "# written by pfstore\nalice\t636f727265637420686f727365206261747465727920737461706c65\n",
        )
        .unwrap();
        assert_eq!(f.get("alice"), Some(&"correct horse battery staple".into()));
        assert_eq!(f.entries[0].line, 2);
    }

    #[test]
    fn errors_carry_the_line() {
        let e = parse("alice 6162\nbob\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("alice 616\n").unwrap_err();
        assert!(matches!(e.kind, ConfigErrorKind::InvalidValue { .. }));
        let e = parse("# c\nalice zz\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("alice 6162 # comment\n").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::TrailingText("#".into()));
        let long = "x".repeat(81);
        assert!(parse(&format!("{long} 6162\n")).is_err());
    }

    #[test]
    fn duplicates_are_found() {
        let f = parse("a 61\nb 62\na 63\n").unwrap();
        assert_eq!(f.get("a"), Some(&"a".into()));
        assert_eq!(f.check_unique().unwrap_err().line, 3);
    }

    #[test]
    fn update_replaces_and_keeps_comments() {
        let text = "# keys\nalice 6162\nbob 6364\n";
        let (t, removed) = update(text, "alice", Some(b"xyz")).unwrap();
        assert!(removed);
        assert_eq!(*t, "# keys\nalice\t78797a\nbob 6364\n");
        let (t, _) = update(&t, "bob", Some(b"z")).unwrap();
        assert_eq!(*t, "# keys\nalice\t78797a\nbob\t7a\n");
        let (t, removed) = update(&t, "carol", None).unwrap();
        assert!(!removed);
        assert_eq!(parse(&t).unwrap().entries.len(), 2);
        let (t, removed) = update(&t, "bob", None).unwrap();
        assert!(removed);
        assert_eq!(*t, "# keys\nalice\t78797a\n");
        let (t, _) = update(&t, "dave", Some(b"d")).unwrap();
        assert_eq!(*t, "# keys\nalice\t78797a\ndave\t64\n");
    }

    #[test]
    fn loose_modes_are_named() {
        let f = Path::new("/etc/owamp/owamp-server.pfs");
        assert_eq!(LooseMode::check(f, 0o100600), None);
        assert_eq!(LooseMode::check(f, 0o400), None);
        assert_eq!(LooseMode::check(f, 0o700), None);
        let w = LooseMode::check(f, 0o100644).unwrap();
        assert_eq!(w.mode, 0o644);
        assert_eq!(
            w.to_string(),
            "warning: pass-phrase file /etc/owamp/owamp-server.pfs has mode 0644 (group can \
             read it, others can read it); it holds secrets: chmod go-rwx it (pfstore writes 0600)"
        );
        let w = LooseMode::check(f, 0o662).unwrap().to_string();
        assert!(
            w.contains("(group can read and write it, others can write it)"),
            "{w}"
        );
        for m in [0o640, 0o620, 0o604, 0o602, 0o666] {
            assert!(LooseMode::check(f, m).is_some(), "{m:o}");
        }
    }

    #[test]
    fn reading_a_file_wipes_nothing_it_returns_and_names_a_loose_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pfs");
        std::fs::write(&p, COOKBOOK).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (f, loose) = read(&p).unwrap();
        assert_eq!(loose, None);
        assert_eq!(f, parse(COOKBOOK).unwrap());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (_, loose) = read(&p).unwrap();
        assert_eq!(loose.unwrap().file, p);
        // Errors name the file, never a pass-phrase.
        std::fs::write(&p, "alice 6162zz\n").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("x.pfs:1") && !e.contains("6162"), "{e}");
        std::fs::write(&p, b"alice \xff\xfe\n").unwrap();
        assert!(read(&p).unwrap_err().to_string().contains("not UTF-8"));
        assert!(read(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn debug_shows_identities_not_pass_phrases() {
        let f = parse(COOKBOOK).unwrap();
        let s = format!("{f:?} {f:#?}");
        assert!(s.contains("joe"), "{s}");
        for e in &f.entries {
            let p = e.passphrase.as_bytes();
            assert!(!s.contains(&hex::encode(p)), "{s}");
            let dec = format!("{:?}", &p[..4]);
            assert!(
                !s.contains(dec.trim_matches(|c| c == '[' || c == ']')),
                "{s}"
            );
        }
    }

    #[test]
    fn identity_checks() {
        assert!(check_identity("alice").is_ok());
        assert!(check_identity("").is_err());
        assert!(check_identity("a b").is_err());
        assert!(check_identity(&"y".repeat(81)).is_err());
    }
}
