//! `/api/admin/*`: operator actions behind `ADMIN_TOKEN`.

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
