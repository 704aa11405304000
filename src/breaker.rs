//! Circuit breakers around Redis and the database.
//!
//! While a dependency is down, every call would otherwise wait for its full timeout (2 s for
//! a Redis command, 3 s for a database connection), and requests pile up behind each other.
//! A breaker counts consecutive failures; after `BREAKER_FAILURE_THRESHOLD` of them it
//! *opens* and calls fail at once (`503 unavailable`) for `BREAKER_OPEN_MS`. Then it turns
//! *half-open* and lets exactly one probe call through: success closes it, failure opens it
//! again for another period. Readiness checks bypass the breakers, so `/health/ready` always
//! reports the dependency itself. States are shown in `/health` (`breakers`) and `/metrics`
//! (`roomcast_circuit_breaker_state`, `roomcast_circuit_breaker_rejections_total`).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tower_sessions::SessionStore;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// One probe call is allowed through.
    HalfOpen,
    /// Calls fail at once.
    Open,
}

impl BreakerState {
    /// Name used in `/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }

    /// Value of the `circuit_breaker_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
        }
    }
}

/// A call refused because the breaker is open.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{dependency} circuit breaker is open")]
pub struct BreakerOpen {
    /// The dependency.
    pub dependency: &'static str,
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// A breaker for one dependency; clones share their state.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    dependency: &'static str,
    threshold: u32,
    open_for: Duration,
    inner: Arc<Mutex<Inner>>,
    rejections: Counter,
}

impl CircuitBreaker {
    /// A closed breaker that opens after `threshold` consecutive failures for `open_for`,
    /// counting refused calls in `rejections` (a metric).
    pub fn new(
        dependency: &'static str,
        threshold: u32,
        open_for: Duration,
        rejections: Counter,
    ) -> Self {
        Self {
            dependency,
            threshold: threshold.max(1),
            open_for,
            inner: Arc::new(Mutex::new(Inner::Closed { failures: 0 })),
            rejections,
        }
    }

    /// The dependency it guards.
    pub fn dependency(&self) -> &'static str {
        self.dependency
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current state (an open breaker whose period is over reads as half-open).
    pub fn state(&self) -> BreakerState {
        match &*self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if Instant::now() < *until => BreakerState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Calls refused so far.
    pub fn rejections(&self) -> u64 {
        self.rejections.get()
    }

    /// Asks to make a call: `Ok` with a permit that must be settled with the call's outcome.
    pub fn permit(&self) -> Result<Permit<'_>, BreakerOpen> {
        let mut inner = self.lock();
        let probe = match &mut *inner {
            Inner::Closed { .. } => false,
            Inner::Open { until } if Instant::now() < *until => {
                drop(inner);
                return Err(self.reject());
            }
            Inner::Open { .. } => {
                *inner = Inner::HalfOpen { probing: true };
                true
            }
            Inner::HalfOpen { probing } if !*probing => {
                *probing = true;
                true
            }
            Inner::HalfOpen { .. } => {
                drop(inner);
                return Err(self.reject());
            }
        };
        Ok(Permit {
            breaker: self,
            probe,
            settled: false,
        })
    }

    fn reject(&self) -> BreakerOpen {
        self.rejections.inc();
        BreakerOpen {
            dependency: self.dependency,
        }
    }

    fn settle(&self, probe: bool, ok: bool) {
        let mut inner = self.lock();
        let next = match (&*inner, ok) {
            (_, true) => Inner::Closed { failures: 0 },
            (Inner::Closed { failures }, false) if failures + 1 < self.threshold => Inner::Closed {
                failures: failures + 1,
            },
            // A failure of a call admitted before the breaker opened does not extend it.
            (Inner::Open { until }, false) if !probe => Inner::Open { until: *until },
            (Inner::HalfOpen { .. }, false) if !probe => Inner::HalfOpen { probing: true },
            (_, false) => Inner::Open {
                until: Instant::now() + self.open_for,
            },
        };
        let opened = matches!(next, Inner::Open { .. }) && !matches!(&*inner, Inner::Open { .. });
        let closed =
            matches!(next, Inner::Closed { .. }) && !matches!(&*inner, Inner::Closed { .. });
        *inner = next;
        drop(inner);
        if opened {
            tracing::warn!(
                dependency = self.dependency,
                "circuit breaker opened: failing fast"
            );
        } else if closed {
            tracing::info!(
                dependency = self.dependency,
                "circuit breaker closed: dependency is back"
            );
        }
    }

