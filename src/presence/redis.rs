//! Presence counted in Redis: cluster mode, shared by every instance.
//!
//! Keys (all with the hash tag `{presence}`, see below):
//! - `roomcast:{presence}:room:<room>`: hash `user id → sockets in the room, cluster-wide`;
//!   the member count is its length.
//! - `roomcast:{presence}:rooms`: set of rooms with at least one member (for `/api/rooms`).
//! - `roomcast:{presence}:instance:<instance>`: hash `<room>|<user> → sockets` that this
//!   instance contributed, so that its contributions can be withdrawn as a whole: at start
//!   (a restarted instance reusing its id) and when an instance dies (see `forget_instance`).
//!
//! - `roomcast:{presence}:version:<room>`: a counter bumped on every change of the member set.
//! - `roomcast:{presence}:window:<room>`: the cluster-wide one-second window of `presence`
//!   events; it holds the version the last event announced.
//!
//! On a Redis Cluster a script may only touch keys of one hash slot, and a join touches the
//! room, the instance's hash and the room set at once, so every presence key carries the same
//! hash tag and lives on one shard. Presence costs a script per join and leave, not per
//! message, so one shard carries it easily; sessions, rate limits and opt-outs (one key per
//! command) spread over all shards.
//!
//! Joins and leaves are Lua scripts, so the room hash and the instance hash never disagree.
//! Every instance coalesces its own changes, and the window makes the limit of one `presence`
//! event per room per second hold across the cluster: an instance emits only when it opens
//! the window, skips when an event already announced its change, and otherwise tries again
//! when the window closes.

use fred::prelude::*;
use fred::types::scripts::Script;

use std::time::Duration;

use async_trait::async_trait;

use super::{Gate, Presence, PresenceChange};
use crate::domain::{RoomName, UserId};
use crate::redis::{Redis, RedisError};

const ROOMS_KEY: &str = "roomcast:{presence}:rooms";

const JOIN: &str = r#"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
redis.call('SADD', KEYS[3], ARGV[3])
local version = 0
if n == 1 then
  version = redis.call('INCR', KEYS[4])
  redis.call('PEXPIRE', KEYS[4], 86400000)
end
return {n, redis.call('HLEN', KEYS[1]), version}
"#;

const LEAVE: &str = r#"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
local m = redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
if m <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
local len = redis.call('HLEN', KEYS[1])
if len == 0 then redis.call('SREM', KEYS[3], ARGV[3]) end
local version = 0
if n <= 0 then
  version = redis.call('INCR', KEYS[4])
  redis.call('PEXPIRE', KEYS[4], 86400000)
end
return {n, len, version}
"#;

/// The cluster-wide presence window of a room. KEYS[1]: the window token (holds the change
/// version the last event covered), KEYS[2]: the room's change version; ARGV[1]: the version
/// the caller wants announced, ARGV[2]: window in ms.
/// Returns {1, 0} to emit now, {2, 0} when an event already covered that version, or
/// {0, ms} to retry once the current window ends.
const GATE: &str = r#"
local covered = redis.call('GET', KEYS[1])
if not covered then
  local version = redis.call('GET', KEYS[2]) or '0'
  redis.call('SET', KEYS[1], version, 'PX', ARGV[2])
  return {1, 0}
end
if tonumber(covered) >= tonumber(ARGV[1]) then
  return {2, 0}
end
return {0, math.max(1, redis.call('PTTL', KEYS[1]))}
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

const ROOM_PREFIX: &str = "roomcast:{presence}:room:";

fn room_key(room: &str) -> String {
    format!("{ROOM_PREFIX}{room}")
}

fn version_key(room: &str) -> String {
    format!("roomcast:{{presence}}:version:{room}")
}

fn window_key(room: &str) -> String {
    format!("roomcast:{{presence}}:window:{room}")
}

fn instance_key(instance: &str) -> String {
    format!("roomcast:{{presence}}:instance:{instance}")
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

    /// Runs a join/leave script: returns the user's sockets in the room, the member count and
    /// the room's change version (0 when the member set did not change).
    async fn count(
        &self,
        script: &'static str,
        room: &RoomName,
        user: UserId,
    ) -> Result<(i64, usize, u64), RedisError> {
        let (sockets, members, version): (i64, i64, i64) = Script::from_lua(script)
            .evalsha_with_reload(
                self.redis.client(),
                vec![
                    room_key(room.as_str()),
                    instance_key(&self.instance),
                    ROOMS_KEY.to_owned(),
                    version_key(room.as_str()),
                ],
                vec![user.to_string(), format!("{room}|{user}"), room.to_string()],
            )
            .await?;
        Ok((
            sockets,
            usize::try_from(members).unwrap_or(0),
            u64::try_from(version).unwrap_or(0),
        ))
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

/// The counts are Lua scripts over one hash tag (see the module documentation).
#[async_trait]
impl Presence for RedisPresence {
    async fn join(&self, room: &RoomName, user: UserId) -> Result<PresenceChange, RedisError> {
        let (sockets, members, version) = self.count(JOIN, room, user).await?;
        Ok(PresenceChange {
            members,
            changed: sockets == 1,
            version,
        })
    }

    async fn leave(&self, room: &RoomName, user: UserId) -> Result<PresenceChange, RedisError> {
        let (sockets, members, version) = self.count(LEAVE, room, user).await?;
        Ok(PresenceChange {
            members,
            changed: sockets <= 0,
            version,
        })
    }

    /// The room's cluster-wide window of `presence` events (see `GATE`).
    async fn gate(&self, room: &str, version: u64, window: Duration) -> Result<Gate, RedisError> {
        let (verdict, wait_ms): (i64, i64) = Script::from_lua(GATE)
            .evalsha_with_reload(
                self.redis.client(),
                vec![window_key(room), version_key(room)],
                vec![version.to_string(), window.as_millis().to_string()],
            )
            .await?;
        Ok(match verdict {
            1 => Gate::Open,
            2 => Gate::Covered,
            _ => Gate::Wait(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(1))),
        })
    }

    async fn members(&self, room: &str) -> Result<usize, RedisError> {
        let n: i64 = self.redis.pool().hlen(room_key(room)).await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    async fn rooms(&self) -> Result<Vec<(String, usize)>, RedisError> {
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
}
