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
use tracing::Instrument;

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
use crate::listener::{ConnectionLimits, GuardedListener};
use crate::metrics::Metrics;
use crate::pipeline::analytics_stream::AnalyticsConsumer;
use crate::presence::Presence;
use crate::presence::local::PresenceRegistry;
use crate::rate_limit::local::KeyedLimit;
use crate::rate_limit::redis::{RedisMessageLimit, RedisRegisterLimit};
use crate::rate_limit::{EventLimits, MessageRateLimiter, RegisterRateLimiter};
use crate::realtime::broadcast::{Realtime, SocketIoBroadcast};
use crate::realtime::presence_events::{PRESENCE_INTERVAL, PresenceNotifier};
use crate::realtime::room_sequencer::RoomSequencers;
use crate::redis::RedisError;
use crate::session::encrypted_store::EncryptedStore;
use crate::session::memory_store::ExpiringMemoryStore;
use crate::session::{self, SharedStore};
use crate::shutdown::{Deadline, DrainPlan, DrainReport, DrainState};
use crate::state::{AppState, AppStateInner, HttpState};
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
            announce_change(&cluster).await;
            return;
        }
    }
}

/// Tells every instance's operator view that this instance changed state.
async fn announce_change(cluster: &crate::cluster::Cluster) {
    use crate::operator::commands::{self, Command};
    if let Err(err) = commands::send(&cluster.driver, &Command::Refresh).await {
        tracing::debug!(error = %err, "could not announce a state change to operators");
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
    consumer: Option<AnalyticsConsumer>,
}

impl App {
    /// Connects to dependencies, applies migrations and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
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
            Some(url) => Some(Cluster::connect(url, &config, &metrics).await?),
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
            presence_notifier: PresenceNotifier::new(presence.clone(), PRESENCE_INTERVAL),
            presence,
            cluster,
            metrics,
            drain: DrainState::default(),
            session_connections: Arc::default(),
            sequencers: RoomSequencers::default(),
            started: Instant::now(),
            started_at: OffsetDateTime::now_utc(),
            advertised_address: std::sync::OnceLock::new(),
            operator: Default::default(),
            db,
            config,
        });

        // The adapter type is decided here and nowhere else.
        let (router, realtime) = match driver {
            None => {
                let (layer, io) = realtime::build(&state, SocketIo::builder());
                realtime::register_namespace::<LocalAdapter>(&io);
                crate::operator::live_view::register_namespace::<LocalAdapter>(&io);
                assemble(&state, layer, io)
            }
            Some(driver) => {
                let adapter = RedisAdapterCtr::new_with_driver(
                    driver,
                    RedisAdapterConfig::new().with_prefix(ADAPTER_PREFIX),
                );
                let builder = SocketIo::builder().with_adapter::<ClusterAdapter>(adapter);
                let (layer, io) = realtime::build(&state, builder);
                realtime::register_namespace::<ClusterAdapter>(&io)
                    .await
                    .map_err(|e| StartError::Adapter(e.to_string()))?;
                crate::operator::live_view::register_namespace::<ClusterAdapter>(&io)
                    .await
                    .map_err(|e| StartError::Adapter(e.to_string()))?;
                assemble(&state, layer, io)
            }
        };
        Ok(Self {
            listener,
            router,
            state,
            realtime,
            consumer,
        })
    }

    /// The bound address (with the real port when `PORT=0`).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        axum::serve::Listener::local_addr(&self.listener)
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
            consumer,
        } = self;
        if let Ok(addr) = axum::serve::Listener::local_addr(&listener) {
            tracing::info!(addr = %addr, mode = if state.config.is_cluster() { "cluster" } else { "embedded" }, "listening");
        }
        let drain = state.drain.clone();
        let (stop_accepting_tx, stop_accepting_rx) = tokio::sync::oneshot::channel::<()>();
        let stop_accepting = async move {
            let _ = stop_accepting_rx.await;
        };
        let address = axum::serve::Listener::local_addr(&listener)
            .map(advertised_address)
            .unwrap_or_default();
        let _ = state.advertised_address.set(address.clone());
        let heartbeat = tokio::spawn(heartbeat(state.clone(), realtime.clone(), address));
        let operator_view = tokio::spawn(
            crate::operator::live_view::push(state.clone(), realtime.clone())
                .instrument(tracing::info_span!("operator_view")),
        );
        let operator_commands = state.cluster.as_ref().map(|cluster| {
            tokio::spawn(
                crate::operator::commands::listen(cluster.driver.clone(), state.clone())
                    .instrument(tracing::info_span!("operator_commands")),
            )
        });
        let jobs = tokio::spawn(
            singleton_jobs(state.clone()).instrument(tracing::info_span!("cluster_jobs")),
        );
        let consumer = consumer.map(|consumer| {
            tokio::spawn(
                consumer
                    .run(state.drain.clone())
                    .instrument(tracing::info_span!("analytics_consumer")),
            )
        });
        let header_read_timeout = state.config.header_read_timeout;
        let mut server = tokio::spawn(async move {
            crate::server::serve(listener, router, header_read_timeout, stop_accepting).await;
        });

        tokio::select! {
            () = shutdown => {}
            () = state.drain.requested() => {
                tracing::info!("shutdown requested by an operator");
            }
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
        let sockets = match tokio::time::timeout(
            socket_budget,
            realtime.drain_local(
                plan,
                state.session_connections.clone(),
                Box::pin(state.sequencers.flush()),
            ),
        )
        .await
        {
            Ok(count) => count,
            Err(_) => {
                tracing::warn!("closing sockets took longer than half the shutdown timeout");
                realtime.local_sockets()
            }
        };
        state.metrics.drained_sockets.inc_by(sockets as u64);
        operator_view.abort();
        if let Some(commands) = operator_commands {
            // It stops by itself at the drain's start; this only covers a stuck subscription.
            commands.abort();
        }
        // Only now stop accepting connections: until the transports were closed, polling
        // clients needed new connections to fetch `server:draining` and the close packet.
        // New Engine.IO sessions were refused from the start of the drain.
        let _ = stop_accepting_tx.send(());

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
        heartbeat.abort();
        // Jobs stop at the drain (releasing their locks); wait so no run outlives the pool.
        let mut jobs = jobs;
        if tokio::time::timeout(deadline.remaining(), &mut jobs)
            .await
            .is_err()
        {
            jobs.abort();
        }
        if let Some(mut consumer) = consumer {
            // It stopped reading when the drain began; let it store and acknowledge its batch.
            if tokio::time::timeout(deadline.remaining(), &mut consumer)
                .await
                .is_err()
            {
                tracing::warn!(
                    "the analytics consumer did not finish its batch before the shutdown timeout"
                );
                consumer.abort();
            }
        }
        if let Some(cluster) = &state.cluster {
            let close = async {
                if let Err(err) = cluster.registry.leave().await {
                    tracing::warn!(error = %err, "could not remove this instance from the registry");
                }
                announce_change(cluster).await;
                cluster.driver.close().await;
                cluster.redis.close().await;
            };
            if tokio::time::timeout(deadline.remaining(), close)
                .await
                .is_err()
            {
                tracing::warn!("redis connections did not close before the shutdown timeout");
            }
        }
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
