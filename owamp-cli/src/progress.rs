//! A progress line for people at a terminal: while a test runs, owping (and owfetch's long
//! fetches, later) shows on standard error the packets sent and received so far and the time
//! left, refreshed a few times a second, and clears it before printing its results. Shown only
//! when standard error is a terminal, so scripts and logs never see it.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use owamp_core::control::Role;
use owamp_os::progress::{ProgressWatch, SessionProgress};

/// Tests shorter than this get no progress line.
pub const MIN_DURATION: Duration = Duration::from_secs(3);

/// A running progress line; [`finish`](Self::finish) clears it.
pub struct ProgressLine {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ProgressLine {
    /// Starts a line for a test expected to last `expected`, when standard error is a
    /// terminal and the test is long enough to want one.
    pub fn start(watch: ProgressWatch, expected: Duration) -> Option<Self> {
        if expected < MIN_DURATION || !std::io::stderr().is_terminal() {
            return None;
        }
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || run(&watch, expected, &flag))
            .ok()?;
        Some(Self {
            done,
            thread: Some(thread),
        })
    }

    /// Clears the line.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(watch: &ProgressWatch, expected: Duration, done: &AtomicBool) {
    let total = u64::try_from(expected.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(
        ProgressStyle::with_template("[{bar:25}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let t0 = Instant::now();
    while !done.load(Ordering::SeqCst) {
        let elapsed = t0.elapsed();
        bar.set_position(
            u64::try_from(elapsed.as_millis())
                .unwrap_or(u64::MAX)
                .min(total),
        );
        bar.set_message(describe(&watch.get(), expected.saturating_sub(elapsed)));
        std::thread::sleep(Duration::from_millis(250));
    }
    bar.finish_and_clear();
}

/// The line's text: what each direction has done, and the time left.
pub fn describe(sessions: &[SessionProgress], left: Duration) -> String {
    let mut parts = Vec::new();
    for s in sessions {
        match s.role {
            Role::Sender => parts.push(format!("sent {}/{}", s.done, s.packets)),
            Role::Receiver => parts.push(if s.lost > 0 {
                format!("received {}/{} ({} lost)", s.done, s.packets, s.lost)
            } else {
                format!("received {}/{}", s.done, s.packets)
            }),
        }
    }
    if parts.is_empty() {
        parts.push("starting".into());
    }
    format!("{}, about {}s left", parts.join(", "), left.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_each_direction_and_the_time_left() {
        let s = [
            SessionProgress {
                role: Role::Sender,
                packets: 1000,
                done: 250,
                lost: 0,
            },
            SessionProgress {
                role: Role::Receiver,
                packets: 1000,
                done: 240,
                lost: 3,
            },
        ];
        assert_eq!(
            describe(&s, Duration::from_millis(7900)),
            "sent 250/1000, received 240/1000 (3 lost), about 7s left"
        );
        assert_eq!(
            describe(&[], Duration::from_secs(9)),
            "starting, about 9s left"
        );
    }

    #[test]
    fn no_line_when_standard_error_is_not_a_terminal_or_the_test_is_short() {
        // Under the test harness standard error is a pipe or a file.
        if !std::io::stderr().is_terminal() {
            assert!(
                ProgressLine::start(ProgressWatch::default(), Duration::from_secs(60)).is_none()
            );
        }
        assert!(ProgressLine::start(ProgressWatch::default(), Duration::from_secs(1)).is_none());
    }
}
