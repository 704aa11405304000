//! Request extractors: JSON bodies with our error shape, and who is calling.
//!
//! Authentication lives here rather than inside handlers: a handler that takes `AuthUser`
//! cannot run for an anonymous caller, and one that takes `AdminAuth` cannot run without the
//! admin token.

use std::net::IpAddr;

use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts};
use axum::http::request::Parts;
use tower_sessions::Session;

use super::error::ApiError;
use crate::auth::{SESSION_USER_KEY, SessionUser};
use crate::error_code::ErrorCode;
use crate::listener::Connection;
use crate::state::AppState;

/// `axum::Json` whose rejections are rendered by `ApiError` (400/413/415 with a JSON body).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// The caller's session; `503` when the session store fails.
async fn session(parts: &mut Parts) -> Result<Session, ApiError> {
    Session::from_request_parts(parts, &())
        .await
        .map_err(|(_, msg)| ApiError::internal(msg))
}

/// A logged-in caller, with their session.
pub struct AuthUser {
    /// The user record from the session.
    pub user: SessionUser,
    /// The session, for handlers that change it.
    pub session: Session,
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let MaybeAuthUser { user, session } = MaybeAuthUser::from_request_parts(parts, &()).await?;
        let user = user.ok_or_else(ApiError::unauthorized)?;
        Ok(Self { user, session })
    }
}

/// A caller who may or may not be logged in, with their (possibly new) session.
pub struct MaybeAuthUser {
    /// The user record, when logged in.
    pub user: Option<SessionUser>,
    /// The session.
    pub session: Session,
}

impl<S: Send + Sync> FromRequestParts<S> for MaybeAuthUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let session = session(parts).await?;
        let user = session.get::<SessionUser>(SESSION_USER_KEY).await?;
        Ok(Self { user, session })
    }
}

/// A caller presenting `Authorization: Bearer <ADMIN_TOKEN>`.
///
/// The admin API does not exist (404) when no token is configured. Tokens are compared as
/// SHA-256 digests in constant time, so neither timing nor length leaks.
pub struct AdminAuth;

impl<S> FromRequestParts<S> for AdminAuth
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = AppState::from_ref(state);
        let Some(expected) = app.config.admin_token.as_ref() else {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "the admin API is disabled",
            ));
        };
        if !super::bearer::bearer_matches(&parts.headers, expected) {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "a valid admin bearer token is required",
            ));
        }
        Ok(Self)
    }
}

/// The client's address: the peer address, or with `TRUST_PROXY` the address the nearest
/// proxy appended to `X-Forwarded-For` (the right-most entry, the only one a client cannot forge).
pub struct ClientIp(pub IpAddr);

impl<S> FromRequestParts<S> for ClientIp
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = AppState::from_ref(state);
        if app.config.trust_proxy {
            let forwarded = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|v| v.trim().parse::<IpAddr>().ok())
                .next_back();
            if let Some(ip) = forwarded {
                return Ok(Self(ip));
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<Connection>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(connection)| {
                connection.peer.ip()
            });
        Ok(Self(peer))
    }
}
