//! The shared application state, assembled once in `App::build`.
//!
//! `AppState` holds everything handlers need except the Socket.IO handle; HTTP handlers get it
//! together with the type-erased `Realtime` handle through `HttpState`. Socket.IO handlers get
//! `AppState` through socketioxide's `State` extractor and the `SocketIo<A>` from their own
//! extractor, so neither side depends on the other's construction order.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use axum::extract::FromRef;
use time::OffsetDateTime;
use tower_sessions::cookie::Key;

use crate::auth::password::PasswordHasher;
use crate::auth::throttle::LoginThrottle;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::realtime::broadcast::Realtime;
use crate::realtime::presence::{Presence, PresenceNotifier};
use crate::realtime::rate_limit::MessageRateLimiter;
use crate::session::SharedStore;
use crate::shutdown::DrainState;
use crate::storage::Database;

/// Cheaply clonable handle to the shared state.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    /// Wraps the assembled parts.
    pub fn new(inner: AppStateInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// The parts of the shared state.
pub struct AppStateInner {
    /// Settings.
    pub config: Config,
    /// SQL database.
    pub db: Database,
    /// Session store shared with Socket.IO handshakes.
    pub sessions: SharedStore,
    /// Key that signs session cookies.
    pub cookie_key: Key,
    /// Bounded argon2id hasher.
    pub hasher: PasswordHasher,
    /// Failed-login throttle.
    pub login_throttle: LoginThrottle,
    /// Per-user message rate limit.
    pub message_limiter: MessageRateLimiter,
    /// Per-user limits of the other client events (`join`, `leave`, `resume`, `typing`).
    pub event_limits: crate::realtime::rate_limit::EventLimits,
    /// Per-address registration limit.
    pub register_limiter: crate::realtime::rate_limit::RegisterRateLimiter,
    /// Room membership counts.
    pub presence: Arc<Presence>,
    /// Coalesced presence events.
    pub presence_notifier: PresenceNotifier,
    /// Redis-backed parts; `None` in embedded mode.
    pub cluster: Option<Cluster>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Whether a drain has begun.
    pub drain: DrainState,
    /// Which connections each Engine.IO session used, so the drain can close them.
    pub session_connections: Arc<crate::listener::SessionConnections>,
    /// Per-room locks that keep id order equal to broadcast order.
    pub room_locks: RoomLocks,
    /// Monotonic start, for uptime.
    pub started: Instant,
    /// Wall-clock start, for `/health`.
    pub started_at: OffsetDateTime,
    /// Where this instance listens, as published in the registry; set once the server runs.
    pub advertised_address: std::sync::OnceLock<String>,
}

/// State of HTTP handlers: the shared state plus the realtime handle.
#[derive(Clone)]
pub struct HttpState {
    /// Shared state.
    pub app: AppState,
    /// Cross-instance room operations.
    pub realtime: Realtime,
}

impl FromRef<HttpState> for AppState {
    fn from_ref(state: &HttpState) -> Self {
        state.app.clone()
    }
}

impl FromRef<HttpState> for Realtime {
    fn from_ref(state: &HttpState) -> Self {
        state.realtime.clone()
    }
}

/// One async mutex per active room, created on demand and dropped when unused.
///
/// Persisting a message allocates its id; broadcasting it delivers it. Holding the room's lock
/// across both makes this instance deliver a room's messages in id order.
#[derive(Debug, Default)]
pub struct RoomLocks {
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl RoomLocks {
    /// The lock for `room`.
    pub fn get(&self, room: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = locks.get(room).and_then(Weak::upgrade) {
            return lock;
        }
        if locks.len() > 1024 {
            locks.retain(|_, weak| weak.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(room.to_owned(), Arc::downgrade(&lock));
        lock
    }
}
