//! Logged-in users' analytics opt-outs in Redis, shared by every instance.
//!
//! `roomcast:optout:user:<id>` holds `1` (opted out) or `0`, without a TTL: a consent choice
//! does not expire. The database keeps the durable copy (written first), so losing Redis data
//! loses no choice: readers that find no `1` in Redis also consult the database. Anonymous
//! visitors' choices live in their session, which in cluster mode is itself an encrypted
//! Redis record that expires with the session (`SESSION_TTL_SECS`, sliding).

use fred::prelude::*;

use crate::domain::UserId;
use crate::redis::{Redis, RedisError};

fn key(user: UserId) -> String {
    format!("roomcast:optout:user:{user}")
}

/// Opt-out flags in Redis.
#[derive(Debug, Clone)]
pub struct RedisOptOuts {
    redis: Redis,
}

impl RedisOptOuts {
    /// Flags stored through `redis`.
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }

    /// `Some(flag)` when Redis knows the user's choice.
    pub async fn get(&self, user: UserId) -> Result<Option<bool>, RedisError> {
        let pool = self.redis.pool();
        let value: Option<String> = self
            .redis
            .guarded(async { Ok(pool.get(key(user)).await?) })
            .await?;
        Ok(value.map(|v| v == "1"))
    }

    /// Records the user's choice.
    pub async fn set(&self, user: UserId, opted_out: bool) -> Result<(), RedisError> {
        let value = if opted_out { "1" } else { "0" };
        let pool = self.redis.pool();
        let _: () = self
            .redis
            .guarded(async { Ok(pool.set(key(user), value, None, None, false).await?) })
            .await?;
        Ok(())
    }
}
