//! `owamp-server.limits` (older name `owampd.limits`): limit classes and how connections are
//! assigned to them.
//!
//! ```text
//! limit <class> with <limtype>=<value>[, <limtype>=<value>]*
//! assign default <class>
//! assign net <address>[/<prefix>] <class>
//! assign user <identity> <class>
//! ```
//!
//! Limit types: `parent` (an earlier class; required on every line but the first, which
//! defines the root), `bandwidth` (bit/s) and `disk` (octets), both whole numbers with an
//! optional k/m/g/t/p/e decimal multiplier and 0 meaning unlimited, `delete_on_fetch` and
//! `allow_open_mode` (on/off), and `test_sessions` (accepted, not enforced). A class inherits
//! every limit of its parent that it does not set. A class must be defined before an `assign`
//! line names it, and an `assign user` identity must be in the pfs file. Without any `limit`
//! line there is one class, `default`, with no limits.

use std::net::IpAddr;

use owamp_core::control::Modes;
use owamp_core::policy::{ClassLimits, Limits};

use super::pfs::PfsFile;
use super::{logical_lines, parse_scaled, strip_trailing_comment, ConfigError, ConfigErrorKind};

/// A class's limits after inheritance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassSettings {
    /// `bandwidth` in bit/s (0: unlimited).
    pub bandwidth: u64,
    /// `disk` in octets (0: unlimited).
    pub disk: u64,
    /// `delete_on_fetch`.
    pub delete_on_fetch: bool,
    /// `allow_open_mode`.
    pub allow_open_mode: bool,
    /// `test_sessions` (0: unlimited; not enforced).
    pub test_sessions: u64,
}

impl Default for ClassSettings {
    fn default() -> Self {
        // The reference's defaults: everything unlimited, open mode allowed.
        Self {
            bandwidth: 0,
            disk: 0,
            delete_on_fetch: false,
            allow_open_mode: true,
            test_sessions: 0,
        }
    }
}

/// One `limit` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassDef {
    /// Where it was defined.
    pub line: usize,
    /// The class name.
    pub name: String,
    /// The parent (`None` only for the root, the first class).
    pub parent: Option<String>,
    /// The class's limits, the parent's where the line does not set them.
    pub settings: ClassSettings,
}

/// How an `assign` line selects connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `default`: connections nothing else matches.
    Default,
    /// `net addr/prefix`: clients in a network (open mode, or an identity without its own
    /// `assign user`).
    Net {
        /// The network address (no host bits set).
        addr: IpAddr,
        /// The prefix length.
        prefix: u8,
    },
    /// `user identity`: authenticated or encrypted connections with this identity.
    User(String),
}

/// One `assign` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assign {
    /// Where it was written.
    pub line: usize,
    /// The connections it selects.
    pub selector: Selector,
    /// The class they get.
    pub class: String,
}

/// The parsed limits file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConf {
    /// The classes, root first.
    pub classes: Vec<ClassDef>,
    /// The assignments, in file order.
    pub assigns: Vec<Assign>,
}

impl Default for LimitsConf {
    /// What owampd uses without a limits file: one unlimited class, `default`.
    fn default() -> Self {
        Self {
            classes: vec![ClassDef {
                line: 0,
                name: "default".into(),
                parent: None,
                settings: ClassSettings::default(),
            }],
            assigns: Vec::new(),
        }
    }
}

impl LimitsConf {
    /// The class named `name`.
    pub fn class(&self, name: &str) -> Option<&ClassDef> {
        self.classes.iter().find(|c| c.name == name)
    }

    /// The class of connections no other line matches: the `assign default` class, else the
    /// root.
    pub fn default_class(&self) -> &str {
        self.assigns
            .iter()
            .find(|a| a.selector == Selector::Default)
            .map(|a| a.class.as_str())
            .or_else(|| self.classes.first().map(|c| c.name.as_str()))
            .unwrap_or("default")
    }

