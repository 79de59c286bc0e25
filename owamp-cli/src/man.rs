//! Version flags and the manual pages of the tools.
//!
//! Every tool prints `Version: X` under its `-h` (as perfSONAR's tools do) and answers
//! `--version` (perfSONAR's have no such flag; `-V` is left free for them). The section 1 and
//! 8 manual pages are generated from the same clap definitions that parse the command lines
//! (`clap_mangen`), so a flag can not be documented differently from how it is parsed; the
//! sections clap knows nothing of (exit status, files, signals, see also) come from
//! `extra_sections`. The pages are committed under `docs/man/manN/`; the `man_pages` test
//! fails when they are stale and rewrites them with `OWAMP_UPDATE_MAN=1`.

use clap::{Arg, ArgAction, Command, CommandFactory};
use clap_mangen::roff::{roman, Roff};

/// This implementation's version, as `--version` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The line every tool's `-h` ends with.
pub const VERSION_LINE: &str = concat!("Version: ", env!("CARGO_PKG_VERSION"));

/// `--version` (long only: perfSONAR's tools give `-V` no meaning, and we keep it that way).
pub fn version_flag() -> Arg {
    Arg::new("version")
        .long("version")
        .action(ArgAction::Version)
        .help("print the version and exit")
}

/// A tool's manual page.
pub struct Page {
    /// The tool's name (the page's file is `NAME.SECTION`).
    pub name: &'static str,
    /// The manual section: 1 for the clients, 8 for owampd.
    pub section: u8,
    /// The page in roff.
    pub roff: String,
}

impl Page {
    /// The page's file name, e.g. `owping.1`.
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.name, self.section)
    }
}

/// Every tool with its section and command definition.
pub fn commands() -> Vec<(&'static str, u8, Command)> {
    vec![
        ("owping", 1, crate::owping::Args::command()),
        ("owfetch", 1, crate::owfetch::Args::command()),
        ("owstats", 1, crate::owstats::command()),
        ("owup", 1, crate::owup::Args::command()),
        ("powstream", 1, crate::powstream::Args::command()),
        ("pfstore", 1, crate::pfstore::Args::command()),
        ("owampd", 8, crate::owampd::Args::command()),
        ("twping", 1, crate::twping::Args::command()),
        ("twampd", 8, crate::twampd::command()),
        ("stamp", 1, crate::stamp::Args::command()),
        ("stamp-reflect", 1, crate::stamp::subcommand("reflect")),
        ("stamp-send", 1, crate::stamp::subcommand("send")),
    ]
}

/// The generated pages of every tool.
pub fn pages() -> Vec<Page> {
    commands()
        .into_iter()
        .map(|(name, section, cmd)| Page {
            name,
            section,
            roff: render(name, section, cmd),
        })
        .collect()
}

