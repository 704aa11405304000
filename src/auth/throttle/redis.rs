//! Failed-login counters in Redis, shared by every instance, so a password guesser cannot
//! rotate instances (the rules are in the parent module).
//!
//! Fixed windows counted with `INCR` and given their expiry in the same script, so a crash
//! between the two cannot leave a lockout that never ends. The username's and the (address,
//! username) pair's counters share a hash tag, so one script checks both and counts the
//! attempt before the password is hashed, also on a Redis Cluster; the address's soft counter
//! is a second, single-key script.

use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;
use fred::types::scripts::Script;

use super::{Admission, AttemptKeys, LoginThrottle, ThrottleError, ThrottleLimits, Throttled};
use crate::redis::{Redis, RedisError, hashed_key};

/// Checks the username's and the pair's counters and, when both are under the limit, counts
/// the attempt in both. Returns `{1, 0}` when counted, `{0, ms}` when blocked for `ms`.
/// KEYS: username, pair (one hash slot). ARGV: limit, window ms.
const LOGIN_ADMIT: &str = r#"
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local blocked = 0
for i = 1, 2 do
  local n = tonumber(redis.call('GET', KEYS[i]) or '0')
  if n >= limit then
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl < 0 then
      redis.call('PEXPIRE', KEYS[i], window)
      ttl = window
    end
    if ttl > blocked then blocked = ttl end
  end
end
if blocked > 0 then return {0, blocked} end
for i = 1, 2 do
  if redis.call('INCR', KEYS[i]) == 1 or redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIRE', KEYS[i], window)
  end
end
return {1, 0}
"#;

/// Counts one attempt against a key with its window; returns `{count, ms left}`.
/// KEYS: the counter. ARGV: window ms.
const COUNT: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return {n, redis.call('PTTL', KEYS[1])}
"#;

/// Gives one attempt back to each key that has one (the expiry stays as it is).
const REFUND: &str = r#"
for i = 1, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then
    redis.call('DECR', KEYS[i])
  end
end
return 0
"#;

/// Failed-login counters in Redis (see `auth::throttle` for the rules).
#[derive(Debug, Clone)]
pub struct RedisLoginThrottle {
    redis: Redis,
    limits: ThrottleLimits,
}

/// The Redis keys of an attempt: usernames and addresses are hashed, so what a user typed
/// never sits in Redis in clear; the username's hash is the hash tag of both hard counters.
struct LoginKeys {
    username: String,
    pair: String,
    address: String,
}

impl LoginKeys {
    fn new(keys: &AttemptKeys) -> Self {
        let user = hashed_key("login-throttle/user", &keys.username);
        let address = hashed_key("login-throttle/ip", &keys.address);
        Self {
            username: format!("roomcast:login:{{{user}}}:user"),
            pair: format!("roomcast:login:{{{user}}}:from:{address}"),
            address: format!("roomcast:login:ip:{address}"),
        }
    }
}

impl RedisLoginThrottle {
    /// A throttle with the given limits.
    pub fn new(redis: Redis, limits: ThrottleLimits) -> Self {
        Self { redis, limits }
    }

    fn window_ms(&self) -> String {
        self.limits.window.as_millis().to_string()
    }

    async fn refund(&self, keys: Vec<String>) -> Result<(), RedisError> {
        let _: i64 = Script::from_lua(REFUND)
            .evalsha_with_reload(self.redis.client(), keys, Vec::<String>::new())
            .await?;
        Ok(())
    }
}

#[async_trait]
impl LoginThrottle for RedisLoginThrottle {
    async fn admit(&self, keys: &AttemptKeys) -> Result<Admission, ThrottleError> {
        let keys = LoginKeys::new(keys);
        let (counted, blocked_ms): (i64, i64) = Script::from_lua(LOGIN_ADMIT)
            .evalsha_with_reload(
                self.redis.client(),
                vec![keys.username, keys.pair],
                vec![self.limits.per_username.to_string(), self.window_ms()],
            )
            .await
            .map_err(RedisError::from)?;
        if counted == 0 {
            return Err(Throttled {
                retry_after: Duration::from_millis(u64::try_from(blocked_ms).unwrap_or(1000)),
            }
            .into());
        }
        let (count, left_ms): (i64, i64) = Script::from_lua(COUNT)
            .evalsha_with_reload(
                self.redis.client(),
                vec![keys.address],
                vec![self.window_ms()],
            )
            .await
            .map_err(RedisError::from)?;
        if count > i64::from(self.limits.per_address) {
            Ok(Admission::AddressOverLimit {
                retry_after: Duration::from_millis(u64::try_from(left_ms).unwrap_or(1000)),
            })
        } else {
            Ok(Admission::Open)
        }
    }

    async fn succeeded(&self, keys: &AttemptKeys) -> Result<(), ThrottleError> {
        let keys = LoginKeys::new(keys);
        let _: i64 = self
            .redis
            .pool()
            .del(vec![keys.username, keys.pair])
            .await
            .map_err(RedisError::from)?;
        Ok(self.refund(vec![keys.address]).await?)
    }

    async fn abandoned(&self, keys: &AttemptKeys) -> Result<(), ThrottleError> {
        let keys = LoginKeys::new(keys);
        self.refund(vec![keys.username, keys.pair]).await?;
        Ok(self.refund(vec![keys.address]).await?)
    }
}
