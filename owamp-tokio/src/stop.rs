//! A shared stop signal that tasks can wait for.

use std::sync::Arc;

use tokio::sync::watch;

/// A flag that asks a test or a server to stop; clones share it, and tasks can wait for it
/// with [`stopped`](Self::stopped) (in a `tokio::select!`, for example).
///
/// - Client ([`ClientConnection::wait`](crate::control::ClientConnection::wait),
///   [`run_test`](crate::control::run_test)): during the test, the local sessions are stopped
///   and Stop-Sessions is exchanged; the records received so far are kept and the server's
///   are still fetched.
/// - Server ([`Server`](crate::control::Server),
///   [`serve_connection`](crate::control::serve_connection)): no new connection is accepted;
///   connections in a test stop it the same way, the others are closed.
#[derive(Debug, Clone)]
pub struct StopToken(Arc<watch::Sender<bool>>);

impl Default for StopToken {
    fn default() -> Self {
        Self::new()
    }
}

impl StopToken {
    /// A flag not yet set.
    pub fn new() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }

    /// Sets the flag and wakes every task waiting for it.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// Whether the flag is set.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the flag is set (at once if it already is).
    pub async fn stopped(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waiters_wake_on_stop() {
        let t = StopToken::new();
        assert!(!t.is_stopped());
        let t2 = t.clone();
        let waiter = tokio::spawn(async move { t2.stopped().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        t.stop();
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(t.is_stopped());
        // Already set: returns at once.
        tokio::time::timeout(Duration::from_secs(1), t.stopped())
            .await
            .unwrap();
    }
}
