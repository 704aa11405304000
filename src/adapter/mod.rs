//! Room broadcasts across instances: the Socket.IO adapter of cluster mode.
//!
//! socketioxide-redis carries every broadcast to the other instances over Redis Pub/Sub;
//! `driver` is the Redis side of it, written here because the bundled drivers do not survive
//! a Redis restart. The adapter type itself is chosen once, in `app.rs`: `LocalAdapter` in
//! embedded mode, `ClusterAdapter` in cluster mode.

pub mod driver;

use socketioxide::adapter::Emitter;
use socketioxide_redis::CustomRedisAdapter;

use driver::ResilientDriver;

/// Prefix of the adapter's Pub/Sub channels.
pub const ADAPTER_PREFIX: &str = "roomcast-sio";

/// The Socket.IO adapter of cluster mode: socketioxide-redis over our resilient driver.
pub type ClusterAdapter = CustomRedisAdapter<Emitter, ResilientDriver>;
