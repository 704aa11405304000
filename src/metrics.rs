//! Prometheus metrics, one registry per app.
//!
//! The registry is owned by the app rather than global, so several apps in one test process
//! each report their own numbers. Names follow Prometheus conventions (`_total`, `_seconds`);
//! the instance is a target label added by the scraper, not a metric label.
//!
//! No label value comes from a client: each distinct value is a time series kept for the life
//! of the process, so a client-chosen label would let anyone grow memory and `/metrics`
//! without bound. HTTP methods are folded into the standard set plus `other`, routes are
//! matched templates (or `unmatched`), and `outcome` and `event` take `&'static str`, so only
//! names written in the code can reach them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// What operators see of the analytics pipeline in `/health` and `/metrics`; defined here,
/// beside the gauges it sets, and filled by `pipeline::analytics_stream`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Entries in the stream (stored ones included, until `MAXLEN` trims them).
    pub length: u64,
    /// Entries not yet delivered to any consumer; `None` when Redis cannot tell.
    pub lag: Option<u64>,
    /// Entries delivered but not yet acknowledged.
    pub pending: u64,
    /// Each consumer of the group.
    pub consumers: Vec<ConsumerStats>,
}

/// One consumer of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Its name: the instance id.
    pub name: String,
    /// Entries it holds unacknowledged.
    pub pending: u64,
    /// Milliseconds since it last talked to Redis.
    pub idle_ms: u64,
}

/// Counters the analytics consumer reports into, exported under `roomcast_analytics_*`.
#[derive(Debug, Clone, Default)]
pub struct ConsumerCounters {
    /// Events inserted (duplicates of stored events not counted).
    pub stored: Counter,
    /// Entries taken over from an idle consumer.
    pub claimed: Counter,
    /// Entries that could not be decoded and were dropped.
    pub malformed: Counter,
    /// Batches whose transaction failed (left pending, retried after the claim idle time).
    pub failed_batches: Counter,
}

/// Labels of an HTTP request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Request method: a standard one, or `other`.
    pub method: String,
    /// Matched route template (`/api/rooms/{room}/messages`), never the raw path.
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// Labels of the HTTP latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Request method.
    pub method: String,
    /// Matched route template.
    pub route: String,
}

/// Labels naming a Socket.IO event.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// Event name (only known events; unknown ones count as `unknown`). A static name, so
    /// counting an event on the hot path allocates nothing.
    pub event: &'static str,
}

/// Labels of an outcome counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// What happened (`accepted`, `dropped_opted_out`, …); static, like `EventLabels::event`.
    pub outcome: &'static str,
}

/// Labels naming a consumer of the analytics stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    /// Consumer name (the instance id of its owner).
    pub consumer: String,
}

/// Labels naming a dependency guarded by a circuit breaker.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DependencyLabels {
    /// `redis` or `database`.
    pub dependency: String,
}

