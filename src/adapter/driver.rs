//! The Socket.IO adapter driver: Redis Pub/Sub that survives Redis restarts.
//!
//! socketioxide-redis moves broadcasts between instances over Pub/Sub channels and delegates
//! the Redis side to a `Driver`. Neither of its bundled drivers recovers after Redis restarts
//! (the `redis` driver's multiplexed connection stays broken; the `fred` driver resubscribes
//! only some channels, losing the namespace's broadcast channel), so this one keeps the
//! subscription list itself:
//!
//! - two connections: `publisher` (PUBLISH, PUBSUB NUMSUB) and `subscriber` (SUBSCRIBE only),
//!   both reconnecting forever with backoff;
//! - `channels`: every channel the adapter subscribed to, with the sender of its stream;
//! - on every (re)connection of the subscriber, on every change of a cluster's topology, and
//!   every second while the set is known to be incomplete, all channels are subscribed again,
//!   so after a restart or a failover the instance hears every channel, not a subset;
//! - `is_subscribed()` tells readiness whether the subscription set is live.
//!
//! On a Redis Cluster the same driver uses sharded Pub/Sub (`SPUBLISH`/`SSUBSCRIBE`/`PUBSUB
//! SHARDNUMSUB`): a channel lives on the shard that owns its hash slot, so a message is
//! carried by that shard's master and replica only, where classic `PUBLISH` on a cluster is
//! forwarded to every node. fred routes each sharded command to the channel's master, and
//! after a failover (a replica promoted) or a reshard the channels are subscribed again on
//! their new master. Subscribing is one command per channel there, since one command may
//! only name channels of one slot. A reshard moves a slot without breaking any connection,
//! so on a cluster the subscriber also re-reads the slot map every few seconds and subscribes
//! again after it (a no-op for channels that stayed where they were).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use fred::prelude::*;
use fred::types::Builder;
use prometheus_client::metrics::counter::Counter;
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::{broadcast, mpsc};

use crate::redis::RedisError;
use crate::shutdown::tasks::Tasks;

/// Channels, and where their messages go.
type Channels = RwLock<HashMap<String, mpsc::Sender<ChanItem>>>;

/// How often an incomplete subscription set is repaired when no event triggered it.
const REPAIR_INTERVAL: Duration = Duration::from_secs(1);
/// How often the subscriber re-reads a cluster's slot map. A master that loses a slot in a
/// reshard drops that slot's shard subscriptions with a push fred does not report, and the
/// subscriber sends no command that a `MOVED` could redirect, so only a fresh slot map tells.
const TOPOLOGY_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// How the adapter's channels are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// `PUBLISH`/`SUBSCRIBE`, on one Redis.
    Classic,
    /// `SPUBLISH`/`SSUBSCRIBE`, on a Redis Cluster: each channel on its own shard.
    Sharded,
}

impl Transport {
    async fn publish(self, client: &Client, chan: String, val: Vec<u8>) -> FredResult<()> {
        let _: i64 = match self {
            Self::Classic => client.publish(chan, val).await?,
            Self::Sharded => client.spublish(chan, val).await?,
        };
        Ok(())
    }

    async fn subscribe(self, client: &Client, chans: Vec<String>) -> FredResult<()> {
        match self {
            Self::Classic => client.subscribe(chans).await,
            Self::Sharded => {
                for chan in chans {
                    client.ssubscribe(chan).await?;
                }
                Ok(())
            }
        }
    }

    async fn unsubscribe(self, client: &Client, chan: String) -> FredResult<()> {
        match self {
            Self::Classic => client.unsubscribe(chan).await,
            Self::Sharded => client.sunsubscribe(chan).await,
        }
    }

    /// Subscribers of `chan`: `[channel, count]` from `PUBSUB (SHARD)NUMSUB`.
    async fn subscribers(self, client: &Client, chan: &str) -> FredResult<u64> {
        let counts: Vec<fred::types::Value> = match self {
            Self::Classic => client.pubsub_numsub(chan).await?,
            Self::Sharded => client.pubsub_shardnumsub(chan).await?,
        };
        Ok(counts.get(1).and_then(|v| v.as_u64()).unwrap_or(0))
    }
}

/// Pub/Sub messages the subscriber holds for the pump. fred hands messages over a broadcast
/// channel that drops the oldest when the reader falls behind (its default holds 32), so on a
/// busy machine a burst from the other instances was lost while the pump waited for a
/// core: 115 of 900 messages in one test run. 2,048 messages absorb half a second of the
/// one-room maximum; the client's buffers then cost about 1.1 MiB more per instance
/// (resident size of an idle instance, 3 runs each way), allocated once.
const RECEIVE_BUFFER: usize = 2048;

struct Shared {
    transport: Transport,
    publisher: Client,
    subscriber: Client,
    channels: Channels,
    /// Whether every channel is subscribed on the current subscriber connection.
    subscribed: AtomicBool,
    /// Cross-instance messages lost on their way to the adapter (a stream's buffer was full,
    /// or the Pub/Sub receiver lagged); exported as `roomcast_adapter_messages_dropped_total`.
    dropped: Counter,
}

