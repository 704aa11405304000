//! Analytics events that passed the opt-out check.

use super::{Database, StorageError, now_millis};
use crate::domain::UserId;

/// One event to store. `event_id` is generated on receipt and is the primary key, so a retried
/// insert of the same event is a no-op rather than a duplicate.
#[derive(Debug, Clone)]
pub struct AnalyticsEvent {
    /// Unique id of this occurrence.
    pub event_id: String,
    /// Event name chosen by the client.
    pub name: String,
    /// Client properties, serialized JSON.
    pub props: String,
    /// The logged-in user, if any.
    pub user_id: Option<UserId>,
    /// A hash of the anonymous session, never the session id itself.
    pub anonymous_id: Option<String>,
}

impl Database {
    /// Stores an event; storing the same `event_id` twice keeps one row.
    pub async fn record_event(
        &self,
        event: &AnalyticsEvent,
        instance_id: &str,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO analytics_events (event_id, name, props, user_id, anonymous_id, instance_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&event.event_id)
        .bind(&event.name)
        .bind(&event.props)
        .bind(event.user_id.map(|u| u.0))
        .bind(event.anonymous_id.as_deref())
        .bind(instance_id)
        .bind(now_millis())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Number of stored events, for operators and tests.
    pub async fn count_events(&self) -> Result<i64, StorageError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM analytics_events")
            .fetch_one(self.pool())
            .await?)
    }
}
