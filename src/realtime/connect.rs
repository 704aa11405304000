//! The Socket.IO handshake: authenticate by session cookie, then wire up the socket.
//!
//! The connect middleware reads the same signed `roomcast.sid` cookie as HTTP from the
//! handshake request and loads the session from the shared store. Without a logged-in session
//! the client gets `connect_error` with `{message: "unauthorized"}`; with one, the socket gets
//! a `SocketContext`, joins `user:<id>` (so emits to the user reach every tab and device) and
//! its session's room (so logout can disconnect it) and the rooms of a resume (see
//! `recovery`), and its event handlers are registered.

use std::sync::Arc;

use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, State, TryData};
use socketioxide::socket::DisconnectReason;

use super::ack::AckError;
use super::broadcast::SocketIoBroadcast;
use super::context::SocketContext;
use super::events;
use super::recovery::{self, PendingResume, ResumeRequest};
use super::state::RealtimeState;
use crate::auth::{SESSION_USER_KEY, SessionUser};
use crate::session::{load_active, session_id_from_headers, session_room};
use crate::state::AppState;

/// Why a handshake was refused; the Display text is the `connect_error` message.
#[derive(Debug, thiserror::Error)]
pub enum ConnectRefused {
    /// No valid logged-in session.
    #[error("unauthorized")]
    Unauthorized,
    /// The session store is down, or this instance is draining.
    #[error("unavailable")]
    Unavailable,
}

/// Connect middleware: only sockets with a logged-in session get through, and those are
/// wired up here, before socketioxide acknowledges the CONNECT. (The connect handler runs as a
/// separate task after the acknowledgement, so handlers registered there could miss the
/// client's first events.)
pub async fn authenticate<A: Adapter>(
    socket: SocketRef<A>,
    io: SocketIo<A>,
    State(app): State<RealtimeState>,
    TryData(auth): TryData<serde_json::Value>,
) -> Result<(), ConnectRefused> {
    if app.drain.is_draining() {
        return Err(ConnectRefused::Unavailable);
    }
    let Some(id) = session_id_from_headers(&socket.req_parts().headers, &app.cookie_key) else {
        return Err(ConnectRefused::Unauthorized);
    };
    let record = load_active(&app.sessions, &id).await.map_err(|err| {
        tracing::warn!(error = %err, "session store failed during socket handshake");
        ConnectRefused::Unavailable
    })?;
    let user = record
        .and_then(|r| r.data.get(SESSION_USER_KEY).cloned())
        .and_then(|v| serde_json::from_value::<SessionUser>(v).ok())
        .ok_or(ConnectRefused::Unauthorized)?;
    let ctx = Arc::new(SocketContext::new(user.user, session_room(&id)));
    socket.extensions.insert(ctx.clone());
    socket.join([ctx.user.id.room(), ctx.session_room.clone()]);
    // Rooms of a resume are entered before the CONNECT is acknowledged: the client may send
    // to them at once, and every message committed from here on reaches the socket live.
    let resume = auth
        .map_err(AckError::invalid_payload)
        .and_then(|auth| ResumeRequest::from_auth(&auth));
    if let Ok(Some(request)) = &resume {
        recovery::rejoin(&socket, &io, &ctx, &app, request)
            .await
            .map_err(|err| {
                tracing::warn!(error = %err, "rooms of a resume could not be rejoined");
                ConnectRefused::Unavailable
            })?;
    }
    if let Some(resume) = resume.transpose() {
        socket.extensions.insert(PendingResume(resume));
    }
    socket.on("join", events::join::<A>);
    socket.on("leave", events::leave::<A>);
    socket.on("message", events::message::<A>);
    socket.on("typing", events::typing::<A>);
    socket.on("resume", recovery::resume::<A>);
    socket.on_fallback(events::unknown::<A>);
    socket.on_disconnect(on_disconnect::<A>);
    Ok(())
}

/// Connect handler: the socket is wired already; this records the connection and carries
/// out a resume from the handshake (replays need a connected socket).
pub async fn on_connect<A: Adapter>(socket: SocketRef<A>, State(app): State<AppState>) {
    if let Some(ctx) = socket.extensions.get::<Arc<SocketContext>>() {
        tracing::debug!(user_id = %ctx.user.id, sid = %socket.id, transport = ?socket.transport_type(), "socket connected");
    }
    recovery::resume_after_connect(&socket, &app).await;
}

/// Releases presence for every room the socket was in.
async fn on_disconnect<A: Adapter>(
    socket: SocketRef<A>,
    io: SocketIo<A>,
    State(app): State<RealtimeState>,
    reason: DisconnectReason,
) {
    app.session_connections.forget(&socket.id.to_string());
    let Some(ctx) = socket.extensions.get::<Arc<SocketContext>>() else {
        return;
    };
    tracing::debug!(user_id = %ctx.user.id, sid = %socket.id, ?reason, "socket disconnected");
    let realtime: super::broadcast::Realtime = Arc::new(SocketIoBroadcast(io));
    for room in ctx.take_rooms() {
        match app.presence.leave(&room, ctx.user.id).await {
            Ok(change) if change.changed => {
                app.presence_notifier()
                    .changed(&room, change, realtime.clone())
            }
            Ok(_) => {}
            // The registry reaps this instance's entries if it never gets through.
            Err(err) => tracing::warn!(room = %room, error = %err, "presence leave failed"),
        }
    }
}
