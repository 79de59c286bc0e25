//! Entry points for the fuzz targets of `fuzz/` (cargo feature `fuzzing`, which only the fuzz
//! crate and the conformance crate's smoke test enable): each tool's command line parsed by
//! its clap definition and checked as the tool checks it before it reads a file, prompts or
//! touches the network, with the checked values handed back for the targets' property
//! checks. Not a stable API. (The tools render clap's errors for the user; here only their
//! kind is kept, which makes a fuzzing run several times faster.)

use std::ffi::OsString;
use std::time::Duration;

use clap::Parser;

use owamp_core::control::{Modes, PortRange, Role};
use owamp_core::wire::{SessionId, Slot};

use crate::client::{self, HostSpec};
use crate::config::{pfs, server};
use crate::{owampd, owfetch, owping, owstats, pfstore, powstream};

/// What owping accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct OwpingLine {
    /// `-c`.
    pub count: u32,
    /// `-i`.
    pub slots: Vec<Slot>,
    /// `-L` (none: the default).
    pub timeout: Option<f64>,
    /// `-z`.
    pub delay_start: f64,
    /// `-E`.
    pub end_delay: Option<f64>,
    /// `-s`, capped.
    pub padding: u32,
    /// `-D`.
    pub dscp: u8,
    /// `-P`.
    pub ports: Option<PortRange>,
    /// Which directions.
    pub to: bool,
    /// Which directions.
    pub from: bool,
    /// `-A`.
    pub modes: Modes,
    /// `--max-pbkdf2-count`.
    pub max_pbkdf2_count: Option<u32>,
    /// The peer and the server.
    pub hosts: (HostSpec, HostSpec),
    /// owstats's options.
    pub stats: owstats::Options,
}

/// owping's command line, as owping parses and checks it (`argv[0]` is the program).
pub fn owping(argv: Vec<OsString>) -> Result<OwpingLine, String> {
    let args: owping::Args =
        client::parse_args(owstats::split_attached_verbose(argv), &mut std::io::sink())
            .map_err(|code| format!("clap refused it (exit status {code})"))?;
    let p = owping::plan(args, &mut std::io::sink())?;
    // As client::client_options: owping refuses TWAMP's mixed mode (M).
    let modes = crate::config::server::owamp_modes(client::parse_authmode(
        p.args.conn.authmode.as_deref(),
    )?)
    .map_err(|e| format!("Invalid -authmode: {e}"))?;
    Ok(OwpingLine {
        count: p.args.count,
        slots: p.slots,
        timeout: p.timeout,
        delay_start: p.delay_start,
        end_delay: p.end_delay,
        padding: p.padding,
        dscp: p.dscp,
        ports: p.ports,
        to: p.to,
        from: p.from,
        modes,
        max_pbkdf2_count: p.args.conn.max_pbkdf2_count,
        hosts: (p.test, p.serv),
        stats: p.out,
    })
}

/// What powstream accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct PowstreamLine {
    /// Packets per session and per summary (0: one summary).
    pub count: u32,
    /// Packets per summary.
    pub sub_count: u32,
    /// The one exponential slot.
    pub slot: Slot,
    /// The loss timeout.
    pub timeout: Duration,
    /// Padding, capped.
    pub padding: u32,
    /// `-E`.
    pub end_delay: Option<Duration>,
    /// `-z`.
    pub delay_start: Duration,
    /// `-I`.
    pub retry: Duration,
    /// `-b`.
    pub bucket_width: f64,
    /// `-P`.
    pub ports: Option<PortRange>,
    /// Sender (`-t`) or receiver.
    pub role: Role,
    /// `--max-pbkdf2-count`.
    pub max_pbkdf2_count: Option<u32>,
}

/// powstream's command line, as powstream parses and checks it.
pub fn powstream(argv: Vec<OsString>) -> Result<PowstreamLine, String> {
    let args = powstream::Args::try_parse_from(argv).map_err(|e| e.kind().to_string())?;
    let p = powstream::plan(args)?;
    Ok(PowstreamLine {
        count: p.spec.packets,
        sub_count: p.sub_count,
        slot: p.spec.slots.first().copied().ok_or("no slot")?,
        timeout: p.spec.timeout,
        padding: p.spec.padding,
        end_delay: p.end_delay,
        delay_start: p.delay_start,
        retry: p.retry,
        bucket_width: p.bucket_width,
        ports: p.ports,
        role: p.role,
        max_pbkdf2_count: p.args.max_pbkdf2_count,
    })
}

/// What owfetch accepted: the server and the SIDs to fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct OwfetchLine {
    /// The server.
    pub server: HostSpec,
    /// The sessions and where they go.
    pub pairs: Vec<(SessionId, String)>,
    /// owstats's options.
    pub stats: owstats::Options,
}

/// owfetch's command line, checked as owfetch checks it before it connects.
pub fn owfetch(argv: Vec<OsString>) -> Result<OwfetchLine, String> {
    let a: owfetch::Args =
        client::parse_args(owstats::split_attached_verbose(argv), &mut std::io::sink())
            .map_err(|code| format!("clap refused it (exit status {code})"))?;
    if a.pairs.len() % 2 != 0 {
        return Err("odd SID savefile list".into());
    }
    let pairs = a
        .pairs
        .chunks(2)
        .map(|c| Ok((owfetch::parse_sid(&c[0])?, c[1].clone())))
        .collect::<Result<_, String>>()?;
    let stats = a
        .output
        .owstats_options("owfetch", &mut Vec::new())
        .map_err(|e| e.kind().to_string())?;
    a.conn.family()?;
    client::parse_authmode(a.conn.authmode.as_deref())?;
    Ok(OwfetchLine {
        server: client::parse_host(&a.servaddr, client::CONTROL_PORT)?,
        pairs,
        stats,
    })
}

/// owstats's command line (its own parser).
pub fn owstats(argv: Vec<OsString>) -> Result<owstats::Options, String> {
    owstats::parse_options(argv, &mut Vec::new()).map_err(|e| e.kind().to_string())
}

/// The listening node (`None`: the wildcard) and port of owampd's `-S`.
pub type Listen = (Option<String>, u16);

/// owampd's command line applied to an empty configuration file, as owampd applies it, and
/// the listening node and port of its `-S` (not resolved).
pub fn owampd(argv: Vec<OsString>) -> Result<(server::ServerConf, Option<Listen>), String> {
    let args = owampd::Args::try_parse_from(argv).map_err(|e| e.kind().to_string())?;
    let mut conf = server::ServerConf::default();
    owampd::apply_command_line(&mut conf, &args).map_err(|e| e.0)?;
    let listen = conf
        .srcnode
        .as_deref()
        .map(owampd::parse_srcnode)
        .transpose()?;
    Ok((conf, listen))
}

/// pfstore's command line, and the identity checked as pfstore checks it before it opens the
/// file.
pub fn pfstore(argv: Vec<OsString>) -> Result<pfstore::Args, String> {
    let a = pfstore::Args::try_parse_from(argv).map_err(|e| e.kind().to_string())?;
    pfs::check_identity(&a.identity)?;
    Ok(a)
}
