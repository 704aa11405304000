//! The analytics pipeline of cluster mode: a Redis Stream read by one consumer group.
//!
//! `POST /api/analytics/events` appends the event (after the opt-out check) to the stream
//! `roomcast:analytics:events`, capped with an approximate `MAXLEN ~` so an outage of the
//! database cannot grow Redis without bound (the oldest entries go first). The cap is
//! `ANALYTICS_STREAM_MAXLEN` entries or as many of the largest possible entries as fit in
//! `ANALYTICS_STREAM_MAX_BYTES`, whichever is fewer (see `bounded_length`): a count of entries
//! alone would let clients sending the largest events fill Redis many times over.
//! Every instance runs one consumer in the group `roomcast:analytics`, named after its
//! `INSTANCE_ID`, so Redis spreads entries over the live instances.
//!
//! Delivery is at-least-once, storage exactly-once:
//! - a consumer acknowledges (`XACK`) a batch only after the transaction that stored it has
//!   committed; a crash in between leaves the entries pending, never lost;
//! - entries pending longer than `ANALYTICS_CLAIM_IDLE_MS` (their consumer died, or its
//!   database write failed) are taken over with `XAUTOCLAIM` by whichever consumer looks next,
//!   the dead instance's own successor included;
//! - the insert is idempotent (`event_id`, generated on receipt, is the primary key with
//!   `ON CONFLICT DO NOTHING`), so storing an entry twice keeps one row.
//!
//! On drain a consumer stops reading, stores and acknowledges the batch it holds, and ends;
//! the app waits for it before closing the database pool. Reads block for at most
//! `READ_BLOCK` on a connection of their own, so they never stall the shared command pool.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fred::prelude::*;

use crate::metrics::{ConsumerCounters, ConsumerStats, StreamStats};
use crate::redis::{Redis, RedisError};
use crate::shutdown::state::DrainState;
use crate::storage::Database;
use crate::storage::analytics::AnalyticsEvent;

/// The stream every instance appends to.
pub const STREAM_KEY: &str = "roomcast:analytics:events";
/// The consumer group every instance reads in.
pub const GROUP: &str = "roomcast:analytics";
/// The entry field holding the event as JSON.
const FIELD: &str = "event";
/// Longest single blocking read, well under the command deadline.
const READ_BLOCK: Duration = Duration::from_millis(1_000);
/// Pause after a failure before the consumer tries again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// A consumer that has been silent this long and holds nothing is removed from the group, so
/// instances replaced long ago do not clutter `/health` forever.
const FORGET_CONSUMER_AFTER: Duration = Duration::from_secs(3_600);

/// Tuning of the pipeline, from `ANALYTICS_*` settings.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    /// Approximate cap of the stream in entries (`bounded_length` of `ANALYTICS_STREAM_MAXLEN`
    /// and `ANALYTICS_STREAM_MAX_BYTES`).
    pub max_len: u64,
    /// Entries stored per transaction at most (`ANALYTICS_BATCH_SIZE`).
    pub batch_size: u64,
    /// How long a consumer keeps collecting after the first entry of a batch arrived
    /// (`ANALYTICS_BATCH_LINGER_MS`): fewer, larger transactions at the cost of latency.
    pub linger: Duration,
    /// Idle time after which another consumer takes over pending entries
    /// (`ANALYTICS_CLAIM_IDLE_MS`).
    pub claim_idle: Duration,
}

/// Bytes an entry may take besides its `props` and name: ids, timestamps, field names and
/// Redis's own per-entry bookkeeping, rounded up.
pub const ENTRY_OVERHEAD_BYTES: u64 = 1024;

/// The stream's entry cap: `max_len`, lowered so that `max_bytes` holds that many entries of
/// the largest size `props_max_bytes` allows. `props` is stored as a JSON string inside the
/// entry's JSON, where escaping can at most double it; so can the 64-byte name. At least 1.
pub fn bounded_length(max_len: u64, max_bytes: u64, props_max_bytes: usize) -> u64 {
    let worst_entry = 2 * (props_max_bytes as u64 + 64) + ENTRY_OVERHEAD_BYTES;
    max_len.min(max_bytes / worst_entry).max(1)
}

/// The stream could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The event could not be encoded (never expected; reported rather than panicking).
    #[error("analytics event encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

impl From<fred::error::Error> for StreamError {
    fn from(err: fred::error::Error) -> Self {
        Self::Redis(RedisError(err))
    }
}

/// The producer side and the statistics, on the shared command pool.
#[derive(Debug, Clone)]
pub struct AnalyticsStream {
    redis: Redis,
    settings: StreamSettings,
}

impl AnalyticsStream {
    /// The pipeline on `redis`.
    pub fn new(redis: Redis, settings: StreamSettings) -> Self {
        Self { redis, settings }
    }

