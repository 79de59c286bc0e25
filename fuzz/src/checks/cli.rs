//! Checks for owamp-cli's readers of what an administrator or a user writes: owampd's
//! configuration files (`owamp-server.conf`, `.limits`, `.pfs`), each tool's command line
//! (clap's definitions and the tools' own checks), and owping's send schedule (`-i`).
//!
//! These inputs are not a remote peer's, but a typo must still give an error, never a panic, a
//! hang or a value out of range that fails later.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use owamp_cli::config::{limits, pfs, server, ConfigError};
use owamp_cli::fuzzing;
use owamp_cli::owping::{parse_schedule, seconds_to_interval, MAX_PADDING};
use owamp_core::control::{Modes, Role};
use owamp_core::crypto::DEFAULT_MAX_KDF_COUNT;
use owamp_core::time::Interval;
use owamp_core::wire::SlotKind;

use super::Input;

/// Number of lines of `text` as the configuration reader counts them (split at `\n`).
fn line_count(text: &str) -> usize {
    text.split('\n').count()
}

/// What holds for any configuration parser's result: errors name a line of the file, and a
/// comment line put in front changes nothing but the line numbers (so comments are ignored
/// and numbering is exact; `unshift` takes one from the line numbers a result keeps).
/// Without carriage returns, CRLF line ends read the same.
fn config_properties<T: PartialEq + std::fmt::Debug>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, ConfigError>,
    unshift: impl Fn(&mut T),
) -> Result<T, ConfigError> {
    let r = parse(text);
    if let Err(e) = &r {
        assert!(
            e.line >= 1 && e.line <= line_count(text),
            "error on line {} of a {}-line file: {e}",
            e.line,
            line_count(text)
        );
    }
    let mut shifted = parse(&format!("# a comment\n{text}"));
    if let Ok(s) = &mut shifted {
        unshift(s);
    }
    match (&r, &shifted) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "a comment line changed the result"),
        (Err(a), Err(b)) => {
            assert_eq!(a.kind, b.kind, "a comment line changed the error");
            assert_eq!(a.line + 1, b.line, "a comment line did not shift the error");
        }
        _ => panic!("a comment line changed the outcome: {r:?} then {shifted:?}"),
    }
    if !text.contains('\r') {
        let crlf = parse(&text.replace('\n', "\r\n"));
        match (&r, &crlf) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "CRLF line ends changed the result"),
            (Err(a), Err(b)) => assert_eq!(a.line, b.line, "CRLF moved the error"),
            _ => panic!("CRLF line ends changed the outcome: {r:?} then {crlf:?}"),
        }
    }
    r
}

/// The `owamp-server.conf` parser (`config::server::parse`). Input: the file's text (not
/// UTF-8: rejected before parsing, as reading the file to a string does).
///
/// Errors name a line of the file; comments and CRLF line ends change nothing; every value
/// accepted is within what owampd can use: a PBKDF2 count from 1 to the clients' bound, a
/// disk fudge from 1 to 10, delays a `Duration` can hold, a port range in order, a known
/// facility and log level, a non-empty set of modes.
pub fn config_server(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = config_properties(text, server::parse, |_| {}) else {
        return;
    };
    if let Some(n) = c.pbkdf2_count {
        assert!((1..=DEFAULT_MAX_KDF_COUNT).contains(&n), "pbkdf2_count {n}");
    }
    if let Some(f) = c.diskfudge {
        assert!((1.0..=10.0).contains(&f), "diskfudge {f}");
    }
    for d in [c.enddelay, c.syncfuzz].into_iter().flatten() {
        assert!(d.is_finite() && d >= 0.0, "delay {d}");
    }
    if let Some(d) = c.enddelay {
        assert!(Duration::try_from_secs_f64(d).is_ok(), "enddelay {d}");
    }
    if let Some(server::TestPorts::Range(low, high)) = c.testports {
        assert!(low <= high, "testports {low}-{high}");
    }
    if let Some(l) = &c.loglevel {
        assert!(server::LOG_LEVELS.contains(&l.as_str()), "loglevel {l}");
    }
    if let Some(f) = &c.facility {
        assert_eq!(server::check_facility(f).as_ref(), Ok(f), "facility {f}");
    }
    if let Some(m) = c.authmode {
        // O, A, E and, for twampd, RFC 5618's mixed mode (M, bit 8).
        let known = owamp_core::wire::twamp::without_mixed(m);
        assert!(m.raw() != 0 && known.known() == known, "authmode {m:?}");
    }
}

