//! Room messages: append, history pages, recovery ranges, and the room list.
//!
//! Every message carries two numbers: `id`, cluster-wide, and `seq`, its place in its room
//! (1, 2, 3, … without holes). Both are allocated in the message's own transaction, so a
//! committed room is always a gap-free prefix `1..=n` of seqs: a client that saw seq `k`
//! missed exactly `k+1..=n`, which is what connection state recovery replays.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Backend, Database, StorageError, next_id, now_millis};
use crate::domain::{MessageText, RoomName, UserId};
use crate::storage::users::User;

/// A persisted message, exactly as broadcast to the room and returned by history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// Cluster-wide increasing id; within a room, id order is delivery order.
    pub id: i64,
    /// Place in its room: 1, 2, 3, … without holes; what recovery resumes from.
    pub seq: i64,
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
    /// Stores a message and returns it with its id and timestamp. The id and the room's seq
    /// are allocated in the message's own transaction, so no id or seq is ever visible
    /// without its message.
    ///
    /// Every message of the cluster takes the `counters` row's lock until it commits, so the
    /// time that lock is held bounds the cluster's message rate. On PostgreSQL the whole
    /// append is therefore one statement (one round trip, committed as it ends), whose seq
    /// step reads the id step so that every append locks the two rows in the same order;
    /// SQLite has a single writer anyway and runs the same steps as a transaction.
    pub async fn append_message(
        &self,
        room: &RoomName,
        author: &User,
        text: &MessageText,
        instance_id: &str,
    ) -> Result<ChatMessage, StorageError> {
        let ts = now_millis();
        let (id, seq) = match self.backend {
            Backend::Postgres => {
                let row = sqlx::query(
                    "WITH next_id AS ( \
                       UPDATE counters SET value = value + 1 WHERE name = 'messages' \
                       RETURNING value \
                     ), next_seq AS ( \
                       INSERT INTO room_sequences (room, value) SELECT $1::TEXT, 1 FROM next_id \
                       ON CONFLICT (room) DO UPDATE SET value = room_sequences.value + 1 \
                       RETURNING value \
                     ) \
                     INSERT INTO messages \
                       (id, room, user_id, username, body, instance_id, created_at, seq) \
                     SELECT next_id.value, $1::TEXT, $2::BIGINT, $3::TEXT, $4::TEXT, $5::TEXT, \
                       $6::BIGINT, next_seq.value \
                     FROM next_id, next_seq \
                     RETURNING id, seq",
                )
                .bind(room.as_str())
                .bind(author.id.0)
                .bind(&author.username)
                .bind(text.as_str())
                .bind(instance_id)
                .bind(ts)
                .fetch_one(self.pool())
                .await?;
                (row.try_get("id")?, row.try_get("seq")?)
            }
            Backend::Sqlite => {
                let mut tx = self.pool().begin().await?;
                let id = next_id(&mut tx, "messages").await?;
                let seq = next_room_seq(&mut tx, room).await?;
                sqlx::query(
                    "INSERT INTO messages \
                       (id, room, user_id, username, body, instance_id, created_at, seq) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(id)
                .bind(room.as_str())
                .bind(author.id.0)
                .bind(&author.username)
                .bind(text.as_str())
                .bind(instance_id)
                .bind(ts)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                (id, seq)
            }
        };
        Ok(ChatMessage {
            id,
            seq,
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
            "SELECT id, seq, room, user_id, username, body, instance_id, created_at FROM messages \
             WHERE room = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(room.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        messages_from_rows(&rows)
    }

    /// Up to `limit` messages of `room` with a seq above `after`, oldest first: what a client
    /// that last saw `after` missed.
    pub async fn messages_after_seq(
        &self,
        room: &RoomName,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ChatMessage>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, seq, room, user_id, username, body, instance_id, created_at FROM messages \
             WHERE room = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3",
        )
        .bind(room.as_str())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        messages_from_rows(&rows)
    }

    /// The seq of the newest committed message of `room` (0 when it has none).
    pub async fn latest_seq(&self, room: &RoomName) -> Result<i64, StorageError> {
        let value: Option<i64> =
            sqlx::query_scalar("SELECT value FROM room_sequences WHERE room = $1")
                .bind(room.as_str())
                .fetch_optional(self.pool())
                .await?;
        Ok(value.unwrap_or(0))
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

fn messages_from_rows(rows: &[AnyRow]) -> Result<Vec<ChatMessage>, StorageError> {
    rows.iter()
        .map(message_from_row)
        .collect::<Result<_, _>>()
        .map_err(StorageError::from)
}

fn message_from_row(row: &AnyRow) -> Result<ChatMessage, sqlx::Error> {
    Ok(ChatMessage {
        id: row.try_get("id")?,
        seq: row.try_get("seq")?,
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

/// Allocates the next seq of `room` inside the caller's transaction. The room's row stays
/// locked until the transaction ends, so concurrent writers on any instance take turns and
/// seqs commit in order, without holes.
async fn next_room_seq(
    conn: &mut sqlx::AnyConnection,
    room: &RoomName,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO room_sequences (room, value) VALUES ($1, 1) \
         ON CONFLICT (room) DO UPDATE SET value = room_sequences.value + 1 RETURNING value",
    )
    .bind(room.as_str())
    .fetch_one(conn)
    .await
}