    /// Checks that every `assign user` identity has a pass-phrase (owampd refuses to start
    /// otherwise).
    pub fn check_users(&self, pfs: &PfsFile) -> Result<(), ConfigError> {
        for a in &self.assigns {
            if let Selector::User(u) = &a.selector {
                if pfs.get(u).is_none() {
                    return Err(ConfigError::invalid(
                        a.line,
                        "assign user",
                        u,
                        "the identity has no pass-phrase in the pfs file",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The server policy: `modes` offered, these classes and assignments, the identities of
    /// `pfs`, and `disk_fudge` (owampd's `diskfudge`).
    pub fn to_policy(&self, modes: Modes, pfs: &PfsFile, disk_fudge: f64) -> Limits {
        let limits = |s: &ClassSettings| ClassLimits {
            bandwidth_bps: s.bandwidth,
            disk_octets: s.disk,
            allow_open_mode: s.allow_open_mode,
        };
        let default = self.default_class();
        let default_settings = self
            .class(default)
            .map(|c| c.settings.clone())
            .unwrap_or_default();
        let p = Limits::new(modes, default, limits(&default_settings));
        for c in &self.classes {
            p.add_class(&c.name, limits(&c.settings));
            if let Some(parent) = &c.parent {
                p.set_parent(&c.name, parent);
            }
        }
        for a in &self.assigns {
            match &a.selector {
                Selector::Default => {}
                Selector::Net { addr, prefix } => p.assign_net(*addr, *prefix, &a.class),
                Selector::User(u) => p.assign_user(u.as_bytes(), &a.class),
            }
        }
        for e in &pfs.entries {
            p.set_passphrase(e.identity.as_bytes(), e.passphrase.clone());
        }
        p.set_disk_fudge(disk_fudge);
        p
    }
}

fn syntax(line: usize, msg: impl Into<String>) -> ConfigError {
    ConfigError::new(line, ConfigErrorKind::Syntax(msg.into()))
}

fn on_off(line: usize, what: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(ConfigError::invalid(line, what, v, "expected on or off")),
    }
}

/// Parses `addr[/prefix]` with no host bits set.
pub fn parse_net(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, m) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("\"{a}\" is not a numeric IP address"))?;
    let width: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match m {
        None => width,
        Some(m) => match m.parse::<u8>() {
            Ok(p) if (1..=width).contains(&p) => p,
            _ => return Err(format!("invalid prefix length \"{m}\" (1 to {width})")),
        },
    };
    let bits: u128 = match addr {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    };
    let host_mask = if prefix == width {
        0
    } else {
        (1u128 << (width - prefix)) - 1
    };
    if bits & host_mask != 0 {
        return Err("address bits are set past the prefix length".into());
    }
    Ok((addr, prefix))
}

fn parse_limit(line: usize, rest: &str, classes: &[ClassDef]) -> Result<ClassDef, ConfigError> {
    let rest = rest.trim_start();
    let (name, rest) = rest
        .split_once(char::is_whitespace)
        .ok_or_else(|| syntax(line, "expected \"limit <class> with <limit>=<value>, ...\""))?;
    if classes.iter().any(|c| c.name == name) {
        return Err(syntax(line, format!("class \"{name}\" defined twice")));
    }
    // Each class is a directory of datadir/hierarchy: "." and ".." cannot be one.
    if name.contains('/') || name.contains('*') || name == "." || name == ".." {
        return Err(ConfigError::invalid(
            line,
            "class name",
            name,
            "'/', '*', \".\" and \"..\" are not allowed",
        ));
    }
    let rest = rest.trim_start();
    let (with, pairs) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if !with.eq_ignore_ascii_case("with") {
        return Err(syntax(
            line,
            format!("expected \"with\" after the class name, found \"{with}\""),
        ));
    }
    let pairs = strip_trailing_comment(pairs);
    let mut parent: Option<String> = None;
    let mut seen: Vec<String> = Vec::new();
    let mut bandwidth = None;
    let mut disk = None;
    let mut delete_on_fetch = None;
    let mut allow_open_mode = None;
    let mut test_sessions = None;
    for pair in pairs.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            if pairs.trim().is_empty() {
                break;
            }
            return Err(syntax(line, "empty limit between commas"));
        }
        let (k, v) = pair
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| syntax(line, format!("expected <limit>=<value>, found \"{pair}\"")))?;
        if v.is_empty() || v.contains(char::is_whitespace) {
            return Err(ConfigError::invalid(line, k, v, "expected one word"));
        }
        let key = k.to_ascii_lowercase();
        if seen.contains(&key) {
            return Err(syntax(line, format!("\"{k}\" given twice")));
        }
        seen.push(key.clone());
        match key.as_str() {
            "parent" => {
                if classes.is_empty() {
                    return Err(syntax(
                        line,
                        "the first class is the root and cannot have a parent",
                    ));
                }
                if !classes.iter().any(|c| c.name == v) {
                    return Err(ConfigError::invalid(
                        line,
                        "parent",
                        v,
                        "no such class defined above",
                    ));
                }
                parent = Some(v.to_owned());
            }
            "bandwidth" => {
                bandwidth = Some(parse_scaled(v).map_err(|r| ConfigError::invalid(line, k, v, r))?)
            }
            "disk" => {
                disk = Some(parse_scaled(v).map_err(|r| ConfigError::invalid(line, k, v, r))?)
            }
            "test_sessions" => {
                test_sessions =
                    Some(parse_scaled(v).map_err(|r| ConfigError::invalid(line, k, v, r))?)
            }
            "delete_on_fetch" => delete_on_fetch = Some(on_off(line, k, v)?),
            "allow_open_mode" => allow_open_mode = Some(on_off(line, k, v)?),
            _ => {
                return Err(ConfigError::new(
                    line,
                    ConfigErrorKind::UnknownKeyword(k.to_owned()),
                ))
            }
        }
    }
    if parent.is_none() && !classes.is_empty() {
        return Err(syntax(
            line,
            format!(
                "class \"{name}\" needs a parent (only the first class, \"{}\", is the root)",
                classes[0].name
            ),
        ));
    }
    let inherited = parent
        .as_deref()
        .and_then(|p| classes.iter().find(|c| c.name == p))
        .map(|c| c.settings.clone())
        .unwrap_or_default();
    Ok(ClassDef {
        line,
        name: name.to_owned(),
        parent,
        settings: ClassSettings {
            bandwidth: bandwidth.unwrap_or(inherited.bandwidth),
            disk: disk.unwrap_or(inherited.disk),
            delete_on_fetch: delete_on_fetch.unwrap_or(inherited.delete_on_fetch),
            allow_open_mode: allow_open_mode.unwrap_or(inherited.allow_open_mode),
            test_sessions: test_sessions.unwrap_or(inherited.test_sessions),
        },
    })
}

