//! `/api/analytics/*`: consent and event intake over HTTP.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{ApiJson, ClientIp, MaybeAuthUser};
use crate::analytics::{self, Intake};
use crate::domain::{AnalyticsName, InvalidInput};
use crate::error_code::ErrorCode;
use crate::metrics::Metrics;
use crate::rate_limit::intake::IntakeKey;
use crate::state::AppState;

/// `POST /api/analytics/opt-out` → `204`.
pub async fn opt_out(
    State(app): State<AppState>,
    caller: MaybeAuthUser,
) -> Result<StatusCode, ApiError> {
    analytics::set_opted_out(&app, &caller.session, caller.user.as_ref(), true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/analytics/opt-in` → `204`.
pub async fn opt_in(
    State(app): State<AppState>,
    caller: MaybeAuthUser,
) -> Result<StatusCode, ApiError> {
    analytics::set_opted_out(&app, &caller.session, caller.user.as_ref(), false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/analytics/status` → `{opted_out}`.
pub async fn status(
    State(app): State<AppState>,
    caller: MaybeAuthUser,
) -> Result<Json<Value>, ApiError> {
    let opted_out = analytics::opted_out(&app, &caller.session, caller.user.as_ref()).await?;
    Ok(Json(json!({"opted_out": opted_out})))
}

/// Body of an analytics event.
#[derive(Deserialize)]
pub struct EventBody {
    name: String,
    #[serde(default)]
    props: Option<Value>,
}

/// `POST /api/analytics/events` → `202` recorded or `204` dropped (opted out).
///
/// Over the caller's rate: `429 rate_limited` with `Retry-After`; `props` larger than
/// `ANALYTICS_PROPS_MAX_BYTES` serialized: `413 payload_too_large`.
pub async fn event(
    State(app): State<AppState>,
    ClientIp(address): ClientIp,
    caller: MaybeAuthUser,
    ApiJson(body): ApiJson<EventBody>,
) -> Result<Response, ApiError> {
    let key = match &caller.user {
        Some(user) => IntakeKey::User(user.user.id),
        None => IntakeKey::Address(address),
    };
    if let Err(wait) = app.analytics_limiter.check(key) {
        Metrics::outcome(&app.metrics.analytics_events, "rate_limited");
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "too many analytics events; slow down",
        )
        .with_retry_after(wait.max(Duration::from_secs(1))));
    }
    let name = AnalyticsName::parse(&body.name)?;
    let props = match body.props {
        None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
        Some(props @ Value::Object(_)) => props,
        Some(_) => {
            return Err(InvalidInput {
                code: ErrorCode::InvalidRequest,
                message: "props must be an object",
            }
            .into());
        }
    };
    let props = props.to_string();
    if props.len() > app.config.analytics_props_max_bytes {
        Metrics::outcome(&app.metrics.analytics_events, "too_large");
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "props must serialize to at most {} bytes",
                app.config.analytics_props_max_bytes
            ),
        ));
    }
    match analytics::submit(
        &app,
        &caller.session,
        caller.user.as_ref(),
        name.into_string(),
        props,
    )
    .await?
    {
        Intake::Recorded => {
            Ok((StatusCode::ACCEPTED, Json(json!({"accepted": true}))).into_response())
        }
        Intake::Dropped => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}
