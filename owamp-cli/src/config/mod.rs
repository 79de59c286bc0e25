//! owampd's configuration files, parsed from text: `owamp-server.conf` ([`server`]),
//! `owamp-server.limits` ([`limits`]) and pass-phrase files ([`pfs`], also owping's `-k`).
//!
//! The parsers are pure functions over the file's text; file names only decorate errors. The
//! syntax is perfSONAR owamp's: a `#` as the first non-blank character of a line makes it a
//! comment, blank lines are ignored, and a backslash immediately followed by the end of the line
//! joins the next line to this one (a backslash anywhere else is an error). Keywords are matched
//! without regard to case.

pub mod limits;
pub mod pfs;
pub mod server;

use std::fmt;
use std::path::{Path, PathBuf};

/// What is wrong with a configuration line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A backslash that does not end the line.
    #[error("invalid use of '\\' (only allowed right before the end of a line)")]
    StrayBackslash,
    /// The first word of a line is not a known keyword.
    #[error("unknown keyword \"{0}\"")]
    UnknownKeyword(String),
    /// A keyword that needs a value has none.
    #[error("\"{0}\" needs a value")]
    MissingValue(String),
    /// A keyword that takes no value was given one.
    #[error("\"{0}\" takes no value")]
    UnexpectedValue(String),
    /// Text after the last field that is not a comment.
    #[error("unexpected text \"{0}\"")]
    TrailingText(String),
    /// A value that does not parse or is out of range.
    #[error("invalid value \"{value}\" for {what}: {reason}")]
    InvalidValue {
        /// The keyword or field.
        what: String,
        /// The value as written.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A line that does not have the expected structure.
    #[error("{0}")]
    Syntax(String),
}

/// A configuration error: what is wrong, on which line (1-based) of which file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, when known.
    pub file: Option<PathBuf>,
    /// The line (the first physical line of a continued line).
    pub line: usize,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

impl ConfigError {
    /// An error on `line`, in no file yet.
    pub fn new(line: usize, kind: ConfigErrorKind) -> Self {
        Self {
            file: None,
            line,
            kind,
        }
    }

    /// The same error, naming `file`.
    pub fn in_file(mut self, file: &Path) -> Self {
        self.file = Some(file.to_path_buf());
        self
    }

    pub(crate) fn invalid(
        line: usize,
        what: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::new(
            line,
            ConfigErrorKind::InvalidValue {
                what: what.into(),
                value: value.into(),
                reason: reason.into(),
            },
        )
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "{}:{}: {}", p.display(), self.line, self.kind),
            None => write!(f, "line {}: {}", self.line, self.kind),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One logical line: continuation lines joined, leading blanks removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    /// The physical line it starts on (1-based).
    pub line: usize,
    /// Its text, without the newline; continuations are joined without adding anything (the
    /// next line's leading blanks separate the words, as in the reference).
    pub text: String,
}

/// Splits a configuration file into logical lines, dropping blank and comment lines.
pub fn logical_lines(text: &str) -> Result<Vec<LogicalLine>, ConfigError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = 0usize;
    let mut continued = false;
    for (idx, raw) in text.split('\n').enumerate() {
        let lineno = idx + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let body = if continued {
            raw
        } else {
            let t = raw.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            start = lineno;
            t
        };
        // A backslash is only allowed as the very last character: it joins the next line.
        let (content, joins) = match body.strip_suffix('\\') {
            Some(c) => (c, true),
            None => (body, false),
        };
        if content.contains('\\') {
            return Err(ConfigError::new(lineno, ConfigErrorKind::StrayBackslash));
        }
        cur.push_str(content);
        continued = joins;
        if !joins {
            let text = cur.trim_end().to_owned();
            cur.clear();
            if !text.is_empty() {
                out.push(LogicalLine { line: start, text });
            }
        }
    }
    if continued {
        // The file ends right after a backslash: there is no next line to join.
        let line = text.split('\n').count();
        return Err(ConfigError::new(line, ConfigErrorKind::StrayBackslash));
    }
    Ok(out)
}