fn parse_assign(
    line: usize,
    rest: &str,
    classes: &[ClassDef],
    assigns: &[Assign],
) -> Result<Assign, ConfigError> {
    let body = strip_trailing_comment(rest);
    let words: Vec<&str> = body.split_whitespace().collect();
    let usage = "expected \"assign default <class>\", \"assign net <addr/prefix> <class>\" or \"assign user <identity> <class>\"";
    let (selector, class) = match words.as_slice() {
        [how, class] if how.eq_ignore_ascii_case("default") => {
            if assigns.iter().any(|a| a.selector == Selector::Default) {
                return Err(syntax(line, "more than one \"assign default\" line"));
            }
            (Selector::Default, *class)
        }
        [how, net, class] if how.eq_ignore_ascii_case("net") => {
            let (addr, prefix) =
                parse_net(net).map_err(|r| ConfigError::invalid(line, "assign net", *net, r))?;
            (Selector::Net { addr, prefix }, *class)
        }
        [how, user, class] if how.eq_ignore_ascii_case("user") => {
            if user.len() > super::pfs::MAX_IDENTITY_LEN {
                return Err(ConfigError::invalid(
                    line,
                    "assign user",
                    *user,
                    "identity too long",
                ));
            }
            (Selector::User((*user).to_owned()), *class)
        }
        [how, ..]
            if !["default", "net", "user"]
                .iter()
                .any(|k| how.eq_ignore_ascii_case(k)) =>
        {
            return Err(syntax(
                line,
                format!("unknown assign type \"{how}\"; {usage}"),
            ))
        }
        _ => return Err(syntax(line, usage)),
    };
    if !classes.iter().any(|c| c.name == class) {
        return Err(ConfigError::invalid(
            line,
            "class",
            class,
            "no such class defined above",
        ));
    }
    Ok(Assign {
        line,
        selector,
        class: class.to_owned(),
    })
}

/// Parses the text of a limits file.
pub fn parse(text: &str) -> Result<LimitsConf, ConfigError> {
    let mut classes: Vec<ClassDef> = Vec::new();
    let mut assigns: Vec<Assign> = Vec::new();
    for l in logical_lines(text)? {
        let (word, rest) = l
            .text
            .split_once(char::is_whitespace)
            .unwrap_or((l.text.as_str(), ""));
        if word.eq_ignore_ascii_case("limit") {
            let c = parse_limit(l.line, rest, &classes)?;
            classes.push(c);
        } else if word.eq_ignore_ascii_case("assign") {
            let a = parse_assign(l.line, rest, &classes, &assigns)?;
            assigns.push(a);
        } else {
            return Err(ConfigError::new(
                l.line,
                ConfigErrorKind::UnknownKeyword(word.to_owned()),
            ));
        }
    }
    if classes.is_empty() {
        return Ok(LimitsConf {
            assigns,
            ..LimitsConf::default()
        });
    }
    Ok(LimitsConf { classes, assigns })
}

