//! Assembling the application from a `Config`, and running it until a shutdown signal.
//!
//! `App::build` does everything that can fail at start (database, migrations, binding the
//! port) so that `main` can report it and exit non-zero; `run_until_stopped` serves until the
//! given future resolves, then performs the drain described in `shutdown`. Tests bind port 0
//! and pass their own shutdown future.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use socketioxide::SocketIo;
use socketioxide::adapter::LocalAdapter;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tower_sessions::MemoryStore;

use crate::auth::password::{HashError, PasswordHasher};
use crate::auth::throttle::LoginThrottle;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::realtime::broadcast::{Realtime, SocketIoBroadcast};
use crate::realtime::presence::{PRESENCE_INTERVAL, PresenceNotifier, PresenceRegistry};
use crate::realtime::rate_limit::MessageRateLimiter;
use crate::session::{self, SharedStore};
use crate::shutdown::{Deadline, DrainPlan, DrainReport, DrainState};
use crate::state::{AppState, AppStateInner, HttpState, RoomLocks};
use crate::storage::{Database, StorageError};
use crate::{http, realtime};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Storage(#[from] StorageError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The password hasher could not initialise.
    #[error("password hasher: {0}")]
    Hasher(#[from] HashError),
    /// Cluster mode was requested; it needs the Redis wiring.
    #[error("cluster mode (REDIS_URL) is not available in this build")]
    ClusterUnavailable,
}

/// A built, bound, not yet running server.
pub struct App {
    listener: TcpListener,
    router: Router,
    state: AppState,
    realtime: Realtime,
}

impl App {
    /// Connects to dependencies, applies migrations and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        if config.is_cluster() {
            return Err(StartError::ClusterUnavailable);
        }
        let db = Database::connect(&config.database_url, config.database_max_connections).await?;
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;

        let presence = Arc::new(PresenceRegistry::default());
        let state = AppState::new(AppStateInner {
            sessions: SharedStore::new(MemoryStore::default()),
            cookie_key: session::cookie_key(&config),
            hasher: PasswordHasher::new(
                config.password_hash_concurrency,
                config.password_hash_queue,
            )?,
            login_throttle: LoginThrottle::new(config.login_max_failures, config.login_window),
            message_limiter: MessageRateLimiter::new(
                config.message_rate_per_sec,
                config.message_rate_burst,
            ),
            presence_notifier: PresenceNotifier::new(presence.clone(), PRESENCE_INTERVAL),
            presence,
            metrics: Metrics::new(),
            drain: DrainState::default(),
            room_locks: RoomLocks::default(),
            started: Instant::now(),
            started_at: OffsetDateTime::now_utc(),
            db,
            config,
        });

        let (layer, io) = realtime::build(&state, SocketIo::builder());
        realtime::register_namespace::<LocalAdapter>(&io);
        let realtime: Realtime = Arc::new(SocketIoBroadcast(io));
        let router = http::router(
            HttpState {
                app: state.clone(),
                realtime: realtime.clone(),
            },
            layer,
        );
        Ok(Self {
            listener,
            router,
            state,
            realtime,
        })
    }

    /// The bound address (with the real port when `PORT=0`).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state, for tests that inspect the database or metrics.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains and returns what the drain did.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> DrainReport {
        let Self {
            listener,
            router,
            state,
            realtime,
        } = self;
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(addr = %addr, mode = if state.config.is_cluster() { "cluster" } else { "embedded" }, "listening");
        }
        let drain = state.drain.clone();
        let stop_accepting = {
            let drain = drain.clone();
            async move { drain.started().await }
        };
        let mut server = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stop_accepting)
            .await
        });

        tokio::select! {
            () = shutdown => {}
            result = &mut server => {
                // The server stopped on its own (accept loop failure): still drain the rest.
                tracing::error!(result = ?result, "HTTP server stopped unexpectedly");
            }
        }

        let started = Instant::now();
        let plan = DrainPlan::new(state.config.shutdown_timeout);
        let deadline = Deadline::after(plan.timeout);
        tracing::info!(
            timeout_secs = plan.timeout.as_secs(),
            sockets = realtime.local_sockets(),
            "drain started"
        );
        drain.begin();

        let socket_budget = plan.timeout / 2;
        let sockets =
            match tokio::time::timeout(socket_budget, realtime.drain_local(plan.notice)).await {
                Ok(count) => count,
                Err(_) => {
                    tracing::warn!("closing sockets took longer than half the shutdown timeout");
                    realtime.local_sockets()
                }
            };
        state.metrics.drained_sockets.inc_by(sockets as u64);

        let http_finished = if server.is_finished() {
            true
        } else {
            match tokio::time::timeout(deadline.remaining(), &mut server).await {
                Ok(_) => true,
                Err(_) => {
                    tracing::warn!(
                        "in-flight HTTP requests did not finish before the shutdown timeout"
                    );
                    server.abort();
                    false
                }
            }
        };
        if tokio::time::timeout(deadline.remaining(), state.db.close())
            .await
            .is_err()
        {
            tracing::warn!("database pool did not close before the shutdown timeout");
        }
        let report = DrainReport {
            sockets,
            http_finished,
            elapsed: started.elapsed(),
        };
        tracing::info!(
            sockets = report.sockets,
            http_finished = report.http_finished,
            elapsed_ms = u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
            "drain complete"
        );
        report
    }
}
