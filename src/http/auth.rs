//! `/api/auth/*` and `/api/me`: accounts and login sessions.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{ApiJson, AuthUser, ClientIp, MaybeAuthUser};
use crate::auth::throttle::{Admission, AttemptKeys, Throttled};
use crate::auth::{SESSION_OPT_OUT_KEY, SESSION_USER_KEY, SessionUser};
use crate::domain::{Password, Username};
use crate::error_code::ErrorCode;
use crate::metrics::Metrics;
use crate::rate_limit::LimitError;
use crate::realtime::broadcast::Realtime;
use crate::session::{remember_expiry, session_room};
use crate::state::AppState;
use crate::storage::now_millis;

/// What a refused registration is told to wait: about one allowance at the default rate.
const REGISTER_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(6);

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

/// `POST /api/auth/register` → `201 {user}`; `429` past the address's registration rate
/// (each registration costs an argon2 hash, see `realtime::rate_limit`).
pub async fn register(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<impl IntoResponse, ApiError> {
    let username = Username::parse(&body.username)?;
    let password = Password::parse(body.password)?;
    app.register_limiter
        .check(ip)
        .await
        .map_err(|err| match err {
            LimitError::RateLimited => ApiError::new(
                ErrorCode::RateLimited,
                "too many registrations from this address",
            )
            .with_retry_after(REGISTER_RETRY_AFTER),
            LimitError::Unavailable(err) => err.into(),
        })?;
    let hash = app.hasher.hash(password).await?;
    let user = app.db.create_user(&username, &hash).await?;
    tracing::info!(user_id = %user.id, "user registered");
    Ok((StatusCode::CREATED, Json(json!({"user": user}))))
}

/// `POST /api/auth/login` → `200 {user}` with a fresh session id.
///
/// A malformed username or password is refused (`400`) before anything else: it cannot
/// belong to an account, the rules are public, and refusing it means no stand-in password is
/// ever checked against a real hash. A well-formed attempt is counted by the throttle before
/// its password is hashed (see `auth::throttle`), then checked; an unknown username costs
/// the same hash as a wrong password.
pub async fn login(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    MaybeAuthUser { session, .. }: MaybeAuthUser,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<impl IntoResponse, ApiError> {
    let username = Username::parse(&body.username)?;
    let password = Password::parse(body.password)?;
    let keys = AttemptKeys::new(&username.key(), ip);
    let admission = match app.login_throttle.admit(&keys).await {
        Ok(admission) => admission,
        Err(err) => {
            Metrics::outcome(&app.metrics.login_failures, "throttled");
            return Err(err.into());
        }
    };
    let checked = async {
        let credentials = app.db.find_credentials(&username).await?;
        let verified = app
            .hasher
            .verify(
                password,
                credentials.as_ref().map(|c| c.password_hash.clone()),
            )
            .await?;
        Ok::<_, ApiError>(credentials.filter(|_| verified))
    }
    .await;
    let credentials = match checked {
        Ok(credentials) => credentials,
        Err(err) => {
            // Nothing was guessed: the attempt's counts are given back.
            if let Err(refund) = app.login_throttle.abandoned(&keys).await {
                tracing::warn!(error = %refund, "could not give back a login attempt");
            }
            return Err(err);
        }
    };
    let Some(credentials) = credentials else {
        if let Admission::AddressOverLimit { retry_after } = admission {
            Metrics::outcome(&app.metrics.login_failures, "throttled");
            return Err(Throttled { retry_after }.into());
        }
        Metrics::outcome(&app.metrics.login_failures, "invalid_credentials");
        return Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "wrong username or password",
        ));
    };
    app.login_throttle.succeeded(&keys).await?;

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
