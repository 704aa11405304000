//! Analytics consent and event intake.
//!
//! The opt-out is honoured before anything is stored. For an anonymous visitor the choice
//! lives in their session; for a logged-in user it lives on the account, so it follows them to
//! every device and instance. Logging in with an opted-out anonymous session opts the account
//! out (see `http::auth::login`); logging in never opts anyone back in.
//!
//! Anyone may post events, logged in or not, so intake is bounded: `props` is capped at
//! `ANALYTICS_PROPS_MAX_BYTES`, and each user (or, for anonymous callers, each client address)
//! gets a token bucket of `ANALYTICS_RATE_PER_SEC` with burst `ANALYTICS_RATE_BURST` on each
//! instance. The buckets are swept when they grow, so the limiter's own memory stays bounded
//! by the callers of the last few seconds.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::DefaultClock;
use governor::{DefaultKeyedRateLimiter, Quota};
use tower_sessions::Session;

use crate::auth::{SESSION_OPT_OUT_KEY, SessionUser};
use crate::domain::UserId;
use crate::http::error::ApiError;
use crate::metrics::Metrics;
use crate::session::anonymous_id;
use crate::state::AppState;
use crate::storage::analytics::AnalyticsEvent;

/// Who an analytics rate limit is counted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntakeKey {
    /// A logged-in user, wherever they post from.
    User(UserId),
    /// An anonymous caller, by client address.
    Address(IpAddr),
}

/// Per-caller token buckets for event intake, on this instance.
#[derive(Debug)]
pub struct IntakeLimiter {
    buckets: DefaultKeyedRateLimiter<IntakeKey>,
}

/// Buckets kept before full (idle) ones are swept.
const SWEEP_ABOVE: usize = 10_000;

impl IntakeLimiter {
    /// `per_sec` sustained, `burst` at once.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        Self {
            buckets: DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    /// `Err(wait)` when `key` is over its rate, with the time until its next token.
    pub fn check(&self, key: IntakeKey) -> Result<(), Duration> {
        if self.buckets.len() > SWEEP_ABOVE {
            self.buckets.retain_recent();
        }
        self.buckets.check_key(&key).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::Clock::now(&DefaultClock::default()))
        })
    }
}

/// Whether events from this caller must be dropped.
pub async fn opted_out(
    app: &AppState,
    session: &Session,
    user: Option<&SessionUser>,
) -> Result<bool, ApiError> {
    if session
        .get::<bool>(SESSION_OPT_OUT_KEY)
        .await?
        .unwrap_or(false)
    {
        return Ok(true);
    }
    match user {
        Some(user) => user_opted_out(app, user.user.id).await,
        None => Ok(false),
    }
}

/// A user's own choice. In cluster mode Redis answers first; only a `1` there is taken
/// as final, anything else is confirmed by the database, so a lost or stale Redis value can
/// never turn an opt-out into consent.
async fn user_opted_out(app: &AppState, user: UserId) -> Result<bool, ApiError> {
    if let Some(cluster) = &app.cluster {
        match cluster.opt_outs.get(user).await {
            Ok(Some(true)) => return Ok(true),
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "opt-out lookup in redis failed; using the database")
            }
        }
    }
    Ok(app.db.user_opted_out(user).await?)
}

/// Records a user's choice: the database first (durable), then Redis (shared, fast).
pub async fn set_user_opted_out(
    app: &AppState,
    user: UserId,
    opted_out: bool,
) -> Result<(), ApiError> {
    app.db.set_user_opted_out(user, opted_out).await?;
    if let Some(cluster) = &app.cluster {
        cluster.opt_outs.set(user, opted_out).await?;
    }
    Ok(())
}

/// Records the caller's choice in their session and, when logged in, on their account.
pub async fn set_opted_out(
    app: &AppState,
    session: &Session,
    user: Option<&SessionUser>,
    opted_out: bool,
) -> Result<(), ApiError> {
    if let Some(user) = user {
        set_user_opted_out(app, user.user.id, opted_out).await?;
    }
    session.insert(SESSION_OPT_OUT_KEY, opted_out).await?;
    Ok(())
}

/// Outcome of an event submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    /// Stored (embedded mode) or queued on the stream for storage (cluster mode).
    Recorded,
    /// Dropped because the caller opted out; nothing was stored.
    Dropped,
}

/// Stores the event unless the caller opted out: directly in embedded mode, through the
/// analytics stream in cluster mode. The opt-out check comes first, so an opted-out caller's
/// event never reaches the stream.
pub async fn submit(
    app: &AppState,
    session: &Session,
    user: Option<&SessionUser>,
    name: String,
    props: String,
) -> Result<Intake, ApiError> {
    if opted_out(app, session, user).await? {
        Metrics::outcome(&app.metrics.analytics_events, "dropped_opted_out");
        return Ok(Intake::Dropped);
    }
    let anonymous = match (user, session.id()) {
        (None, Some(id)) => Some(anonymous_id(&id)),
        _ => None,
    };
    let event = AnalyticsEvent::new(
        name,
        props,
        user.map(|u| u.user.id),
        anonymous,
        app.config.instance_id.as_str(),
    );
    match &app.cluster {
        // Cluster mode: the stream takes it; a consumer stores it (see `cluster::streams`).
        Some(cluster) => {
            cluster.analytics.append(&event).await.map_err(|err| {
                app.metrics.redis_errors.inc();
                tracing::warn!(error = %err, "appending an analytics event failed");
                ApiError::unavailable("the analytics pipeline")
            })?;
            Metrics::outcome(&app.metrics.analytics_events, "queued");
        }
        None => {
            app.db.record_event(&event).await?;
            Metrics::outcome(&app.metrics.analytics_events, "recorded");
        }
    }
    Ok(Intake::Recorded)
}
