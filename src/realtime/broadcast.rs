//! A handle for sending to rooms from outside Socket.IO handlers (HTTP admin emits, logout,
//! presence timers, the drain).
//!
//! The adapter is a type parameter of `SocketIo<A>`; this trait erases it so that the HTTP
//! layer and background tasks do not become generic over the adapter too. The one
//! implementation wraps `SocketIo<A>`, so every call goes through the adapter and reaches
//! sockets on every instance.

use std::sync::Arc;

use axum::extract::ConnectInfo;
use socketioxide::TransportType;
use socketioxide::extract::SocketRef;

use crate::listener::{Connection, SessionConnections};
use crate::shutdown::DrainPlan;

use rand::Rng;
use serde_json::json;

use futures::future::BoxFuture;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::operators::BroadcastOperators;

/// A broadcast did not reach the adapter (for example Redis is down).
#[derive(Debug, thiserror::Error)]
#[error("broadcast failed: {0}")]
pub struct BroadcastFailed(pub String);

/// Room operations that cross instances.
pub trait Broadcast: Send + Sync + 'static {
    /// Emits `event` with `data` to every socket in `room`, on every instance.
    fn emit(
        &self,
        room: String,
        event: &'static str,
        data: Value,
    ) -> BoxFuture<'static, Result<(), BroadcastFailed>> {
        self.emit_named(room, event.to_owned(), data)
    }
    /// Emits an event whose name is only known at run time (admin emits).
    fn emit_named(
        &self,
        room: String,
        event: String,
        data: Value,
    ) -> BoxFuture<'static, Result<(), BroadcastFailed>>;
    /// Disconnects every socket in `room`, on every instance.
    fn disconnect_room(&self, room: String) -> BoxFuture<'static, Result<(), BroadcastFailed>>;
    /// Sockets connected to this instance.
    fn local_sockets(&self) -> usize;
    /// Sockets of `namespace` connected to this instance (0 for a namespace that does not
    /// exist).
    fn local_sockets_of(&self, namespace: &'static str) -> usize;
    /// Emits `event` to the sockets of `namespace` on this instance only (the operator view:
    /// every instance serves its own operators).
    fn emit_local(
        &self,
        namespace: &'static str,
        event: &'static str,
        data: Value,
    ) -> BoxFuture<'static, ()>;
    /// Drain step: tells every local socket `server:draining`, waits the plan's notice, then
    /// closes the local transports in batches (see `shutdown`), runs `flush` (pending writes
    /// that still broadcast, such as queued messages) and finally closes the server.
    /// Returns the number of sockets drained.
    fn drain_local(
        &self,
        plan: DrainPlan,
        connections: Arc<SessionConnections>,
        flush: BoxFuture<'static, ()>,
    ) -> BoxFuture<'static, usize>;
}

/// Whether the drain tells this socket ahead of closing it. WebSocket clients get the notice
/// first; a long-polling client gets it together with its close (see `close_transport`).
fn notified_ahead<A: Adapter>(socket: &SocketRef<A>) -> bool {
    socket.transport_type() == TransportType::Websocket
}

/// Closes the transport of one socket so that its client reconnects by itself.
///
/// - WebSocket: the upgraded connection is the client's alone (also through a proxy), so it
///   is cut with its kill switch.
/// - Long-polling: connections may be shared with other clients (proxies pool their upstream
///   connections), so none is cut. The session is marked as closing and gets its
///   `server:draining` notice now, which answers its pending poll; its next poll is answered
///   with the Engine.IO close packet by `http::middleware::track_engine_sessions`.
fn close_transport<A: Adapter>(
    socket: &SocketRef<A>,
    connections: &SessionConnections,
    notice: &Value,
) {
    let sid = socket.id.to_string();
    if notified_ahead(socket) {
        let upgraded_here = socket
            .req_parts()
            .uri
            .query()
            .is_some_and(|q| q.contains("transport=websocket"));
        if upgraded_here {
            if let Some(ConnectInfo(connection)) = socket
                .req_parts()
                .extensions
                .get::<ConnectInfo<Connection>>()
            {
                connection.kill.trip();
            }
        }
        connections.close(&sid);
    } else {
        connections.mark_closing(&sid);
        if let Err(err) = socket.emit("server:draining", notice) {
            tracing::debug!(sid = %socket.id, error = %err, "drain notice not delivered");
        }
    }
}