/// Adapter driver over two fred clients; clones share connections and channels.
#[derive(Clone)]
pub struct ResilientDriver(Arc<Shared>);

impl std::fmt::Debug for ResilientDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResilientDriver")
            .field("subscribed", &self.is_subscribed())
            .finish_non_exhaustive()
    }
}

impl ResilientDriver {
    /// Connects both clients and starts the message pump and the resubscriber; sharded
    /// Pub/Sub when `builder` points at a Redis Cluster. Every message lost before the
    /// adapter saw it is counted in `dropped`, so a loss shows in metrics, not only in logs.
    /// The pump, the resubscriber and the error watcher are tasks of `tasks`: they run until
    /// the drain stops background tasks.
    pub async fn connect(
        builder: &Builder,
        dropped: Counter,
        tasks: &Tasks,
    ) -> Result<Self, RedisError> {
        let publisher = builder.build()?;
        let mut subscriber = builder.clone();
        subscriber.with_performance_config(|perf| {
            perf.broadcast_channel_capacity = RECEIVE_BUFFER;
        });
        let subscriber = subscriber.build()?;
        publisher.init().await?;
        subscriber.init().await?;
        let transport = if subscriber.is_clustered() {
            Transport::Sharded
        } else {
            Transport::Classic
        };
        let shared = Arc::new(Shared {
            transport,
            publisher,
            subscriber,
            channels: RwLock::default(),
            subscribed: AtomicBool::new(true),
            dropped,
        });
        tasks.spawn_until_cancelled(
            "adapter_pump",
            pump(shared.subscriber.message_rx(), Arc::downgrade(&shared)),
        );
        tasks.spawn_until_cancelled(
            "adapter_resubscribe",
            keep_subscribed(
                shared.subscriber.reconnect_rx(),
                shared.subscriber.cluster_change_rx(),
                Arc::downgrade(&shared),
            ),
        );
        tasks.spawn_until_cancelled(
            "adapter_errors",
            watch_errors(shared.subscriber.error_rx(), Arc::downgrade(&shared)),
        );
        Ok(Self(shared))
    }

    /// Whether both connections are up and every channel is subscribed.
    pub fn is_subscribed(&self) -> bool {
        self.0.subscribed.load(Ordering::SeqCst)
            && self.0.subscriber.is_connected()
            && self.0.publisher.is_connected()
    }

    /// Whether channels are sharded (`SSUBSCRIBE`), i.e. Redis is a cluster.
    pub fn is_sharded(&self) -> bool {
        self.0.transport == Transport::Sharded
    }

    /// Cross-instance messages lost because a consumer fell behind.
    pub fn dropped_messages(&self) -> u64 {
        self.0.dropped.get()
    }

    /// Number of channels held.
    pub fn channel_count(&self) -> usize {
        self.0.channels.read().map_or(0, |c| c.len())
    }

    /// Closes both connections.
    pub async fn close(&self) {
        let _ = self.0.subscriber.quit().await;
        let _ = self.0.publisher.quit().await;
    }
}

