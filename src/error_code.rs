//! The error vocabulary clients see.
//!
//! Every error that leaves the server, as an HTTP JSON body or as a Socket.IO error ack, carries
//! one of these codes. Keeping them in one enum means the strings in the README and SPEC come
//! from a single place, and a new failure mode has to be named here before it can be reported.

use serde::Serialize;

/// A machine-readable error code, serialized in `snake_case`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body or payload is not the JSON shape the endpoint or event expects.
    InvalidRequest,
    /// A Socket.IO payload has the wrong shape or types.
    InvalidPayload,
    /// The username does not match `^[a-zA-Z0-9_.-]{3,32}$`.
    InvalidUsername,
    /// The password is shorter than 8 or longer than 128 characters.
    InvalidPassword,
    /// The room name does not match `^[a-z0-9_-]{1,64}$` (or `user:<id>` where allowed).
    InvalidRoom,
    /// A message text is empty or longer than 4096 characters.
    InvalidText,
    /// An admin event name is empty, too long or reserved by Socket.IO.
    InvalidEvent,
    /// Registration with a username someone already has.
    UsernameTaken,
    /// Login with an unknown username or a wrong password (never says which).
    InvalidCredentials,
    /// No logged-in session, or a wrong admin token.
    Unauthorized,
    /// A state-changing request from an origin that is not allowed.
    ForbiddenOrigin,
    /// The socket sent to a room it has not joined.
    NotInRoom,
    /// Nothing at this path.
    NotFound,
    /// The path exists but not with this method.
    MethodNotAllowed,
    /// The request body is over the configured limit.
    PayloadTooLarge,
    /// The request body is not `application/json`.
    UnsupportedMediaType,
    /// Too many attempts; the client should slow down.
    RateLimited,
    /// A dependency (database, Redis) is down or the server is draining or overloaded.
    Unavailable,
    /// The client emitted an event the server does not know.
    UnknownEvent,
    /// A `join` past `MAX_ROOMS_PER_SOCKET`.
    TooManyRooms,
    /// A bug or an unexpected failure; details are in the server log only.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidPayload => "invalid_payload",
            Self::InvalidUsername => "invalid_username",
            Self::InvalidPassword => "invalid_password",
            Self::InvalidRoom => "invalid_room",
            Self::InvalidText => "invalid_text",
            Self::InvalidEvent => "invalid_event",
            Self::UsernameTaken => "username_taken",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Unauthorized => "unauthorized",
            Self::ForbiddenOrigin => "forbidden_origin",
            Self::NotInRoom => "not_in_room",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::UnknownEvent => "unknown_event",
            Self::TooManyRooms => "too_many_rooms",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
