//! The shared application state, assembled once in `App::build`.
//!
//! `AppState` holds everything handlers need except what belongs to the Socket.IO side; HTTP
//! handlers get it together with the type-erased `Realtime` handle through `http::HttpState`.
//! Socket.IO handlers get `AppState`, and realtime's own `realtime::state::RealtimeState`,
//! through socketioxide's `State` extractor and the `SocketIo<A>` from their own extractor, so
//! neither side depends on the other's construction order, and this module depends on
//! nothing above it.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;
use tower_sessions::cookie::Key;

use crate::auth::password::PasswordHasher;
use crate::auth::throttle::LoginThrottle;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::rate_limit::MessageRateLimiter;
use crate::session::SharedStore;
use crate::shutdown::state::DrainState;
use crate::shutdown::tasks::Tasks;
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
    pub login_throttle: Arc<dyn LoginThrottle>,
    /// Per-user message rate limit.
    pub message_limiter: MessageRateLimiter,
    /// Per-caller rate limit of analytics events.
    pub analytics_limiter: crate::rate_limit::intake::IntakeLimiter,
    /// Per-user limits of the other client events (`join`, `leave`, `resume`, `typing`).
    pub event_limits: crate::rate_limit::EventLimits,
    /// Per-address registration limit.
    pub register_limiter: crate::rate_limit::RegisterRateLimiter,
    /// Room membership counts.
    pub presence: Arc<dyn Presence>,
    /// Redis-backed parts; `None` in embedded mode.
    pub cluster: Option<Cluster>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Whether a drain has begun.
    pub drain: DrainState,
    /// Owner of every background task (sequencers, presence sends, pumps): the drain cancels
    /// and joins them, so none outlives it.
    pub tasks: Tasks,
    /// Which connections each Engine.IO session used, so the drain can close them.
    pub session_connections: Arc<crate::listener::SessionConnections>,
    /// Monotonic start, for uptime.
    pub started: Instant,
    /// Wall-clock start, for `/health`.
    pub started_at: OffsetDateTime,
    /// What the operator view keeps between pushes.
    pub operator: OperatorState,
    /// Where this instance listens, as published in the registry; set once the server runs.
    pub advertised_address: std::sync::OnceLock<String>,
}

/// What the operator view (`operator`) keeps between pushes.
#[derive(Debug, Default)]
pub struct OperatorState {
    /// This instance's event counters turned into rates.
    pub rates: crate::metrics::RateMeter,
    /// Wakes this instance's pusher for an immediate snapshot: some instance of the cluster
    /// changed state (a drain started or ended) and operators should see it now, not at the
    /// next tick.
    pub refresh: tokio::sync::Notify,
}
