//! What the end-to-end tests share: an owampd on 127.0.0.1 with a temporary configuration,
//! and running tools as processes within a time limit.

// Each test crate uses its own part of these.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const OWAMPD: &str = env!("CARGO_BIN_EXE_owampd");

/// A running owampd, killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub log: mpsc::Receiver<String>,
    pub launch: Launch,
}

/// Where an owampd listens: an address (and the network namespace it runs in, if not ours).
#[derive(Debug, Clone)]
pub struct Launch {
    pub ip: String,
    pub netns: Option<String>,
}

impl Default for Launch {
    fn default() -> Self {
        Launch {
            ip: "127.0.0.1".into(),
            netns: None,
        }
    }
}

/// The `data` directory of a new temporary configuration directory (the caller may mount
/// something on it before the daemon starts).
pub fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    dir
}

impl Daemon {
    /// Starts owampd with `conf` (plus a listen address and directories) and, when given,
    /// `limits` and `pfs` files in a temporary configuration directory.
    pub fn start(conf: &str, limits: Option<&str>, pfs: Option<&str>) -> Daemon {
        Self::start_in(config_dir(), conf, limits, pfs, Launch::default())
    }

    /// As [`start`](Self::start), in `dir` (made by [`config_dir`]), listening as `launch`
    /// says.
    pub fn start_in(
        dir: tempfile::TempDir,
        conf: &str,
        limits: Option<&str>,
        pfs: Option<&str>,
        launch: Launch,
    ) -> Daemon {
        let text = format!(
            "srcnode {}:0\ndatadir {}\nvardir {}\n{conf}",
            launch.ip,
            dir.path().join("data").display(),
            dir.path().display()
        );
        std::fs::write(dir.path().join("owamp-server.conf"), text).unwrap();
        if let Some(l) = limits {
            std::fs::write(dir.path().join("owamp-server.limits"), l).unwrap();
        }
        if let Some(p) = pfs {
            std::fs::write(dir.path().join("owamp-server.pfs"), p).unwrap();
        }
        let (child, port, log) = spawn(dir.path(), &launch);
        Daemon {
            child,
            port,
            dir,
            log,
            launch,
        }
    }

    /// Starts owampd again on the same configuration, after killing the running one if it
    /// still runs (what it left in its directories stays).
    pub fn relaunch(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, port, log) = spawn(self.dir.path(), &self.launch);
        self.child = child;
        self.port = port;
        self.log = log;
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The log lines so far, waiting at most `limit` for one containing `want`.
    pub fn log_until(&self, want: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(l) => {
                    let found = l.contains(want);
                    lines.push(l);
                    if found {
                        return lines;
                    }
                }
                Err(_) => return lines,
            }
        }
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.launch.ip, self.port)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(mut self) -> (i32, Vec<String>) {
        // SAFETY: kill on the pid of a child we started and have not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let code = wait_bounded(&mut self.child, Duration::from_secs(20));
        // The reader thread ends at the end of standard error: take every line it has yet
        // to pass on (bounded, should something still hold the pipe open).
        let mut log = Vec::new();
        while let Ok(l) = self.log.recv_timeout(Duration::from_secs(2)) {
            log.push(l);
        }
        (code, log)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts owampd on the configuration in `dir` and waits (bounded) until it listens.
fn spawn(dir: &std::path::Path, launch: &Launch) -> (Child, u16, mpsc::Receiver<String>) {
    let mut cmd = match &launch.netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, OWAMPD]);
            c
        }
        None => Command::new(OWAMPD),
    };
    let mut child = cmd
        // -f: the tests may run as root; -Z: in the foreground, logging to standard error.
        .args(["-f", "-Z", "-c"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let port = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("owampd did not start listening");
            }
        };
        // "listening on 127.0.0.1:P" or, for a wildcard, "listening on [::]:P, 0.0.0.0:P".
        if let Some(rest) = line.split("listening on ").nth(1) {
            let first = rest.split([',', ' ']).next().unwrap_or_default();
            let addr: std::net::SocketAddr = first.parse().unwrap();
            break addr.port();
        }
    };
    (child, port, rx)
}

/// Waits for a child at most `limit`, killing it past that (the test then fails on the code).
pub fn wait_bounded(child: &mut Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a tool to completion within `limit`, feeding it `input`.
pub fn run(bin: &str, args: &[OsString], input: &str, limit: Duration) -> Output {
    run_with(Command::new(bin).args(args), input, limit)
}

/// Runs a command to completion within `limit`, feeding it `input`.
pub fn run_with(cmd: &mut Command, input: &str, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).unwrap();
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).unwrap();
        s
    });
    let code = wait_bounded(&mut child, limit);
    Output {
        code,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

pub fn args(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

/// The session files owampd keeps in its data directory `data` (perfSONAR's layout: under
/// `data/hierarchy`, a directory per limits class) whose names end with `ext`, sorted.
pub fn session_files(data: &std::path::Path, ext: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![data.join("hierarchy")];
    // Bounded by the test's own directories.
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(p);
            } else if p.to_string_lossy().ends_with(ext) {
                found.push(p);
            }
        }
    }
    found.sort();
    found
}

/// The catalog link of the session whose SID is `sid_hex` (either case) in `data`.
pub fn catalog_link(data: &std::path::Path, sid_hex: &str) -> PathBuf {
    data.join("catalog")
        .join(format!("{}.owp", sid_hex.to_ascii_lowercase()))
}
