//! The drain flag: the one part of the shutdown that the rest of the code reads.
//!
//! Middleware, health, the Socket.IO handshake, the cluster jobs and the analytics consumer
//! check `DrainState` to learn that a drain has begun; that is why it sits in a low layer
//! while the sequence that flips it (`shutdown::sequence`) sits at the top.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// Whether this instance is draining; cheap to read from any handler.
#[derive(Debug, Clone)]
pub struct DrainState {
    draining: Arc<AtomicBool>,
    started: watch::Sender<bool>,
    requested: watch::Sender<bool>,
}

impl Default for DrainState {
    fn default() -> Self {
        Self {
            draining: Arc::default(),
            started: watch::channel(false).0,
            requested: watch::channel(false).0,
        }
    }
}

impl DrainState {
    /// Marks the drain as started; idempotent.
    pub fn begin(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.started.send_replace(true);
    }

    /// Whether the drain has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Resolves when the drain starts (at once if it already has).
    pub async fn started(&self) {
        let mut rx = self.started.subscribe();
        // The sender lives in `self`, so `wait_for` only ends when the value turns true.
        let _ = rx.wait_for(|started| *started).await;
    }

    /// Asks for the drain without a signal (an operator's drain from the admin API): the
    /// server then runs exactly the sequence a SIGTERM starts and the process exits 0.
    pub fn request(&self) {
        self.requested.send_replace(true);
    }

    /// Resolves once `request` was called (at once if it already was).
    pub async fn requested(&self) {
        let mut rx = self.requested.subscribe();
        let _ = rx.wait_for(|requested| *requested).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn started_resolves_once_the_drain_begins() {
        let state = DrainState::default();
        assert!(!state.is_draining());
        let waiter = tokio::spawn({
            let state = state.clone();
            async move { state.started().await }
        });
        tokio::task::yield_now().await;
        state.begin();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("started() must resolve after begin()")
            .expect("task");
        assert!(state.is_draining());
    }
}
