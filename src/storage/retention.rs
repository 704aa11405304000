//! Message-history retention and the record of cluster job runs.
//!
//! Old messages are deleted in small batches (`DELETE … WHERE id IN (SELECT … LIMIT n)`, which
//! both engines accept) so that a large purge never holds a long lock or a huge transaction;
//! each batch is its own statement, so a job cancelled between batches leaves a consistent
//! table and the next run simply continues.

use super::{Database, StorageError, now_millis};

/// A run of a job, as recorded in `job_runs`.
#[derive(Debug, Clone)]
pub struct JobRun {
    id: String,
}

impl Database {
    /// Deletes up to `limit` messages created before `cutoff` (epoch ms); returns how many.
    pub async fn delete_messages_before(
        &self,
        cutoff: i64,
        limit: u32,
    ) -> Result<u64, StorageError> {
        let result = self
            .guarded(
                sqlx::query(
                    "DELETE FROM messages WHERE id IN \
                     (SELECT id FROM messages WHERE created_at < $1 ORDER BY id LIMIT $2)",
                )
                .bind(cutoff)
                .bind(i64::from(limit))
                .execute(self.pool()),
            )
            .await?;
        Ok(result.rows_affected())
    }

    /// Records that `instance` started `job`.
    pub async fn start_job_run(&self, job: &str, instance: &str) -> Result<JobRun, StorageError> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_millis();
        sqlx::query(
            "INSERT INTO job_runs (id, job, instance_id, started_at, updated_at, affected) \
             VALUES ($1, $2, $3, $4, $5, 0)",
        )
        .bind(&id)
        .bind(job)
        .bind(instance)
        .bind(now)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(JobRun { id })
    }

    /// Records a run's progress (rows affected so far).
    pub async fn job_progress(&self, run: &JobRun, affected: u64) -> Result<(), StorageError> {
        sqlx::query("UPDATE job_runs SET updated_at = $1, affected = $2 WHERE id = $3")
            .bind(now_millis())
            .bind(i64::try_from(affected).unwrap_or(i64::MAX))
            .bind(&run.id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records the end of a run.
    pub async fn finish_job_run(
        &self,
        run: &JobRun,
        affected: u64,
        outcome: &str,
    ) -> Result<(), StorageError> {
        let now = now_millis();
        sqlx::query(
            "UPDATE job_runs SET updated_at = $1, finished_at = $2, affected = $3, outcome = $4 \
             WHERE id = $5",
        )
        .bind(now)
        .bind(now)
        .bind(i64::try_from(affected).unwrap_or(i64::MAX))
        .bind(outcome)
        .bind(&run.id)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