#[cfg(test)]
mod tests {
    use super::*;
    use owamp_core::control::{Mode, RequestSession, Role};
    use owamp_core::policy::{Peer, ServerPolicy, TestAdmission};
    use owamp_core::time::{Interval, OwampTime};
    use owamp_core::wire::{SessionId, Slot, SlotKind, TypeP};

    /// The limits of the server that recorded the reference traces.
    const REFERENCE: &str =
        "limit root with disk=0, bandwidth=0, delete_on_fetch=on, allow_open_mode=on
limit regular with parent=root, disk=10G, bandwidth=20M
limit authd with parent=root, disk=10G, bandwidth=0
assign default regular
assign user alice authd
assign user bob authd
";

    /// The cookbook's classes and net assignments, continuation lines included.
    const COOKBOOK: &str = "# total available
limit root with \\
    disk=100M, \\
    bandwidth=0, \\
    delete_on_fetch=on, \\
    allow_open_mode=off

# Hostile
limit hostile with parent=root, \\
    disk=1, \\
    bandwidth=1

# NOC
limit noc with parent=root, \\
    allow_open_mode=on

# loopback
assign net ::/127 noc
assign net 127.0.0.1/32 noc
# now nonexistent abilene nmslan (observatory systems)
assign net 2001:468:0::/40 noc
assign net 198.32.10.0/23 noc
assign net 10.0.0.0/16 hostile

# network admins
    assign user joe root
    assign user jim root
    assign user bob root

# measurement geeks
    assign user boote noc
";

    fn pfs(ids: &[&str]) -> PfsFile {
        let text: String = ids.iter().map(|i| format!("{i} 6162\n")).collect();
        super::super::pfs::parse(&text).unwrap()
    }

    /// Each class is a directory of the data directory's hierarchy: names that cannot be
    /// one are refused.
    #[test]
    fn class_names_must_name_a_directory() {
        for bad in ["a/b", "*", ".", ".."] {
            let text = format!("limit {bad} with disk=1\n");
            assert!(parse(&text).is_err(), "{bad}");
        }
        assert!(parse("limit .hidden with disk=1\n").is_ok());
    }

    #[test]
    fn reference_limits() {
        let l = parse(REFERENCE).unwrap();
        assert_eq!(l.classes.len(), 3);
        let regular = l.class("regular").unwrap();
        assert_eq!(regular.parent.as_deref(), Some("root"));
        assert_eq!(regular.settings.bandwidth, 20_000_000);
        assert_eq!(regular.settings.disk, 10_000_000_000);
        // Inherited from root.
        assert!(regular.settings.delete_on_fetch);
        assert!(regular.settings.allow_open_mode);
        assert_eq!(l.default_class(), "regular");
        assert_eq!(l.assigns[1].selector, Selector::User("alice".into()));
        l.check_users(&pfs(&["alice", "bob"])).unwrap();
        assert_eq!(l.check_users(&pfs(&["alice"])).unwrap_err().line, 6);
    }

    #[test]
    fn cookbook_limits_with_continuations() {
        let l = parse(COOKBOOK).unwrap();
        let root = l.class("root").unwrap();
        assert_eq!(root.line, 2);
        assert_eq!(root.settings.disk, 100_000_000);
        assert!(!root.settings.allow_open_mode);
        let hostile = l.class("hostile").unwrap();
        assert_eq!((hostile.settings.disk, hostile.settings.bandwidth), (1, 1));
        assert!(!hostile.settings.allow_open_mode);
        let noc = l.class("noc").unwrap();
        assert!(noc.settings.allow_open_mode);
        assert_eq!(noc.settings.disk, 100_000_000);
        assert_eq!(l.assigns.len(), 9);
        assert_eq!(
            l.assigns[2].selector,
            Selector::Net {
                addr: "2001:468::".parse().unwrap(),
                prefix: 40
            }
        );
        assert_eq!(l.default_class(), "root");
    }

    fn request() -> RequestSession {
        RequestSession {
            conf_sender: false,
            conf_receiver: true,
            slots: vec![Slot {
                kind: SlotKind::Exponential,
                mean: Interval::from_raw(0x1999_9999),
            }],
            num_packets: 100,
            sender_port: 1,
            receiver_port: 0,
            sender_address: "127.0.0.1".parse().unwrap(),
            receiver_address: "127.0.0.1".parse().unwrap(),
            sid: SessionId::default(),
            padding_length: 0,
            start_time: OwampTime::default(),
            timeout: Interval::from_secs(2),
            type_p: TypeP::BEST_EFFORT,
            hmac: [0; 16],
            slots_hmac: [0; 16],
        }
    }

