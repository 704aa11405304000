//! Cluster singleton jobs: periodic work that must run on exactly one instance at a time.
//!
//! Every instance runs the same schedule; at each tick it tries to take the job's lock
//! (`lock::Locks`). The instance that gets it runs the job while a companion task renews the
//! lock every third of its TTL; the others skip the tick. If a renewal fails (the lock expired,
//! or Redis cannot be reached) the job is cancelled at its next await point, so two instances
//! never keep working side by side. A killed holder's lock expires after `JOB_LOCK_TTL_SECS`
//! and the next tick of another instance takes the job over. In embedded mode there is one
//! instance and no Redis: jobs run without a lock.
//!
//! Jobs:
//! - `history-retention` (`HISTORY_RETENTION_DAYS`): deletes old chat messages in batches;
//! - `presence-cleanup`: removes dead instances from the registry and withdraws their
//!   presence (see `registry`).

use std::future::Future;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::lock::{HeldLock, Locks};
use crate::metrics::JobLabels;
use crate::redis::RedisError;
use crate::shutdown::state::DrainState;
use crate::storage::StorageError;

/// Why a job run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Redis failed while confirming the lease.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The lock expired and may be held by another instance: stop at once.
    #[error("the job lock was lost")]
    LockLost,
}

/// The job's proof that it still holds its lock; `confirm` before every write.
#[derive(Debug, Clone)]
pub struct Lease(Option<HeldLock>);

impl Lease {
    /// Extends the lock and checks that it is still ours (always true in embedded mode).
    pub async fn confirm(&self) -> Result<(), JobError> {
        match &self.0 {
            None => Ok(()),
            Some(lock) if lock.renew().await? => Ok(()),
            Some(_) => Err(JobError::LockLost),
        }
    }
}

/// How one run of a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// The job did its work.
    Completed,
    /// The job failed; it is retried at the next tick.
    Failed,
    /// The lock was lost mid-run; the job was cancelled.
    LockLost,
    /// The drain began mid-run; the job was cancelled.
    Interrupted,
}

impl RunOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::LockLost => "lock_lost",
            Self::Interrupted => "interrupted",
        }
    }
}

/// Schedules singleton jobs of this instance.
#[derive(Debug, Clone)]
pub struct JobScheduler {
    locks: Option<Locks>,
    drain: DrainState,
    runs: Family<JobLabels, Counter>,
}

impl JobScheduler {
    /// A scheduler taking locks from `locks` (`None` in embedded mode: no lock needed).
    pub fn new(locks: Option<Locks>, drain: DrainState, runs: Family<JobLabels, Counter>) -> Self {
        Self { locks, drain, runs }
    }

    /// Runs `job` every `interval` (first tick at once) under the lock `name`, until the drain.
    pub async fn every<F, Fut, E>(&self, name: &'static str, interval: Duration, job: F)
    where
        F: Fn(Lease) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.drain.started() => return,
            }
            if let Some(outcome) = self.run_once(name, &job).await {
                self.runs
                    .get_or_create(&JobLabels {
                        job: name.to_owned(),
                        outcome: outcome.label().to_owned(),
                    })
                    .inc();
            }
        }
    }

    /// One run if the lock is free; `None` when another instance holds it.
    pub async fn run_once<F, Fut, E>(&self, name: &'static str, job: &F) -> Option<RunOutcome>
    where
        F: Fn(Lease) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let Some(locks) = &self.locks else {
            return Some(
                self.guarded(name, job(Lease(None)), std::future::pending())
                    .await,
            );
        };
        let lock = match locks.try_acquire(name).await {
            Ok(Some(lock)) => lock,
            Ok(None) => return None,
            Err(err) => {
                tracing::warn!(job = name, error = %err, "could not try the job lock");
                return None;
            }
        };
        let renew = async {
            loop {
                tokio::time::sleep(lock.renew_every()).await;
                match lock.renew().await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job = name, "job lock expired before its renewal");
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(job = name, error = %err, "job lock renewal failed");
                        return;
                    }
                }
            }
        };
        let outcome = self
            .guarded(name, job(Lease(Some(lock.clone()))), renew)
            .await;
        if let Err(err) = lock.release().await {
            // It expires by itself within the TTL.
            tracing::warn!(job = name, error = %err, "could not release the job lock");
        }
        Some(outcome)
    }

    /// Runs `job` until it ends, `lost` resolves (lock lost) or the drain begins.
    async fn guarded<E: std::fmt::Display>(
        &self,
        name: &'static str,
        job: impl Future<Output = Result<(), E>>,
        lost: impl Future<Output = ()>,
    ) -> RunOutcome {
        let outcome = tokio::select! {
            result = job => match result {
                Ok(()) => RunOutcome::Completed,
                Err(err) => {
                    tracing::warn!(job = name, error = %err, "cluster job failed");
                    RunOutcome::Failed
                }
            },
            () = lost => RunOutcome::LockLost,
            () = self.drain.started() => RunOutcome::Interrupted,
        };
        tracing::debug!(job = name, outcome = outcome.label(), "cluster job run");
        outcome
    }
}

/// Settings of the history retention job.
#[derive(Debug, Clone, Copy)]
pub struct RetentionSettings {
    /// Messages older than this many days are deleted.
    pub days: u32,
    /// Messages deleted per statement.
    pub batch_size: u32,
    /// Pause between statements.
    pub pause: Duration,
}

/// The `history-retention` job: deletes messages older than the retention period in batches,
/// recording the run and its progress in `job_runs`. Cancelling it between batches is safe:
/// each batch is one statement, and the next run continues where this one stopped.
pub async fn purge_history(
    db: &crate::storage::Database,
    instance: &str,
    settings: RetentionSettings,
    lease: Lease,
) -> Result<(), JobError> {
    let cutoff = crate::storage::now_millis() - i64::from(settings.days) * 86_400_000;
    let run = db.start_job_run(HISTORY_RETENTION, instance).await?;
    let mut deleted = 0;
    loop {
        lease.confirm().await?;
        let batch = db
            .delete_messages_before(cutoff, settings.batch_size)
            .await?;
        deleted += batch;
        db.job_progress(&run, deleted).await?;
        if batch < u64::from(settings.batch_size) {
            break;
        }
        tokio::time::sleep(settings.pause).await;
    }
    lease.confirm().await?;
    db.finish_job_run(&run, deleted, "completed").await?;
    if deleted > 0 {
        tracing::info!(deleted, days = settings.days, "deleted old chat history");
    }
    Ok(())
}

/// Name (and lock name) of the history retention job.
pub const HISTORY_RETENTION: &str = "history-retention";
/// Name (and lock name) of the stale-presence cleanup job.
pub const PRESENCE_CLEANUP: &str = "presence-cleanup";
