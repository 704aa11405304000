//! Rate limits that hold across instances: a user cannot double their message rate by
//! spreading sockets over instances, and a password guesser cannot rotate instances.
//!
//! - Messages: GCRA (the token bucket's continuous form) in one Lua script per check. The
//!   key `roomcast:rate:msg:<user>` holds the theoretical arrival time in ms; Redis' own clock
//!   (`TIME`) is used so instances with skewed clocks agree.
//! - Registrations: the same GCRA per client address (`roomcast:rate:register:<hash>`).
//! - Logins (see `auth::throttle`): fixed windows counted with `INCR` and given their expiry
//!   in the same script, so a crash between the two cannot leave a lockout that never ends.
//!   The username's and the (address, username) pair's counters share a hash tag, so one
//!   script checks both and counts the attempt before the password is hashed, also on a
//!   Redis Cluster; the address's soft counter is a second, single-key script.

use std::net::IpAddr;
use std::time::Duration;

use fred::prelude::*;
use fred::types::scripts::Script;
use sha2::{Digest, Sha256};

use super::redis::{Redis, RedisError};
use crate::auth::throttle::{Admission, AttemptKeys, ThrottleError, ThrottleLimits, Throttled};
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

    /// Takes one message from the user's allowance; `Ok(false)` when over the limit.
    pub async fn allow(&self, user: UserId) -> Result<bool, RedisError> {
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

    /// Takes one registration from the address's allowance; `Ok(false)` when over the limit.
    pub async fn allow(&self, address: IpAddr) -> Result<bool, RedisError> {
        self.0
            .allow(format!(
                "roomcast:rate:register:{}",
                hashed("register", &address.to_string())
            ))
            .await
    }
}

/// A key part derived from client input: not stored in clear, and of fixed length.
fn hashed(purpose: &str, value: &str) -> String {
    let digest = Sha256::digest(format!("roomcast/{purpose}\0{value}").as_bytes());
    hex::encode(&digest[..16])
}

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
        let user = hashed("login-throttle/user", &keys.username);
        let address = hashed("login-throttle/ip", &keys.address);
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

    /// See `LoginThrottle::admit`.
    pub async fn admit(&self, keys: &AttemptKeys) -> Result<Admission, ThrottleError> {
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

    /// See `LoginThrottle::succeeded`.
    pub async fn succeeded(&self, keys: &AttemptKeys) -> Result<(), RedisError> {
        let keys = LoginKeys::new(keys);
        let _: i64 = self
            .redis
            .pool()
            .del(vec![keys.username, keys.pair])
            .await?;
        self.refund(vec![keys.address]).await
    }

    /// See `LoginThrottle::abandoned`.
    pub async fn abandoned(&self, keys: &AttemptKeys) -> Result<(), RedisError> {
        let keys = LoginKeys::new(keys);
        self.refund(vec![keys.username, keys.pair]).await?;
        self.refund(vec![keys.address]).await
    }

    async fn refund(&self, keys: Vec<String>) -> Result<(), RedisError> {
        let _: i64 = Script::from_lua(REFUND)
            .evalsha_with_reload(self.redis.client(), keys, Vec::<String>::new())
            .await?;
        Ok(())
    }
}