    #[test]
    fn cookbook_policy_classifies_by_network() {
        let l = parse(COOKBOOK).unwrap();
        let ids = pfs(&["joe", "jim", "bob", "boote"]);
        l.check_users(&ids).unwrap();
        let mut p = l.to_policy(Modes::ALL, &ids, 1.0);
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        // Open mode only where the class allows it.
        assert!(p.modes(ip("127.0.0.1")).contains(Mode::Open));
        assert!(p.modes(ip("::1")).contains(Mode::Open));
        assert!(!p.modes(ip("192.0.2.7")).contains(Mode::Open));
        assert!(!p.modes(ip("10.0.3.4")).contains(Mode::Open));
        assert_eq!(p.class_for(ip("198.32.11.1"), None), "noc");
        assert_eq!(p.class_for(ip("10.0.3.4"), Some(b"joe")), "root");
        assert_eq!(p.passphrase(b"boote"), Some(b"ab".into()));
        // The hostile class's 1 bit/s refuses any test.
        let r = request();
        let t = TestAdmission {
            peer: Peer {
                addr: ip("10.0.3.4"),
                mode: Mode::Authenticated,
                key_id: Some(b"nobody"),
            },
            sid: SessionId([3; 16]),
            role: Role::Receiver,
            request: &r,
        };
        assert!(p.admit_test(&t).is_err());
        let noc = TestAdmission {
            peer: Peer {
                addr: ip("127.0.0.1"),
                mode: Mode::Open,
                key_id: None,
            },
            ..t
        };
        assert!(p.admit_test(&noc).is_ok());
    }

    #[test]
    fn man_page_examples() {
        let text = "limit root with \\\nbandwidth=900m, \\\ndisk=2g, \\\nallow_open_mode=off\n\
limit jail with \\\nparent=root, \\\nbandwidth=1, \\\ndisk=1, \\\nallow_open_mode=off\n\
limit open with \\\nparent=root, \\\nbandwidth=10k, \\\ndisk=10m, \\\nallow_open_mode=on\n\
# default open\nassign default open\n# badguys subnet\nassign net 192.168.1.0/24 jail\n";
        let l = parse(text).unwrap();
        assert_eq!(l.class("root").unwrap().settings.bandwidth, 900_000_000);
        assert_eq!(l.class("open").unwrap().settings.disk, 10_000_000);
        assert_eq!(l.default_class(), "open");
    }

    #[test]
    fn no_limits_means_one_unlimited_default_class() {
        let l = parse("# nothing\n").unwrap();
        assert_eq!(l, LimitsConf::default());
        assert_eq!(l.default_class(), "default");
        assert!(l.class("default").unwrap().settings.allow_open_mode);
    }

    #[test]
    fn errors_name_their_line() {
        let cases: &[(&str, usize)] = &[
            ("limit root with disk=1\nlimit x with disk=2\n", 2), // no parent
            ("limit root with parent=root\n", 1),                 // root with parent
            ("limit root with disk=1\nlimit root with parent=root\n", 2), // twice
            ("limit root with disk=1x\n", 1),
            ("limit root with speed=1\n", 1),
            ("limit root with disk=1, disk=2\n", 1),
            ("limit root disk=1\n", 1),
            ("limit root with allow_open_mode=maybe\n", 1),
            ("limit root with\n\nassign default nobody\n", 3),
            ("limit root with\nassign net 10.0.0.1/8 root\n", 2),
            ("limit root with\nassign net 10.0.0.0/33 root\n", 2),
            ("limit root with\nassign net host.example/8 root\n", 2),
            ("limit root with\nassign user root\n", 2),
            ("limit root with\nassign group x root\n", 2),
            (
                "limit root with\nassign default root\nassign default root\n",
                3,
            ),
            ("limit root with\nallow everyone\n", 2),
            ("limit root with \\\n disk=1 \\ x\n", 2),
            ("limit a with\nlimit b with parent=c\n", 2),
        ];
        for (text, line) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, *line, "{text:?}: {e}");
        }
    }

    #[test]
    fn nets() {
        assert_eq!(
            parse_net("127.0.0.1"),
            Ok(("127.0.0.1".parse().unwrap(), 32))
        );
        assert_eq!(parse_net("::/127"), Ok(("::".parse().unwrap(), 127)));
        assert!(parse_net("192.168.1.1/24").is_err());
        assert!(parse_net("10.0.0.0/0").is_err());
    }
}