/// The `owamp-server.limits` parser (`config::limits::parse`). Input: the file's text.
///
/// Errors name a line; comments and CRLF change nothing; an accepted file's classes are
/// unique, each parent and each assigned class is defined (parents before their children),
/// the default class exists, and the file becomes a server policy without panicking, with
/// the pass-phrases of a pfs file too.
pub fn config_limits(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(l) = config_properties(text, limits::parse, |l| {
        for c in &mut l.classes {
            c.line = c.line.saturating_sub(1);
        }
        for a in &mut l.assigns {
            a.line -= 1;
        }
    }) else {
        return;
    };
    for (i, c) in l.classes.iter().enumerate() {
        assert!(
            !l.classes[..i].iter().any(|d| d.name == c.name),
            "class {} twice",
            c.name
        );
        if let Some(p) = &c.parent {
            assert!(
                l.classes[..i].iter().any(|d| &d.name == p),
                "class {} has parent {p}, not defined before it",
                c.name
            );
        }
    }
    for a in &l.assigns {
        assert!(
            l.class(&a.class).is_some() || l.classes.is_empty(),
            "assigned to an undefined class {}",
            a.class
        );
    }
    if !l.classes.is_empty() {
        assert!(l.class(l.default_class()).is_some(), "no default class");
    }
    let pfs = pfs::parse("alice 6162\nbob 636465\n").unwrap_or_default();
    let _ = l.check_users(&pfs);
    let _ = l.to_policy(Modes::ALL, &pfs, 1.0);
}