    /// The settings, for the consumer.
    pub fn settings(&self) -> StreamSettings {
        self.settings
    }

    /// Appends an event; returns the entry id.
    pub async fn append(&self, event: &AnalyticsEvent) -> Result<String, StreamError> {
        let json = serde_json::to_string(event)?;
        let max_len = i64::try_from(self.settings.max_len).unwrap_or(i64::MAX);
        let pool = self.redis.pool();
        let id: String = self
            .redis
            .guarded(async {
                Ok(pool
                    .xadd(
                        STREAM_KEY,
                        false,
                        ("MAXLEN", "~", max_len),
                        "*",
                        (FIELD, json),
                    )
                    .await?)
            })
            .await?;
        Ok(id)
    }

    /// Length, lag, pending count and consumers of the group.
    pub async fn stats(&self) -> Result<StreamStats, StreamError> {
        let client = self.redis.client();
        let length: u64 = client.xlen(STREAM_KEY).await?;
        if length == 0 && !client.exists::<bool, _>(STREAM_KEY).await? {
            return Ok(StreamStats::default());
        }
        let groups: Vec<HashMap<String, Value>> = client.xinfo_groups(STREAM_KEY).await?;
        let Some(group) = groups
            .into_iter()
            .find(|g| g.get("name").and_then(Value::as_string).as_deref() == Some(GROUP))
        else {
            return Ok(StreamStats {
                length,
                ..StreamStats::default()
            });
        };
        let consumers: Vec<HashMap<String, Value>> =
            client.xinfo_consumers(STREAM_KEY, GROUP).await?;
        Ok(StreamStats {
            length,
            lag: group.get("lag").and_then(Value::as_u64),
            pending: number(&group, "pending"),
            consumers: consumers
                .iter()
                .map(|c| ConsumerStats {
                    name: c.get("name").and_then(Value::as_string).unwrap_or_default(),
                    pending: number(c, "pending"),
                    idle_ms: number(c, "idle"),
                })
                .collect(),
        })
    }
}

fn number(map: &HashMap<String, Value>, field: &str) -> u64 {
    map.get(field).and_then(Value::as_u64).unwrap_or(0)
}

/// One stream entry: its id and fields.
type Entry = (String, HashMap<String, String>);

/// This instance's consumer: reads, stores, acknowledges, claims.
pub struct AnalyticsConsumer {
    client: Client,
    name: String,
    settings: StreamSettings,
    db: Database,
    counters: ConsumerCounters,
}

impl AnalyticsConsumer {
    /// A consumer named `name` on a connection of its own to `url`.
    pub async fn connect(
        url: &str,
        name: String,
        settings: StreamSettings,
        db: Database,
        counters: ConsumerCounters,
    ) -> Result<Self, RedisError> {
        let client = crate::redis::builder(url)?.build()?;
        client.init().await?;
        Ok(Self {
            client,
            name,
            settings,
            db,
            counters,
        })
    }

    /// Runs until the drain starts, then stores what it holds and returns.
    pub async fn run(self, drain: DrainState) {
        let mut group_ready = false;
        let mut next_claim = Instant::now();
        while !drain.is_draining() {
            if !group_ready {
                match self.create_group().await {
                    Ok(()) => group_ready = true,
                    Err(err) => {
                        self.pause(&drain, "creating the consumer group", err.to_string())
                            .await;
                        continue;
                    }
                }
            }
            let step = if Instant::now() >= next_claim {
                next_claim = Instant::now() + (self.settings.claim_idle / 2).max(READ_BLOCK);
                self.claim_and_store().await
            } else {
                self.read_and_store(&drain).await
            };
            if let Err(err) = step {
                if err.to_string().contains("NOGROUP") {
                    // Redis lost the group (restart without persistence): create it again.
                    group_ready = false;
                }
                self.pause(&drain, "reading the analytics stream", err.to_string())
                    .await;
            }
        }
        let _ = self.client.quit().await;
        tracing::info!(consumer = %self.name, "analytics consumer stopped");
    }

    async fn pause(&self, drain: &DrainState, what: &str, err: String) {
        tracing::warn!(error = %err, "analytics consumer: {what} failed; retrying");
        tokio::select! {
            () = tokio::time::sleep(RETRY_PAUSE) => {}
            () = drain.started() => {}
        }
    }

