//! The owner of every background task: nothing the server starts runs detached.
//!
//! A task is spawned through `Tasks` with a name; the drain's "stop background tasks" step
//! cancels the shared token and joins them all, up to the deadline, naming any task still
//! running then. Tasks that must stop at a given moment watch `cancelled()` (or are spawned
//! with `spawn_until_cancelled`, which drops them at their next await once the token fires);
//! tasks that stop by themselves at the drain's start (jobs releasing their locks, the
//! analytics consumer storing its batch) are only joined.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::plan::Deadline;

/// Handle to the owner of background tasks; clones share the tasks and the token.
#[derive(Debug, Clone)]
pub struct Tasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
    names: Arc<Names>,
}

/// Names of the running tasks, by spawn number, for the warning at the deadline.
#[derive(Debug, Default)]
struct Names {
    next: AtomicU64,
    running: Mutex<BTreeMap<u64, &'static str>>,
}

impl Names {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, &'static str>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a task's name when its future ends or is dropped.
struct Running {
    names: Arc<Names>,
    id: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.names.lock().remove(&self.id);
    }
}

impl Default for Tasks {
    fn default() -> Self {
        Self {
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
            names: Arc::default(),
        }
    }
}

impl Tasks {
    /// Spawns `future` as the task `name`, in a span carrying that name. The task is joined by
    /// `close`; one that runs until the drain must watch `cancelled()`.
    pub fn spawn<F>(&self, name: &'static str, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let id = self.names.next.fetch_add(1, Ordering::Relaxed);
        self.names.lock().insert(id, name);
        let running = Running {
            names: self.names.clone(),
            id,
        };
        self.tracker.spawn(
            async move {
                let _running = running;
                future.await
            }
            .instrument(tracing::info_span!("task", task = name)),
        )
    }

    /// Spawns `future` as the task `name`, dropped at its next await once the token is
    /// cancelled: for loops with nothing to finish (pumps, sweeps, timers).
    pub fn spawn_until_cancelled<F>(&self, name: &'static str, future: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancelled = self.cancelled();
        self.spawn(name, async move {
            tokio::select! {
                () = future => {}
                () = cancelled => {}
            }
        })
    }

    /// Resolves once the drain stops background tasks (at once if it already has).
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + 'static {
        self.cancel.clone().cancelled_owned()
    }

    /// Whether the drain has stopped background tasks.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// A token cancelled together with the tasks, for code that takes a `CancellationToken`.
    pub fn token(&self) -> CancellationToken {
        self.cancel.child_token()
    }

    /// Tasks not yet finished; 0 after a complete drain.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Names of the tasks not yet finished, in spawn order.
    pub fn running_names(&self) -> Vec<&'static str> {
        self.names.lock().values().copied().collect()
    }

    /// Cancels the token and waits until every task has finished or `deadline` passes;
    /// returns the names of the tasks still running then (empty when all were joined), after
    /// logging them.
    pub async fn close(&self, deadline: Deadline) -> Vec<&'static str> {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(deadline.remaining(), self.tracker.wait())
            .await
            .is_ok()
        {
            return Vec::new();
        }
        let left = self.running_names();
        tracing::warn!(
            tasks = ?left,
            "background tasks still running at the shutdown timeout are abandoned"
        );
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn close_cancels_and_joins_every_task() {
        let tasks = Tasks::default();
        let (finished_tx, mut finished) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..3 {
            let cancelled = tasks.cancelled();
            let finished_tx = finished_tx.clone();
            tasks.spawn("waits_for_the_token", async move {
                cancelled.await;
                let _ = finished_tx.send(());
            });
        }
        tasks.spawn_until_cancelled("loops_forever", std::future::pending());
        assert_eq!(tasks.running(), 4);
        assert_eq!(
            tasks.running_names(),
            [
                "waits_for_the_token",
                "waits_for_the_token",
                "waits_for_the_token",
                "loops_forever"
            ]
        );
        let left = tasks.close(Deadline::after(Duration::from_secs(5))).await;
        assert!(left.is_empty(), "expected every task joined, got {left:?}");
        assert_eq!(tasks.running(), 0, "no task may outlive close");
        assert!(tasks.running_names().is_empty());
        drop(finished_tx);
        let mut count = 0;
        while finished.recv().await.is_some() {
            count += 1;
        }
        assert_eq!(count, 3, "each task ran to its end after the cancellation");
    }

    #[tokio::test]
    async fn close_returns_at_the_deadline_naming_what_still_runs() {
        let tasks = Tasks::default();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        // Ignores the token: only its own signal ends it.
        tasks.spawn("stuck", async move {
            let _ = released.await;
        });
        tasks.spawn_until_cancelled("polite", std::future::pending());
        let started = std::time::Instant::now();
        let left = tasks
            .close(Deadline::after(Duration::from_millis(100)))
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "close must return at its deadline"
        );
        assert_eq!(left, ["stuck"], "the warning names the task still running");
        assert_eq!(tasks.running(), 1);
        let _ = release.send(());
        tokio::time::timeout(Duration::from_secs(5), tasks.tracker.wait())
            .await
            .expect("the stuck task ends once released");
        assert_eq!(tasks.running(), 0);
    }
}
