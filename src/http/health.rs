//! Health endpoints for load balancers, orchestrators and people.
//!
//! - `/health/live` (`/healthz`): the process and its runtime answer. Never checks
//!   dependencies, so an outage of Redis or the database does not get every pod restarted.
//! - `/health/ready` (`/readyz`): this instance should receive traffic: dependencies answer
//!   within a second, migrations are applied, and it is not draining. `503` names what failed.
//! - `/health`: always `200`, with everything an operator wants to see at a glance.
//!
//! Failed checks answer a stable status (`error`, `timeout`, …), never the error text of the
//! database or Redis driver (which can name hosts, users and internals); the detail goes to the
//! log, at most once per `CHECK_FAILURE_LOG_INTERVAL` per dependency. With `METRICS_TOKEN` set,
//! `/metrics` and `/health` answer only `Authorization: Bearer <METRICS_TOKEN>` (`401`
//! otherwise); the probes `/health/live` and `/health/ready` stay open for orchestrators.

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde_json::{Value, json};

use super::bearer::bearer_matches;
use super::error::ApiError;
use crate::error_code::ErrorCode;
use crate::telemetry::Throttled;

use crate::realtime::broadcast::Realtime;
use crate::state::AppState;

/// Time budget of each dependency check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// At most one log line per dependency per interval about failing checks: probes poll often.
pub const CHECK_FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

static DATABASE_FAILURES: Throttled = Throttled::new(CHECK_FAILURE_LOG_INTERVAL);
static REDIS_FAILURES: Throttled = Throttled::new(CHECK_FAILURE_LOG_INTERVAL);

/// A caller allowed to see `/metrics` and the detailed `/health`: anyone when `METRICS_TOKEN`
/// is unset, else only a bearer of it (see `bearer`).
pub struct MetricsAuth;

impl<S> FromRequestParts<S> for MetricsAuth
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = AppState::from_ref(state);
        let Some(expected) = app.config.metrics_token.as_ref() else {
            return Ok(Self);
        };
        if !bearer_matches(&parts.headers, expected) {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "a valid metrics bearer token is required",
            ));
        }
        Ok(Self)
    }
}

/// `GET /health/live`.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Result of the dependency checks.
struct Checks {
    database: Value,
    database_ok: bool,
    redis: Value,
    redis_ok: bool,
}

