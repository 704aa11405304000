//! The drain's timing and its result: how `SHUTDOWN_TIMEOUT_SECS` is split between the steps,
//! the deadline they share, and the report the last step logs.

use std::time::{Duration, Instant};

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

    /// The most the socket steps (telling, closing, flushing) may take: half the budget, so
    /// that HTTP, background tasks and the connections to Redis and the database get the rest.
    pub fn socket_budget(&self) -> Duration {
        self.timeout / 2
    }

    /// Size of each batch for `sockets` sockets: at least `MIN_BATCH`, and large enough that
    /// the batches fit in the window.
    pub fn batch_size(&self, sockets: usize) -> usize {
        let slots = (self.batch_window.as_millis() / self.batch_interval.as_millis().max(1)).max(1);
        let needed = sockets.div_ceil(usize::try_from(slots).unwrap_or(usize::MAX));
        needed.max(MIN_BATCH)
    }
}

/// What a drain did, for its closing log line and for tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct DrainReport {
    /// Sockets told to go and closed.
    pub sockets: usize,
    /// Whether telling and closing the sockets and flushing queued messages fitted in half
    /// the budget; when not, the Socket.IO server was closed with sockets still open.
    pub sockets_on_time: bool,
    /// Whether the Socket.IO server was closed (on both paths; false only when closing it
    /// outlasted the deadline).
    pub socketio_closed: bool,
    /// Whether the HTTP server finished before the deadline.
    pub http_finished: bool,
    /// Background tasks still running at the deadline (named in a warning).
    pub tasks_abandoned: usize,
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

    #[test]
    fn socket_work_fits_in_half_the_budget() {
        let plan = DrainPlan::new(Duration::from_secs(30));
        assert_eq!(plan.notice, Duration::from_millis(500));
        assert!(plan.notice + plan.batch_window <= plan.socket_budget());
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