/// One tool's page: clap's title, name, synopsis, description and options, then the
/// sections of [`extra_sections`] and the version.
fn render(name: &str, section: u8, cmd: Command) -> String {
    let cmd = cmd.after_help(None::<&str>).long_about(description(name));
    let man = clap_mangen::Man::new(cmd)
        .section(section.to_string())
        .source(format!("owamp-rs {VERSION}"))
        .manual(if section == 8 {
            "System Manager's Manual"
        } else {
            "User Commands"
        });
    let mut out = Vec::new();
    // Writing into a Vec can not fail.
    let _ = man.render_title(&mut out);
    let _ = man.render_name_section(&mut out);
    let _ = man.render_synopsis_section(&mut out);
    let _ = man.render_description_section(&mut out);
    let _ = man.render_options_section(&mut out);
    let mut extra = Roff::new();
    for (title, paragraphs) in extra_sections(name) {
        extra.control("SH", [*title]);
        for p in *paragraphs {
            extra.control("PP", []).text([roman(*p)]);
        }
    }
    let _ = extra.to_writer(&mut out);
    let _ = man.render_version_section(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The page's DESCRIPTION (the command's `about` is its NAME line).
fn description(name: &str) -> &'static str {
    match name {
        "owping" => "owping asks an OWAMP server (RFC 4656) for one-way latency test sessions and runs them: by default one from this host to the server and one back, at the same time. When they are over it fetches what the server received and prints, for each direction, the statistics owstats(1) prints: delays, their spread, loss, duplicates, reordering and hop counts. TESTADDR is host, host:port, [v6addr] or [v6addr]:port; the port defaults to 861.",
        "owfetch" => "owfetch fetches sessions an OWAMP server has stored, by their SID, and saves each in the .owp file named after it; unless -Q it prints each session's statistics as owstats(1) does.",
        "owstats" => "owstats reads .owp session files (written by owping -F/-T, owfetch, powstream or owampd) and prints their statistics: the summary perfSONAR's owstats prints, the raw records (-R), the machine-readable summary (-M) or JSON (--json).",
        "owup" => "owup sets up a control connection with an OWAMP server and prints the time the server started, which the server sends in its Server-Start message.",
        "powstream" => "powstream runs one-way latency sessions with an OWAMP server without end, each of a fixed number of packets, and saves each session and its summary in the output directory as soon as it is over.",
        "pfstore" => "pfstore creates and edits a pass-phrase store: the file of identities and pass-phrases that owampd and the clients read for authenticated and encrypted modes (see owamp-server.pfs(5)). It asks for the pass-phrase without echo on a terminal and reads a line of standard input otherwise.",
        "owampd" => "owampd is an OWAMP server (RFC 4656): it accepts control connections, runs the one-way test sessions clients ask for within the limits of their class, stores the sessions it receives, and serves them to clients that fetch them. Its settings come from owamp-server.conf(5), owamp-server.limits(5) and owamp-server.pfs(5) in the configuration directory; a flag wins over the file.",
        "twping" => "twping runs a two-way latency test (TWAMP, RFC 5357) against a TWAMP server: it asks for one session with Request-TW-Session, sends the test packets itself and times the replies of the server's reflector. It prints the round-trip, send and reflect delays, the reflector's processing time, jitter, loss, duplicates and hops as perfSONAR's twping does, each reply's timestamps (-R), the machine-readable summary (-M) or JSON (--json). HOST is host, host:port, [v6addr] or [v6addr]:port; the port defaults to 862.",
        "twampd" => "twampd is a TWAMP server (RFC 5357): it accepts TWAMP-Control connections and reflects the test packets of the sessions clients ask for. It takes owampd(8)'s flags and file formats; its files are twamp-server.conf, twamp-server.limits and twamp-server.pfs in the configuration directory, and it listens on port 862 unless srcnode says otherwise.",
        "stamp" => "stamp measures two-way latency without a control connection: stamp reflect is a STAMP Session-Reflector (RFC 8762) or, with --light, a TWAMP Light reflector (RFC 5357 Appendix I); stamp send is a Session-Sender that sends a fixed number of packets at a fixed interval and prints twping(1)'s statistics. STAMP and TWAMP Light interoperate in unauthenticated mode (RFC 8762 4.6). In authenticated mode (--auth-key-file, RFC 8762 4.4) every packet carries an HMAC-SHA-256 truncated to 16 octets, keyed with the key in the file (hexadecimal digits, whitespace ignored, 16 to 64 octets) that both ends must share. See stamp-reflect(1) and stamp-send(1).",
        "stamp-reflect" => "stamp reflect answers every valid STAMP (or, with --light, TWAMP Light) test packet that reaches its address with the reflector packet: its receive and send timestamps, the TTL the packet arrived with and the sender's fields. A reply has the length of the packet it answers, or of the reflector's base packet if that is longer (RFC 8762 4.6). Stateless (the default), a reply carries the sender's sequence number; with --stateful the reflector numbers its replies to each sender from 0, so that a sender can tell the loss of each direction apart (RFC 8762 4.3). It prints the address it listens on, runs until SIGINT or SIGTERM and prints what it reflected and dropped.",
        "stamp-send" => "stamp send sends count test packets (-c) to the reflector at HOST, one every interval seconds (-i), waits for the replies up to timeout seconds (-L) after the last, and prints the round-trip, send and reflect delays, the reflector's processing time, jitter, loss, duplicates and hops as twping(1) does, each reply's timestamps (-R), the machine-readable summary (-M) or JSON (--json). There is no session identifier: the SID printed is zero. HOST is host, host:port, [v6addr] or [v6addr]:port; the port defaults to 862. Without --light the packets are STAMP's, which a TWAMP Light reflector answers too; with --light they are TWAMP Light's, which a STAMP reflector answers too.",
        _ => "",
    }
}

