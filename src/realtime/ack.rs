//! The Socket.IO error-ack type: the one place event failures become `{ok:false, error}`.
//!
//! Handlers return `Result<T, AckError>`; `reply` turns it into the SPEC's ack shape
//! `{ok: true, …T}` or `{ok: false, error: {code, message}}`. Module errors convert into
//! `AckError` here, mirroring `http::error::ApiError` for HTTP.

use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::AckSender;

use crate::domain::InvalidInput;
use crate::error_code::ErrorCode;
use crate::metrics::Metrics;
use crate::storage::StorageError;

/// A failed Socket.IO action, as the client sees it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AckError {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation (never contains internals).
    pub message: String,
}

impl AckError {
    /// An error with an explicit code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The payload did not deserialize into the event's shape.
    pub fn invalid_payload(err: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::InvalidPayload, format!("invalid payload: {err}"))
    }
}

impl From<InvalidInput> for AckError {
    fn from(err: InvalidInput) -> Self {
        Self::new(err.code, err.message)
    }
}

impl From<crate::redis::RedisError> for AckError {
    fn from(err: crate::redis::RedisError) -> Self {
        tracing::warn!(error = %err, "redis failure during socket event");
        Self::new(
            ErrorCode::Unavailable,
            "the server is temporarily unavailable, try again",
        )
    }
}

impl From<crate::rate_limit::LimitError> for AckError {
    fn from(err: crate::rate_limit::LimitError) -> Self {
        match err {
            crate::rate_limit::LimitError::RateLimited => {
                Self::new(ErrorCode::RateLimited, "you are sending messages too fast")
            }
            crate::rate_limit::LimitError::Unavailable(err) => err.into(),
        }
    }
}

impl From<StorageError> for AckError {
    fn from(err: StorageError) -> Self {
        tracing::warn!(error = %err, "storage failure during socket event");
        Self::new(
            ErrorCode::Unavailable,
            "the database is unavailable, try again",
        )
    }
}

/// Sends the ack for `result`, counting error acks by code. A client that asked for no ack
/// gets nothing, which socketioxide handles by ignoring the send.
pub fn reply<A: Adapter, T: Serialize>(
    ack: AckSender<A>,
    metrics: &Metrics,
    result: Result<T, AckError>,
) {
    let body = match result {
        Ok(data) => {
            let mut body = match serde_json::to_value(data) {
                Ok(Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            };
            body.insert("ok".into(), Value::Bool(true));
            Value::Object(body)
        }
        Err(err) => {
            Metrics::outcome(&metrics.event_errors, err.code.as_str());
            tracing::debug!(code = %err.code, "error ack");
            json!({"ok": false, "error": {"code": err.code, "message": err.message}})
        }
    };
    // Sending fails only when the client did not request an ack or already left.
    let _ = ack.send(&body);
}
