//! Instance heartbeats: who is alive, and how many sockets the cluster holds.
//!
//! Every `HEARTBEAT` each instance writes its entry (`{address, version, started_at,
//! sockets, updated_at}`) to `roomcast:{registry}:instance:<id>` with a TTL of `INSTANCE_TTL`, and
//! lists its id in the hash `roomcast:instances` (the index, so nobody has to `SCAN`). An
//! instance is live exactly as long as its key exists: Redis expires the key of a SIGKILLed,
//! crashed or partitioned instance within `INSTANCE_TTL`, whatever the clocks of the
//! instances say. `GET /api/admin/instances` lists the live entries and `connections.cluster`
//! in `/health` is the sum of their sockets.
//!
//! Index entries whose key has expired belong to dead instances: the `presence-cleanup` job
//! (one instance at a time, see `jobs`) removes them and withdraws their presence
//! contributions, so presence counts forget a killed instance's sockets within
//! `INSTANCE_TTL + HEARTBEAT` (20 s).

use std::time::Duration;

use fred::prelude::*;
use serde::{Deserialize, Serialize};

use crate::presence::redis::RedisPresence;
use crate::redis::{Redis, RedisError};
use crate::storage::now_millis;

const INSTANCES_KEY: &str = "roomcast:instances";

/// An instance's entry. The hash tag keeps every entry in one Redis Cluster slot, so the
/// listing reads them all with one `MGET`.
fn instance_key(id: &str) -> String {
    format!("roomcast:{{registry}}:instance:{id}")
}
/// How often an instance refreshes its entry.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Age after which an entry counts as dead.
pub const INSTANCE_TTL: Duration = Duration::from_secs(15);

/// One instance's heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceEntry {
    /// Where it listens (`host:port`; the hostname when bound to all interfaces).
    #[serde(default)]
    pub address: String,
    /// Sockets connected to it.
    pub sockets: u64,
    /// Last heartbeat (epoch ms).
    pub updated_at: i64,
    /// Process start (epoch ms).
    pub started_at: i64,
    /// Binary version.
    pub version: String,
    /// How the instance is doing, for the operator view.
    #[serde(flatten)]
    pub vitals: Vitals,
}

/// What an instance says about its own health in each heartbeat, for the operator view.
/// Every field has a default so that entries written by an older build still parse.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Vitals {
    /// Serving: not draining and no dependency's circuit breaker open.
    pub ready: bool,
    /// The graceful drain has started.
    pub draining: bool,
    /// Socket.IO events received per second since the previous heartbeat.
    pub events_per_sec: f64,
    /// Chat messages received per second since the previous heartbeat.
    pub messages_per_sec: f64,
    /// Circuit breaker state per dependency (`closed`, `half_open`, `open`).
    pub breakers: std::collections::BTreeMap<String, String>,
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

    /// Writes this instance's entry: its key (with the TTL), then its index entry.
    pub async fn beat(
        &self,
        address: &str,
        sockets: u64,
        vitals: Vitals,
    ) -> Result<(), RedisError> {
        let entry = InstanceEntry {
            address: address.to_owned(),
            sockets,
            updated_at: now_millis(),
            started_at: self.started_at,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            vitals,
        };
        let json = serde_json::to_string(&entry).unwrap_or_default();
        let ttl = i64::try_from(INSTANCE_TTL.as_millis()).unwrap_or(i64::MAX);
        let _: () = self
            .redis
            .pool()
            .set(
                instance_key(&self.instance),
                json.as_str(),
                Some(fred::types::Expiration::PX(ttl)),
                None,
                false,
            )
            .await?;
        let _: i64 = self
            .redis
            .pool()
            .hset(INSTANCES_KEY, (self.instance.as_str(), json))
            .await?;
        Ok(())
    }

    /// Removes this instance's entry (end of a drain).
    pub async fn leave(&self) -> Result<(), RedisError> {
        let _: i64 = self.redis.pool().del(instance_key(&self.instance)).await?;
        let _: i64 = self
            .redis
            .pool()
            .hdel(INSTANCES_KEY, self.instance.as_str())
            .await?;
        Ok(())
    }

    /// Live instances (those whose key has not expired) and their entries, by id.
    pub async fn live(&self) -> Result<Vec<(String, InstanceEntry)>, RedisError> {
        let (live, _dead) = self.redis.guarded(self.partition()).await?;
        Ok(live)
    }

    /// Splits the index into live entries and the ids of dead instances.
    async fn partition(&self) -> Result<(Vec<(String, InstanceEntry)>, Vec<String>), RedisError> {
        let mut ids: Vec<String> = self.redis.pool().hkeys(INSTANCES_KEY).await?;
        ids.sort();
        if ids.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let keys: Vec<String> = ids.iter().map(|id| instance_key(id)).collect();
        let values: Vec<Option<String>> = self.redis.pool().mget(keys).await?;
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (id, value) in ids.into_iter().zip(values) {
            match value.and_then(|json| serde_json::from_str::<InstanceEntry>(&json).ok()) {
                Some(entry) => live.push((id, entry)),
                None => dead.push(id),
            }
        }
        Ok((live, dead))
    }

    /// Sockets across live instances.
    pub async fn cluster_sockets(&self) -> Result<u64, RedisError> {
        Ok(self.live().await?.iter().map(|(_, e)| e.sockets).sum())
    }

    /// Removes dead instances and withdraws their presence; returns the ids removed.
    pub async fn reap(&self, presence: &RedisPresence) -> Result<Vec<String>, RedisError> {
        let (_live, dead) = self.partition().await?;
        let mut reaped = Vec::new();
        for id in dead {
            if id == self.instance {
                // Our own key expired (a long Redis outage): the next heartbeat restores it.
                continue;
            }
            let entries = presence.forget_instance(&id).await?;
            let _: i64 = self.redis.pool().hdel(INSTANCES_KEY, id.as_str()).await?;
            tracing::info!(instance = %id, presence_entries = entries, "removed a dead instance");
            reaped.push(id);
        }
        Ok(reaped)
    }
}
