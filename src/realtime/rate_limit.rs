//! Per-user message rate limit: `MESSAGE_RATE_PER_SEC` sustained with bursts of
//! `MESSAGE_RATE_BURST`, as a generic cell rate (token bucket) per user id.
//!
//! Keyed by user, not socket: opening more tabs does not buy a higher rate.

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota};

use crate::domain::UserId;

/// The user is over their message rate.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("sending too fast")]
pub struct RateLimited;

/// In-process per-user limiter.
#[derive(Debug)]
pub struct MessageRateLimiter {
    limiter: DefaultKeyedRateLimiter<UserId>,
}

impl MessageRateLimiter {
    /// A limiter of `per_sec` messages per second with bursts of `burst`.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        let per_sec = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(per_sec);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst)),
        }
    }

    /// Takes one message from the user's allowance.
    pub async fn check(&self, user: UserId) -> Result<(), RateLimited> {
        if self.limiter.len() > 50_000 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&user).map_err(|_| RateLimited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn allows_the_burst_then_limits_each_user_separately() {
        let limiter = MessageRateLimiter::new(1, 5);
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
