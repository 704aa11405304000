//! Bearer tokens of the operator endpoints (`ADMIN_TOKEN`, `METRICS_TOKEN`).
//!
//! The presented token and the configured one are compared as SHA-256 digests in constant
//! time, so neither the time taken nor the token's length leaks how close a guess was.

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Whether `headers` carry `Authorization: Bearer <expected>`.
pub fn bearer_matches(headers: &HeaderMap, expected: &Secret) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let matches: bool = Sha256::digest(presented.as_bytes())
        .ct_eq(&Sha256::digest(expected.expose().as_bytes()))
        .into();
    !presented.is_empty() && matches
}
