//! Client → server events: `join`, `leave`, `message`, `typing`, and everything else.
//!
//! Each handler parses its payload into domain types, does one thing, and answers through
//! `ack::reply`. Payloads are taken with `TryData` so that a wrong shape gets an
//! `invalid_payload` ack instead of silence.

use std::time::Instant;

use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::ParserError;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};

use super::ack::{AckError, reply};
use super::broadcast::{Realtime, SocketIoBroadcast};
use super::context::{Ctx, InFlight, InFlightSlot, Ordered, SocketContext};
use super::room_sequencer;
use super::state::RealtimeState;
use crate::domain::{MessageText, RoomName};
use crate::error_code::ErrorCode;
use crate::metrics::Metrics;
use crate::rate_limit::LimitedEvent;
use crate::state::AppState;
use crate::storage::messages::NewMessage;

/// Messages of history sent with a join ack.
pub const JOIN_HISTORY: u32 = 50;

/// Payload of `join`, `leave` and `typing`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomRequest {
    room: String,
}

/// Payload of `message`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    room: String,
    text: String,
}

fn realtime<A: Adapter>(io: SocketIo<A>) -> Realtime {
    std::sync::Arc::new(SocketIoBroadcast(io))
}

/// The gate at the top of `join`, `leave`, `resume` and `typing`: a slot among the socket's
/// in-flight handlers, then one `event` from the user's allowance; `rate_limited` otherwise.
pub(super) fn admit(
    app: &AppState,
    ctx: &SocketContext,
    event: LimitedEvent,
    slot: Result<InFlightSlot, AckError>,
) -> Result<InFlightSlot, AckError> {
    let slot = slot?;
    app.event_limits
        .check(event, ctx.user.id)
        .map_err(|_| AckError::new(ErrorCode::RateLimited, "too many events; slow down"))?;
    Ok(slot)
}

fn parse_room(payload: Result<RoomRequest, ParserError>) -> Result<RoomName, AckError> {
    let request = payload.map_err(AckError::invalid_payload)?;
    Ok(RoomName::parse(&request.room)?)
}

/// `join {room}` → `{room, members, history, seq}`; history is oldest first and `seq` is the
/// newest seq it covers (0 for an empty room): every later message of the room reaches the
/// socket live. The socket enters the room before history is read, so nothing committed
/// after the read can be missed (a message can arrive both in history and live; clients
/// drop seqs they already have, see `recovery`). The socket's turn is held until it is in the
/// room, so a `message` sent right after `join`, without waiting for its ack, finds it there.
#[expect(
    clippy::too_many_arguments,
    reason = "a socketioxide handler takes one extractor per argument"
)]
pub async fn join<A: Adapter>(
    socket: SocketRef<A>,
    io: SocketIo<A>,
    Ctx(ctx): Ctx,
    InFlight(slot): InFlight,
    Ordered(mut turn): Ordered,
    State(app): State<RealtimeState>,
    TryData(payload): TryData<RoomRequest>,
    ack: AckSender<A>,
) {
    Metrics::event(&app.metrics.events_in, "join");
    let result = async {
        let _slot = admit(&app, &ctx, LimitedEvent::RoomChange, slot)?;
        let room = parse_room(payload)?;
        turn.wait().await;
        enter_room(&socket, &io, &ctx, &app, &room).await?;
        drop(turn);
        let mut history = app.db.messages_before(&room, None, JOIN_HISTORY).await?;
        history.reverse();
        let seq = history.last().map_or(0, |m| m.seq);
        let members = app.presence.members(room.as_str()).await?;
        Ok(json!({"room": room, "members": members, "history": history, "seq": seq}))
    }
    .await;
    reply(ack, &app.metrics, result);
}

/// Puts the socket in `room` and counts it in presence (announcing a change), unless it is
/// there already; `too_many_rooms` when it is in `MAX_ROOMS_PER_SOCKET` rooms. On a presence failure the socket is taken out again, so membership and
/// presence never disagree.
pub(super) async fn enter_room<A: Adapter>(
    socket: &SocketRef<A>,
    io: &SocketIo<A>,
    ctx: &SocketContext,
    app: &RealtimeState,
    room: &RoomName,
) -> Result<(), AckError> {
    if ctx.add_room_within(room, app.config.max_rooms_per_socket)? {
        socket.join(room.as_str().to_owned());
        let change = match app.presence.join(room, ctx.user.id).await {
            Ok(change) => change,
            Err(err) => {
                ctx.remove_room(room);
                socket.leave(room.as_str().to_owned());
                return Err(err.into());
            }
        };
        if change.changed {
            app.presence_notifier()
                .changed(room, change, realtime(io.clone()));
        }
    }
    Ok(())
}

/// Takes the socket out of `room` and presence, if it was in it.
pub(super) async fn exit_room<A: Adapter>(
    socket: &SocketRef<A>,
    io: &SocketIo<A>,
    ctx: &SocketContext,
    app: &RealtimeState,
    room: &RoomName,
) -> Result<(), AckError> {
    if ctx.remove_room(room) {
        socket.leave(room.as_str().to_owned());
        let change = app.presence.leave(room, ctx.user.id).await?;
        if change.changed {
            app.presence_notifier()
                .changed(room, change, realtime(io.clone()));
        }
    }
    Ok(())
}

