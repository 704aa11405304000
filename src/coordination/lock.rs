//! A token-owned lock in Redis, for work that must run on one instance at a time.
//!
//! `roomcast:lock:<name>` holds a random token of its holder, set with `SET NX PX <ttl>`.
//! Only the holder can renew it (`PEXPIRE` if the value is still its token) or release it
//! (`DEL` if the value is still its token); both checks run as Lua scripts, so a holder that
//! lost the lock (it expired while the holder was paused) can never extend or delete the
//! lock of the instance that took over. A killed holder blocks the work for at most one TTL.
//!
//! This is a lease, not a fence: a holder paused longer than the TTL may briefly overlap with
//! its successor. Holders therefore renew every third of the TTL, stop their work as soon as
//! a renewal fails, and confirm the lease (renewing it) right before each step that writes;
//! the jobs that use it are idempotent on top of that.

use std::time::Duration;

use fred::prelude::*;
use fred::types::Expiration;
use fred::types::SetOptions;
use fred::types::scripts::Script;

use crate::redis::{Redis, RedisError};

const RENEW: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
"#;

const RELEASE: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
"#;

/// Acquires named locks in Redis.
#[derive(Debug, Clone)]
pub struct Locks {
    redis: Redis,
    ttl: Duration,
}

/// A lock this instance holds. Dropping it without `release` lets it expire after its TTL.
#[derive(Debug, Clone)]
pub struct HeldLock {
    redis: Redis,
    key: String,
    token: String,
    ttl: Duration,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Locks {
    /// Locks on `redis` that expire `ttl` after their last renewal.
    pub fn new(redis: Redis, ttl: Duration) -> Self {
        Self { redis, ttl }
    }

    /// The lease time.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes the lock `name` if nobody holds it; `None` when someone does.
    pub async fn try_acquire(&self, name: &str) -> Result<Option<HeldLock>, RedisError> {
        let key = format!("roomcast:lock:{name}");
        let token = uuid::Uuid::new_v4().to_string();
        let pool = self.redis.pool();
        let set: Option<String> = self
            .redis
            .guarded(async {
                Ok(pool
                    .set(
                        &key,
                        token.as_str(),
                        Some(Expiration::PX(millis(self.ttl))),
                        Some(SetOptions::NX),
                        false,
                    )
                    .await?)
            })
            .await?;
        Ok(set.map(|_| HeldLock {
            redis: self.redis.clone(),
            key,
            token,
            ttl: self.ttl,
        }))
    }
}

impl HeldLock {
    /// Extends the lease by a full TTL; `false` when the lock was lost to expiry.
    pub async fn renew(&self) -> Result<bool, RedisError> {
        let renewed: i64 = Script::from_lua(RENEW)
            .evalsha_with_reload(
                self.redis.client(),
                vec![self.key.clone()],
                vec![self.token.clone(), millis(self.ttl).to_string()],
            )
            .await?;
        Ok(renewed == 1)
    }

    /// Gives the lock up if it is still ours.
    pub async fn release(&self) -> Result<(), RedisError> {
        let _: i64 = Script::from_lua(RELEASE)
            .evalsha_with_reload(
                self.redis.client(),
                vec![self.key.clone()],
                vec![self.token.clone()],
            )
            .await?;
        Ok(())
    }

    /// How often the holder should renew: a third of the lease.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }
}
