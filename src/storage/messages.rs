//! Room messages: append, history pages, and the room list.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Database, StorageError, next_id, now_millis};
use crate::domain::{MessageText, RoomName, UserId};
use crate::storage::users::User;

/// A persisted message, exactly as broadcast to the room and returned by history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// Cluster-wide increasing id; within a room, id order is delivery order.
    pub id: i64,
    /// The room it was sent to.
    pub room: String,
    /// The author.
    pub user: User,
    /// The text.
    pub text: String,
    /// Milliseconds since the Unix epoch when it was stored.
    pub ts: i64,
    /// The instance that accepted it.
    pub instance_id: String,
}

/// A room that has history, for the room list.
#[derive(Debug, Clone)]
pub struct RoomActivity {
    /// The room.
    pub room: String,
    /// Timestamp of its newest message.
    pub last_message_at: i64,
}

impl Database {
    /// Stores a message and returns it with its id and timestamp. The id is allocated in the
    /// same transaction, so no id is ever visible without its message.
    pub async fn append_message(
        &self,
        room: &RoomName,
        author: &User,
        text: &MessageText,
        instance_id: &str,
    ) -> Result<ChatMessage, StorageError> {
        let mut tx = self.pool().begin().await?;
        let id = next_id(&mut tx, "messages").await?;
        let ts = now_millis();
        sqlx::query(
            "INSERT INTO messages (id, room, user_id, username, body, instance_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(room.as_str())
        .bind(author.id.0)
        .bind(&author.username)
        .bind(text.as_str())
        .bind(instance_id)
        .bind(ts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ChatMessage {
            id,
            room: room.as_str().to_owned(),
            user: author.clone(),
            text: text.as_str().to_owned(),
            ts,
            instance_id: instance_id.to_owned(),
        })
    }

    /// Up to `limit` messages of `room` older than `before` (or the newest), newest first.
    pub async fn messages_before(
        &self,
        room: &RoomName,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ChatMessage>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, room, user_id, username, body, instance_id, created_at FROM messages \
             WHERE room = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(room.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(message_from_row)
            .collect::<Result<_, _>>()
            .map_err(StorageError::from)
    }

    /// Rooms with history, most recently active first.
    pub async fn active_rooms(&self, limit: u32) -> Result<Vec<RoomActivity>, StorageError> {
        let rows = sqlx::query(
            "SELECT room, MAX(created_at) AS last_at FROM messages GROUP BY room ORDER BY last_at DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RoomActivity {
                    room: row.try_get("room")?,
                    last_message_at: row.try_get("last_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::from)
    }
}

fn message_from_row(row: &AnyRow) -> Result<ChatMessage, sqlx::Error> {
    Ok(ChatMessage {
        id: row.try_get("id")?,
        room: row.try_get("room")?,
        user: User {
            id: UserId(row.try_get("user_id")?),
            username: row.try_get("username")?,
        },
        text: row.try_get("body")?,
        ts: row.try_get("created_at")?,
        instance_id: row.try_get("instance_id")?,
    })
}
