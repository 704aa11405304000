//! Assembling the application from a `Config`, and running it until a shutdown signal.
//!
//! `App::build` does everything that can fail at start (database, migrations, binding the
//! port) so that `main` can report it and exit non-zero; `run_until_stopped` starts the
//! background tasks and the server, waits for the stop signal, then runs the drain
//! (`shutdown::sequence::drain`). Every task is owned by the app's `Tasks`, which the drain
//! cancels and joins. Tests bind port 0 and pass their own shutdown future.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use socketioxide::SocketIo;
use socketioxide::adapter::LocalAdapter;
use time::OffsetDateTime;
use tokio::net::TcpListener;

use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};
use tower_sessions_redis_store::RedisStore;

use crate::adapter::{ADAPTER_PREFIX, ClusterAdapter};
use crate::auth::password::{HashError, PasswordHasher};
use crate::auth::throttle::local::LocalThrottle;
use crate::auth::throttle::redis::RedisLoginThrottle;
use crate::auth::throttle::{LoginThrottle, ThrottleLimits};
use crate::breaker::{CircuitBreaker, GuardedStore};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::coordination::jobs::{self, JobScheduler, RetentionSettings};
use crate::coordination::registry::HEARTBEAT;
use crate::http::HttpState;
use crate::listener::{ConnectionLimits, GuardedListener};
use crate::metrics::Metrics;
use crate::pipeline::analytics_stream::AnalyticsConsumer;
use crate::presence::Presence;
use crate::presence::local::PresenceRegistry;
use crate::rate_limit::local::KeyedLimit;
use crate::rate_limit::redis::{RedisMessageLimit, RedisRegisterLimit};
use crate::rate_limit::{EventLimits, MessageRateLimiter, RegisterRateLimiter};
use crate::realtime::broadcast::{Realtime, SocketIoBroadcast};
use crate::realtime::state::RealtimeState;
use crate::redis::RedisError;
use crate::server::Serving;
use crate::session::encrypted_store::EncryptedStore;
use crate::session::memory_store::ExpiringMemoryStore;
use crate::session::{self, SharedStore};
use crate::shutdown::plan::{Deadline, DrainReport};
use crate::shutdown::state::DrainState;
use crate::shutdown::tasks::Tasks;
use crate::state::{AppState, AppStateInner};
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
    /// Redis (cluster mode) could not be reached.
    #[error("{0}")]
    Redis(#[from] RedisError),
    /// The Socket.IO Redis adapter could not subscribe its channels.
    #[error("socket.io adapter: {0}")]
    Adapter(String),
}

fn assemble<A: socketioxide::adapter::Adapter>(
    state: &AppState,
    layer: socketioxide::layer::SocketIoLayer<A>,
    io: SocketIo<A>,
) -> (Router, Realtime) {
    let realtime: Realtime = Arc::new(SocketIoBroadcast(io));
    let router = http::router(
        HttpState {
            app: state.clone(),
            realtime: realtime.clone(),
        },
        layer,
    );
    (router, realtime)
}

/// Keeps this instance's registry entry fresh, until the drain; the drain's start is
/// published at once with a last beat, so operators see the instance turn draining.
async fn heartbeat(state: AppState, realtime: Realtime, address: String) {
    let Some(cluster) = state.cluster.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            () = state.drain.started() => true,
        };
        let sockets = realtime.local_sockets() as u64;
        let vitals = crate::operator::status::vitals(&state);
        if let Err(err) = cluster.registry.beat(&address, sockets, vitals).await {
            state.metrics.redis_errors.inc();
            tracing::warn!(error = %err, "heartbeat failed");
        }
        if last {
            crate::operator::commands::announce_change(&cluster).await;
            return;
        }
    }
}

/// The address other instances and operators can reach this one at: the bound address, with
/// the hostname instead of an unspecified IP (`0.0.0.0`).
fn advertised_address(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("{}:{}", crate::instance::hostname(), addr.port())
    } else {
        addr.to_string()
    }
}

/// Runs the cluster singleton jobs of this instance until the drain: the stale-presence
/// cleanup (cluster mode) and the history retention (when `HISTORY_RETENTION_DAYS` is set).
async fn singleton_jobs(state: AppState) {
    let scheduler = JobScheduler::new(
        state.cluster.as_ref().map(|c| c.locks.clone()),
        state.drain.clone(),
        state.metrics.job_runs.clone(),
    );
    let cleanup = async {
        let Some(cluster) = &state.cluster else {
            return;
        };
        scheduler
            .every(jobs::PRESENCE_CLEANUP, HEARTBEAT, |_lease| async {
                cluster.registry.reap(&cluster.presence).await.map(drop)
            })
            .await;
    };
    let retention = async {
        let Some(days) = state.config.history_retention_days else {
            return;
        };
        let settings = RetentionSettings {
            days,
            batch_size: state.config.history_retention_batch_size,
            pause: state.config.history_retention_batch_pause,
        };
        let instance = state.config.instance_id.as_str();
        scheduler
            .every(
                jobs::HISTORY_RETENTION,
                state.config.history_retention_interval,
                |lease| jobs::purge_history(&state.db, instance, settings, lease),
            )
            .await;
    };
    tokio::join!(cleanup, retention);
}

