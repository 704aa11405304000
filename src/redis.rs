//! Redis connections with fail-fast timeouts and automatic reconnection.
//!
//! Redis client library: fred 10, deliberately. tower-sessions-redis-store is built on it, so
//! one client library (one connection model, one TLS stack, one set of timeouts) serves
//! sessions, the adapter driver, presence, limits and the registry. Plain `redis://` URLs,
//! `redis://user:password@host` (ACL users), `redis://:password@host` and `rediss://` (TLS)
//! are accepted as they are. fred handles Pub/Sub on RESP2 connections, so no `?protocol=resp3`
//! is needed (the `redis` crate's adapter driver would need RESP3 for push messages).
//!
//! A Redis Cluster is the same code on another URL: `REDIS_CLUSTER_NODES` becomes a
//! `redis-cluster://` URL (see `config`), fred discovers the topology from any seed node,
//! routes each command to the master of its key's hash slot, follows `MOVED`/`ASK`
//! redirections, and re-reads the topology after a failover or a reshard. What roomcast must
//! do itself is keep multi-key operations (Lua scripts) inside one hash slot, which the key
//! names do with hash tags (`presence`), and use sharded Pub/Sub for the adapter
//! (`adapter::driver`).
//!
//! Every command has a 2 s deadline and reconnection runs forever with exponential backoff
//! (100 ms … 2 s): while Redis is down, callers get an error within the deadline and map it
//! to `unavailable`; when Redis is back, the same clients carry on.

use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::Builder;
use fred::types::config::{Config as RedisConfig, ReconnectPolicy};
use sha2::{Digest, Sha256};

use crate::breaker::CircuitBreaker;

/// Deadline of any single Redis command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Redis could not be reached or refused a command.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct RedisError(#[from] pub fred::error::Error);

/// A configured client builder for `url`; every roomcast connection is built from it.
pub fn builder(url: &str) -> Result<Builder, RedisError> {
    let config = RedisConfig::from_url(url)?;
    let mut builder = Builder::from_config(config);
    builder
        .with_connection_config(|c| {
            c.connection_timeout = COMMAND_TIMEOUT;
            c.internal_command_timeout = COMMAND_TIMEOUT;
            c.max_command_attempts = 2;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = COMMAND_TIMEOUT;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    Ok(builder)
}

/// The command pool shared by sessions, presence, limits, opt-outs and the registry.
#[derive(Clone, Debug)]
pub struct Redis {
    pool: Pool,
    breaker: CircuitBreaker,
}

impl Redis {
    /// Connects a pool of `size` multiplexed connections; fails if Redis does not answer.
    /// Calls made through `guarded` go through `breaker`.
    pub async fn connect(
        url: &str,
        size: usize,
        breaker: CircuitBreaker,
    ) -> Result<Self, RedisError> {
        let pool = builder(url)?.build_pool(size)?;
        pool.init().await?;
        Ok(Self { pool, breaker })
    }

    /// The breaker in front of Redis.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Runs `call` through the Redis circuit breaker: refused at once (as a `RedisError`)
    /// while it is open.
    pub async fn guarded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        match self.breaker.call(call, |_| true).await {
            Ok(result) => result,
            Err(open) => Err(RedisError(fred::error::Error::new(
                fred::error::ErrorKind::Backpressure,
                open.to_string(),
            ))),
        }
    }

    /// The pool, for stores that take a fred client.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// One client of the pool, for scripts.
    pub fn client(&self) -> &Client {
        self.pool.next()
    }

    /// Whether this is a Redis Cluster (`REDIS_CLUSTER_NODES`).
    pub fn is_clustered(&self) -> bool {
        self.pool.next().is_clustered()
    }

    /// Round-trip time of the readiness probe: a PING on one Redis; on a cluster, `CLUSTER
    /// INFO` on every master, each of which must report `cluster_state:ok`. A cluster with a
    /// failed master (until its replica is promoted) or without full slot coverage refuses
    /// keys, so answering PING alone would report an outage as healthy.
    pub async fn ping(&self) -> Result<Duration, RedisError> {
        let started = Instant::now();
        let client = self.pool.next();
        if client.is_clustered() {
            check_cluster(client).await?;
        } else {
            let _: String = client.ping(None).await?;
        }
        Ok(started.elapsed())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        let _ = self.pool.quit().await;
    }
}

/// Asks every master the client knows of whether the cluster serves all its slots.
async fn check_cluster(client: &Client) -> Result<(), RedisError> {
    let masters = client
        .cached_cluster_state()
        .map(|state| state.unique_primary_nodes())
        .unwrap_or_default();
    if masters.is_empty() {
        return Err(cluster_error(
            "the cluster topology is not known yet".to_owned(),
        ));
    }
    for master in masters {
        let info: String = client
            .with_cluster_node(master.clone())
            .cluster_info()
            .await?;
        if !info.lines().any(|line| line.trim() == "cluster_state:ok") {
            return Err(cluster_error(format!(
                "cluster_state is not ok on {master}"
            )));
        }
    }
    Ok(())
}

fn cluster_error(details: String) -> RedisError {
    RedisError(fred::error::Error::new(
        fred::error::ErrorKind::Cluster,
        details,
    ))
}

/// A key part derived from client input (a username, an address): not stored in Redis in
/// clear, and of fixed length whatever the client sent.
pub fn hashed_key(purpose: &str, value: &str) -> String {
    let digest = Sha256::digest(format!("roomcast/{purpose}\0{value}").as_bytes());
    hex::encode(&digest[..16])
}
