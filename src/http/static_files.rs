//! `GET /` and `GET /assets/{name}`: the embedded browser app.
//!
//! Assets are revalidated on every load (`no-cache` + a strong ETag of their contents): they
//! are not fingerprinted, and a stale `app.js` after an upgrade is worse than a 304 round trip.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::error_code::ErrorCode;
use crate::web::{self, Asset};

/// `GET /`.
pub async fn index(headers: HeaderMap) -> Response {
    serve(&web::INDEX, &headers)
}

/// `GET /admin`: the operator view. The page itself is public (it holds no data); everything
/// it shows comes over the `/admin` namespace, which needs `ADMIN_TOKEN`.
pub async fn operator(headers: HeaderMap) -> Response {
    serve(&web::OPERATOR, &headers)
}

/// `GET /assets/{name}`.
pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let asset =
        web::asset(&name).ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such asset"))?;
    Ok(serve(asset, &headers))
}

/// Policy of the browser app: everything from this origin only. `connect-src 'self'` covers
/// the app's own WebSocket (`ws:`/`wss:` to the same host) in CSP Level 3 browsers, without
/// allowing a connection to any other host.
pub const APP_CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
     style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

fn serve(asset: &'static Asset, headers: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(asset.body)[..12]));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let etag = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\""));
    let common = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(APP_CSP),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let security = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ];
    (common, security, asset.body).into_response()
}
