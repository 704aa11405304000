//! Accounts: creation, lookup for login, and the per-user analytics opt-out flag.

use serde::Serialize;
use sqlx::Row;

use super::{Database, StorageError, next_id, now_millis};
use crate::domain::{UserId, Username};

/// The public view of a user, as sent to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct User {
    /// Stable numeric id.
    pub id: UserId,
    /// Username as typed at registration.
    pub username: String,
}

/// A user together with the stored password hash, for login only.
#[derive(Debug)]
pub struct Credentials {
    /// The account.
    pub user: User,
    /// PHC-formatted argon2id hash.
    pub password_hash: String,
}

impl Database {
    /// Creates an account; `StorageError::Conflict` when the username (case-insensitively) exists.
    pub async fn create_user(
        &self,
        username: &Username,
        password_hash: &str,
    ) -> Result<User, StorageError> {
        let mut tx = self.guarded(self.pool().begin()).await?;
        let id = next_id(&mut tx, "users").await?;
        sqlx::query(
            "INSERT INTO users (id, username, username_key, password_hash, analytics_opted_out, created_at) \
             VALUES ($1, $2, $3, $4, 0, $5)",
        )
        .bind(id)
        .bind(username.as_str())
        .bind(username.key())
        .bind(password_hash)
        .bind(now_millis())
        .execute(&mut *tx)
        .await
        .map_err(StorageError::from_write)?;
        tx.commit().await?;
        Ok(User {
            id: UserId(id),
            username: username.as_str().to_owned(),
        })
    }

    /// Finds an account by username, case-insensitively.
    pub async fn find_credentials(
        &self,
        username: &Username,
    ) -> Result<Option<Credentials>, StorageError> {
        let row = self
            .guarded(
                sqlx::query(
                    "SELECT id, username, password_hash FROM users WHERE username_key = $1",
                )
                .bind(username.key())
                .fetch_optional(self.pool()),
            )
            .await?;
        row.map(|row| -> Result<_, sqlx::Error> {
            Ok(Credentials {
                user: User {
                    id: UserId(row.try_get("id")?),
                    username: row.try_get("username")?,
                },
                password_hash: row.try_get("password_hash")?,
            })
        })
        .transpose()
        .map_err(StorageError::from)
    }

    /// Whether the user opted out of analytics (false for unknown users).
    pub async fn user_opted_out(&self, user: UserId) -> Result<bool, StorageError> {
        let flag: Option<i64> = self
            .guarded(
                sqlx::query_scalar("SELECT analytics_opted_out FROM users WHERE id = $1")
                    .bind(user.0)
                    .fetch_optional(self.pool()),
            )
            .await?;
        Ok(flag.unwrap_or(0) != 0)
    }

    /// Records the user's analytics choice; it follows them to every device.
    pub async fn set_user_opted_out(
        &self,
        user: UserId,
        opted_out: bool,
    ) -> Result<(), StorageError> {
        self.guarded(
            sqlx::query("UPDATE users SET analytics_opted_out = $1 WHERE id = $2")
                .bind(i64::from(opted_out))
                .bind(user.0)
                .execute(self.pool()),
        )
        .await?;
        Ok(())
    }
}