/// Routes each incoming Pub/Sub message to its channel's stream.
async fn pump(mut messages: broadcast::Receiver<fred::types::Message>, shared: Weak<Shared>) {
    loop {
        let message = match messages.recv().await {
            Ok(message) => message,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                if let Some(shared) = shared.upgrade() {
                    shared.dropped.inc_by(n);
                }
                tracing::warn!(lost = n, "adapter pub/sub receiver lagged");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let channel = message.channel.to_string();
        let Some(data) = message.value.into_owned_bytes() else {
            continue;
        };
        let sender = shared
            .channels
            .read()
            .ok()
            .and_then(|c| c.get(&channel).cloned());
        if let Some(sender) = sender {
            if sender.try_send((channel, data)).is_err() {
                shared.dropped.inc();
                tracing::warn!(
                    "adapter stream full or closed; a cross-instance message was dropped"
                );
            }
        }
    }
}

/// Subscribes every channel again after each reconnection and topology change, and keeps
/// retrying while the set is incomplete (a failed resubscription is not followed by another
/// event when the connection itself survived, e.g. a channel's master was still failing over).
async fn keep_subscribed(
    mut reconnects: broadcast::Receiver<fred::prelude::Server>,
    mut changes: broadcast::Receiver<Vec<fred::types::ClusterStateChange>>,
    shared: Weak<Shared>,
) {
    let mut repair = tokio::time::interval(REPAIR_INTERVAL);
    repair.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut topology = tokio::time::interval(TOPOLOGY_CHECK_INTERVAL);
    topology.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let cause = tokio::select! {
            event = reconnects.recv() => match event {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => Some("redis reconnected"),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            event = changes.recv() => match event {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    Some("redis cluster topology changed")
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = repair.tick() => None,
            _ = topology.tick() => {
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                if shared.transport == Transport::Sharded {
                    // Answered by a topology change event, which resubscribes.
                    if let Err(err) = shared.subscriber.sync_cluster().await {
                        tracing::debug!(error = %err, "re-reading the cluster slot map failed");
                    }
                }
                continue;
            }
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if cause.is_none() && shared.subscribed.load(Ordering::SeqCst) {
            continue;
        }
        resubscribe(&shared, cause).await;
    }
}

/// Subscribes every held channel; `cause` is `None` for a quiet periodic repair.
async fn resubscribe(shared: &Shared, cause: Option<&str>) {
    let channels: Vec<String> = shared
        .channels
        .read()
        .map(|c| c.keys().cloned().collect())
        .unwrap_or_default();
    let count = channels.len();
    match shared
        .transport
        .subscribe(&shared.subscriber, channels)
        .await
    {
        Ok(()) => {
            let was_subscribed = shared.subscribed.swap(true, Ordering::SeqCst);
            let cause = cause.unwrap_or("repair");
            if was_subscribed {
                // Routine: the periodic slot-map check ends here every few seconds.
                tracing::debug!(channels = count, cause, "adapter channels resubscribed");
            } else {
                tracing::info!(channels = count, cause, "adapter channels resubscribed");
            }
        }
        Err(err) => {
            // Retried by the repair tick; readiness reports the gap meanwhile.
            shared.subscribed.store(false, Ordering::SeqCst);
            match cause {
                Some(cause) => {
                    tracing::warn!(error = %err, cause, "resubscribing adapter channels failed");
                }
                None => tracing::debug!(error = %err, "adapter channels still not resubscribed"),
            }
        }
    }
}

/// Marks the subscription set as lost when the subscriber connection fails.
async fn watch_errors(
    mut errors: broadcast::Receiver<(fred::error::Error, Option<fred::prelude::Server>)>,
    shared: Weak<Shared>,
) {
    loop {
        match errors.recv().await {
            Ok((err, _)) => {
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                shared.subscribed.store(false, Ordering::SeqCst);
                tracing::warn!(error = %err, "adapter subscriber connection lost");
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

impl Driver for ResilientDriver {
    type Error = RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        Ok(self
            .0
            .transport
            .publish(&self.0.publisher, chan, val)
            .await?)
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, Self::Error> {
        let (tx, rx) = mpsc::channel(size.max(1));
        // Registered first: if Redis is down right now, the reconnection subscribes it.
        if let Ok(mut channels) = self.0.channels.write() {
            channels.insert(chan.clone(), tx);
        }
        self.0
            .transport
            .subscribe(&self.0.subscriber, vec![chan])
            .await?;
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        if let Ok(mut channels) = self.0.channels.write() {
            channels.remove(&chan);
        }
        Ok(self
            .0
            .transport
            .unsubscribe(&self.0.subscriber, chan)
            .await?)
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        let count = self
            .0
            .transport
            .subscribers(&self.0.publisher, chan)
            .await?;
        Ok(u16::try_from(count).unwrap_or(u16::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    /// A driver's shared state over clients that never connect: `pump` only routes.
    fn unconnected(dropped: Counter) -> Arc<Shared> {
        let client = || Builder::default_centralized().build().expect("client");
        Arc::new(Shared {
            transport: Transport::Classic,
            publisher: client(),
            subscriber: client(),
            channels: RwLock::default(),
            subscribed: AtomicBool::new(true),
            dropped,
        })
    }

    fn message(channel: &str, n: u8) -> fred::types::Message {
        fred::types::Message {
            channel: channel.into(),
            value: Value::Bytes(vec![n].into()),
            kind: fred::types::MessageKind::Message,
            server: fred::prelude::Server::new("127.0.0.1", 6379),
        }
    }

    #[tokio::test]
    async fn messages_a_full_stream_cannot_take_are_counted_in_the_exported_metric() {
        let metrics = Metrics::new();
        let shared = unconnected(metrics.adapter_messages_dropped.clone());
        // A stream with room for one message that nobody reads.
        let (stream, mut unread) = mpsc::channel(1);
        shared
            .channels
            .write()
            .expect("channels")
            .insert("roomcast-sio-request#/#".to_owned(), stream);
        let (messages, receiver) = broadcast::channel(16);
        let pumping = tokio::spawn(pump(receiver, Arc::downgrade(&shared)));
        for n in 0..3 {
            messages
                .send(message("roomcast-sio-request#/#", n))
                .expect("pump listens");
        }
        // A channel nobody subscribed is not a loss.
        messages
            .send(message("some-other-channel", 9))
            .expect("pump listens");
        drop(messages);
        pumping.await.expect("pump ends when its sender is gone");

        let kept = unread.try_recv().expect("the first message is delivered");
        assert_eq!(kept.1, vec![0u8], "the stream keeps the first message");
        let driver = ResilientDriver(shared);
        assert_eq!(
            driver.dropped_messages(),
            2,
            "expected the 2 messages that found the stream full to be counted"
        );
        let rendered = metrics.render();
        assert!(
            rendered.contains("roomcast_adapter_messages_dropped_total 2\n"),
            "expected roomcast_adapter_messages_dropped_total 2 in:\n{rendered}"
        );
    }
}
