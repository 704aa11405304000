//! Per-socket ordering of event handlers.
//!
//! socketioxide runs every event handler as its own task, so two `message` events from one
//! socket may be processed in either order. The SPEC promises that messages from one socket
//! are broadcast in the order they were sent. A `Turn` is taken synchronously while the event
//! is extracted (which socketioxide does in arrival order, before spawning) and chained to the
//! previous turn of the same socket: a handler waits for its predecessor to finish or be
//! dropped, then runs. Dropping a turn at any point (error, panic, early return) releases the
//! next one, so a failed event can never wedge the socket.

use std::sync::Mutex;

use tokio::sync::oneshot;

/// The per-socket end of the chain.
#[derive(Debug)]
pub struct TurnQueue {
    last: Mutex<Option<oneshot::Receiver<()>>>,
}

impl Default for TurnQueue {
    fn default() -> Self {
        Self {
            last: Mutex::new(None),
        }
    }
}

impl TurnQueue {
    /// Takes the next turn; call in arrival order.
    pub fn take(&self) -> Turn {
        let (done, next) = oneshot::channel();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let previous = last.replace(next);
        Turn {
            previous,
            _done: done,
        }
    }
}

/// A place in a socket's queue; dropping it lets the next turn run.
#[derive(Debug)]
pub struct Turn {
    previous: Option<oneshot::Receiver<()>>,
    _done: oneshot::Sender<()>,
}

impl Turn {
    /// Waits until every earlier turn of the socket has finished.
    pub async fn wait(&mut self) {
        if let Some(previous) = self.previous.take() {
            // Err means the predecessor was dropped, which is exactly "finished".
            let _ = previous.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn turns_run_in_the_order_they_were_taken() {
        let queue = TurnQueue::default();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..20u64 {
            let mut turn = queue.take();
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                // Later turns sleep less, so without the queue they would overtake.
                tokio::time::sleep(Duration::from_millis(20 - i)).await;
                turn.wait().await;
                log.lock().expect("lock").push(i);
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(*log.lock().expect("lock"), (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_dropped_turn_releases_the_next() {
        let queue = TurnQueue::default();
        let first = queue.take();
        let mut second = queue.take();
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), second.wait())
            .await
            .expect("second turn must not wait for a dropped first turn");
    }
}
