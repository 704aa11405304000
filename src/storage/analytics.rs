//! Analytics events that passed the opt-out check.
//!
//! Inserts are idempotent: `event_id` is generated once, on receipt, and is the primary key,
//! and every insert is `ON CONFLICT (event_id) DO NOTHING`. That is what turns the stream
//! pipeline's at-least-once delivery (a batch re-delivered after a crash, a claim of entries a
//! dead consumer had already stored but not acknowledged) into exactly one row per event.

use serde::{Deserialize, Serialize};

use super::{Database, StorageError, now_millis};
use crate::domain::UserId;

/// One event to store. `event_id` is generated on receipt and is the primary key, so a retried
/// insert of the same event is a no-op rather than a duplicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The instance that received it.
    pub instance_id: String,
    /// When it was received (epoch ms), not when a consumer got round to storing it.
    pub created_at: i64,
}

impl AnalyticsEvent {
    /// A new occurrence received now by `instance_id`.
    pub fn new(
        name: String,
        props: String,
        user_id: Option<UserId>,
        anonymous_id: Option<String>,
        instance_id: &str,
    ) -> Self {
        Self {
            event_id: uuid::Uuid::new_v4().to_string(),
            name,
            props,
            user_id,
            anonymous_id,
            instance_id: instance_id.to_owned(),
            created_at: now_millis(),
        }
    }
}

const INSERT: &str = "INSERT INTO analytics_events \
     (event_id, name, props, user_id, anonymous_id, instance_id, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING";

impl Database {
    /// Stores an event; storing the same `event_id` twice keeps one row.
    pub async fn record_event(&self, event: &AnalyticsEvent) -> Result<(), StorageError> {
        self.record_events(std::slice::from_ref(event))
            .await
            .map(drop)
    }

    /// Stores a batch in one transaction: all of it or none. Returns the rows actually
    /// inserted (events already stored are skipped, not counted).
    pub async fn record_events(&self, events: &[AnalyticsEvent]) -> Result<u64, StorageError> {
        let mut tx = self.guarded(self.pool().begin()).await?;
        let mut inserted = 0;
        for event in events {
            inserted += sqlx::query(INSERT)
                .bind(&event.event_id)
                .bind(&event.name)
                .bind(&event.props)
                .bind(event.user_id.map(|u| u.0))
                .bind(event.anonymous_id.as_deref())
                .bind(&event.instance_id)
                .bind(event.created_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Number of stored events, for operators and tests.
    pub async fn count_events(&self) -> Result<i64, StorageError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM analytics_events")
            .fetch_one(self.pool())
            .await?)
    }
}
