//! Durable data in SQLite or PostgreSQL through one `sqlx::AnyPool`.
//!
//! The same SQL runs on both engines: placeholders are `$1…`, ids come from the `counters`
//! table (no engine-specific auto-increment), timestamps are epoch milliseconds in `BIGINT`.
//! Migrations in `migrations/` are applied at start; readiness checks that all of them are.
//! Queries live in one module per aggregate: `users`, `messages`, `analytics`, and
//! `retention` (history purge and job runs).

pub mod analytics;
pub mod messages;
pub mod retention;
pub mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::breaker::{BreakerOpen, CircuitBreaker};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Failures of the storage layer; the HTTP and Socket.IO layers turn them into responses.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database did not answer or refused the query.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed at start.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A unique constraint was hit (for example a taken username).
    #[error("already exists")]
    Conflict,
    /// `DATABASE_URL` is not a SQLite or PostgreSQL URL, or its directory cannot be created.
    #[error("unsupported DATABASE_URL: {0}")]
    Url(String),
    /// The database breaker is open: the call was refused without trying.
    #[error(transparent)]
    CircuitOpen(#[from] BreakerOpen),
}

impl StorageError {
    fn from_write(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            _ => Self::Database(err),
        }
    }
}

/// Which engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded default; one file.
    Sqlite,
    /// Cluster deployments.
    Postgres,
}

/// The connection pool and the queries over it.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    breaker: CircuitBreaker,
}

/// What the readiness probe learns from the database.
#[derive(Debug, Clone, Copy)]
pub struct DatabaseHealth {
    /// Round-trip time of the check query.
    pub latency: Duration,
    /// Whether every migration shipped with the binary is recorded as applied.
    pub migrations_applied: bool,
}

impl Database {
    /// Opens the pool (creating a SQLite file and its directory if needed) and applies
    /// migrations. Calls made through `guarded` go through `breaker`.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        breaker: CircuitBreaker,
    ) -> Result<Self, StorageError> {
        sqlx::any::install_default_drivers();
        let (url, backend) = normalize_url(url)?;
        let options =
            AnyConnectOptions::from_str(&url).map_err(|e| StorageError::Url(e.to_string()))?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(3))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the single writer; busy_timeout makes
                        // concurrent writers wait instead of failing with SQLITE_BUSY.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            backend,
            breaker,
        })
    }

    /// The breaker in front of the database.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Runs `call` through the database circuit breaker. Only failures to reach the database
    /// count (timeouts, I/O, a closed pool), never an answer such as a constraint violation.
    pub(crate) async fn guarded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StorageError> {
        let unreachable = |err: &sqlx::Error| {
            matches!(
                err,
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::WorkerCrashed
            )
        };
        Ok(self.breaker.call(call, unreachable).await??)
    }

    /// The engine in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers and every migration is applied.
    pub async fn health(&self) -> Result<DatabaseHealth, StorageError> {
        let started = Instant::now();
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&self.pool)
            .await?;
        Ok(DatabaseHealth {
            latency: started.elapsed(),
            migrations_applied: usize::try_from(applied)
                .is_ok_and(|n| n >= MIGRATOR.iter().count()),
        })
    }

    /// Connections open and idle, for `/health`.
    pub fn pool_stats(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// Waits for checked-out connections to return, then closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// Turns `sqlite://./data/x.db` into a URL that creates the file, and makes sure its directory
/// exists, so that `cargo run` works on a fresh checkout.
fn normalize_url(url: &str) -> Result<(String, Backend), StorageError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((url.to_owned(), Backend::Postgres));
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err(StorageError::Url(
            "expected postgres://… or sqlite://…".to_owned(),
        ));
    };
    let path = rest.trim_start_matches("//");
    let (file, query) = path.split_once('?').unwrap_or((path, ""));
    if file.is_empty() || file == ":memory:" {
        return Err(StorageError::Url(
            "an in-memory SQLite database cannot be shared by a pool; use a file".to_owned(),
        ));
    }
    if let Some(dir) = Path::new(file)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::Url(format!("cannot create {}: {e}", dir.display())))?;
    }
    let query = if query.contains("mode=") {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok((format!("sqlite://{file}?{query}"), Backend::Sqlite))
}

/// Milliseconds since the Unix epoch: the unit of every stored timestamp.
pub fn now_millis() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Allocates the next id of `counter` inside the caller's transaction, so the id and the row
/// it names commit together (or not at all).
async fn next_id(conn: &mut sqlx::AnyConnection, counter: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("UPDATE counters SET value = value + 1 WHERE name = $1 RETURNING value")
        .bind(counter)
        .fetch_one(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_gain_create_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/sub/db.sqlite", dir.path().display());
        let (normalized, backend) = normalize_url(&url).expect("valid");
        assert_eq!(backend, Backend::Sqlite);
        assert!(normalized.ends_with("?mode=rwc"), "{normalized}");
        assert!(dir.path().join("sub").is_dir());
        assert!(normalize_url("mysql://x").is_err());
        assert!(normalize_url("sqlite::memory:").is_err());
    }
}
