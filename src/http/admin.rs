//! `/api/admin/*`: operator actions and views behind `ADMIN_TOKEN`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{AdminAuth, ApiJson};
use crate::domain::{EmitTarget, EventName};
use crate::metrics::Metrics;
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
