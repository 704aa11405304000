//! What makes several instances one: the Redis-backed parts a cluster-mode instance holds.
//!
//! Each concern has its own module at the top of `src/` (`adapter`, `coordination`,
//! `pipeline`, `presence`, `rate_limit`, `redis`); `Cluster` connects them to one Redis at
//! start, and `opt_out` keeps users' analytics opt-outs where every instance reads them.
//! In embedded mode there is no `Cluster` (`AppState::cluster` is `None`).
//!
//! Every key roomcast writes starts with `roomcast:`; the adapter's channels start with
//! `roomcast-sio`.

pub mod opt_out;

use crate::adapter::driver::ResilientDriver;
use crate::breaker::CircuitBreaker;
use crate::config::Config;
use crate::coordination::lock::Locks;
use crate::coordination::registry::Registry;
use crate::metrics::Metrics;
use crate::pipeline::analytics_stream::{AnalyticsStream, StreamSettings, bounded_length};
use crate::presence::redis::RedisPresence;
use crate::redis::{Redis, RedisError};
use crate::shutdown::tasks::Tasks;
use opt_out::RedisOptOuts;

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

impl Cluster {
    /// Connects to Redis at `url` and sets up every shared part; the start fails when Redis
    /// cannot be reached, so a misconfigured instance never serves without its cluster. The
    /// adapter driver's background tasks are owned by `tasks`.
    pub async fn connect(
        url: &str,
        config: &Config,
        metrics: &Metrics,
        tasks: &Tasks,
    ) -> Result<Self, RedisError> {
        let breaker = CircuitBreaker::new(
            "redis",
            config.breaker_failure_threshold,
            config.breaker_open,
            metrics.breaker_rejection_counter("redis"),
        );
        let redis = Redis::connect(url, 4, breaker).await?;
        let driver = ResilientDriver::connect(
            &crate::redis::builder(url)?,
            metrics.adapter_messages_dropped.clone(),
            tasks,
        )
        .await?;
        tracing::info!(
            redis = if redis.is_clustered() {
                "cluster"
            } else {
                "single"
            },
            pubsub = if driver.is_sharded() {
                "sharded"
            } else {
                "classic"
            },
            "redis connected"
        );
        let instance = config.instance_id.to_string();
        Ok(Self {
            presence: RedisPresence::new(redis.clone(), instance.clone()).await?,
            registry: Registry::new(redis.clone(), instance),
            opt_outs: RedisOptOuts::new(redis.clone()),
            locks: Locks::new(redis.clone(), config.job_lock_ttl),
            analytics: AnalyticsStream::new(
                redis.clone(),
                StreamSettings {
                    max_len: bounded_length(
                        config.analytics_stream_maxlen,
                        config.analytics_stream_max_bytes,
                        config.analytics_props_max_bytes,
                    ),
                    batch_size: config.analytics_batch_size,
                    linger: config.analytics_batch_linger,
                    claim_idle: config.analytics_claim_idle,
                },
            ),
            driver,
            redis,
        })
    }
}
