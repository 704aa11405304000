//! Bearer tokens of the operator endpoints (`ADMIN_TOKEN`, `METRICS_TOKEN`).
//!
//! The comparison itself is `auth::token::matches`: SHA-256 digests compared in constant time,
//! so neither the time taken nor the token's length leaks how close a guess was.

use axum::http::{HeaderMap, header};

use crate::config::Secret;

/// Whether `headers` carry `Authorization: Bearer <expected>`.
pub fn bearer_matches(headers: &HeaderMap, expected: &Secret) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    crate::auth::token::matches(expected, presented)
}
