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
//! Keyed by user, not socket: opening more tabs does not buy a higher rate. Local limiters
//! forget idle keys once they hold many, so their memory is bounded by the active users.

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota};

use std::hash::Hash;
use std::net::IpAddr;

use crate::cluster::limits::{RedisMessageLimit, RedisRegisterLimit};
use crate::domain::UserId;

/// Why a message may not be sent now.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The user (or address) is over their rate.
    #[error("sending too fast")]
    RateLimited,
    /// The shared limiter (Redis) cannot be asked.
    #[error("rate limiter unavailable: {0}")]
    Unavailable(#[from] crate::cluster::redis::RedisError),
}

/// The per-user message limit: in this process, or shared through Redis.
#[derive(Debug)]
pub enum MessageRateLimiter {
    /// Embedded mode.
    Local(LocalMessageLimit),
    /// Cluster mode: one allowance per user across every instance.
    Redis(RedisMessageLimit),
}

impl MessageRateLimiter {
    /// Takes one message from the user's allowance.
    pub async fn check(&self, user: UserId) -> Result<(), LimitError> {
        match self {
            Self::Local(local) => local
                .check(user)
                .then_some(())
                .ok_or(LimitError::RateLimited),
            Self::Redis(redis) => redis
                .allow(user)
                .await?
                .then_some(())
                .ok_or(LimitError::RateLimited),
        }
    }
}

/// In-process per-user limiter.
#[derive(Debug)]
pub struct LocalMessageLimit(KeyedLimit<UserId>);

impl LocalMessageLimit {
    /// A limiter of `per_sec` messages per second with bursts of `burst`.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        Self(KeyedLimit::new(per_second(per_sec, burst)))
    }

    /// Takes one message from the user's allowance; false when over the limit.
    pub fn check(&self, user: UserId) -> bool {
        self.0.check(&user)
    }
}

/// Keys a local limiter holds before it forgets the idle ones.
const RETAIN_ABOVE: usize = 50_000;

/// A keyed in-process token bucket with bounded memory.
#[derive(Debug)]
struct KeyedLimit<K: Hash + Eq + Clone>(DefaultKeyedRateLimiter<K>);

impl<K: Hash + Eq + Clone> KeyedLimit<K> {
    fn new(quota: Quota) -> Self {
        Self(DefaultKeyedRateLimiter::keyed(quota))
    }

    fn check(&self, key: &K) -> bool {
        if self.0.len() > RETAIN_ABOVE {
            self.0.retain_recent();
        }
        self.0.check_key(key).is_ok()
    }
}

fn quota(per: Quota, burst: u32, fallback: NonZeroU32) -> Quota {
    per.allow_burst(NonZeroU32::new(burst).unwrap_or(fallback))
}

fn per_second(per_sec: u32, burst: u32) -> Quota {
    let per_sec = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
    quota(Quota::per_second(per_sec), burst, per_sec)
}

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
            room_changes: KeyedLimit::new(per_second(
                config.room_event_rate_per_sec,
                config.room_event_rate_burst,
            )),
            typing: KeyedLimit::new(per_second(
                config.typing_rate_per_sec,
                config.typing_rate_burst,
            )),
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

/// The per-address registration limit: in this process, or shared through Redis.
#[derive(Debug)]
pub enum RegisterRateLimiter {
    /// Embedded mode.
    Local(LocalRegisterLimit),
    /// Cluster mode: one allowance per address across every instance.
    Redis(RedisRegisterLimit),
}

impl RegisterRateLimiter {
    /// Takes one registration from the address's allowance.
    pub async fn check(&self, address: IpAddr) -> Result<(), LimitError> {
        let allowed = match self {
            Self::Local(local) => local.0.check(&address),
            Self::Redis(redis) => redis.allow(address).await?,
        };
        allowed.then_some(()).ok_or(LimitError::RateLimited)
    }
}

/// In-process per-address registration limiter.
#[derive(Debug)]
pub struct LocalRegisterLimit(KeyedLimit<IpAddr>);

impl LocalRegisterLimit {
    /// `per_min` registrations per minute with bursts of `burst`.
    pub fn new(per_min: u32, burst: u32) -> Self {
        let per_min = NonZeroU32::new(per_min).unwrap_or(NonZeroU32::MIN);
        Self(KeyedLimit::new(quota(
            Quota::per_minute(per_min),
            burst,
            per_min,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn allows_the_burst_then_limits_each_user_separately() {
        let limiter = MessageRateLimiter::Local(LocalMessageLimit::new(1, 5));
        for _ in 0..5 {
            assert!(limiter.check(UserId(1)).await.is_ok());
        }
        assert!(
            limiter.check(UserId(1)).await.is_err(),
            "sixth message within a second exceeds the burst"
        );
        assert!(
            limiter.check(UserId(2)).await.is_ok(),
            "another user is unaffected"
        );
    }
}
