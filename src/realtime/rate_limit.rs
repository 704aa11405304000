//! Per-user message rate limit: `MESSAGE_RATE_PER_SEC` sustained with bursts of
//! `MESSAGE_RATE_BURST`, as a generic cell rate (token bucket) per user id.
//!
//! Keyed by user, not socket: opening more tabs does not buy a higher rate.

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota};

use crate::cluster::limits::RedisMessageLimit;
use crate::domain::UserId;

/// Why a message may not be sent now.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The user is over their rate.
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
pub struct LocalMessageLimit {
    limiter: DefaultKeyedRateLimiter<UserId>,
}

impl LocalMessageLimit {
    /// A limiter of `per_sec` messages per second with bursts of `burst`.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        let per_sec = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(per_sec);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst)),
        }
    }

    /// Takes one message from the user's allowance; false when over the limit.
    pub fn check(&self, user: UserId) -> bool {
        if self.limiter.len() > 50_000 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&user).is_ok()
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
