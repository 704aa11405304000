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
//! - on every (re)connection of the subscriber, all channels are subscribed again, so after a
//!   restart the instance hears every broadcast channel, not a subset;
//! - `is_subscribed()` tells readiness whether the subscription set is live.
//!
//! This is the one seam between the adapter and Redis: replacing the transport (Redis
//! Cluster sharded Pub/Sub, for example) means another implementation of `Driver` here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use fred::prelude::*;
use fred::types::Builder;
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::{broadcast, mpsc};

use super::redis::RedisError;

/// Channels, and where their messages go.
type Channels = RwLock<HashMap<String, mpsc::Sender<ChanItem>>>;

struct Shared {
    publisher: Client,
    subscriber: Client,
    channels: Channels,
    /// Whether every channel is subscribed on the current subscriber connection.
    subscribed: AtomicBool,
    /// Messages dropped because a stream's buffer was full.
    dropped: AtomicU64,
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
    /// Connects both clients and starts the message pump and the resubscriber.
    pub async fn connect(builder: &Builder) -> Result<Self, RedisError> {
        let publisher = builder.build()?;
        let subscriber = builder.build()?;
        publisher.init().await?;
        subscriber.init().await?;
        let shared = Arc::new(Shared {
            publisher,
            subscriber,
            channels: RwLock::default(),
            subscribed: AtomicBool::new(true),
            dropped: AtomicU64::new(0),
        });
        tokio::spawn(pump(
            shared.subscriber.message_rx(),
            Arc::downgrade(&shared),
        ));
        tokio::spawn(resubscribe_on_reconnect(
            shared.subscriber.reconnect_rx(),
            Arc::downgrade(&shared),
        ));
        tokio::spawn(watch_errors(
            shared.subscriber.error_rx(),
            Arc::downgrade(&shared),
        ));
        Ok(Self(shared))
    }

    /// Whether both connections are up and every channel is subscribed.
    pub fn is_subscribed(&self) -> bool {
        self.0.subscribed.load(Ordering::SeqCst)
            && self.0.subscriber.is_connected()
            && self.0.publisher.is_connected()
    }

    /// Messages dropped because a consumer fell behind.
    pub fn dropped_messages(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
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
async fn pump(
    mut messages: broadcast::Receiver<fred::types::Message>,
    shared: std::sync::Weak<Shared>,
) {
    loop {
        let message = match messages.recv().await {
            Ok(message) => message,
            Err(broadcast::error::RecvError::Lagged(n)) => {
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
                shared.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "adapter stream full or closed; a cross-instance message was dropped"
                );
            }
        }
    }
}

/// After every reconnection, subscribes to every channel again.
async fn resubscribe_on_reconnect(
    mut reconnects: broadcast::Receiver<fred::prelude::Server>,
    shared: std::sync::Weak<Shared>,
) {
    loop {
        match reconnects.recv().await {
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let channels: Vec<String> = shared
            .channels
            .read()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        match shared.subscriber.subscribe(channels.clone()).await {
            Ok(()) => {
                shared.subscribed.store(true, Ordering::SeqCst);
                tracing::info!(
                    channels = channels.len(),
                    "redis reconnected; adapter channels resubscribed"
                );
            }
            Err(err) => {
                // The next reconnection tries again; readiness reports the gap meanwhile.
                shared.subscribed.store(false, Ordering::SeqCst);
                tracing::warn!(error = %err, "resubscribing adapter channels failed");
            }
        }
    }
}

/// Marks the subscription set as lost when the subscriber connection fails.
async fn watch_errors(
    mut errors: broadcast::Receiver<(fred::error::Error, Option<fred::prelude::Server>)>,
    shared: std::sync::Weak<Shared>,
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
        let _: i64 = self.0.publisher.publish(chan, val).await?;
        Ok(())
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
        self.0.subscriber.subscribe(chan).await?;
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        if let Ok(mut channels) = self.0.channels.write() {
            channels.remove(&chan);
        }
        self.0.subscriber.unsubscribe(chan).await?;
        Ok(())
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        let counts: Vec<fred::types::Value> = self.0.publisher.pubsub_numsub(chan).await?;
        let count = counts.get(1).and_then(|v| v.as_u64()).unwrap_or(0);
        Ok(u16::try_from(count).unwrap_or(u16::MAX))
    }
}