/// A built, bound, not yet running server.
pub struct App {
    listener: GuardedListener,
    router: Router,
    state: AppState,
    realtime: Realtime,
    realtime_state: RealtimeState,
    consumer: Option<AnalyticsConsumer>,
}

impl App {
    /// Connects to dependencies, applies migrations and binds the listener. On failure, the
    /// tasks already started (the adapter's Pub/Sub pump, the session sweep) are stopped.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let tasks = Tasks::default();
        let built = Self::build_owned_by(config, &tasks).await;
        if built.is_err() {
            tasks
                .close(Deadline::after(std::time::Duration::from_secs(1)))
                .await;
        }
        built
    }

    /// `build`, with every task it starts owned by `tasks`.
    async fn build_owned_by(config: Config, tasks: &Tasks) -> Result<Self, StartError> {
        let metrics = Metrics::new();
        let db = Database::connect(
            &config.database_url,
            config.database_max_connections,
            CircuitBreaker::new(
                "database",
                config.breaker_failure_threshold,
                config.breaker_open,
                metrics.breaker_rejection_counter("database"),
            ),
        )
        .await?;
        let cluster = match &config.redis_url {
            Some(url) => Some(Cluster::connect(url, &config, &metrics, tasks).await?),
            None => None,
        };
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let listener = GuardedListener::new(
            listener,
            ConnectionLimits {
                max_connections: config.max_connections,
                rate_per_ip: config.connection_rate_per_ip,
                burst_per_ip: config.connection_burst_per_ip,
            },
            config.instance_id.as_str(),
            tasks,
        );

        let sessions = match (&cluster, &config.session_encryption_key) {
            (Some(cluster), Some(key)) if config.use_redis_sessions => {
                let redis_store = GuardedStore::new(
                    RedisStore::new(cluster.redis.pool().clone()),
                    cluster.redis.breaker().clone(),
                );
                SharedStore::new(EncryptedStore::new(
                    redis_store,
                    key,
                    &config.session_encryption_keys_old,
                ))
            }
            _ => SharedStore::embedded(ExpiringMemoryStore::with_sweeper(
                config.session_sweep_interval,
                tasks,
            )),
        };
        let throttle_limits = ThrottleLimits {
            per_username: config.login_max_failures,
            per_address: config.login_max_failures_per_address,
            window: config.login_window,
        };
        // Where presence and the shared limits keep their counts is decided here, once.
        let (presence, login_throttle, message_limiter, register_limiter): (
            Arc<dyn Presence>,
            Arc<dyn LoginThrottle>,
            MessageRateLimiter,
            RegisterRateLimiter,
        ) = match &cluster {
            Some(cluster) => (
                Arc::new(cluster.presence.clone()),
                Arc::new(RedisLoginThrottle::new(
                    cluster.redis.clone(),
                    throttle_limits,
                )),
                MessageRateLimiter::new(RedisMessageLimit::new(
                    cluster.redis.clone(),
                    config.message_rate_per_sec,
                    config.message_rate_burst,
                )),
                RegisterRateLimiter::new(RedisRegisterLimit::new(
                    cluster.redis.clone(),
                    config.register_rate_per_min,
                    config.register_rate_burst,
                )),
            ),
            None => (
                Arc::new(PresenceRegistry::default()),
                Arc::new(LocalThrottle::new(throttle_limits)),
                MessageRateLimiter::new(KeyedLimit::per_second(
                    config.message_rate_per_sec,
                    config.message_rate_burst,
                )),
                RegisterRateLimiter::new(KeyedLimit::per_minute(
                    config.register_rate_per_min,
                    config.register_rate_burst,
                )),
            ),
        };
        let driver = cluster.as_ref().map(|c| c.driver.clone());
        let consumer = match (&cluster, &config.redis_url) {
            (Some(cluster), Some(url)) => Some(
                AnalyticsConsumer::connect(
                    url,
                    config.instance_id.to_string(),
                    cluster.analytics.settings(),
                    db.clone(),
                    metrics.analytics_consumer.clone(),
                )
                .await?,
            ),
            _ => None,
        };
        let state = AppState::new(AppStateInner {
            sessions,
            cookie_key: session::cookie_key(&config),
            hasher: PasswordHasher::new(
                config.password_hash_concurrency,
                config.password_hash_queue,
            )?,
            login_throttle,
            message_limiter,
            analytics_limiter: crate::rate_limit::intake::IntakeLimiter::new(
                config.analytics_rate_per_sec,
                config.analytics_rate_burst,
            ),
            event_limits: EventLimits::new(&config),
            register_limiter,
            presence,
            cluster,
            metrics,
            drain: DrainState::default(),
            tasks: tasks.clone(),
            session_connections: Arc::default(),
            started: Instant::now(),
            started_at: OffsetDateTime::now_utc(),
            advertised_address: std::sync::OnceLock::new(),
            operator: Default::default(),
            db,
            config,
        });

        // The adapter type is decided here and nowhere else.
        let (router, realtime, realtime_state) = match driver {
            None => {
                let (layer, io, realtime_state) = realtime::build(&state, SocketIo::builder());
                realtime::register_namespace::<LocalAdapter>(&io);
                crate::operator::live_view::register_namespace::<LocalAdapter>(&io);
                let (router, realtime) = assemble(&state, layer, io);
                (router, realtime, realtime_state)
            }
            Some(driver) => {
                let adapter = RedisAdapterCtr::new_with_driver(
                    driver,
                    RedisAdapterConfig::new().with_prefix(ADAPTER_PREFIX),
                );
                let builder = SocketIo::builder().with_adapter::<ClusterAdapter>(adapter);
                let (layer, io, realtime_state) = realtime::build(&state, builder);
                realtime::register_namespace::<ClusterAdapter>(&io)
                    .await
                    .map_err(|e| StartError::Adapter(e.to_string()))?;
                crate::operator::live_view::register_namespace::<ClusterAdapter>(&io)
                    .await
                    .map_err(|e| StartError::Adapter(e.to_string()))?;
                let (router, realtime) = assemble(&state, layer, io);
                (router, realtime, realtime_state)
            }
        };
        Ok(Self {
            listener,
            router,
            state,
            realtime,
            realtime_state,
            consumer,
        })
    }

    /// The bound address (with the real port when `PORT=0`).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        axum::serve::Listener::local_addr(&self.listener)
    }

    /// The shared state, for tests that inspect the database, metrics or the tasks left
    /// (`state().tasks`).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Realtime's own state, for tests that watch the room sequencers.
    pub fn realtime_state(&self) -> &RealtimeState {
        &self.realtime_state
    }

    /// The Socket.IO handle, for tests that emit as the HTTP layer does (and see it refused
    /// once the drain closed the server).
    pub fn realtime(&self) -> Realtime {
        self.realtime.clone()
    }

    /// Serves until `shutdown` resolves (or an operator asks for a drain, or the server stops
    /// by itself), then drains and returns what the drain did.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> DrainReport {
        let Self {
            listener,
            router,
            state,
            realtime,
            realtime_state,
            consumer,
        } = self;
        let tasks = state.tasks.clone();
        let address = axum::serve::Listener::local_addr(&listener)
            .map(advertised_address)
            .unwrap_or_default();
        if let Ok(addr) = axum::serve::Listener::local_addr(&listener) {
            tracing::info!(addr = %addr, mode = if state.config.is_cluster() { "cluster" } else { "embedded" }, "listening");
        }
        let _ = state.advertised_address.set(address.clone());
        start_background_tasks(&tasks, &state, &realtime, address, consumer);
        let mut http = Serving::start(listener, router, state.config.header_read_timeout, &tasks);

        tokio::select! {
            () = shutdown => {}
            () = state.drain.requested() => {
                tracing::info!("shutdown requested by an operator");
            }
            // The accept loop failed: still drain the rest.
            () = http.stopped() => {}
        }

        crate::shutdown::sequence::drain(&state, &realtime, realtime_state.sequencers(), http).await
    }
}

/// Starts the tasks that run beside the server, each owned by `tasks`: the registry
/// heartbeat and the cluster jobs stop by themselves at the drain's start, the analytics
/// consumer stores its last batch then; the operator view and the operator commands stop when
/// the drain stops background tasks.
fn start_background_tasks(
    tasks: &Tasks,
    state: &AppState,
    realtime: &Realtime,
    address: String,
    consumer: Option<AnalyticsConsumer>,
) {
    tasks.spawn(
        "heartbeat",
        heartbeat(state.clone(), realtime.clone(), address),
    );
    tasks.spawn_until_cancelled(
        "operator_view",
        crate::operator::live_view::push(state.clone(), realtime.clone()),
    );
    if let Some(cluster) = &state.cluster {
        tasks.spawn_until_cancelled(
            "operator_commands",
            crate::operator::commands::listen(cluster.driver.clone(), state.clone()),
        );
    }
    tasks.spawn("cluster_jobs", singleton_jobs(state.clone()));
    if let Some(consumer) = consumer {
        tasks.spawn("analytics_consumer", consumer.run(state.drain.clone()));
    }
}
