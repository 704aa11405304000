//! Cluster mode: everything that makes several instances behave as one, through Redis.
//!
//! - `redis`: the connections (one pool for commands; the adapter driver has its own two),
//!   with bounded timeouts so a Redis outage turns into fast `503`s, not hangs.
//! - `adapter_driver`: our Socket.IO adapter driver, which survives Redis restarts.
//! - `presence`: distinct users per room, counted across instances.
//! - `limits`: the cluster-wide message rate limit and login throttle.
//! - `registry`: instance heartbeats, for the cluster-wide connection count.
//! - `opt_out`: analytics opt-outs shared by every instance.
//! - `streams`: the analytics pipeline on a Redis Stream with one consumer group.
//! - `breaker`: circuit breakers around Redis and the database.
//! - `lock`: token-owned locks; `jobs`: periodic work on one instance at a time under them.
//!
//! Every key roomcast writes starts with `roomcast:`; the adapter's channels start with
//! `roomcast-sio`.

pub mod adapter_driver;
pub mod breaker;
pub mod jobs;
pub mod limits;
pub mod lock;
pub mod opt_out;
pub mod presence;
pub mod redis;
pub mod registry;
pub mod streams;

use adapter_driver::ResilientDriver;
use lock::Locks;
use opt_out::RedisOptOuts;
use presence::RedisPresence;
use redis::Redis;
use registry::Registry;
use streams::AnalyticsStream;

/// The Redis-backed parts of a cluster-mode instance, held by `AppState`.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Command pool.
    pub redis: Redis,
    /// The adapter driver (for readiness: are the broadcast channels subscribed?).
    pub driver: ResilientDriver,
    /// Presence counts in Redis.
    pub presence: RedisPresence,
    /// Instance heartbeats.
    pub registry: Registry,
    /// Users' analytics opt-outs.
    pub opt_outs: RedisOptOuts,
    /// The analytics stream (producer side and statistics).
    pub analytics: AnalyticsStream,
    /// Locks of the cluster singleton jobs.
    pub locks: Locks,
}