/// The sections of a page that the command definition does not hold.
fn extra_sections(name: &str) -> &'static [(&'static str, &'static [&'static str])] {
    match name {
        "owping" => &[
            ("EXIT STATUS", &[
                "0 when every requested direction ran to its end and its records were read; 1 when a session was refused, cut short, its records could not be fetched or saved, or a sender could not keep its schedule; 2 after a second interrupt.",
            ]),
            ("SEE ALSO", &["owampd(8), owstats(1), owfetch(1), powstream(1), pfstore(1), owamp-server.pfs(5). RFC 4656."]),
        ],
        "owfetch" => &[
            ("EXIT STATUS", &["0 when every session was fetched and saved; 1 otherwise (the output file is created before the server is asked, so a bad path costs nothing on the server)."]),
            ("SEE ALSO", &["owampd(8), owstats(1), owping(1)."]),
        ],
        "owstats" => &[
            ("EXIT STATUS", &["0 when every file was read and summarised; 1 otherwise."]),
            ("SEE ALSO", &["owping(1), owfetch(1), powstream(1)."]),
        ],
        "owup" => &[
            ("OUTPUT", &["One line, \"Server Up Since: \" followed by the time the server started in local time, to the millisecond, with the time zone's abbreviation."]),
            ("EXIT STATUS", &["0 when the server answered; 1 when it could not be reached or refused the connection."]),
            ("SEE ALSO", &["owampd(8), owping(1)."]),
        ],
        "powstream" => &[
            ("SEVERAL PEERS", &[
                "The operands keep perfSONAR's meaning: TESTADDR [SERVADDR], one peer, its files straight in the output directory. --peer and --peers add peers; with either, every peer (the operand's too) is measured from this one process, on a thread of its own, and its files go to DIR/NAME/, created if missing, NAME being the peer's host with every character but letters, digits, '.' and '-' replaced by '_', then '_' and the port (127.0.0.1_8610, __1_8611 for [::1]:8611).",
                "A --peers file holds one peer a line: host[:port] then key=value settings for that peer only; '#' starts a comment and blank lines are skipped. Keys: mode (as -A), user (-u), interval (-i), count (-c), dscp (a DSCP number or name), direction (to, as -t, or from), timeout (-L). A bad line stops powstream at start, named FILE:LINE. A --peer value takes the same form.",
                "A peer whose sessions cannot be set up is retried after -I seconds, then twice as long each time up to 10 minutes, each wait drawn at random from the upper half; the other peers go on. Messages of a peer start with its NAME. -X counts per peer.",
            ]),
            ("ARCHIVE", &["--archive FILE appends one JSON object per finished session to FILE (- for standard output), a line each, flushed at once: the -j summary plus peer, source, destination, sid, start_ntp, start_time, end_ntp, end_time, file, complete and error. Its schema is in docs/archive.md. The file is opened for appending, so copy-and-truncate rotation loses nothing; after a rotation that renames it, restart powstream."]),
            ("FILES", &["In the output directory: START_END.owp for each session and, unless -p, START_END.sum with its summary; .powlock keeps a second powstream out of the directory."]),
            ("EXIT STATUS", &["0 after an interrupt or terminate signal once the current session is saved; 1 on an error that stops it (with several peers: of any peer, including a bounded run in which a peer saved nothing)."]),
            ("SEE ALSO", &["owping(1), owstats(1), owampd(8)."]),
        ],
        "pfstore" => &[
            ("FILES", &["The pfs file (see owamp-server.pfs(5)), and .pfstore.lock beside it while it is being edited."]),
            ("EXIT STATUS", &["0 on success; 1 on any error (the file is then unchanged)."]),
            ("SEE ALSO", &["owamp-server.pfs(5), owampd(8), owping(1)."]),
        ],
        "owampd" => &[
            ("FILES", &[
                "In the configuration directory (-c): owamp-server.conf, owamp-server.limits and owamp-server.pfs (or the older owampd.conf, owampd.limits and owampd.pfs).",
                "In the var directory (-R, or vardir): owamp-server.pid, locked while owampd runs, and owamp-server.info with START= its start time (a 64-bit NTP timestamp in decimal) and PID= its process id, as perfSONAR's owampd writes it.",
                "In the data directory (-d, or datadir), perfSONAR's layout: hierarchy/ROOT/CLASS/.../SID.owp, the received sessions in a directory per limits class, nested as the classes are (SID in 32 lowercase hexadecimal digits); a session being received is written to SID.owp.i there and renamed when it ends. catalog/SID.owp, a link to each session's file, through which Fetch-Session opens it; the file's directory decides whose delete_on_fetch applies. At start-up the catalog is rebuilt from hierarchy/ and each class is charged the size of its files, so disk limits hold across restarts. Sessions of the older flat layout (datadir/SID.owp) are still served. perfSONAR's owampd-cleanup script works on these directories; keepfor in owamp-server.conf(5) deletes old sessions from owampd itself.",
            ]),
            ("SIGNALS", &["SIGTERM and SIGINT stop the running sessions, keep their records and end owampd; SIGHUP does the same."]),
            ("EXIT STATUS", &["0 after a signal stopped it; 1 when it could not start (bad configuration, address in use, another owampd holding the pid file)."]),
            ("SEE ALSO", &["owamp-server.conf(5), owamp-server.limits(5), owamp-server.pfs(5), owping(1), owfetch(1), pfstore(1). RFC 4656."]),
        ],
        "twping" => &[
            ("EXIT STATUS", &["0 when the test ran to its end; 1 on any failure (no connection, refused, a control error)."]),
            ("SEE ALSO", &["twampd(8), owping(1). RFC 5357."]),
        ],
        "twampd" => &[
            ("FILES", &["In the configuration directory (-c): twamp-server.conf, twamp-server.limits and twamp-server.pfs (or twampd.conf, twampd.limits and twampd.pfs), in the formats of owamp-server.conf(5), owamp-server.limits(5) and owamp-server.pfs(5). No pid or info file is written."]),
            ("SIGNALS", &["SIGTERM, SIGINT and SIGHUP stop the reflectors and end twampd."]),
            ("EXIT STATUS", &["0 after a signal stopped it; 1 when it could not start."]),
            ("SEE ALSO", &["twping(1), owampd(8). RFC 5357."]),
        ],
        "stamp" | "stamp-reflect" | "stamp-send" => &[
            ("EXIT STATUS", &["0 when the test ran (whatever was lost) or the reflector was stopped by a signal; 1 on a bad argument, an unreadable key file or a socket that could not be opened."]),
            ("SEE ALSO", &["stamp(1), stamp-reflect(1), stamp-send(1), twping(1), twampd(8). RFC 8762, RFC 5357."]),
        ],
        _ => &[],
    }
}