/// The pass-phrase file parser (`config::pfs::parse`) and what pfstore writes
/// (`format_line`, `update`). Input: the file's text.
///
/// Errors name a line and never show a hex pass-phrase; comments and CRLF change nothing.
/// Accepted identities are 1 to 80 octets without blanks, and the entries written back by
/// `format_line` read back the same. `update` replaces, adds and removes exactly the
/// identity it is given. And any identity `check_identity` accepts, with any pass-phrase,
/// makes a line the parser reads back (taken from the input's first word and its octets).
pub fn config_pfs(data: &[u8]) {
    pfstore_line_round_trip(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = config_properties(text, pfs::parse, |f| {
        for e in &mut f.entries {
            e.line -= 1;
        }
    });
    let f = match parsed {
        Ok(f) => f,
        Err(e) => {
            error_hides_the_pass_phrase(text, &e);
            return;
        }
    };
    let mut written = String::new();
    for e in &f.entries {
        assert!(
            !e.identity.is_empty()
                && e.identity.len() <= pfs::MAX_IDENTITY_LEN
                && !e.identity.contains(char::is_whitespace),
            "identity {:?}",
            e.identity
        );
        assert!(!e.passphrase.is_empty());
        written.push_str(&pfs::format_line(&e.identity, e.passphrase.as_bytes()));
    }
    let back = pfs::parse(&written).unwrap_or_else(|e| panic!("written entries unreadable: {e}"));
    assert_eq!(back.entries.len(), f.entries.len());
    for (a, b) in f.entries.iter().zip(&back.entries) {
        assert_eq!((&a.identity, &a.passphrase), (&b.identity, &b.passphrase));
    }

    // pfstore's edit of the first identity: replaced, then removed; the others untouched.
    let Some(first) = f.entries.first() else {
        return;
    };
    let id = first.identity.as_str();
    let (t, found) = pfs::update(text, id, Some(b"new pass")).expect("the file parsed");
    assert!(found);
    let after = pfs::parse(&t).unwrap_or_else(|e| panic!("updated file unreadable: {e}"));
    assert_eq!(after.get(id), Some(&"new pass".into()));
    assert_eq!(after.entries.iter().filter(|e| e.identity == id).count(), 1);
    let (t, found) = pfs::update(&t, id, None).expect("the file parsed");
    assert!(found);
    let removed = pfs::parse(&t).unwrap_or_else(|e| panic!("updated file unreadable: {e}"));
    assert_eq!(removed.get(id), None);
    for e in &f.entries {
        if e.identity != id {
            assert_eq!(
                removed.get(&e.identity),
                f.get(&e.identity),
                "{}",
                e.identity
            );
        }
    }
}

/// A line that failed: its second word, when it looks like a hex pass-phrase (6 or more hex
/// digits, not part of the line's other words), is not in the message.
fn error_hides_the_pass_phrase(text: &str, e: &ConfigError) {
    let Some(line) = text.split('\n').nth(e.line.saturating_sub(1)) else {
        return;
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some(&hex) = words.get(1) else { return };
    if hex.len() < 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return;
    }
    if words
        .iter()
        .enumerate()
        .any(|(i, w)| i != 1 && w.contains(hex))
    {
        return;
    }
    let shown = e.to_string();
    assert!(
        !shown.contains(hex),
        "the error shows the pass-phrase: {shown}"
    );
}

fn pfstore_line_round_trip(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Some(identity) = text.split_whitespace().next() else {
        return;
    };
    if data.is_empty() || pfs::check_identity(identity).is_err() {
        return;
    }
    let line = pfs::format_line(identity, data);
    let f = pfs::parse(&line).unwrap_or_else(|e| panic!("pfstore's line unreadable: {e}"));
    assert_eq!(f.entries.len(), 1);
    assert_eq!(f.entries[0].identity, identity);
    assert_eq!(f.entries[0].passphrase.as_bytes(), data);
}

/// owping's send schedule (`-i`, `owping::parse_schedule`). Input: the text.
///
/// An accepted schedule has one slot per comma-separated item, fixed exactly when the item
/// ends in `f`/`F` after a number; each mean is what its number converts to
/// (`seconds_to_interval`); and a schedule written back from the slots (exactly, for means
/// below 2^53 units) reads back the same.
pub fn owping_schedule(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(slots) = parse_schedule(text) else {
        return;
    };
    let items: Vec<&str> = text.split(',').collect();
    assert_eq!(slots.len(), items.len());
    for (slot, item) in slots.iter().zip(&items) {
        let suffix = item.chars().last().filter(|_| item.len() > 1);
        let fixed = suffix.is_some_and(|c| c.eq_ignore_ascii_case(&'f'));
        assert_eq!(slot.kind == SlotKind::Fixed, fixed, "{item}");
        let number = match suffix {
            Some(c) if c.eq_ignore_ascii_case(&'f') || c.eq_ignore_ascii_case(&'e') => {
                &item[..item.len() - 1]
            }
            _ => item,
        };
        let v: f64 = number.parse().expect("an accepted number");
        assert!(v.is_finite() && v >= 0.0, "{item}");
        assert_eq!(Some(slot.mean), seconds_to_interval(v), "{item}");
    }
    if slots.iter().all(|s| s.mean.raw() < 1 << 53) {
        let written: Vec<String> = slots
            .iter()
            .map(|s| {
                let secs = s.mean.raw() as f64 / 4_294_967_296.0;
                let k = if s.kind == SlotKind::Fixed { 'f' } else { 'e' };
                format!("{secs}{k}")
            })
            .collect();
        let again = parse_schedule(&written.join(","))
            .unwrap_or_else(|e| panic!("written schedule {written:?} unreadable: {e}"));
        assert_eq!(again, slots, "{written:?}");
    }
}

/// Splits the input into arguments at NUL octets (arguments may be any octets but NUL, as on
/// a real command line).
fn argv(program: &str, bytes: &[u8]) -> Vec<OsString> {
    let mut v = vec![OsString::from(program)];
    if !bytes.is_empty() {
        v.extend(
            bytes
                .split(|&b| b == 0)
                .map(|a| OsString::from_vec(a.to_vec())),
        );
    }
    v
}

fn check_seconds(what: &str, v: f64, allow_zero: bool) {
    assert!(
        v.is_finite() && (v > 0.0 || (allow_zero && v == 0.0)),
        "{what} {v}"
    );
    assert!(Duration::try_from_secs_f64(v).is_ok(), "{what} {v}");
}

/// The command lines of owping, powstream, owfetch, owstats, owampd and pfstore: clap's
/// definitions and the tools' own checks (`owamp_cli::fuzzing`), before anything is read,
/// asked for or sent. Input: a tool (first octet modulo 6), then its arguments separated by
/// NUL octets.
///
/// Never a panic; the same command line always gets the same answer; and what is accepted is
/// in range: owping's count at least 1, a schedule that is not all zero, delays a `Duration`
/// holds, padding at most 65000, a 6-bit DSCP, ports in order, a direction, modes, ports of
/// hosts not 0; powstream's summaries dividing its sessions, a positive mean and loss timeout
/// below 2^32 s, port ranges of 2 or more; owfetch's SIDs in pairs; pfstore's identity as
/// pfstore may write it; owampd's port range and modes as its configuration file allows.
pub fn cli_argv(data: &[u8]) {
    let mut input = Input::new(data);
    let tool = input.u8() % 6;
    let rest = input.rest();
    match tool {
        0 => {
            let a = argv("owping", rest);
            let r = fuzzing::owping(a.clone());
            assert_eq!(r, fuzzing::owping(a), "owping is not deterministic");
            let Ok(p) = r else { return };
            assert!(p.count >= 1);
            assert!(!p.slots.is_empty() && p.slots.iter().any(|s| s.mean > Interval::ZERO));
            if let Some(t) = p.timeout {
                check_seconds("-L", t, false);
            }
            check_seconds("-z", p.delay_start, true);
            if let Some(e) = p.end_delay {
                check_seconds("-E", e, true);
            }
            assert!(p.padding <= MAX_PADDING);
            assert!(p.dscp <= 0x3f);
            if let Some(r) = p.ports {
                assert!(r.low <= r.high, "{r:?}");
            }
            assert!(p.to || p.from);
            assert!(!p.modes.is_empty() && p.modes.known() == p.modes);
            assert_ne!(p.max_pbkdf2_count, Some(0));
            for h in [&p.hosts.0, &p.hosts.1] {
                assert!(!h.node.is_empty() && h.port != 0, "{h:?}");
            }
            assert!(p.stats.bucket_width.is_finite() && p.stats.bucket_width > 0.0);
        }
        1 => {
            let a = argv("powstream", rest);
            let r = fuzzing::powstream(a.clone());
            assert_eq!(r, fuzzing::powstream(a), "powstream is not deterministic");
            let Ok(p) = r else { return };
            assert!(p.count >= 1);
            assert!(p.sub_count == 0 || (p.sub_count <= p.count && p.count % p.sub_count == 0));
            assert!(p.slot.mean > Interval::ZERO);
            assert!(p.timeout > Duration::ZERO && p.timeout.as_secs() < u64::from(u32::MAX));
            assert!(p.padding <= MAX_PADDING);
            assert!(p.bucket_width.is_finite() && p.bucket_width > 0.0);
            if let Some(r) = p.ports {
                assert!(r.high.saturating_sub(r.low) >= 1, "{r:?}");
            }
            assert!(matches!(p.role, Role::Sender | Role::Receiver));
            assert_ne!(p.max_pbkdf2_count, Some(0));
        }
        2 => {
            let a = argv("owfetch", rest);
            let r = fuzzing::owfetch(a.clone());
            assert_eq!(r, fuzzing::owfetch(a), "owfetch is not deterministic");
            let Ok(p) = r else { return };
            assert!(!p.pairs.is_empty());
            assert!(!p.server.node.is_empty() && p.server.port != 0);
        }
        3 => {
            let a = argv("owstats", rest);
            let r = fuzzing::owstats(a.clone());
            assert_eq!(r, fuzzing::owstats(a), "owstats is not deterministic");
            let Ok(o) = r else { return };
            assert!(o.bucket_width.is_finite() && o.bucket_width > 0.0);
            assert!(o.percentiles.iter().all(|p| (0.0..=100.0).contains(p)));
        }
        4 => {
            let a = argv("owampd", rest);
            let r = fuzzing::owampd(a.clone());
            assert_eq!(r, fuzzing::owampd(a), "owampd is not deterministic");
            let Ok((c, listen)) = r else { return };
            if let Some(server::TestPorts::Range(low, high)) = c.testports {
                assert!(low <= high);
            }
            if let Some(m) = c.authmode {
                assert!(!m.is_empty() && m.known() == m);
            }
            if let Some((node, _)) = listen {
                assert!(node.as_deref().map_or(true, |n| !n.is_empty()));
            }
        }
        _ => {
            let a = argv("pfstore", rest);
            let r = fuzzing::pfstore(a.clone());
            assert_eq!(
                r.as_ref()
                    .map(|a| (&a.identity, &a.file, a.create, a.delete)),
                fuzzing::pfstore(a)
                    .as_ref()
                    .map(|a| (&a.identity, &a.file, a.create, a.delete)),
                "pfstore is not deterministic"
            );
            let Ok(a) = r else { return };
            assert!(pfs::check_identity(&a.identity).is_ok());
            // What pfstore may write reads back.
            let line = pfs::format_line(&a.identity, b"x");
            assert_eq!(
                pfs::parse(&line).map(|f| f.entries.len()),
                Ok(1),
                "{line:?}"
            );
        }
    }
}
