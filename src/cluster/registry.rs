//! Instance heartbeats: who is alive, and how many sockets the cluster holds.
//!
//! Every `HEARTBEAT` each instance writes its entry into the hash `roomcast:instances`
//! (`instance id → {sockets, updated_at, started_at, version}`). An entry older than
//! `INSTANCE_TTL` belongs to a dead instance (SIGKILL, crash, partition): the next live
//! instance to notice removes it and withdraws its presence contributions, so presence
//! counts forget a killed instance's sockets within `INSTANCE_TTL + HEARTBEAT` (20 s).
//! `connections.cluster` in `/health` is the sum over live entries.

use std::time::Duration;

use fred::prelude::*;
use serde::{Deserialize, Serialize};

use super::presence::RedisPresence;
use super::redis::{Redis, RedisError};
use crate::storage::now_millis;

const INSTANCES_KEY: &str = "roomcast:instances";
/// How often an instance refreshes its entry.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Age after which an entry counts as dead.
pub const INSTANCE_TTL: Duration = Duration::from_secs(15);

/// One instance's heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceEntry {
    /// Sockets connected to it.
    pub sockets: u64,
    /// Last heartbeat (epoch ms).
    pub updated_at: i64,
    /// Process start (epoch ms).
    pub started_at: i64,
    /// Binary version.
    pub version: String,
}

/// The registry in Redis.
#[derive(Debug, Clone)]
pub struct Registry {
    redis: Redis,
    instance: String,
    started_at: i64,
}

impl Registry {
    /// The registry as seen by `instance`.
    pub fn new(redis: Redis, instance: String) -> Self {
        Self {
            redis,
            instance,
            started_at: now_millis(),
        }
    }

    /// Writes this instance's entry.
    pub async fn beat(&self, sockets: u64) -> Result<(), RedisError> {
        let entry = InstanceEntry {
            sockets,
            updated_at: now_millis(),
            started_at: self.started_at,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let json = serde_json::to_string(&entry).unwrap_or_default();
        let _: i64 = self
            .redis
            .pool()
            .hset(INSTANCES_KEY, (self.instance.as_str(), json))
            .await?;
        Ok(())
    }

    /// Removes this instance's entry (end of a drain).
    pub async fn leave(&self) -> Result<(), RedisError> {
        let _: i64 = self
            .redis
            .pool()
            .hdel(INSTANCES_KEY, self.instance.as_str())
            .await?;
        Ok(())
    }

    /// Live instances and their entries.
    pub async fn live(&self) -> Result<Vec<(String, InstanceEntry)>, RedisError> {
        let all: std::collections::HashMap<String, String> =
            self.redis.pool().hgetall(INSTANCES_KEY).await?;
        let cutoff = now_millis() - i64::try_from(INSTANCE_TTL.as_millis()).unwrap_or(i64::MAX);
        Ok(all
            .into_iter()
            .filter_map(|(id, json)| {
                serde_json::from_str::<InstanceEntry>(&json)
                    .ok()
                    .map(|e| (id, e))
            })
            .filter(|(_, entry)| entry.updated_at >= cutoff)
            .collect())
    }

    /// Sockets across live instances.
    pub async fn cluster_sockets(&self) -> Result<u64, RedisError> {
        Ok(self.live().await?.iter().map(|(_, e)| e.sockets).sum())
    }

    /// Removes dead instances and withdraws their presence; returns the ids removed.
    pub async fn reap(&self, presence: &RedisPresence) -> Result<Vec<String>, RedisError> {
        let all: std::collections::HashMap<String, String> =
            self.redis.pool().hgetall(INSTANCES_KEY).await?;
        let cutoff = now_millis() - i64::try_from(INSTANCE_TTL.as_millis()).unwrap_or(i64::MAX);
        let mut reaped = Vec::new();
        for (id, json) in all {
            let dead = serde_json::from_str::<InstanceEntry>(&json)
                .map_or(true, |e| e.updated_at < cutoff);
            if dead && id != self.instance {
                let entries = presence.forget_instance(&id).await?;
                let _: i64 = self.redis.pool().hdel(INSTANCES_KEY, id.as_str()).await?;
                tracing::info!(instance = %id, presence_entries = entries, "removed a dead instance");
                reaped.push(id);
            }
        }
        Ok(reaped)
    }
}
