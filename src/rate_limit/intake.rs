//! The analytics intake limit: anyone may post events, logged in or not, so each user (or,
//! for anonymous callers, each client address) gets a token bucket of
//! `ANALYTICS_RATE_PER_SEC` with burst `ANALYTICS_RATE_BURST` on each instance. The buckets
//! are swept when they grow, so the limiter's own memory stays bounded by the callers of the
//! last few seconds. Unlike the other limits it answers with the wait, for `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::DefaultClock;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::domain::UserId;

/// Who an analytics rate limit is counted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntakeKey {
    /// A logged-in user, wherever they post from.
    User(UserId),
    /// An anonymous caller, by client address.
    Address(IpAddr),
}

/// Per-caller token buckets for event intake, on this instance.
#[derive(Debug)]
pub struct IntakeLimiter {
    buckets: DefaultKeyedRateLimiter<IntakeKey>,
}

/// Buckets kept before full (idle) ones are swept.
const SWEEP_ABOVE: usize = 10_000;

impl IntakeLimiter {
    /// `per_sec` sustained, `burst` at once.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        Self {
            buckets: DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    /// `Err(wait)` when `key` is over its rate, with the time until its next token.
    pub fn check(&self, key: IntakeKey) -> Result<(), Duration> {
        if self.buckets.len() > SWEEP_ABOVE {
            self.buckets.retain_recent();
        }
        self.buckets.check_key(&key).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::Clock::now(&DefaultClock::default()))
        })
    }
}
