//! What one instance reports about itself: ready or draining, its dependencies' circuit
//! breakers, and how busy it is (events and messages per second).
//!
//! Rates come from the Prometheus counters the instance keeps anyway, sampled by whoever asks
//! (the heartbeat every few seconds, the live view every second): a rate is the counter's
//! growth over the time since the previous sample, and a sample taken less than
//! `MIN_WINDOW` after the previous one returns the previous rates instead of dividing by an
//! instant.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cluster::breaker::BreakerState;
use crate::cluster::registry::Vitals;
use crate::metrics::{EventLabels, Metrics};
use crate::state::AppState;

/// Client events counted in `events_per_sec` (every name `Metrics::event` is called with on
/// `events_in`).
const COUNTED_EVENTS: [&str; 6] = ["join", "leave", "message", "typing", "resume", "unknown"];
/// Shortest window a rate is computed over.
const MIN_WINDOW: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    events: u64,
    messages: u64,
    rates: (f64, f64),
}

/// Turns this instance's event counters into per-second rates.
#[derive(Debug, Default)]
pub struct RateMeter {
    last: Mutex<Option<Sample>>,
}

impl RateMeter {
    /// `(events_per_sec, messages_per_sec)` since the previous sample (zero for the first).
    pub fn sample(&self, metrics: &Metrics) -> (f64, f64) {
        let count = |event: &str| {
            metrics
                .events_in
                .get_or_create(&EventLabels {
                    event: event.to_owned(),
                })
                .get()
        };
        let events: u64 = COUNTED_EVENTS.iter().map(|e| count(e)).sum();
        let messages = count("message");
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let rates = match *last {
            Some(previous) if now.duration_since(previous.at) < MIN_WINDOW => {
                return previous.rates;
            }
            Some(previous) => {
                let secs = now.duration_since(previous.at).as_secs_f64();
                let per_sec = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
                (
                    per_sec(events, previous.events),
                    per_sec(messages, previous.messages),
                )
            }
            None => (0.0, 0.0),
        };
        *last = Some(Sample {
            at: now,
            events,
            messages,
            rates,
        });
        rates
    }
}

/// This instance's vitals now.
pub fn vitals(app: &AppState) -> Vitals {
    let mut breakers = BTreeMap::new();
    let mut any_open = false;
    let mut record = |breaker: &crate::cluster::breaker::CircuitBreaker| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_the_counter_growth_over_the_window() {
        let metrics = Metrics::new();
        let meter = RateMeter::default();
        assert_eq!(meter.sample(&metrics), (0.0, 0.0));
        for _ in 0..30 {
            Metrics::event(&metrics.events_in, "message");
        }
        for _ in 0..10 {
            Metrics::event(&metrics.events_in, "join");
        }
        std::thread::sleep(MIN_WINDOW + Duration::from_millis(100));
        let (events, messages) = meter.sample(&metrics);
        // 40 events over at least 0.6 s (and, on a slow machine, less than 30 s).
        assert!(
            events > 40.0 / 30.0 && events <= 40.0 / 0.6,
            "events/s {events}"
        );
        assert!(
            (messages / events - 0.75).abs() < 1e-9,
            "messages {messages} of events {events}"
        );
        // A sample right after another returns the same rates instead of dividing by ~0.
        assert_eq!(meter.sample(&metrics), (events, messages));
    }
}
