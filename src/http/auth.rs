//! `/api/auth/*` and `/api/me`: accounts and login sessions.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{ApiJson, AuthUser, ClientIp, MaybeAuthUser};
use crate::auth::throttle::AttemptKeys;
use crate::auth::{SESSION_OPT_OUT_KEY, SESSION_USER_KEY, SessionUser};
use crate::domain::{Password, Username};
use crate::error_code::ErrorCode;
use crate::metrics::Metrics;
use crate::realtime::broadcast::Realtime;
use crate::session::{remember_expiry, session_room};
use crate::state::AppState;
use crate::storage::now_millis;

/// Body of register.
#[derive(Deserialize)]
pub struct RegisterBody {
    username: String,
    password: String,
}

/// Body of login.
#[derive(Deserialize)]
pub struct LoginBody {
    username: String,
    password: String,
    #[serde(default)]
    remember: bool,
}

/// `POST /api/auth/register` → `201 {user}`.
pub async fn register(
    State(app): State<AppState>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<impl IntoResponse, ApiError> {
    let username = Username::parse(&body.username)?;
    let password = Password::parse(body.password)?;
    let hash = app.hasher.hash(password).await?;
    let user = app.db.create_user(&username, &hash).await?;
    tracing::info!(user_id = %user.id, "user registered");
    Ok((StatusCode::CREATED, Json(json!({"user": user}))))
}

/// `POST /api/auth/login` → `200 {user}` with a fresh session id.
pub async fn login(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    MaybeAuthUser { session, .. }: MaybeAuthUser,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<impl IntoResponse, ApiError> {
    let keys = AttemptKeys::new(&body.username.to_ascii_lowercase(), ip);
    if let Err(err) = app.login_throttle.check(&keys).await {
        Metrics::outcome(&app.metrics.login_failures, "throttled");
        return Err(err.into());
    }
    // A malformed username or password cannot match an account; still spend a hash so the
    // answer takes as long as a real miss.
    let username = Username::parse(&body.username).ok();
    let password = Password::parse(body.password).ok();
    let credentials = match &username {
        Some(username) => app.db.find_credentials(username).await?,
        None => None,
    };
    let candidate = password.unwrap_or_else(Password::decoy);
    let verified = app
        .hasher
        .verify(
            candidate,
            credentials.as_ref().map(|c| c.password_hash.clone()),
        )
        .await?;
    let Some(credentials) = credentials.filter(|_| verified && username.is_some()) else {
        app.login_throttle.record_failure(&keys).await?;
        Metrics::outcome(&app.metrics.login_failures, "invalid_credentials");
        return Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "wrong username or password",
        ));
    };
    app.login_throttle.record_success(&keys).await?;

    // An opt-out made before logging in carries over to the account: privacy choices only
    // ever get stricter by logging in.
    if session
        .get::<bool>(SESSION_OPT_OUT_KEY)
        .await?
        .unwrap_or(false)
    {
        crate::analytics::set_user_opted_out(&app, credentials.user.id, true).await?;
    }
    session.cycle_id().await?;
    if body.remember {
        session.set_expiry(Some(remember_expiry(&app.config)));
    }
    let record = SessionUser {
        user: credentials.user.clone(),
        logged_in_at: now_millis(),
    };
    session.insert(SESSION_USER_KEY, &record).await?;
    tracing::info!(user_id = %record.user.id, remember = body.remember, "user logged in");
    Ok(Json(json!({"user": record.user})))
}

/// `POST /api/auth/logout` → `204`; the session is deleted from the store and its sockets,
/// on every instance, are disconnected.
pub async fn logout(
    State(realtime): State<Realtime>,
    MaybeAuthUser { user, session }: MaybeAuthUser,
) -> Result<StatusCode, ApiError> {
    if let Some(id) = session.id() {
        if let Err(err) = realtime.disconnect_room(session_room(&id)).await {
            tracing::warn!(error = %err, "could not disconnect the session's sockets");
        }
    }
    session.flush().await?;
    if let Some(user) = user {
        tracing::info!(user_id = %user.user.id, "user logged out");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/me` → `{user, analytics_opted_out}`.
pub async fn me(
    State(app): State<AppState>,
    auth: AuthUser,
) -> Result<impl IntoResponse, ApiError> {
    let opted_out = crate::analytics::opted_out(&app, &auth.session, Some(&auth.user)).await?;
    Ok(Json(
        json!({"user": auth.user.user, "analytics_opted_out": opted_out}),
    ))
}
