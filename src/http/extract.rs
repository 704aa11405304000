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

/// The client's address: the peer address, or with `TRUST_PROXY` the address the outermost
/// of `TRUST_PROXY_HOPS` proxies appended to `X-Forwarded-For`.
///
/// Each trusted proxy appends the address it received the request from, so the right-most
/// `hops` entries are written by proxies and the one `hops` from the right is the client
/// as the outermost proxy saw it; everything left of it came from the client and is ignored.
/// A request whose proxy-written entries are malformed (`unknown`, garbage), or that has
/// fewer entries than proxies, is refused (`400`) rather than attributed to some other
/// entry: skipping a bad entry would let a client's forged one take its place. A request
/// without the header at all did not come through the proxy and is keyed on its peer.
pub struct ClientIp(pub IpAddr);

/// Why `X-Forwarded-For` cannot name the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardedError {
    /// Fewer entries than trusted proxies.
    #[error("X-Forwarded-For has {found} entries, {hops} proxies are trusted")]
    TooFewEntries {
        /// Entries present.
        found: usize,
        /// `TRUST_PROXY_HOPS`.
        hops: usize,
    },
    /// A proxy-written entry is not an address.
    #[error("X-Forwarded-For entry {0:?} is not an IP address")]
    Malformed(String),
    /// The header is not visible ASCII.
    #[error("X-Forwarded-For is not readable text")]
    Unreadable,
}

impl From<ForwardedError> for ApiError {
    fn from(err: ForwardedError) -> Self {
        ApiError::new(ErrorCode::InvalidRequest, err.to_string())
    }
}

/// One `X-Forwarded-For` entry: an IPv4 or IPv6 address, also with a port
/// (`203.0.113.7:4711`, `[2001:db8::1]:4711`) as some proxies write it.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// The client address from every `X-Forwarded-For` header value behind `hops` proxies;
/// `Ok(None)` when there is no such header.
pub fn forwarded_client<'a>(
    values: impl Iterator<Item = &'a axum::http::HeaderValue>,
    hops: usize,
) -> Result<Option<IpAddr>, ForwardedError> {
    let mut entries = Vec::new();
    for value in values {
        let value = value.to_str().map_err(|_| ForwardedError::Unreadable)?;
        entries.extend(value.split(','));
    }
    if entries.is_empty() {
        return Ok(None);
    }
    let hops = hops.max(1);
    if entries.len() < hops {
        return Err(ForwardedError::TooFewEntries {
            found: entries.len(),
            hops,
        });
    }
    let trusted = &entries[entries.len() - hops..];
    let mut client = None;
    for entry in trusted {
        let ip = parse_entry(entry)
            .ok_or_else(|| ForwardedError::Malformed(entry.trim().chars().take(64).collect()))?;
        client.get_or_insert(ip);
    }
    Ok(client)
}

impl<S> FromRequestParts<S> for ClientIp
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = AppState::from_ref(state);
        if app.config.trust_proxy {
            let values = parts.headers.get_all("x-forwarded-for").iter();
            if let Some(ip) = forwarded_client(values, app.config.trust_proxy_hops)? {
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn client(values: &[&str], hops: usize) -> Result<Option<IpAddr>, ForwardedError> {
        let values: Vec<HeaderValue> = values
            .iter()
            .map(|v| HeaderValue::from_str(v).expect("header"))
            .collect();
        forwarded_client(values.iter(), hops)
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn the_entry_hops_from_the_right_is_the_client() {
        assert_eq!(client(&["1.1.1.1, 10.0.0.5"], 1), Ok(ip("10.0.0.5")));
        assert_eq!(client(&["1.1.1.1, 10.0.0.5"], 2), Ok(ip("1.1.1.1")));
        assert_eq!(
            client(&["6.6.6.6", "1.1.1.1", "10.0.0.5"], 2),
            Ok(ip("1.1.1.1")),
            "several header lines are one list"
        );
        assert_eq!(client(&["[2001:db8::1]:4711"], 1), Ok(ip("2001:db8::1")));
        assert_eq!(client(&["203.0.113.7:80"], 1), Ok(ip("203.0.113.7")));
        assert_eq!(client(&[], 1), Ok(None));
    }

    #[test]
    fn a_malformed_trusted_entry_is_refused_not_skipped() {
        assert!(matches!(
            client(&["9.9.9.9, unknown"], 1),
            Err(ForwardedError::Malformed(_))
        ));
        assert!(matches!(
            client(&["9.9.9.9, 10.0.0.5, "], 2),
            Err(ForwardedError::Malformed(_))
        ));
        assert!(matches!(
            client(&["10.0.0.5"], 2),
            Err(ForwardedError::TooFewEntries { found: 1, hops: 2 })
        ));
        assert_eq!(
            client(&["garbage, 10.0.0.5"], 1),
            Ok(ip("10.0.0.5")),
            "what the client wrote left of the proxies' entries does not matter"
        );
    }
}