/// Removes a trailing `#` comment: one that starts a whitespace-separated word.
pub(crate) fn strip_trailing_comment(s: &str) -> &str {
    let mut prev_space = true;
    for (i, c) in s.char_indices() {
        if c == '#' && prev_space {
            return s[..i].trim_end();
        }
        prev_space = c.is_whitespace();
    }
    s.trim_end()
}

/// Reads a configuration file and parses it with `parse`; errors name the file.
pub fn read_file<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, ConfigError>,
) -> Result<T, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError::Io {
        file: path.to_path_buf(),
        error: e.to_string(),
    })?;
    parse(&text).map_err(|e| FileError::Config(e.in_file(path)))
}

/// A configuration file that cannot be read or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The file cannot be read.
    #[error("{}: {error}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The system's message.
        error: String,
    },
    /// The file does not parse.
    #[error("{0}")]
    Config(ConfigError),
}

/// The file `names[0]` or, when that does not exist, one of the other names, in `dir`. The
/// reference's current names come first (`owamp-server.conf`), then the older ones
/// (`owampd.conf`). `None` when none exists.
pub fn find_in_dir(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.exists())
}

/// Parses a number with an optional one-letter multiplier suffix (k, m, g, t, p, e, either case)
/// as perfSONAR's limits file does: decimal multipliers (k = 1000).
pub fn parse_scaled(s: &str) -> Result<u64, String> {
    let (digits, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_lowercase() {
                'k' => 1_000,
                'm' => 1_000_000,
                'g' => 1_000_000_000,
                't' => 1_000_000_000_000,
                'p' => 1_000_000_000_000_000,
                'e' => 1_000_000_000_000_000_000,
                _ => return Err(format!("unknown suffix '{c}' (k, m, g, t, p or e)")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a whole number with an optional k, m, g, t, p or e suffix".into());
    }
    let n: u64 = digits.parse().map_err(|_| "number too large".to_string())?;
    n.checked_mul(mult).ok_or_else(|| "number too large".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_blanks_and_continuations() {
        let text = "# header\n\n   # indented comment\nlimit root with \\\n    disk=100M, \\\n    bandwidth=0\nassign default root\n";
        let lines = logical_lines(text).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].line, 4);
        assert_eq!(
            lines[0].text,
            "limit root with     disk=100M,     bandwidth=0"
        );
        assert_eq!(lines[1].line, 7);
        assert_eq!(lines[1].text, "assign default root");
    }

    #[test]
    fn crlf_line_ends() {
        let lines = logical_lines("a b\r\nc \\\r\n d\r\n").unwrap();
        assert_eq!(lines[0].text, "a b");
        assert_eq!(lines[1].text, "c  d");
    }

    #[test]
    fn stray_backslash_is_an_error_with_its_line() {
        let e = logical_lines("ok\nbad \\ here\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.kind, ConfigErrorKind::StrayBackslash);
        let e = logical_lines("ok\nends \\").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::StrayBackslash);
        assert_eq!(e.line, 2);
    }

    #[test]
    fn error_display_names_file_and_line() {
        let e = ConfigError::new(3, ConfigErrorKind::UnknownKeyword("bogus".into()))
            .in_file(Path::new("conf/owamp-server.conf"));
        assert_eq!(
            e.to_string(),
            "conf/owamp-server.conf:3: unknown keyword \"bogus\""
        );
    }

    #[test]
    fn scaled_numbers() {
        assert_eq!(parse_scaled("0"), Ok(0));
        assert_eq!(parse_scaled("20M"), Ok(20_000_000));
        assert_eq!(parse_scaled("10k"), Ok(10_000));
        assert_eq!(parse_scaled("2g"), Ok(2_000_000_000));
        assert!(parse_scaled("1.5M").is_err());
        assert!(parse_scaled("M").is_err());
        assert!(parse_scaled("10x").is_err());
        assert!(parse_scaled("99999999999e").is_err());
    }

    #[test]
    fn trailing_comments() {
        assert_eq!(strip_trailing_comment("datadir /x # where"), "datadir /x");
        assert_eq!(strip_trailing_comment("a#b"), "a#b");
        assert_eq!(strip_trailing_comment("#all"), "");
    }
}
