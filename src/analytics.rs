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
//! instance (`rate_limit::intake`).

use tower_sessions::Session;

use crate::auth::{SESSION_OPT_OUT_KEY, SessionUser};
use crate::domain::UserId;
use crate::metrics::Metrics;
use crate::redis::RedisError;
use crate::session::anonymous_id;
use crate::state::AppState;
use crate::storage::StorageError;
use crate::storage::analytics::AnalyticsEvent;

/// Why a consent rule or an intake could not be carried out; `http::error` maps each cause
/// to its response, as it does for every other module's error.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// The caller's session could not be read or written.
    #[error("session: {0}")]
    Session(#[from] tower_sessions::session::Error),
    /// The database could not be read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Redis could not record an opt-out.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The analytics stream would not take the event.
    #[error("the analytics pipeline is unavailable")]
    PipelineUnavailable,
}

/// Whether events from this caller must be dropped.
pub async fn opted_out(
    app: &AppState,
    session: &Session,
    user: Option<&SessionUser>,
) -> Result<bool, AnalyticsError> {
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
async fn user_opted_out(app: &AppState, user: UserId) -> Result<bool, AnalyticsError> {
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
) -> Result<(), AnalyticsError> {
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
) -> Result<(), AnalyticsError> {
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
) -> Result<Intake, AnalyticsError> {
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
        // Cluster mode: the stream takes it; a consumer stores it (see `pipeline::analytics_stream`).
        Some(cluster) => {
            cluster.analytics.append(&event).await.map_err(|err| {
                app.metrics.redis_errors.inc();
                tracing::warn!(error = %err, "appending an analytics event failed");
                AnalyticsError::PipelineUnavailable
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