async fn run_checks(app: &AppState) -> Checks {
    let (database, database_ok) = match tokio::time::timeout(CHECK_TIMEOUT, app.db.health()).await {
        Ok(Ok(health)) if health.migrations_applied => (
            json!({"status": "ok", "latency_ms": millis(health.latency)}),
            true,
        ),
        Ok(Ok(health)) => (
            json!({"status": "migrations_pending", "latency_ms": millis(health.latency)}),
            false,
        ),
        Ok(Err(err)) => {
            if let Some(failures) = DATABASE_FAILURES.hit() {
                tracing::warn!(error = %err, failures, "database health check failed");
            }
            (json!({"status": "error"}), false)
        }
        Err(_) => (json!({"status": "timeout"}), false),
    };
    let (redis, redis_ok) = match &app.cluster {
        None => (json!({"status": "disabled"}), true),
        Some(cluster) => {
            let subscribed = cluster.driver.is_subscribed();
            match tokio::time::timeout(CHECK_TIMEOUT, cluster.redis.ping()).await {
                Ok(Ok(latency)) if subscribed => {
                    (json!({"status": "ok", "latency_ms": millis(latency)}), true)
                }
                Ok(Ok(latency)) => (
                    json!({"status": "adapter_unsubscribed", "latency_ms": millis(latency)}),
                    false,
                ),
                Ok(Err(err)) => {
                    if let Some(failures) = REDIS_FAILURES.hit() {
                        tracing::warn!(error = %err, failures, "redis health check failed");
                    }
                    (json!({"status": "error"}), false)
                }
                Err(_) => (json!({"status": "timeout"}), false),
            }
        }
    };
    Checks {
        database,
        database_ok,
        redis,
        redis_ok,
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// `GET /health/ready`.
pub async fn ready(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    let checks = run_checks(&app).await;
    let mut failing = Vec::new();
    if app.drain.is_draining() {
        failing.push("draining");
    }
    if !checks.database_ok {
        failing.push("database");
    }
    if !checks.redis_ok {
        failing.push("redis");
    }
    let body = json!({
        "status": if failing.is_empty() { "ready" } else { "unavailable" },
        "instance_id": app.config.instance_id.as_str(),
        "failing": failing,
        "checks": {"database": checks.database, "redis": checks.redis},
    });
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// `GET /health`: the full picture, always `200`.
pub async fn overview(
    _: MetricsAuth,
    State(app): State<AppState>,
    State(realtime): State<Realtime>,
) -> Json<Value> {
    // Breakers first: the checks below may take a while and would let an open period lapse.
    let breakers = breakers(&app);
    let checks = run_checks(&app).await;
    let draining = app.drain.is_draining();
    let status = match (draining, checks.database_ok && checks.redis_ok) {
        (true, _) => "draining",
        (false, true) => "ok",
        (false, false) => "degraded",
    };
    let runtime = tokio::runtime::Handle::current().metrics();
    let local = realtime.local_sockets();
    let cluster_sockets = match &app.cluster {
        None => Value::from(local),
        Some(cluster) => match tokio::time::timeout(CHECK_TIMEOUT, cluster.registry.live()).await {
            Ok(Ok(live)) => {
                app.metrics
                    .cluster_instances
                    .set(i64::try_from(live.len()).unwrap_or(i64::MAX));
                Value::from(live.iter().map(|(_, e)| e.sockets).sum::<u64>())
            }
            _ => Value::Null,
        },
    };
    let analytics = analytics_overview(&app).await;
    let (db_size, db_idle) = app.db.pool_stats();
    let start_time = app
        .started_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Json(json!({
        "status": status,
        "instance_id": app.config.instance_id.as_str(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": app.started.elapsed().as_secs(),
        "draining": draining,
        "mode": if app.config.is_cluster() { "cluster" } else { "embedded" },
        "checks": {"database": checks.database, "redis": checks.redis},
        "connections": {"local": local, "cluster": cluster_sockets},
        "analytics": analytics,
        "breakers": breakers,
        "sessions": sessions_overview(&app),
        "instance": {
            "id": app.config.instance_id.as_str(),
            "hostname": crate::instance::hostname(),
            "pid": std::process::id(),
            "start_time": start_time,
        },
        "runtime": {
            "workers": runtime.num_workers(),
            "alive_tasks": runtime.num_alive_tasks(),
            "global_queue_depth": runtime.global_queue_depth(),
            "password_hashing": {
                "concurrency": app.config.password_hash_concurrency,
                "in_progress": app.hasher.in_progress(app.config.password_hash_concurrency),
                "queued": app.hasher.queued(),
            },
            "blocking_threads": blocking_threads(&runtime),
            "database_pool": {
                "size": db_size,
                "idle": db_idle,
                "in_use": (db_size as usize).saturating_sub(db_idle),
                "max": app.config.database_max_connections,
            },
        },
    }))
}

/// Threads of tokio's blocking pool alive in this process (running `spawn_blocking` work
/// such as password hashes and SQLite calls, or idle for up to 10 s before they exit). Tokio
/// only exposes this count behind `tokio_unstable`, so it is read from `/proc`: threads named
/// by the runtime, minus its workers. `null` where `/proc` is not available.
fn blocking_threads(runtime: &tokio::runtime::RuntimeMetrics) -> Option<usize> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let runtime_threads = tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        // Tokio names its threads "tokio-rt-worker" (1.54); older releases used
        // "tokio-runtime-worker", cut to 15 bytes: "tokio-runtime-w".
        .filter(|name| name.starts_with("tokio-rt-worker") || name.starts_with("tokio-runtime-w"))
        .count();
    // A current-thread runtime (tests) runs its one worker on the caller's thread.
    let named_workers = match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => 0,
        _ => runtime.num_workers(),
    };
    Some(runtime_threads.saturating_sub(named_workers))
}

/// Where sessions live, and for the embedded store how many records it holds (expired ones
/// stay until the next sweep).
fn sessions_overview(app: &AppState) -> Value {
    match app.sessions.local_records() {
        Some(records) => json!({"store": "memory", "records": records}),
        None => json!({"store": "redis"}),
    }
}

/// Each circuit breaker's state and refusals, also published as metrics.
fn breakers(app: &AppState) -> Value {
    let mut all = vec![app.db.breaker()];
    if let Some(cluster) = &app.cluster {
        all.push(cluster.redis.breaker());
    }
    let mut out = serde_json::Map::new();
    for breaker in all {
        let state = breaker.state();
        app.metrics
            .set_breaker_state(breaker.dependency(), state.gauge());
        out.insert(
            breaker.dependency().to_owned(),
            json!({"state": state.as_str(), "rejections": breaker.rejections()}),
        );
    }
    Value::Object(out)
}

/// The analytics pipeline: direct writes in embedded mode; in cluster mode the stream's
/// length, the group's lag and pending count, and each consumer's idle time.
async fn analytics_overview(app: &AppState) -> Value {
    let Some(cluster) = &app.cluster else {
        return json!({"pipeline": "direct"});
    };
    match tokio::time::timeout(CHECK_TIMEOUT, cluster.analytics.stats()).await {
        Ok(Ok(stats)) => {
            app.metrics.set_stream_stats(&stats);
            json!({
                "pipeline": "stream",
                "stream": crate::pipeline::analytics_stream::STREAM_KEY,
                "group": crate::pipeline::analytics_stream::GROUP,
                "length": stats.length,
                "lag": stats.lag,
                "pending": stats.pending,
                "consumers": stats.consumers.iter().map(|c| json!({
                    "name": c.name,
                    "pending": c.pending,
                    "idle_ms": c.idle_ms,
                })).collect::<Vec<_>>(),
            })
        }
        Ok(Err(err)) => {
            if let Some(failures) = REDIS_FAILURES.hit() {
                tracing::warn!(error = %err, failures, "analytics stream statistics failed");
            }
            json!({"pipeline": "stream", "status": "error"})
        }
        Err(_) => json!({"pipeline": "stream", "status": "timeout"}),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(
    _: MetricsAuth,
    State(app): State<AppState>,
    State(realtime): State<Realtime>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    // Read at scrape time rather than counted up and down, so the gauge cannot drift.
    app.metrics
        .sockets_connected
        .set(i64::try_from(realtime.local_sockets()).unwrap_or(i64::MAX));
    breakers(&app);
    if let Some(cluster) = &app.cluster {
        // Read at scrape time too; a Redis outage leaves the last values in place.
        if let Ok(Ok(stats)) = tokio::time::timeout(CHECK_TIMEOUT, cluster.analytics.stats()).await
        {
            app.metrics.set_stream_stats(&stats);
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
}
