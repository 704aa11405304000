//! Validated values at the edge of the system.
//!
//! Input is parsed into these types once, where it enters (HTTP body, Socket.IO payload); past
//! that point a `RoomName` is a valid room name by construction, so nothing inside re-checks.
//! Each parse error maps to one `ErrorCode`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error_code::ErrorCode;

/// Why a value was refused; carries the code clients see and a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidInput {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable reason.
    pub message: &'static str,
}

const fn invalid(code: ErrorCode, message: &'static str) -> InvalidInput {
    InvalidInput { code, message }
}

/// A user's numeric id, as stored and as sent to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl UserId {
    /// The private Socket.IO room every socket of this user joins; admin emits target it.
    pub fn room(self) -> String {
        format!("user:{}", self.0)
    }
}

/// A username: `^[a-zA-Z0-9_.-]{3,32}$`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    /// Validates a username as typed.
    pub fn parse(value: &str) -> Result<Self, InvalidInput> {
        let ok = (3..=32).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(invalid(
                ErrorCode::InvalidUsername,
                "username must be 3-32 characters of letters, digits, '_', '.' or '-'",
            ))
        }
    }

    /// Case-folded form used for uniqueness, so `Alice` and `alice` are one account.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// The username as typed at registration.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as typed: 8–128 characters. Never logged, never serialized.
pub struct Password(String);

impl Password {
    /// Checks the length policy.
    pub fn parse(value: String) -> Result<Self, InvalidInput> {
        let chars = value.chars().count();
        if (8..=128).contains(&chars) {
            Ok(Self(value))
        } else {
            Err(invalid(
                ErrorCode::InvalidPassword,
                "password must be 8-128 characters",
            ))
        }
    }

    /// The secret, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A public room name: `^[a-z0-9_-]{1,64}$`. It cannot collide with the private `user:<id>` rooms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RoomName(String);

impl RoomName {
    /// Validates a room name.
    pub fn parse(value: &str) -> Result<Self, InvalidInput> {
        let ok = (1..=64).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(invalid(
                ErrorCode::InvalidRoom,
                "room must be 1-64 characters of a-z, 0-9, '_' or '-'",
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Maximum message length in characters.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// A chat message text: 1–4096 characters, not only whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MessageText(String);

impl MessageText {
    /// Validates a message text.
    pub fn parse(value: String) -> Result<Self, InvalidInput> {
        if value.trim().is_empty() {
            return Err(invalid(ErrorCode::InvalidText, "text must not be empty"));
        }
        if value.chars().count() > MAX_MESSAGE_CHARS {
            return Err(invalid(
                ErrorCode::InvalidText,
                "text must be at most 4096 characters",
            ));
        }
        Ok(Self(value))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where an admin emit goes: a public room or one user's private room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmitTarget {
    /// Everyone in a public room.
    Room(RoomName),
    /// Every socket of one user, on every instance.
    User(UserId),
}

impl EmitTarget {
    /// Accepts `room-name` or `user:<id>`.
    pub fn parse(value: &str) -> Result<Self, InvalidInput> {
        if let Some(id) = value.strip_prefix("user:") {
            return id
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .map(|id| Self::User(UserId(id)))
                .ok_or(invalid(
                    ErrorCode::InvalidRoom,
                    "user room must be user:<numeric id>",
                ));
        }
        RoomName::parse(value).map(Self::Room)
    }

    /// The Socket.IO room name.
    pub fn room(&self) -> String {
        match self {
            Self::Room(room) => room.as_str().to_owned(),
            Self::User(user) => user.room(),
        }
    }
}

/// An event name an admin may emit: 1–64 printable characters, not one Socket.IO reserves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventName(String);

/// Names the official client treats specially; emitting them would confuse it.
const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
    "message", // would impersonate a chat message
    "presence",
    "typing",
    "server:draining",
];

impl EventName {
    /// Validates an admin event name.
    pub fn parse(value: &str) -> Result<Self, InvalidInput> {
        let ok = (1..=64).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(invalid(
                ErrorCode::InvalidEvent,
                "event must be 1-64 printable ASCII characters",
            ));
        }
        if RESERVED_EVENTS.contains(&value) {
            return Err(invalid(ErrorCode::InvalidEvent, "event name is reserved"));
        }
        Ok(Self(value.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An analytics event name: 1–64 characters of letters, digits, `_`, `.`, `:` or `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyticsName(String);

impl AnalyticsName {
    /// Validates an analytics event name.
    pub fn parse(value: &str) -> Result<Self, InvalidInput> {
        let ok = (1..=64).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(invalid(
                ErrorCode::InvalidRequest,
                "name must be 1-64 characters of letters, digits, '_', '.', ':' or '-'",
            ))
        }
    }

    /// The name.
    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_spec_pattern() {
        for ok in ["abc", "Alice_1.x-y", &"a".repeat(32)] {
            assert!(Username::parse(ok).is_ok(), "{ok} should be valid");
        }
        for bad in ["ab", &"a".repeat(33), "a b", "ali$e", "élise", ""] {
            assert_eq!(
                Username::parse(bad).map(|_| ()),
                Err(invalid(
                    ErrorCode::InvalidUsername,
                    "username must be 3-32 characters of letters, digits, '_', '.' or '-'"
                )),
                "{bad}"
            );
        }
        assert_eq!(Username::parse("Alice").expect("valid").key(), "alice");
    }

    #[test]
    fn room_names_exclude_private_user_rooms() {
        assert!(RoomName::parse("general").is_ok());
        assert!(RoomName::parse("a-b_c-9").is_ok());
        for bad in ["", "General", "user:1", "a b", &"x".repeat(65), "room!"] {
            assert_eq!(
                RoomName::parse(bad).map_err(|e| e.code),
                Err(ErrorCode::InvalidRoom),
                "{bad}"
            );
        }
    }

    #[test]
    fn message_text_counts_characters_not_bytes() {
        assert!(MessageText::parse("é".repeat(4096)).is_ok());
        assert_eq!(
            MessageText::parse("x".repeat(4097)).map_err(|e| e.code),
            Err(ErrorCode::InvalidText)
        );
        assert_eq!(
            MessageText::parse("   ".into()).map_err(|e| e.code),
            Err(ErrorCode::InvalidText)
        );
    }

    #[test]
    fn passwords_are_length_checked_and_never_printed() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("x".repeat(129)).is_err());
        let p = Password::parse("correct horse".into()).expect("valid");
        assert!(!format!("{p:?}").contains("horse"));
    }

    #[test]
    fn emit_targets_are_rooms_or_user_rooms() {
        assert_eq!(
            EmitTarget::parse("user:42").expect("user").room(),
            "user:42"
        );
        assert_eq!(EmitTarget::parse("lobby").expect("room").room(), "lobby");
        assert!(EmitTarget::parse("user:abc").is_err());
        assert!(EmitTarget::parse("user:-1").is_err());
        assert!(EventName::parse("connect").is_err());
        assert!(EventName::parse("notification").is_ok());
    }
}
