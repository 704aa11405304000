//! Rate limits on what clients send, as generic cell rates (token buckets).
//!
//! - `message`: `MESSAGE_RATE_PER_SEC` sustained with bursts of `MESSAGE_RATE_BURST` per user,
//!   cluster-wide in cluster mode (the SPEC asks for it: a user must not multiply their rate
//!   by spreading sockets over instances).
//! - `join`, `leave`, `resume` (one bucket, they all change membership and read history):
//!   `ROOM_EVENT_RATE_PER_SEC` / `ROOM_EVENT_RATE_BURST` per user; `typing`:
//!   `TYPING_RATE_PER_SEC` / `TYPING_RATE_BURST` per user. These are per instance: they bound
//!   the work one instance does for a user, and a Redis round trip per keystroke would cost
//!   more than the fan-out it saves.
//! - `POST /api/auth/register`: `REGISTER_RATE_PER_MIN` / `REGISTER_RATE_BURST` per client
//!   address, cluster-wide, so argon2 hashing cannot be used to saturate the CPUs.
//!
//! - analytics events: see `intake`.
//!
//! Keyed by user, not socket: opening more tabs does not buy a higher rate. Local limiters
//! forget idle keys once they hold many, so their memory is bounded by the active users.
//!
//! Whether an allowance is kept in this process (`local`) or in Redis (`redis`) is decided
//! once, at start (`app.rs`); handlers hold a `RateLimiter` and never ask which.

pub mod intake;
pub mod local;
pub mod redis;

use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::UserId;
use crate::redis::RedisError;
use local::KeyedLimit;

/// Why a message may not be sent now.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The user (or address) is over their rate.
    #[error("sending too fast")]
    RateLimited,
    /// The shared limiter (Redis) cannot be asked.
    #[error("rate limiter unavailable: {0}")]
    Unavailable(#[from] RedisError),
}

/// An allowance per key, wherever it is kept: the one seam between the local and the shared
/// implementations of a cluster-wide limit.
#[async_trait]
pub trait Allowance<K>: Send + Sync + Debug {
    /// Takes one event from `key`'s allowance; `Ok(false)` when over the limit.
    async fn take(&self, key: K) -> Result<bool, RedisError>;
}

/// A limit handlers check without knowing where its counts live.
#[derive(Debug, Clone)]
pub struct RateLimiter<K>(Arc<dyn Allowance<K>>);

impl<K> RateLimiter<K> {
    /// A limiter over `allowance`.
    pub fn new(allowance: impl Allowance<K> + 'static) -> Self {
        Self(Arc::new(allowance))
    }

    /// Takes one event from `key`'s allowance.
    pub async fn check(&self, key: K) -> Result<(), LimitError> {
        if self.0.take(key).await? {
            Ok(())
        } else {
            Err(LimitError::RateLimited)
        }
    }
}

/// The per-user `message` limit, cluster-wide in cluster mode.
pub type MessageRateLimiter = RateLimiter<UserId>;

/// The per-address registration limit, cluster-wide in cluster mode.
pub type RegisterRateLimiter = RateLimiter<IpAddr>;

/// A client event that has its own per-user allowance (besides `message`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedEvent {
    /// `join`, `leave` and `resume`, which share one bucket.
    RoomChange,
    /// `typing`.
    Typing,
}

/// Per-user allowances of the events other than `message`, in this instance.
#[derive(Debug)]
pub struct EventLimits {
    room_changes: KeyedLimit<UserId>,
    typing: KeyedLimit<UserId>,
}

impl EventLimits {
    /// Limits from the configured rates.
    pub fn new(config: &crate::config::Config) -> Self {
        Self {
            room_changes: KeyedLimit::per_second(
                config.room_event_rate_per_sec,
                config.room_event_rate_burst,
            ),
            typing: KeyedLimit::per_second(config.typing_rate_per_sec, config.typing_rate_burst),
        }
    }

    /// Takes one `event` from the user's allowance.
    pub fn check(&self, event: LimitedEvent, user: UserId) -> Result<(), LimitError> {
        let limit = match event {
            LimitedEvent::RoomChange => &self.room_changes,
            LimitedEvent::Typing => &self.typing,
        };
        limit
            .check(&user)
            .then_some(())
            .ok_or(LimitError::RateLimited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn allows_the_burst_then_limits_each_user_separately() {
        let limiter = MessageRateLimiter::new(KeyedLimit::per_second(1, 5));
        for _ in 0..5 {
            assert!(limiter.check(UserId(1)).await.is_ok());
        }
        assert!(
            matches!(limiter.check(UserId(1)).await, Err(LimitError::RateLimited)),
            "sixth message within a second exceeds the burst"
        );
        assert!(
            limiter.check(UserId(2)).await.is_ok(),
            "another user is unaffected"
        );
    }
}
