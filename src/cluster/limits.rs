//! Rate limits that hold across instances: a user cannot double their message rate by
//! spreading sockets over instances, and a password guesser cannot rotate instances.
//!
//! - Messages: GCRA (the token bucket's continuous form) in one Lua script per check. The
//!   key `roomcast:rate:msg:<user>` holds the theoretical arrival time in ms; Redis' own clock
//!   (`TIME`) is used so instances with skewed clocks agree.
//! - Logins: fixed windows, `roomcast:login:fail:<hash of username or address>` counted with INCR and expiring with
//!   the window; a key at the limit blocks until it expires.

use std::time::Duration;

use fred::prelude::*;
use fred::types::scripts::Script;
use sha2::{Digest, Sha256};

use super::redis::{Redis, RedisError};
use crate::domain::UserId;

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

/// Per-user message limit in Redis.
#[derive(Debug, Clone)]
pub struct RedisMessageLimit {
    redis: Redis,
    interval_ms: f64,
    burst: u32,
}

impl RedisMessageLimit {
    /// `per_sec` sustained, `burst` at once.
    pub fn new(redis: Redis, per_sec: u32, burst: u32) -> Self {
        Self {
            redis,
            interval_ms: 1000.0 / f64::from(per_sec.max(1)),
            burst: burst.max(1),
        }
    }

    /// Takes one message from the user's allowance; `Ok(false)` when over the limit.
    pub async fn allow(&self, user: UserId) -> Result<bool, RedisError> {
        let allowed: i64 = Script::from_lua(GCRA)
            .evalsha_with_reload(
                self.redis.client(),
                vec![format!("roomcast:rate:msg:{user}")],
                vec![self.interval_ms.to_string(), self.burst.to_string()],
            )
            .await?;
        Ok(allowed == 1)
    }
}

/// Failed-login counters in Redis.
#[derive(Debug, Clone)]
pub struct RedisLoginThrottle {
    redis: Redis,
    max_failures: u32,
    window: Duration,
}

/// Keys are hashed: a username is something a user typed and must not sit in Redis in clear.
fn login_key(key: &str) -> String {
    let digest = Sha256::digest(format!("roomcast/login-throttle\0{key}").as_bytes());
    format!("roomcast:login:fail:{}", hex::encode(&digest[..16]))
}

impl RedisLoginThrottle {
    /// `max_failures` per key per `window`.
    pub fn new(redis: Redis, max_failures: u32, window: Duration) -> Self {
        Self {
            redis,
            max_failures,
            window,
        }
    }

    /// `Some(retry_after)` when any key is at its limit.
    pub async fn blocked(&self, keys: &[&str]) -> Result<Option<Duration>, RedisError> {
        for key in keys {
            let key = login_key(key);
            let failures: Option<u32> = self.redis.pool().get(&key).await?;
            if failures.unwrap_or(0) >= self.max_failures {
                let ttl: i64 = self.redis.pool().pttl(&key).await?;
                let ttl = u64::try_from(ttl).unwrap_or(1000);
                return Ok(Some(Duration::from_millis(ttl)));
            }
        }
        Ok(None)
    }

    /// Counts a failure against every key; the window starts at the first failure.
    pub async fn record_failure(&self, keys: &[&str]) -> Result<(), RedisError> {
        let window_ms = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
        for key in keys {
            let key = login_key(key);
            let count: i64 = self.redis.pool().incr(&key).await?;
            if count == 1 {
                let _: bool = self.redis.pool().pexpire(&key, window_ms, None).await?;
            }
        }
        Ok(())
    }

    /// Clears one key (the username's, after a successful login).
    pub async fn clear(&self, key: &str) -> Result<(), RedisError> {
        let _: i64 = self.redis.pool().del(login_key(key)).await?;
        Ok(())
    }
}