/// `leave {room}` → `{room, members}`. Leaving a room one is not in is not an error. Like
/// `join`, it takes the socket's turn for the membership change, so it applies in send order.
#[expect(
    clippy::too_many_arguments,
    reason = "a socketioxide handler takes one extractor per argument"
)]
pub async fn leave<A: Adapter>(
    socket: SocketRef<A>,
    io: SocketIo<A>,
    Ctx(ctx): Ctx,
    InFlight(slot): InFlight,
    Ordered(mut turn): Ordered,
    State(app): State<RealtimeState>,
    TryData(payload): TryData<RoomRequest>,
    ack: AckSender<A>,
) {
    Metrics::event(&app.metrics.events_in, "leave");
    let result = async {
        let _slot = admit(&app, &ctx, LimitedEvent::RoomChange, slot)?;
        let room = parse_room(payload)?;
        turn.wait().await;
        exit_room(&socket, &io, &ctx, &app, &room).await?;
        drop(turn);
        let members = app.presence.members(room.as_str()).await?;
        Ok(json!({"room": room, "members": members}))
    }
    .await;
    reply(ack, &app.metrics, result);
}

/// `message {room, text}` → persisted, then broadcast to the whole room (sender included),
/// then acked with `{id, ts, seq}`. Never broadcasts a message that was not stored.
///
/// The socket's turn is held only until the message is in its room's queue
/// (`room_sequencer`): the socket's next message can be queued while this one is stored.
pub async fn message<A: Adapter>(
    io: SocketIo<A>,
    Ctx(ctx): Ctx,
    InFlight(slot): InFlight,
    Ordered(mut turn): Ordered,
    State(app): State<RealtimeState>,
    TryData(payload): TryData<MessageRequest>,
    ack: AckSender<A>,
) {
    let received = Instant::now();
    Metrics::event(&app.metrics.events_in, "message");
    let _slot = match slot {
        Ok(slot) => slot,
        Err(err) => return reply::<A, Value>(ack, &app.metrics, Err(err)),
    };
    turn.wait().await;
    let queued = async {
        let request = payload.map_err(AckError::invalid_payload)?;
        let room = RoomName::parse(&request.room)?;
        let text = MessageText::parse(request.text)?;
        if !ctx.in_room(&room) {
            return Err(AckError::new(
                ErrorCode::NotInRoom,
                "join the room before sending to it",
            ));
        }
        app.message_limiter.check(ctx.user.id).await?;
        let message = NewMessage {
            author: ctx.user.clone(),
            text,
        };
        room_sequencer::submit(&app, app.sequencers(), &io, room, message, received).await
    }
    .await;
    drop(turn);
    let result = match queued {
        Ok(outcome) => outcome.await.unwrap_or_else(|_| {
            Err(AckError::new(
                ErrorCode::Unavailable,
                "the message could not be stored, try again",
            ))
        }),
        Err(err) => Err(err),
    };
    reply(ack, &app.metrics, result);
}

/// `typing {room}` → volatile `typing {room, user}` to the room except the sender.
pub async fn typing<A: Adapter>(
    socket: SocketRef<A>,
    Ctx(ctx): Ctx,
    InFlight(slot): InFlight,
    State(app): State<AppState>,
    TryData(payload): TryData<RoomRequest>,
    ack: AckSender<A>,
) {
    Metrics::event(&app.metrics.events_in, "typing");
    // Over the limit, a typing event without an ack is dropped (it is volatile anyway);
    // with one, the ack says `rate_limited`.
    let result = async {
        let _slot = admit(&app, &ctx, LimitedEvent::Typing, slot)?;
        let room = parse_room(payload)?;
        if !ctx.in_room(&room) {
            return Err(AckError::new(ErrorCode::NotInRoom, "join the room first"));
        }
        let payload = json!({"room": room, "user": ctx.user});
        if let Err(err) = socket
            .to(room.as_str().to_owned())
            .volatile()
            .emit("typing", &payload)
            .await
        {
            tracing::debug!(room = %room, error = %err, "typing broadcast dropped");
        }
        Ok(Value::Object(serde_json::Map::new()))
    }
    .await;
    reply(ack, &app.metrics, result);
}

/// Any other event: an `unknown_event` error ack if the client asked for one, else ignored.
pub async fn unknown<A: Adapter>(
    Event(event): Event,
    State(app): State<AppState>,
    ack: AckSender<A>,
) {
    Metrics::event(&app.metrics.events_in, "unknown");
    tracing::debug!(event = %event.chars().take(64).collect::<String>(), "unknown socket event");
    reply::<A, Value>(
        ack,
        &app.metrics,
        Err(AckError::new(ErrorCode::UnknownEvent, "unknown event")),
    );
}
