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
}

impl Daemon {
    /// Starts owampd with `conf` (plus a listen address and directories) and, when given,
    /// `limits` and `pfs` files in a temporary configuration directory.
    pub fn start(conf: &str, limits: Option<&str>, pfs: Option<&str>) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let text = format!(
            "srcnode 127.0.0.1:0\ndatadir {}\nvardir {}\n{conf}",
            data.display(),
            dir.path().display()
        );
        std::fs::write(dir.path().join("owamp-server.conf"), text).unwrap();
        if let Some(l) = limits {
            std::fs::write(dir.path().join("owamp-server.limits"), l).unwrap();
        }
        if let Some(p) = pfs {
            std::fs::write(dir.path().join("owamp-server.pfs"), p).unwrap();
        }
        let mut child = Command::new(OWAMPD)
            // -f: the tests may run as root; -Z: in the foreground, logging to standard error.
            .args(["-f", "-Z", "-c"])
            .arg(dir.path())
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
            let line = rx
                .recv_timeout(left)
                .expect("owampd did not start listening");
            // "listening on 127.0.0.1:P" or, for a wildcard, "listening on [::]:P, 0.0.0.0:P".
            if let Some(rest) = line.split("listening on ").nth(1) {
                let first = rest.split([',', ' ']).next().unwrap_or_default();
                let addr: std::net::SocketAddr = first.parse().unwrap();
                break addr.port();
            }
        };
        Daemon {
            child,
            port,
            dir,
            log: rx,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
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
