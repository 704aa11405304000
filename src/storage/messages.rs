//! Room messages: append, history pages, recovery ranges, and the room list.
//!
//! Every message carries two numbers: `id`, cluster-wide, and `seq`, its place in its room
//! (1, 2, 3, … without holes). Both are allocated in the message's own transaction, so a
//! committed room is always a gap-free prefix `1..=n` of seqs: a client that saw seq `k`
//! missed exactly `k+1..=n`, which is what connection state recovery replays.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Backend, Database, StorageError, now_millis};
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

/// A message about to be stored: what its sender gave, already validated.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The author.
    pub author: User,
    /// The text.
    pub text: MessageText,
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
    /// Stores `batch`, in order, as the next messages of `room`, all or none, and returns them
    /// with their ids, seqs and timestamp. The batch takes a run of consecutive ids and the
    /// next gap-free run of the room's seqs, allocated in the same transaction as the rows,
    /// so no id or seq is ever visible without its message.
    ///
    /// Every append of the cluster takes the `counters` row's lock until it commits, so the
    /// time that lock is held bounds the cluster's append rate; a batch pays it once for all
    /// its messages. On PostgreSQL the whole append is one statement (one round trip,
    /// committed as it ends), whose seq step reads the id step so that every append locks the
    /// two rows in the same order (counters, then the room's sequence). SQLite has a single
    /// writer anyway and runs the same steps as one transaction.
    pub async fn append_messages(
        &self,
        room: &RoomName,
        batch: &[NewMessage],
        instance_id: &str,
    ) -> Result<Vec<ChatMessage>, StorageError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let count = i64::try_from(batch.len()).unwrap_or(i64::MAX);
        let ts = now_millis();
        let (last_id, last_seq) = match self.backend {
            Backend::Postgres => {
                self.guarded(append_postgres(self.pool(), room, batch, instance_id, ts))
                    .await?
            }
            Backend::Sqlite => {
                self.guarded(append_sqlite(self.pool(), room, batch, instance_id, ts))
                    .await?
            }
        };
        let first_id = last_id - count + 1;
        let first_seq = last_seq - count + 1;
        Ok(batch
            .iter()
            .zip(0..)
            .map(|(message, offset)| ChatMessage {
                id: first_id + offset,
                seq: first_seq + offset,
                room: room.as_str().to_owned(),
                user: message.author.clone(),
                text: message.text.as_str().to_owned(),
                ts,
                instance_id: instance_id.to_owned(),
            })
            .collect())
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

/// `($k, $k+1, …), (…)`: `rows` groups of `width` numbered placeholders from `$first` on,
/// each group wrapped by `row` (which receives the group's placeholders in order).
fn placeholders(
    rows: usize,
    width: usize,
    first: usize,
    row: impl Fn(&[String]) -> String,
) -> String {
    (0..rows)
        .map(|r| {
            let names: Vec<String> = (0..width)
                .map(|c| format!("${}", first + r * width + c))
                .collect();
            row(&names)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The PostgreSQL append: one statement that takes `n` ids, then `n` seqs of the room, then
/// inserts the rows numbered by their place in the batch. Returns the last id and seq.
async fn append_postgres(
    pool: &sqlx::AnyPool,
    room: &RoomName,
    batch: &[NewMessage],
    instance_id: &str,
    ts: i64,
) -> Result<(i64, i64), sqlx::Error> {
    let count = i64::try_from(batch.len()).unwrap_or(i64::MAX);
    // $1 room, $2 count, $3 instance, $4 ts; then (ord, user_id, username, body) per message.
    let values = placeholders(batch.len(), 4, 5, |p| {
        format!(
            "({}::BIGINT, {}::BIGINT, {}::TEXT, {}::TEXT)",
            p[0], p[1], p[2], p[3]
        )
    });
    let sql = format!(
        "WITH next_id AS ( \
           UPDATE counters SET value = value + $2::BIGINT WHERE name = 'messages' \
           RETURNING value \
         ), next_seq AS ( \
           INSERT INTO room_sequences (room, value) SELECT $1::TEXT, $2::BIGINT FROM next_id \
           ON CONFLICT (room) DO UPDATE SET value = room_sequences.value + $2::BIGINT \
           RETURNING value \
         ), batch (ord, user_id, username, body) AS (VALUES {values}), \
         inserted AS ( \
           INSERT INTO messages \
             (id, room, user_id, username, body, instance_id, created_at, seq) \
           SELECT next_id.value - $2::BIGINT + batch.ord, $1::TEXT, batch.user_id, \
             batch.username, batch.body, $3::TEXT, $4::BIGINT, \
             next_seq.value - $2::BIGINT + batch.ord \
           FROM next_id, next_seq, batch \
           RETURNING id, seq \
         ) \
         SELECT MAX(id) AS id, MAX(seq) AS seq, COUNT(*) AS stored FROM inserted"
    );
    let mut query = sqlx::query(&sql)
        .bind(room.as_str())
        .bind(count)
        .bind(instance_id)
        .bind(ts);
    for (message, ord) in batch.iter().zip(1_i64..) {
        query = query
            .bind(ord)
            .bind(message.author.id.0)
            .bind(message.author.username.as_str())
            .bind(message.text.as_str());
    }
    let row = query.fetch_one(pool).await?;
    let rows: i64 = row.try_get("stored")?;
    if rows != count {
        return Err(sqlx::Error::Protocol(format!(
            "the append stored {rows} of {count} messages"
        )));
    }
    Ok((row.try_get("id")?, row.try_get("seq")?))
}

/// The SQLite append: one transaction that takes `n` ids and `n` seqs of the room, then
/// inserts the rows in one statement. Returns the last id and seq.
async fn append_sqlite(
    pool: &sqlx::AnyPool,
    room: &RoomName,
    batch: &[NewMessage],
    instance_id: &str,
    ts: i64,
) -> Result<(i64, i64), sqlx::Error> {
    let count = i64::try_from(batch.len()).unwrap_or(i64::MAX);
    let mut tx = pool.begin().await?;
    let last_id: i64 = sqlx::query_scalar(
        "UPDATE counters SET value = value + $1 WHERE name = 'messages' RETURNING value",
    )
    .bind(count)
    .fetch_one(&mut *tx)
    .await?;
    let last_seq: i64 = sqlx::query_scalar(
        "INSERT INTO room_sequences (room, value) VALUES ($1, $2) \
         ON CONFLICT (room) DO UPDATE SET value = room_sequences.value + $2 RETURNING value",
    )
    .bind(room.as_str())
    .bind(count)
    .fetch_one(&mut *tx)
    .await?;
    // $1 room, $2 instance, $3 ts; then (id, seq, user_id, username, body) per message.
    let values = placeholders(batch.len(), 5, 4, |p| {
        format!(
            "({}, $1, {}, {}, {}, $2, $3, {})",
            p[0], p[2], p[3], p[4], p[1]
        )
    });
    let sql = format!(
        "INSERT INTO messages (id, room, user_id, username, body, instance_id, created_at, seq) \
         VALUES {values}"
    );
    let mut query = sqlx::query(&sql)
        .bind(room.as_str())
        .bind(instance_id)
        .bind(ts);
    for (message, offset) in batch.iter().zip(0_i64..) {
        query = query
            .bind(last_id - count + 1 + offset)
            .bind(last_seq - count + 1 + offset)
            .bind(message.author.id.0)
            .bind(message.author.username.as_str())
            .bind(message.text.as_str());
    }
    query.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok((last_id, last_seq))
}