    /// Runs `call` through the breaker; `failed` tells which errors count as the dependency
    /// failing (a constraint violation, say, does not).
    pub async fn call<T, E>(
        &self,
        call: impl Future<Output = Result<T, E>>,
        failed: impl Fn(&E) -> bool,
    ) -> Result<Result<T, E>, BreakerOpen> {
        let permit = self.permit()?;
        let result = call.await;
        permit.settle(!result.as_ref().err().is_some_and(&failed));
        Ok(result)
    }
}

/// Permission for one call; dropping it unsettled (the call was cancelled) counts as a failure
/// only for a probe, so a cancelled probe cannot leave the breaker half-open forever.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    settled: bool,
}

impl Permit<'_> {
    /// Records the outcome of the call.
    pub fn settle(mut self, ok: bool) {
        self.settled = true;
        self.breaker.settle(self.probe, ok);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            self.breaker.settle(true, false);
        }
    }
}

/// A session store behind the Redis breaker: while Redis is known to be down, loading a
/// session (which every `/api` request does) fails at once instead of after the command
/// timeout, and the request gets `503 unavailable` without waiting.
#[derive(Debug, Clone)]
pub struct GuardedStore<S> {
    inner: S,
    breaker: CircuitBreaker,
}

impl<S> GuardedStore<S> {
    /// `inner` behind `breaker`.
    pub fn new(inner: S, breaker: CircuitBreaker) -> Self {
        Self { inner, breaker }
    }

    async fn guard<T>(
        &self,
        call: impl Future<Output = session_store::Result<T>>,
    ) -> session_store::Result<T> {
        // Only backend errors mean Redis failed; encoding errors are the caller's.
        let failed = |err: &session_store::Error| matches!(err, session_store::Error::Backend(_));
        match self.breaker.call(call, failed).await {
            Ok(result) => result,
            Err(open) => Err(session_store::Error::Backend(open.to_string())),
        }
    }
}

#[async_trait::async_trait]
impl<S: SessionStore> SessionStore for GuardedStore<S> {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let inner = &self.inner;
        self.guard(inner.create(record)).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.guard(self.inner.save(record)).await
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.guard(self.inner.load(id)).await
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.guard(self.inner.delete(id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_a_successful_probe_closes_it() {
        let breaker =
            CircuitBreaker::new("redis", 3, Duration::from_millis(50), Counter::default());
        for _ in 0..2 {
            breaker.permit().expect("closed").settle(false);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.permit().expect("closed").settle(false);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.permit().is_err(), "open breakers fail fast");
        assert_eq!(breaker.rejections(), 1);

        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        let probe = breaker.permit().expect("one probe");
        assert!(breaker.permit().is_err(), "only one probe at a time");
        probe.settle(true);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn a_failed_or_cancelled_probe_opens_it_again() {
        let breaker =
            CircuitBreaker::new("database", 1, Duration::from_millis(30), Counter::default());
        breaker.permit().expect("closed").settle(false);
        std::thread::sleep(Duration::from_millis(40));
        breaker.permit().expect("probe").settle(false);
        assert_eq!(breaker.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(40));
        drop(breaker.permit().expect("probe"));
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn successes_reset_the_failure_count() {
        let breaker = CircuitBreaker::new("redis", 2, Duration::from_secs(60), Counter::default());
        breaker.permit().expect("closed").settle(false);
        breaker.permit().expect("closed").settle(true);
        breaker.permit().expect("closed").settle(false);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
