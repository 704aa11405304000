//! Prometheus metrics, one registry per app.
//!
//! The registry is owned by the app rather than global, so several apps in one test process
//! each report their own numbers. Names follow Prometheus conventions (`_total`, `_seconds`);
//! the instance is a target label added by the scraper, not a metric label.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of an HTTP request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Request method.
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
    /// Event name (only known events; unknown ones count as `unknown`).
    pub event: String,
}

/// Labels of an outcome counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// What happened (`accepted`, `dropped_opted_out`, …).
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
    pub fn outcome(family: &Family<OutcomeLabels, Counter>, outcome: &str) {
        family
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts one event under its name.
    pub fn event(family: &Family<EventLabels, Counter>, event: &str) {
        family
            .get_or_create(&EventLabels {
                event: event.to_owned(),
            })
            .inc();
    }
}
