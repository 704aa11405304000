//! `/api/admin/*`: operator actions and views behind `ADMIN_TOKEN`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{AdminAuth, ApiJson};
use crate::domain::{EmitTarget, EventName, UserId};
use crate::error_code::ErrorCode;
use crate::metrics::Metrics;
use crate::operator::commands::{self, Command};
use crate::operator::live_view;
use crate::realtime::broadcast::Realtime;
use crate::state::AppState;

/// Body of an admin emit.
#[derive(Deserialize)]
pub struct EmitBody {
    room: String,
    event: String,
    #[serde(default)]
    data: Value,
}

/// `POST /api/admin/emit {room, event, data}` → `202`: `data` is emitted as `event` to the
/// room (or `user:<id>`) on every instance.
pub async fn emit(
    _admin: AdminAuth,
    State(app): State<AppState>,
    State(realtime): State<Realtime>,
    ApiJson(body): ApiJson<EmitBody>,
) -> Result<impl IntoResponse, ApiError> {
    let target = EmitTarget::parse(&body.room)?;
    let event = EventName::parse(&body.event)?;
    realtime
        .emit_named(target.room(), event.as_str().to_owned(), body.data)
        .await
        .map_err(|err| {
            tracing::warn!(error = %err, "admin emit failed");
            ApiError::unavailable("the broadcast channel")
        })?;
    Metrics::event(&app.metrics.events_out, "admin");
    tracing::info!(room = %target.room(), event = event.as_str(), "admin emit");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"room": target.room(), "event": event.as_str()})),
    ))
}

fn rfc3339(millis: i64) -> Value {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::from)
}

/// `GET /api/admin/instances` → `{instances: [{id, address, version, started_at, sockets,
/// last_heartbeat_ms}]}`: the live instances of the registry (cluster mode), or this
/// instance alone (embedded mode). `503` when Redis cannot be reached.
pub async fn instances(
    _admin: AdminAuth,
    State(app): State<AppState>,
    State(realtime): State<Realtime>,
) -> Result<Json<Value>, ApiError> {
    let now = crate::storage::now_millis();
    let instances: Vec<Value> = match &app.cluster {
        Some(cluster) => cluster
            .registry
            .live()
            .await?
            .into_iter()
            .map(|(id, entry)| {
                json!({
                    "id": id,
                    "address": entry.address,
                    "version": entry.version,
                    "started_at": rfc3339(entry.started_at),
                    "sockets": entry.sockets,
                    "last_heartbeat_ms": (now - entry.updated_at).max(0),
                })
            })
            .collect(),
        None => vec![json!({
            "id": app.config.instance_id.as_str(),
            "address": app.advertised_address.get(),
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": app
                .started_at
                .format(&time::format_description::well_known::Rfc3339)
                .ok(),
            "sockets": realtime.local_sockets(),
            "last_heartbeat_ms": 0,
        })],
    };
    app.metrics
        .cluster_instances
        .set(i64::try_from(instances.len()).unwrap_or(i64::MAX));
    Ok(Json(json!({"instances": instances})))
}

/// `GET /api/admin/overview` → the operator view's snapshot (see `operator::live_view`): every
/// live instance with its vitals and the busiest rooms. The page gets the same document
/// pushed over the `/admin` namespace; this route serves scripts and tests.
pub async fn overview(
    _admin: AdminAuth,
    State(app): State<AppState>,
    State(realtime): State<Realtime>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(live_view::snapshot(&app, &realtime).await?))
}

/// `POST /api/admin/instances/{id}/drain` → `202 {instance, draining: true}`: the named
/// instance runs the same graceful drain as on SIGTERM and exits 0. `404` for an instance the
/// registry does not list as live; `503` when the command cannot be published.
pub async fn drain_instance(
    _admin: AdminAuth,
    State(app): State<AppState>,
    Path(instance): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let me = app.config.instance_id.as_str();
    if instance == me {
        app.drain.request();
    } else {
        let Some(cluster) = &app.cluster else {
            return Err(unknown_instance());
        };
        let live = cluster.registry.live().await?;
        if !live.iter().any(|(id, _)| *id == instance) {
            return Err(unknown_instance());
        }
        commands::send(
            &cluster.driver,
            &Command::Drain {
                instance: instance.clone(),
            },
        )
        .await?;
    }
    tracing::info!(instance = %instance, "operator drain requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"instance": instance, "draining": true})),
    ))
}

fn unknown_instance() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no live instance has that id (see GET /api/admin/instances)",
    )
}

/// `POST /api/admin/users/{id}/disconnect` → `202 {user_id}`: every socket of the user, on
/// every instance, is disconnected by the server (the official client does not reconnect
/// after that by itself). The user's sessions stay valid.
pub async fn disconnect_user(
    _admin: AdminAuth,
    State(realtime): State<Realtime>,
    Path(user_id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let user = user_id
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(UserId)
        .ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidRequest, "a user id is a positive integer")
        })?;
    realtime.disconnect_room(user.room()).await.map_err(|err| {
        tracing::warn!(error = %err, "admin disconnect failed");
        ApiError::unavailable("the broadcast channel")
    })?;
    tracing::info!(user_id = %user, "operator disconnected a user");
    Ok((StatusCode::ACCEPTED, Json(json!({"user_id": user.0}))))
}
