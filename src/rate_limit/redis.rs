//! Allowances kept in Redis, so they hold across instances: a user cannot double their
//! message rate by spreading sockets over instances.
//!
//! - Messages: GCRA (the token bucket's continuous form) in one Lua script per check. The
//!   key `roomcast:rate:msg:<user>` holds the theoretical arrival time in ms; Redis' own clock
//!   (`TIME`) is used so instances with skewed clocks agree.
//! - Registrations: the same GCRA per client address (`roomcast:rate:register:<hash>`).

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use fred::types::scripts::Script;

use super::Allowance;
use crate::domain::UserId;
use crate::redis::{Redis, RedisError, hashed_key};

const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > interval * burst then
  return 0
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.max(1, math.ceil(new_tat - now)))
return 1
"#;

/// A GCRA allowance in Redis, shared by every instance.
#[derive(Debug, Clone)]
pub struct RedisRate {
    redis: Redis,
    interval_ms: f64,
    burst: u32,
}

impl RedisRate {
    /// One event per `interval` sustained, `burst` at once.
    pub fn new(redis: Redis, interval: Duration, burst: u32) -> Self {
        Self {
            redis,
            interval_ms: interval.as_secs_f64() * 1000.0,
            burst: burst.max(1),
        }
    }

    /// Takes one event from `key`'s allowance; `Ok(false)` when over the limit.
    pub async fn allow(&self, key: String) -> Result<bool, RedisError> {
        let allowed: i64 = Script::from_lua(GCRA)
            .evalsha_with_reload(
                self.redis.client(),
                vec![key],
                vec![self.interval_ms.to_string(), self.burst.to_string()],
            )
            .await?;
        Ok(allowed == 1)
    }
}

/// Per-user message limit in Redis.
#[derive(Debug, Clone)]
pub struct RedisMessageLimit(RedisRate);

impl RedisMessageLimit {
    /// `per_sec` sustained, `burst` at once.
    pub fn new(redis: Redis, per_sec: u32, burst: u32) -> Self {
        let interval = Duration::from_secs_f64(1.0 / f64::from(per_sec.max(1)));
        Self(RedisRate::new(redis, interval, burst))
    }
}

#[async_trait]
impl Allowance<UserId> for RedisMessageLimit {
    async fn take(&self, user: UserId) -> Result<bool, RedisError> {
        self.0.allow(format!("roomcast:rate:msg:{user}")).await
    }
}

/// Per-address registration limit in Redis.
#[derive(Debug, Clone)]
pub struct RedisRegisterLimit(RedisRate);

impl RedisRegisterLimit {
    /// `per_min` sustained, `burst` at once.
    pub fn new(redis: Redis, per_min: u32, burst: u32) -> Self {
        let interval = Duration::from_secs_f64(60.0 / f64::from(per_min.max(1)));
        Self(RedisRate::new(redis, interval, burst))
    }
}

#[async_trait]
impl Allowance<IpAddr> for RedisRegisterLimit {
    async fn take(&self, address: IpAddr) -> Result<bool, RedisError> {
        self.0
            .allow(format!(
                "roomcast:rate:register:{}",
                hashed_key("register", &address.to_string())
            ))
            .await
    }
}
