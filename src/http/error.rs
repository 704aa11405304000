//! The HTTP error funnel: the only place where failures become status codes.
//!
//! Handlers return `Result<_, ApiError>`; module errors convert into `ApiError` through the
//! `From` impls below, and `IntoResponse` renders `{"error": {"code", "message"}}` with the
//! status that fits the code. Internal details go to the log, never to the client.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::password::HashError;
use crate::auth::throttle::Throttled;
use crate::domain::InvalidInput;
use crate::error_code::ErrorCode;
use crate::storage::StorageError;

/// An HTTP error response.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// Machine-readable code; decides the status.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// Sent as `Retry-After` on 429 and 503.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 401: not logged in.
    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "log in first")
    }

    /// 503: a dependency is down.
    pub fn unavailable(what: &str) -> Self {
        Self::new(
            ErrorCode::Unavailable,
            format!("{what} is unavailable, try again shortly"),
        )
        .with_retry_after(Duration::from_secs(1))
    }

    /// 500, logged with its cause.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }

    /// Adds a `Retry-After` hint.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// The status for this error's code.
    pub fn status(&self) -> StatusCode {
        match self.code {
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidPayload
            | ErrorCode::InvalidUsername
            | ErrorCode::InvalidPassword
            | ErrorCode::InvalidRoom
            | ErrorCode::InvalidText
            | ErrorCode::InvalidEvent
            | ErrorCode::NotInRoom
            | ErrorCode::UnknownEvent
            | ErrorCode::TooManyRooms => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidCredentials | ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::ForbiddenOrigin => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::UsernameTaken => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut response = (status, body).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1);
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl From<InvalidInput> for ApiError {
    fn from(err: InvalidInput) -> Self {
        Self::new(err.code, err.message)
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Conflict => Self::new(ErrorCode::UsernameTaken, "that username is taken"),
            other => {
                tracing::warn!(error = %other, "database failure");
                Self::unavailable("the database")
            }
        }
    }
}

impl From<HashError> for ApiError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => Self::new(ErrorCode::Unavailable, "the server is busy, try again")
                .with_retry_after(Duration::from_secs(1)),
            HashError::Failed(cause) => Self::internal(cause),
        }
    }
}

impl From<Throttled> for ApiError {
    fn from(err: Throttled) -> Self {
        Self::new(
            ErrorCode::RateLimited,
            "too many failed logins, try again later",
        )
        .with_retry_after(err.retry_after)
    }
}

impl From<crate::redis::RedisError> for ApiError {
    fn from(err: crate::redis::RedisError) -> Self {
        tracing::warn!(error = %err, "redis failure");
        Self::unavailable("redis")
    }
}

impl From<crate::auth::throttle::ThrottleError> for ApiError {
    fn from(err: crate::auth::throttle::ThrottleError) -> Self {
        match err {
            crate::auth::throttle::ThrottleError::Throttled(throttled) => throttled.into(),
            crate::auth::throttle::ThrottleError::Unavailable(err) => err.into(),
        }
    }
}

impl From<crate::analytics::AnalyticsError> for ApiError {
    fn from(err: crate::analytics::AnalyticsError) -> Self {
        use crate::analytics::AnalyticsError;
        match err {
            AnalyticsError::Session(err) => err.into(),
            AnalyticsError::Storage(err) => err.into(),
            AnalyticsError::Redis(err) => err.into(),
            AnalyticsError::PipelineUnavailable => Self::unavailable("the analytics pipeline"),
        }
    }
}

impl From<tower_sessions::session::Error> for ApiError {
    fn from(err: tower_sessions::session::Error) -> Self {
        tracing::warn!(error = %err, "session store failure");
        Self::unavailable("the session store")
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let code = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            _ => ErrorCode::InvalidRequest,
        };
        Self::new(code, rejection.body_text())
    }
}