/// Labels of a cluster job run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// Job name.
    pub job: String,
    /// `completed`, `failed` or `lock_lost`.
    pub outcome: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// Every metric roomcast exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by method, route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// HTTP latency by method and route.
    pub http_duration: HistogramFamily<RouteLabels>,
    /// Sockets connected to this instance.
    pub sockets_connected: Gauge,
    /// Socket.IO events received, by event.
    pub events_in: Family<EventLabels, Counter>,
    /// Events broadcast by this instance, by event.
    pub events_out: Family<EventLabels, Counter>,
    /// Time from receiving a chat message to its broadcast being handed to the adapter.
    pub broadcast_latency: Histogram,
    /// Error acks sent, by error code.
    pub event_errors: Family<OutcomeLabels, Counter>,
    /// Failed and throttled logins.
    pub login_failures: Family<OutcomeLabels, Counter>,
    /// Analytics events by outcome.
    pub analytics_events: Family<OutcomeLabels, Counter>,
    /// Redis command failures.
    pub redis_errors: Counter,
    /// Database query failures seen by request handlers.
    pub database_errors: Counter,
    /// Sockets closed by graceful drains.
    pub drained_sockets: Counter,
    /// Cross-instance messages the adapter driver lost before the adapter saw them.
    pub adapter_messages_dropped: Counter,
    /// What this instance's analytics consumer did.
    pub analytics_consumer: ConsumerCounters,
    /// Entries in the analytics stream (set at scrape time).
    pub analytics_stream_length: Gauge,
    /// Entries not yet delivered to any consumer (set at scrape time; -1 when unknown).
    pub analytics_group_lag: Gauge,
    /// Entries delivered but not acknowledged (set at scrape time).
    pub analytics_group_pending: Gauge,
    /// Seconds since each consumer last talked to Redis (set at scrape time).
    pub analytics_consumer_idle: Family<ConsumerLabels, Gauge<f64, AtomicU64>>,
    /// Entries each consumer holds unacknowledged (set at scrape time).
    pub analytics_consumer_pending: Family<ConsumerLabels, Gauge>,
    /// Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open.
    pub breaker_state: Family<DependencyLabels, Gauge>,
    /// Calls refused at once because a breaker was open.
    pub breaker_rejections: Family<DependencyLabels, Counter>,
    /// Cluster job runs on this instance, by job and outcome.
    pub job_runs: Family<JobLabels, Counter>,
    /// Live instances in the registry (set at scrape time).
    pub cluster_instances: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("roomcast");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration = HistogramFamily::<RouteLabels>::new_with_constructor(latency_histogram);
        let sockets_connected = Gauge::default();
        let events_in = Family::<EventLabels, Counter>::default();
        let events_out = Family::<EventLabels, Counter>::default();
        let broadcast_latency = latency_histogram();
        let event_errors = Family::<OutcomeLabels, Counter>::default();
        let login_failures = Family::<OutcomeLabels, Counter>::default();
        let analytics_events = Family::<OutcomeLabels, Counter>::default();
        let redis_errors = Counter::default();
        let database_errors = Counter::default();
        let drained_sockets = Counter::default();
        let adapter_messages_dropped = Counter::default();
        let analytics_consumer = ConsumerCounters::default();
        let analytics_stream_length = Gauge::default();
        let analytics_group_lag = Gauge::default();
        let analytics_group_pending = Gauge::default();
        let analytics_consumer_idle = Family::<ConsumerLabels, Gauge<f64, AtomicU64>>::default();
        let analytics_consumer_pending = Family::<ConsumerLabels, Gauge>::default();
        let breaker_state = Family::<DependencyLabels, Gauge>::default();
        let breaker_rejections = Family::<DependencyLabels, Counter>::default();
        let job_runs = Family::<JobLabels, Counter>::default();
        let cluster_instances = Gauge::default();
        registry.register(
            "analytics_stream_stored",
            "Analytics events stored by this instance's stream consumer",
            analytics_consumer.stored.clone(),
        );
        registry.register(
            "analytics_stream_claimed",
            "Analytics stream entries this consumer took over from an idle one",
            analytics_consumer.claimed.clone(),
        );
        registry.register(
            "analytics_stream_malformed",
            "Analytics stream entries dropped because they could not be decoded",
            analytics_consumer.malformed.clone(),
        );
        registry.register(
            "analytics_stream_failed_batches",
            "Analytics batches whose database transaction failed (left pending)",
            analytics_consumer.failed_batches.clone(),
        );
        registry.register(
            "analytics_stream_length",
            "Entries in the analytics stream",
            analytics_stream_length.clone(),
        );
        registry.register(
            "analytics_group_lag",
            "Analytics entries not yet delivered to any consumer (-1 when Redis cannot tell)",
            analytics_group_lag.clone(),
        );
        registry.register(
            "analytics_group_pending",
            "Analytics entries delivered but not yet acknowledged",
            analytics_group_pending.clone(),
        );
        registry.register(
            "analytics_consumer_idle_seconds",
            "Seconds since each analytics consumer last talked to Redis",
            analytics_consumer_idle.clone(),
        );
        registry.register(
            "analytics_consumer_pending",
            "Analytics entries each consumer holds unacknowledged",
            analytics_consumer_pending.clone(),
        );
        registry.register(
            "circuit_breaker_state",
            "Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open",
            breaker_state.clone(),
        );
        registry.register(
            "circuit_breaker_rejections",
            "Calls refused at once because the dependency's breaker was open",
            breaker_rejections.clone(),
        );
        registry.register(
            "cluster_job_runs",
            "Cluster singleton job runs on this instance, by job and outcome",
            job_runs.clone(),
        );
        registry.register(
            "cluster_instances",
            "Live instances in the registry",
            cluster_instances.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests handled",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            http_duration.clone(),
        );
        registry.register(
            "sockets_connected",
            "Socket.IO sockets connected to this instance",
            sockets_connected.clone(),
        );
        registry.register(
            "socketio_events_received",
            "Socket.IO events received from clients",
            events_in.clone(),
        );
        registry.register(
            "socketio_events_broadcast",
            "Socket.IO events broadcast by this instance",
            events_out.clone(),
        );
        registry.register(
            "message_broadcast_seconds",
            "Time from receiving a chat message to handing its broadcast to the adapter (includes persisting it)",
            broadcast_latency.clone(),
        );
        registry.register(
            "socketio_error_acks",
            "Error acks sent to clients, by code",
            event_errors.clone(),
        );
        registry.register(
            "login_failures",
            "Failed or throttled logins",
            login_failures.clone(),
        );
        registry.register(
            "analytics_events",
            "Analytics events by outcome",
            analytics_events.clone(),
        );
        registry.register(
            "redis_errors",
            "Redis command failures",
            redis_errors.clone(),
        );
        registry.register(
            "database_errors",
            "Database failures seen by handlers",
            database_errors.clone(),
        );
        registry.register(
            "drained_sockets",
            "Sockets closed by a graceful drain",
            drained_sockets.clone(),
        );
        registry.register(
            "adapter_messages_dropped",
            "Cross-instance messages lost before this instance's Socket.IO adapter saw them (stream full or Pub/Sub receiver lagged)",
            adapter_messages_dropped.clone(),
        );
        Self {
            registry,
            http_requests,
            http_duration,
            sockets_connected,
            events_in,
            events_out,
            broadcast_latency,
            event_errors,
            login_failures,
            analytics_events,
            redis_errors,
            database_errors,
            drained_sockets,
            adapter_messages_dropped,
            analytics_consumer,
            analytics_stream_length,
            analytics_group_lag,
            analytics_group_pending,
            analytics_consumer_idle,
            analytics_consumer_pending,
            breaker_state,
            breaker_rejections,
            job_runs,
            cluster_instances,
        }
    }

    /// The rejection counter of the breaker in front of `dependency`, shared with it.
    pub fn breaker_rejection_counter(&self, dependency: &str) -> Counter {
        self.breaker_rejections
            .get_or_create(&DependencyLabels {
                dependency: dependency.to_owned(),
            })
            .clone()
    }

    /// Publishes a breaker's state.
    pub fn set_breaker_state(&self, dependency: &str, state: i64) {
        self.breaker_state
            .get_or_create(&DependencyLabels {
                dependency: dependency.to_owned(),
            })
            .set(state);
    }

    /// Publishes a snapshot of the analytics stream; consumers no longer in the group vanish.
    pub fn set_stream_stats(&self, stats: &StreamStats) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.analytics_stream_length.set(gauge(stats.length));
        self.analytics_group_lag.set(stats.lag.map_or(-1, gauge));
        self.analytics_group_pending.set(gauge(stats.pending));
        self.analytics_consumer_idle.clear();
        self.analytics_consumer_pending.clear();
        for consumer in &stats.consumers {
            let labels = ConsumerLabels {
                consumer: consumer.name.clone(),
            };
            self.analytics_consumer_idle
                .get_or_create(&labels)
                .set(consumer.idle_ms as f64 / 1000.0);
            self.analytics_consumer_pending
                .get_or_create(&labels)
                .set(gauge(consumer.pending));
        }
    }

    /// Renders the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts one occurrence under an outcome label.
    pub fn outcome(family: &Family<OutcomeLabels, Counter>, outcome: &'static str) {
        family.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Counts one event under its name.
    pub fn event(family: &Family<EventLabels, Counter>, event: &'static str) {
        family.get_or_create(&EventLabels { event }).inc();
    }
}

// Rates of the event counters, for the operator view: a rate is a counter's growth over the
// time since the previous sample, and a sample taken less than `MIN_WINDOW` after the
// previous one returns the previous rates instead of dividing by an instant.

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
        let count = |event: &'static str| {
            metrics
                .events_in
                .get_or_create(&EventLabels { event })
                .get()
        };
        let events: u64 = COUNTED_EVENTS.into_iter().map(count).sum();
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

#[cfg(test)]
mod rate_meter_tests {
    use super::*;
    use std::time::Duration;

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
