//! Socket.IO: the server, its namespace and its handlers.
//!
//! `build` creates the Socket.IO layer for a given adapter type `A` (local in embedded mode,
//! Redis in cluster mode) with roomcast's limits, and registers the `/` namespace guarded by
//! the session-cookie middleware. The adapter type flows from `App::build` only; everything
//! outside this module talks to sockets through the type-erased `broadcast::Realtime`.

pub mod ack;
pub mod broadcast;
pub mod connect;
pub mod context;
pub mod events;
pub mod ordering;
pub mod presence_events;
pub mod recovery;
pub mod room_sequencer;
pub mod state;

use std::time::Duration;

use socketioxide::adapter::Adapter;
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::{ParserConfig, SocketIo, SocketIoBuilder};

use crate::state::AppState;
use state::RealtimeState;

/// Engine.IO ping interval; proxies must allow idle reads longer than this (see nginx.conf).
pub const PING_INTERVAL: Duration = Duration::from_secs(25);
/// Time a client has to answer a ping.
pub const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Creates the Socket.IO layer and server handle with adapter state `adapter`, and
/// realtime's own state, which handlers get beside `AppState`.
pub fn build<A: Adapter>(
    app: &AppState,
    builder: SocketIoBuilder<A>,
) -> (SocketIoLayer<A>, SocketIo<A>, RealtimeState) {
    let max_payload = app.config.socketio_max_payload;
    let realtime_state = RealtimeState::new(app);
    let (layer, io) = builder
        .with_state(app.clone())
        .with_state(realtime_state.clone())
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .ack_timeout(Duration::from_secs(10))
        .max_payload(max_payload)
        .max_buffer_size(1024)
        // The engine's default 4 KiB is held by every idle socket; roomcast's client frames are
        // a few hundred bytes, so 1 KiB reads them in one go (see bench/notes/memory-profile.md).
        .ws_read_buffer_size(app.config.socketio_ws_read_buffer)
        .ws_max_message_size(usize::try_from(max_payload).unwrap_or(usize::MAX))
        .ws_max_frame_size(usize::try_from(max_payload).unwrap_or(usize::MAX))
        // No roomcast event takes binary attachments; a small allowance keeps a client that
        // sends one from tying up memory while the parser waits for the rest.
        .with_parser(
            ParserConfig::common()
                .max_incoming_binaries(1)
                .max_incoming_binary_buf_size(max_payload as usize)
                .packet_completion_timeout(Duration::from_secs(5)),
        )
        .build_layer();
    (layer, io, realtime_state)
}

/// Registers the `/` namespace. Returns the adapter's init result, which remote adapters
/// require the caller to await.
pub fn register_namespace<A>(io: &SocketIo<A>) -> A::InitRes
where
    A: Adapter + socketioxide_core::adapter::DefinedAdapter,
{
    io.ns(
        "/",
        connect::on_connect::<A>.with(connect::authenticate::<A>),
    )
}
