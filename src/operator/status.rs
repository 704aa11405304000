//! What one instance reports about itself: ready or draining, its dependencies' circuit
//! breakers, and how busy it is (events and messages per second).
//!
//! Rates come from the Prometheus counters the instance keeps anyway (`metrics::RateMeter`),
//! sampled by whoever asks: the heartbeat every few seconds, the live view every second.

use std::collections::BTreeMap;

use crate::breaker::BreakerState;
use crate::coordination::registry::Vitals;
use crate::state::AppState;

/// This instance's vitals now.
pub fn vitals(app: &AppState) -> Vitals {
    let mut breakers = BTreeMap::new();
    let mut any_open = false;
    let mut record = |breaker: &crate::breaker::CircuitBreaker| {
        let state = breaker.state();
        any_open |= state == BreakerState::Open;
        breakers.insert(breaker.dependency().to_owned(), state.as_str().to_owned());
    };
    record(app.db.breaker());
    if let Some(cluster) = &app.cluster {
        record(cluster.redis.breaker());
    }
    let draining = app.drain.is_draining();
    let (events_per_sec, messages_per_sec) = app.operator.rates.sample(&app.metrics);
    Vitals {
        ready: !draining && !any_open,
        draining,
        events_per_sec: round2(events_per_sec),
        messages_per_sec: round2(messages_per_sec),
        breakers,
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