/// Shared, type-erased realtime handle.
pub type Realtime = Arc<dyn Broadcast>;

/// Operators for `room` in the `/` namespace, or an error once the server has been closed by
/// a drain (`SocketIo::to` would panic then, and a coalesced presence event or a late
/// message can still be on its way).
pub fn in_room<A: Adapter>(
    io: &SocketIo<A>,
    room: String,
) -> Result<BroadcastOperators<A>, BroadcastFailed> {
    io.of("/")
        .map(|ns| ns.to(room))
        .ok_or_else(|| BroadcastFailed("the Socket.IO server is closed".to_owned()))
}

/// The `Broadcast` implementation over a Socket.IO server with adapter `A`.
pub struct SocketIoBroadcast<A: Adapter>(pub SocketIo<A>);

impl<A: Adapter> Broadcast for SocketIoBroadcast<A> {
    fn emit_named(
        &self,
        room: String,
        event: String,
        data: Value,
    ) -> BoxFuture<'static, Result<(), BroadcastFailed>> {
        let io = self.0.clone();
        Box::pin(async move {
            in_room(&io, room)?
                .emit(event, &data)
                .await
                .map_err(|e| BroadcastFailed(e.to_string()))
        })
    }

    fn disconnect_room(&self, room: String) -> BoxFuture<'static, Result<(), BroadcastFailed>> {
        let io = self.0.clone();
        Box::pin(async move {
            in_room(&io, room)?
                .disconnect()
                .await
                .map_err(|e| BroadcastFailed(e.to_string()))
        })
    }

    fn local_sockets(&self) -> usize {
        self.0.sockets().len()
    }

    fn local_sockets_of(&self, namespace: &'static str) -> usize {
        self.0.of(namespace).map_or(0, |ns| ns.sockets().len())
    }

    fn emit_local(
        &self,
        namespace: &'static str,
        event: &'static str,
        data: Value,
    ) -> BoxFuture<'static, ()> {
        let io = self.0.clone();
        Box::pin(async move {
            let Some(ns) = io.of(namespace) else {
                return;
            };
            if let Err(err) = ns.local().emit(event, &data).await {
                tracing::debug!(namespace, error = %err, "local emit failed");
            }
        })
    }

    fn drain_local(
        &self,
        plan: DrainPlan,
        connections: Arc<SessionConnections>,
        flush: BoxFuture<'static, ()>,
    ) -> BoxFuture<'static, usize> {
        let io = self.0.clone();
        Box::pin(async move {
            let sockets = io.sockets();
            let batch = plan.batch_size(sockets.len());
            let notice_ms = u64::try_from(plan.notice.as_millis()).unwrap_or(u64::MAX);
            let interval_ms = u64::try_from(plan.batch_interval.as_millis()).unwrap_or(u64::MAX);
            // When each socket's batch closes, plus jitter: clients that honour the hint come
            // back spread out instead of all at once.
            let notices: Vec<Value> = (0..sockets.len())
                .map(|i| {
                    let offset = interval_ms * (i / batch) as u64;
                    let jitter = rand::thread_rng().gen_range(0..500);
                    json!({"reconnect_after_ms": notice_ms + offset + jitter})
                })
                .collect();
            for (socket, notice) in sockets.iter().zip(&notices) {
                if notified_ahead(socket) {
                    if let Err(err) = socket.emit("server:draining", notice) {
                        tracing::debug!(sid = %socket.id, error = %err, "drain notice not delivered");
                    }
                }
            }
            tokio::time::sleep(plan.notice).await;
            let started = std::time::Instant::now();
            let total = sockets.len();
            let mut drained = 0;
            let mut batches = 0;
            for (n, (chunk, chunk_notices)) in
                sockets.chunks(batch).zip(notices.chunks(batch)).enumerate()
            {
                if n > 0 {
                    tokio::time::sleep(plan.batch_interval).await;
                }
                for (socket, notice) in chunk.iter().zip(chunk_notices) {
                    close_transport(socket, &connections, notice);
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
            // Give long-polling clients a moment to fetch their close packet, then close
            // whatever is left (a transport whose connection was not found).
            tokio::time::sleep(plan.batch_interval).await;
            // No socket can send any more; what was accepted is stored and broadcast while
            // the adapter still reaches the other instances.
            flush.await;
            io.close().await;
            sockets.len()
        })
    }
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
    use super::thousands;

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
