//! Detaching from the terminal as a classic Unix daemon, the way perfSONAR's owampd does when
//! started without `-Z` (its systemd unit is `Type=forking` with a `PIDFile`).
//!
//! [`detach`] forks. The parent waits until the child says it is serving (listening, pid
//! file written) and exits 0, so that a service manager that reads the pid file once the
//! parent has exited finds it; if the child dies first, the parent exits with the child's
//! status. The child starts a new session (no controlling terminal) and reads standard
//! input from `/dev/null`; it keeps the parent's standard error until it is ready, so that a
//! start-up error (a bad configuration, a port in use) reaches whoever started it, then
//! points standard output and standard error at `/dev/null` too.
//!
//! Call [`detach`] before any thread starts: only the calling thread survives a fork.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};

/// The child's side of a detach: tell the parent with [`Detached::ready`].
#[derive(Debug)]
pub struct Detached {
    to_parent: File,
}

/// Forks; returns in the child only (the parent exits once the child is ready or gone).
pub fn detach() -> io::Result<Detached> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    let (mut from_child, to_parent) =
        unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // SAFETY: fork in a process that has not started threads (the caller's contract); the
    // child only goes on with this thread's state.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        drop(to_parent);
        let mut said = Vec::new();
        let _ = from_child.read_to_end(&mut said);
        if said.first() == Some(&b'R') {
            std::process::exit(0);
        }
        std::process::exit(child_status(pid));
    }
    drop(from_child);
    // SAFETY: setsid has no memory-safety preconditions.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    redirect_to_null(&[libc::STDIN_FILENO])?;
    Ok(Detached { to_parent })
}

impl Detached {
    /// The daemon serves: standard output and error go to `/dev/null` and the parent exits 0.
    pub fn ready(mut self) {
        let _ = redirect_to_null(&[libc::STDOUT_FILENO, libc::STDERR_FILENO]);
        let _ = self.to_parent.write_all(b"R");
    }
}

/// The exit status of the child `pid` once it ends (1 when it can not be told).
fn child_status(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: status is a valid int for waitpid to fill.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) != 0 {
        libc::WEXITSTATUS(status)
    } else {
        1
    }
}

fn redirect_to_null(fds: &[libc::c_int]) -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for &fd in fds {
        // SAFETY: dup2 onto a standard descriptor number; both descriptors are valid.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