    async fn create_group(&self) -> Result<(), RedisError> {
        match self
            .client
            .xgroup_create::<(), _, _, _>(STREAM_KEY, GROUP, "0", true)
            .await
        {
            Ok(()) => Ok(()),
            Err(err) if err.to_string().contains("BUSYGROUP") => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Takes over entries idle for longer than the claim time (at most one batch), stores
    /// them, and forgets long-gone consumers that hold nothing.
    async fn claim_and_store(&self) -> Result<(), RedisError> {
        let idle = u64::try_from(self.settings.claim_idle.as_millis()).unwrap_or(u64::MAX);
        let (_cursor, entries): (String, Vec<Entry>) = self
            .client
            .xautoclaim_values(
                STREAM_KEY,
                GROUP,
                self.name.as_str(),
                idle,
                "0-0",
                Some(self.settings.batch_size),
                false,
            )
            .await?;
        if !entries.is_empty() {
            tracing::info!(entries = entries.len(), consumer = %self.name, "claimed idle analytics entries");
            self.counters.claimed.inc_by(entries.len() as u64);
            self.store(entries).await?;
        }
        self.forget_gone_consumers().await
    }

    async fn forget_gone_consumers(&self) -> Result<(), RedisError> {
        let consumers: Vec<HashMap<String, Value>> =
            self.client.xinfo_consumers(STREAM_KEY, GROUP).await?;
        let limit = u64::try_from(FORGET_CONSUMER_AFTER.as_millis()).unwrap_or(u64::MAX);
        for consumer in consumers {
            let name = consumer
                .get("name")
                .and_then(Value::as_string)
                .unwrap_or_default();
            if name != self.name
                && number(&consumer, "pending") == 0
                && number(&consumer, "idle") > limit
            {
                let _: i64 = self
                    .client
                    .xgroup_delconsumer(STREAM_KEY, GROUP, name.as_str())
                    .await?;
                tracing::info!(consumer = %name, "removed a long-gone analytics consumer");
            }
        }
        Ok(())
    }

    /// Reads one batch (lingering for more entries after the first) and stores it. Stops
    /// reading as soon as the drain starts, but still stores what it already has.
    async fn read_and_store(&self, drain: &DrainState) -> Result<(), RedisError> {
        let mut batch: Vec<Entry> = Vec::new();
        let mut linger_until: Option<Instant> = None;
        while !drain.is_draining() {
            let missing = self.settings.batch_size - batch.len() as u64;
            let block = match linger_until {
                None => READ_BLOCK,
                Some(until) => until
                    .saturating_duration_since(Instant::now())
                    .min(READ_BLOCK),
            };
            // `BLOCK 0` would mean "forever": a spent linger ends the batch instead.
            let Ok(block_ms @ 1..) = u64::try_from(block.as_millis()) else {
                break;
            };
            let response: Value = self
                .client
                .xreadgroup(
                    GROUP,
                    self.name.as_str(),
                    Some(missing),
                    Some(block_ms),
                    false,
                    STREAM_KEY,
                    ">",
                )
                .await?;
            // A read that timed out answers nil, not an empty map.
            if !response.is_null() {
                let response: HashMap<String, Vec<Entry>> = response.into_xread_response()?;
                batch.extend(response.into_values().flatten());
            }
            if batch.is_empty() {
                // Nothing arrived: give the caller a chance to claim and to see the drain.
                return Ok(());
            }
            if batch.len() as u64 >= self.settings.batch_size || self.settings.linger.is_zero() {
                break;
            }
            linger_until.get_or_insert_with(|| Instant::now() + self.settings.linger);
        }
        self.store(batch).await
    }

    /// Stores a batch in one transaction, then acknowledges it. A failed transaction leaves
    /// the entries pending: they are claimed again after the claim idle time.
    async fn store(&self, entries: Vec<Entry>) -> Result<(), RedisError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(entries.len());
        let mut events = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            match fields
                .get(FIELD)
                .map(|json| serde_json::from_str::<AnalyticsEvent>(json))
            {
                Some(Ok(event)) => events.push(event),
                other => {
                    // Never storable: acknowledged so it does not come back forever.
                    tracing::warn!(entry = %id, decoded = ?other.map(|r| r.err()), "dropping a malformed analytics entry");
                    self.counters.malformed.inc();
                }
            }
            ids.push(id);
        }
        match self.db.record_events(&events).await {
            Ok(inserted) => {
                self.counters.stored.inc_by(inserted);
            }
            Err(err) => {
                self.counters.failed_batches.inc();
                tracing::warn!(error = %err, entries = ids.len(), "storing analytics events failed; they stay pending");
                return Ok(());
            }
        }
        let _: i64 = self.client.xack(STREAM_KEY, GROUP, ids).await?;
        Ok(())
    }
}

#[cfg(test)]
mod bound_tests {
    use super::*;

    #[test]
    fn the_memory_budget_lowers_the_entry_cap_for_large_events() {
        // 4 KiB props: ~9.3 KiB worst case per entry, so 512 MiB holds ~57,000 of them.
        let cap = bounded_length(1_000_000, 512 * 1024 * 1024, 4096);
        assert!((50_000..60_000).contains(&cap), "{cap}");
        // A tiny budget still keeps one entry; a large one leaves the entry cap in charge.
        assert_eq!(bounded_length(1_000_000, 10, 4096), 1);
        assert_eq!(bounded_length(100, u64::MAX, 4096), 100);
    }
}
