//! A handle for sending to rooms from outside Socket.IO handlers (HTTP admin emits, logout,
//! presence timers, the drain).
//!
//! The adapter is a type parameter of `SocketIo<A>`; this trait erases it so that the HTTP
//! layer and background tasks do not become generic over the adapter too. The one
//! implementation wraps `SocketIo<A>`, so every call goes through the adapter and reaches
//! sockets on every instance.

use std::sync::Arc;
use std::time::Duration;

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
    /// Drain step: tells every local socket `server:draining`, waits `notice`, then closes
    /// every local transport so clients reconnect elsewhere. Returns the number of sockets.
    fn drain_local(&self, notice: Duration) -> BoxFuture<'static, usize>;
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

    fn drain_local(&self, notice: Duration) -> BoxFuture<'static, usize> {
        let io = self.0.clone();
        Box::pin(async move {
            let sockets = io.sockets();
            let notice_ms = u64::try_from(notice.as_millis()).unwrap_or(u64::MAX);
            for socket in &sockets {
                // Jitter spreads the reconnects of a large instance over a second, so the
                // instances that take them over do not see one spike.
                let jitter = rand::thread_rng().gen_range(0..1000);
                let payload = json!({"reconnect_after_ms": notice_ms + jitter});
                if let Err(err) = socket.emit("server:draining", &payload) {
                    tracing::debug!(sid = %socket.id, error = %err, "drain notice not delivered");
                }
            }
            tokio::time::sleep(notice).await;
            io.close().await;
            sockets.len()
        })
    }
}
