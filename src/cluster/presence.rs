//! Room presence across instances, in Redis.
//!
//! Keys:
//! - `roomcast:presence:room:<room>`: hash `user id → sockets in the room, cluster-wide`;
//!   the member count is its length.
//! - `roomcast:presence:rooms`: set of rooms with at least one member (for `/api/rooms`).
//! - `roomcast:presence:instance:<instance>`: hash `<room>|<user> → sockets` that this
//!   instance contributed, so that its contributions can be withdrawn as a whole: at start
//!   (a restarted instance reusing its id) and when an instance dies (see `forget_instance`).
//!
//! Joins and leaves are Lua scripts, so the room hash and the instance hash never disagree.

use fred::prelude::*;
use fred::types::scripts::Script;

use super::redis::{Redis, RedisError};
use crate::domain::{RoomName, UserId};
use crate::realtime::presence::PresenceChange;

const ROOMS_KEY: &str = "roomcast:presence:rooms";

const JOIN: &str = r#"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
redis.call('SADD', KEYS[3], ARGV[3])
return {n, redis.call('HLEN', KEYS[1])}
"#;

const LEAVE: &str = r#"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
local m = redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
if m <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
local len = redis.call('HLEN', KEYS[1])
if len == 0 then redis.call('SREM', KEYS[3], ARGV[3]) end
return {n, len}
"#;

/// Withdraws every contribution of one instance (KEYS[1]); room keys are derived from ARGV[1].
const FORGET_INSTANCE: &str = r#"
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local field, count = entries[i], tonumber(entries[i + 1])
  local sep = string.find(field, '|', 1, true)
  local room, user = string.sub(field, 1, sep - 1), string.sub(field, sep + 1)
  local key = ARGV[1] .. room
  local n = redis.call('HINCRBY', key, user, -count)
  if n <= 0 then redis.call('HDEL', key, user) end
  if redis.call('HLEN', key) == 0 then redis.call('SREM', KEYS[2], room) end
end
redis.call('DEL', KEYS[1])
return #entries / 2
"#;

const ROOM_PREFIX: &str = "roomcast:presence:room:";

fn room_key(room: &str) -> String {
    format!("{ROOM_PREFIX}{room}")
}

fn instance_key(instance: &str) -> String {
    format!("roomcast:presence:instance:{instance}")
}

/// Presence counts in Redis, contributed by one instance.
#[derive(Debug, Clone)]
pub struct RedisPresence {
    redis: Redis,
    instance: String,
}

impl RedisPresence {
    /// Presence for `instance`; withdraws what an earlier process with the same id left.
    pub async fn new(redis: Redis, instance: String) -> Result<Self, RedisError> {
        let presence = Self { redis, instance };
        let stale = presence.forget_instance(&presence.instance.clone()).await?;
        if stale > 0 {
            tracing::info!(
                entries = stale,
                "withdrew presence left by an earlier run of this instance"
            );
        }
        Ok(presence)
    }

    /// One more socket of `user` in `room`.
    pub async fn join(&self, room: &RoomName, user: UserId) -> Result<PresenceChange, RedisError> {
        let (sockets, members) = self.count(JOIN, room, user).await?;
        Ok(PresenceChange {
            members,
            changed: sockets == 1,
        })
    }

    /// One socket of `user` left `room`.
    pub async fn leave(&self, room: &RoomName, user: UserId) -> Result<PresenceChange, RedisError> {
        let (sockets, members) = self.count(LEAVE, room, user).await?;
        Ok(PresenceChange {
            members,
            changed: sockets <= 0,
        })
    }

    /// Runs a join/leave script: returns the user's sockets in the room and the member count.
    async fn count(
        &self,
        script: &'static str,
        room: &RoomName,
        user: UserId,
    ) -> Result<(i64, usize), RedisError> {
        let (sockets, members): (i64, i64) = Script::from_lua(script)
            .evalsha_with_reload(
                self.redis.client(),
                vec![
                    room_key(room.as_str()),
                    instance_key(&self.instance),
                    ROOMS_KEY.to_owned(),
                ],
                vec![user.to_string(), format!("{room}|{user}"), room.to_string()],
            )
            .await?;
        Ok((sockets, usize::try_from(members).unwrap_or(0)))
    }

    /// Distinct users in `room`, cluster-wide.
    pub async fn members(&self, room: &str) -> Result<usize, RedisError> {
        let n: i64 = self.redis.pool().hlen(room_key(room)).await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Rooms with members and their counts.
    pub async fn rooms(&self) -> Result<Vec<(String, usize)>, RedisError> {
        let rooms: Vec<String> = self.redis.pool().smembers(ROOMS_KEY).await?;
        let mut out = Vec::with_capacity(rooms.len());
        for room in rooms {
            let n = self.members(&room).await?;
            if n > 0 {
                out.push((room, n));
            }
        }
        Ok(out)
    }

    /// Withdraws all presence contributed by `instance` (dead or restarted); returns how many
    /// user-room entries it had.
    pub async fn forget_instance(&self, instance: &str) -> Result<i64, RedisError> {
        Ok(Script::from_lua(FORGET_INSTANCE)
            .evalsha_with_reload(
                self.redis.client(),
                vec![instance_key(instance), ROOMS_KEY.to_owned()],
                vec![ROOM_PREFIX.to_owned()],
            )
            .await?)
    }
}
