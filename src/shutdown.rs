//! What happens on SIGTERM: the graceful drain, in one place.
//!
//! The sequence (SPEC, "Graceful shutdown"):
//! 1. `DrainState` flips to draining: `/health/ready` answers 503 at once, and new Engine.IO
//!    sessions and Socket.IO handshakes are refused (503 / `unavailable`), so load balancers
//!    and reconnecting clients go elsewhere.
//! 2. Every socket gets `server:draining {reconnect_after_ms}`; after a short notice the
//!    transports are closed (not a Socket.IO `disconnect`, which would tell the official client
//!    not to reconnect), so clients reconnect by themselves, through the load balancer, to
//!    another instance. Socket work may use at most half of `SHUTDOWN_TIMEOUT_SECS`.
//! 3. The listener stops accepting connections. (It keeps accepting until step 2 is done only
//!    because long-polling clients open a new connection for each poll and could otherwise
//!    never receive the notice; every new session is already refused in step 1.) In-flight
//!    HTTP requests run to completion.
//! 4. Redis connections close, then the database pool (its in-flight writes finish first):
//!    every message acked before the signal is stored. The process exits 0, logging what it
//!    drained, within `SHUTDOWN_TIMEOUT_SECS`; whatever still runs at the deadline is abandoned
//!    with a warning.
//!
//! A second signal during the drain exits at once (see `main.rs`). An operator's drain from the
//! admin API (`DrainState::request`, see `operator`) starts the same sequence as a signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

/// Timing of the drain, derived from `SHUTDOWN_TIMEOUT_SECS`.
#[derive(Debug, Clone, Copy)]
pub struct DrainPlan {
    /// The whole budget.
    pub timeout: Duration,
    /// Time between `server:draining` and closing the first transports.
    pub notice: Duration,
    /// Pause between two batches of closed transports.
    pub batch_interval: Duration,
    /// Time the batches may take in all: what is left of half the budget after the notice.
    pub batch_window: Duration,
}

/// Sockets closed per batch at least; small instances drain in one step.
pub const MIN_BATCH: usize = 100;

impl DrainPlan {
    /// Splits the budget: socket work may use at most half of it.
    pub fn new(timeout: Duration) -> Self {
        let notice = (timeout / 10).min(Duration::from_millis(500));
        let half = timeout / 2;
        Self {
            timeout,
            notice,
            batch_interval: Duration::from_millis(100),
            // Keep a tenth of the half in reserve for closing what is left at the end.
            batch_window: half.saturating_sub(notice).mul_f64(0.9),
        }
    }

    /// Size of each batch for `sockets` sockets: at least `MIN_BATCH`, and large enough that
    /// the batches fit in the window.
    pub fn batch_size(&self, sockets: usize) -> usize {
        let slots = (self.batch_window.as_millis() / self.batch_interval.as_millis().max(1)).max(1);
        let needed = sockets.div_ceil(usize::try_from(slots).unwrap_or(usize::MAX));
        needed.max(MIN_BATCH)
    }
}

/// What a drain did, for its closing log line.
#[derive(Debug, Default, Clone, Copy)]
pub struct DrainReport {
    /// Sockets told to go and closed.
    pub sockets: usize,
    /// Whether the HTTP server finished before the deadline.
    pub http_finished: bool,
    /// Total time taken.
    pub elapsed: Duration,
}

/// A deadline shared by the drain's steps.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self(Instant::now() + budget)
    }
    /// Time left, zero when past.
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn socket_work_fits_in_half_the_budget() {
        let plan = DrainPlan::new(Duration::from_secs(30));
        assert_eq!(plan.notice, Duration::from_millis(500));
        assert!(plan.notice + plan.batch_window <= plan.timeout / 2);
        assert_eq!(
            plan.batch_size(50),
            MIN_BATCH,
            "small instances drain in one batch"
        );
        let big: usize = 100_000;
        let batches = big.div_ceil(plan.batch_size(big)) as u32;
        assert!(
            plan.batch_interval * batches <= plan.batch_window + plan.batch_interval,
            "{batches} batches must fit the window"
        );
    }
}
