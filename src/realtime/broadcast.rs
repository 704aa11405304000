//! A handle for sending to rooms from outside Socket.IO handlers (HTTP admin emits, logout,
//! presence timers), and the primitives the drain (`shutdown::close_sockets`) uses on this
//! instance's sockets: enumerate them, tell one, close one transport, close the server.
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
    /// This instance's sockets, for the drain to tell and close one by one. The default (a
    /// handle without a local server, such as a test double) has none.
    fn local_socket_handles(&self) -> Vec<Box<dyn LocalSocket>> {
        Vec::new()
    }
    /// Closes the Socket.IO server: every remaining socket is disconnected and nothing more is
    /// emitted (the drain's last socket step, on time or not). The default has nothing to close.
    fn close(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// One socket of this instance as the drain sees it, with its adapter type erased.
pub trait LocalSocket: Send + Sync {
    /// Whether the drain tells this socket ahead of closing it (WebSocket); a long-polling
    /// client gets the notice together with its close.
    fn notified_ahead(&self) -> bool;
    /// Emits `server:draining` with `notice` to this socket.
    fn tell_draining(&self, notice: &Value);
    /// Closes this socket's transport so that its client reconnects by itself (see
    /// `close_transport`).
    fn close_transport(&self, connections: &SessionConnections, notice: &Value);
}

/// A local socket with adapter `A`.
struct SocketHandle<A: Adapter>(SocketRef<A>);

impl<A: Adapter> LocalSocket for SocketHandle<A> {
    fn notified_ahead(&self) -> bool {
        notified_ahead(&self.0)
    }

    fn tell_draining(&self, notice: &Value) {
        if let Err(err) = self.0.emit("server:draining", notice) {
            tracing::debug!(sid = %self.0.id, error = %err, "drain notice not delivered");
        }
    }

    fn close_transport(&self, connections: &SessionConnections, notice: &Value) {
        close_transport(&self.0, connections, notice);
    }
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
        // Through `of`: `SocketIo::sockets` panics once the drain has closed the server.
        self.0.of("/").map_or(0, |ns| ns.sockets().len())
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

    fn local_socket_handles(&self) -> Vec<Box<dyn LocalSocket>> {
        let Some(ns) = self.0.of("/") else {
            return Vec::new();
        };
        ns.sockets()
            .into_iter()
            .map(|socket| Box::new(SocketHandle(socket)) as Box<dyn LocalSocket>)
            .collect()
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        let io = self.0.clone();
        Box::pin(async move { io.close().await })
    }
}
