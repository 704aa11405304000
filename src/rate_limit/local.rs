//! Allowances kept in this process: embedded mode, and the per-instance event limits.

use std::fmt::Debug;
use std::hash::Hash;
use std::num::NonZeroU32;

use async_trait::async_trait;
use governor::{DefaultKeyedRateLimiter, Quota};

use super::Allowance;
use crate::redis::RedisError;

/// Keys a local limiter holds before it forgets the idle ones.
const RETAIN_ABOVE: usize = 50_000;

/// A keyed in-process token bucket with bounded memory.
#[derive(Debug)]
pub struct KeyedLimit<K: Hash + Eq + Clone>(DefaultKeyedRateLimiter<K>);

impl<K: Hash + Eq + Clone> KeyedLimit<K> {
    /// `per_sec` events per second with bursts of `burst` (a zero burst allows `per_sec`).
    pub fn per_second(per_sec: u32, burst: u32) -> Self {
        let per_sec = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
        Self::new(quota(Quota::per_second(per_sec), burst, per_sec))
    }

    /// `per_min` events per minute with bursts of `burst` (a zero burst allows `per_min`).
    pub fn per_minute(per_min: u32, burst: u32) -> Self {
        let per_min = NonZeroU32::new(per_min).unwrap_or(NonZeroU32::MIN);
        Self::new(quota(Quota::per_minute(per_min), burst, per_min))
    }

    fn new(quota: Quota) -> Self {
        Self(DefaultKeyedRateLimiter::keyed(quota))
    }

    /// Takes one event from `key`'s allowance; false when over the limit.
    pub fn check(&self, key: &K) -> bool {
        if self.0.len() > RETAIN_ABOVE {
            self.0.retain_recent();
        }
        self.0.check_key(key).is_ok()
    }
}

fn quota(per: Quota, burst: u32, fallback: NonZeroU32) -> Quota {
    per.allow_burst(NonZeroU32::new(burst).unwrap_or(fallback))
}

#[async_trait]
impl<K> Allowance<K> for KeyedLimit<K>
where
    K: Hash + Eq + Clone + Send + Sync + Debug + 'static,
{
    async fn take(&self, key: K) -> Result<bool, RedisError> {
        Ok(self.check(&key))
    }
}
