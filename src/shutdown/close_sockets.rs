//! The drain's socket steps: tell every local socket `server:draining`, close the transports
//! in batches so that clients reconnect elsewhere, and close the Socket.IO server.
//!
//! Why transports and not a Socket.IO `disconnect`: the official client does not reconnect
//! after a `disconnect`, and it does after its transport closes. How one transport is closed
//! (the WebSocket's kill switch, the long-polling close packet) is `realtime::broadcast`'s
//! business; the order and the timing are decided here.

use std::future::Future;
use std::time::Instant;

use rand::Rng;
use serde_json::{Value, json};

use super::plan::{Deadline, DrainPlan};
use crate::listener::SessionConnections;
use crate::realtime::broadcast::Broadcast;

/// Tells every local socket `server:draining {reconnect_after_ms}`, waits the plan's notice,
/// then closes the transports in batches spread over the plan's window. Returns the number of
/// sockets drained.
pub async fn tell_and_close(
    realtime: &dyn Broadcast,
    plan: DrainPlan,
    connections: &SessionConnections,
) -> usize {
    let sockets = realtime.local_socket_handles();
    let batch = plan.batch_size(sockets.len());
    let notice_ms = u64::try_from(plan.notice.as_millis()).unwrap_or(u64::MAX);
    let interval_ms = u64::try_from(plan.batch_interval.as_millis()).unwrap_or(u64::MAX);
    // When each socket's batch closes, plus jitter: clients that honour the hint come back
    // spread out instead of all at once.
    let notices: Vec<Value> = (0..sockets.len())
        .map(|i| {
            let offset = interval_ms * (i / batch) as u64;
            let jitter = rand::thread_rng().gen_range(0..500);
            json!({"reconnect_after_ms": notice_ms + offset + jitter})
        })
        .collect();
    for (socket, notice) in sockets.iter().zip(&notices) {
        if socket.notified_ahead() {
            socket.tell_draining(notice);
        }
    }
    tokio::time::sleep(plan.notice).await;
    let started = Instant::now();
    let total = sockets.len();
    let mut drained = 0;
    let mut batches = 0;
    for (n, (chunk, chunk_notices)) in sockets.chunks(batch).zip(notices.chunks(batch)).enumerate()
    {
        if n > 0 {
            tokio::time::sleep(plan.batch_interval).await;
        }
        for (socket, notice) in chunk.iter().zip(chunk_notices) {
            socket.close_transport(connections, notice);
        }
        drained += chunk.len();
        batches = n + 1;
        tracing::info!(
            batch = batches,
            sockets = chunk.len(),
            "drained {}/{}",
            thousands(drained),
            thousands(total)
        );
    }
    tracing::info!(
        sockets = total,
        batches,
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "drained {} sockets in {batches} batches",
        thousands(total)
    );
    // Give long-polling clients a moment to fetch their close packet before the server closes
    // whatever is left (a transport whose connection was not found).
    tokio::time::sleep(plan.batch_interval).await;
    total
}

/// How the socket steps went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketWork {
    /// Sockets drained (on time), or still connected when the budget ran out.
    pub sockets: usize,
    /// Whether the work fitted in its budget.
    pub on_time: bool,
}

/// Runs the socket steps (`work`, returning the sockets drained) within half the budget. Past
/// it, they are given up with a warning and the sockets still connected are counted; the
/// caller then closes the server anyway.
pub async fn within_socket_budget(
    plan: DrainPlan,
    realtime: &dyn Broadcast,
    work: impl Future<Output = usize>,
) -> SocketWork {
    match tokio::time::timeout(plan.socket_budget(), work).await {
        Ok(sockets) => SocketWork {
            sockets,
            on_time: true,
        },
        Err(_) => {
            tracing::warn!(
                "closing sockets took longer than half the shutdown timeout; closing the Socket.IO server"
            );
            SocketWork {
                sockets: realtime.local_sockets(),
                on_time: false,
            }
        }
    }
}

/// Closes the Socket.IO server, so that no socket and no emit outlives the drain; returns
/// whether it closed before `deadline`.
pub async fn close_server(realtime: &dyn Broadcast, deadline: Deadline) -> bool {
    let closed = tokio::time::timeout(deadline.remaining(), realtime.close())
        .await
        .is_ok();
    if !closed {
        tracing::warn!("the Socket.IO server did not close before the shutdown timeout");
    }
    closed
}

/// `1200` → `1,200`: progress lines are read by people.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use futures::future::BoxFuture;

    use crate::realtime::broadcast::BroadcastFailed;

    /// A server with `sockets` sockets that records whether it was closed.
    #[derive(Default)]
    struct FakeServer {
        sockets: usize,
        closed: AtomicBool,
    }

    impl Broadcast for FakeServer {
        fn emit_named(
            &self,
            _room: String,
            _event: String,
            _data: Value,
        ) -> BoxFuture<'static, Result<(), BroadcastFailed>> {
            Box::pin(async { Ok(()) })
        }
        fn disconnect_room(
            &self,
            _room: String,
        ) -> BoxFuture<'static, Result<(), BroadcastFailed>> {
            Box::pin(async { Ok(()) })
        }
        fn local_sockets(&self) -> usize {
            if self.closed.load(Ordering::SeqCst) {
                0
            } else {
                self.sockets
            }
        }
        fn local_sockets_of(&self, _namespace: &'static str) -> usize {
            0
        }
        fn emit_local(
            &self,
            _namespace: &'static str,
            _event: &'static str,
            _data: Value,
        ) -> BoxFuture<'static, ()> {
            Box::pin(async {})
        }
        fn close(&self) -> BoxFuture<'static, ()> {
            self.closed.store(true, Ordering::SeqCst);
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn socket_work_past_half_the_budget_is_given_up_and_the_server_still_closes() {
        let server = Arc::new(FakeServer {
            sockets: 3,
            ..FakeServer::default()
        });
        let plan = DrainPlan::new(Duration::from_millis(200));
        let deadline = Deadline::after(plan.timeout);
        // A flush that never ends (a database that stopped answering).
        let work = std::future::pending::<usize>();
        let outcome = within_socket_budget(plan, server.as_ref(), work).await;
        assert_eq!(
            outcome,
            SocketWork {
                sockets: 3,
                on_time: false
            }
        );
        assert!(close_server(server.as_ref(), deadline).await);
        assert!(
            server.closed.load(Ordering::SeqCst),
            "the timeout path must close the Socket.IO server"
        );
    }

    #[tokio::test]
    async fn socket_work_on_time_reports_what_it_drained() {
        let server = FakeServer::default();
        let plan = DrainPlan::new(Duration::from_secs(2));
        let outcome = within_socket_budget(plan, &server, async { 7 }).await;
        assert_eq!(
            outcome,
            SocketWork {
                sockets: 7,
                on_time: true
            }
        );
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (1_200, "1,200"),
            (5_000, "5,000"),
            (1_234_567, "1,234,567"),
        ] {
            assert_eq!(thousands(n), text);
        }
    }
}
