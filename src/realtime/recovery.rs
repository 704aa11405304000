//! Connection state recovery: a client that reconnects, to any instance, gets every room
//! message it missed, and its rooms back.
//!
//! Every message has a per-room `seq` (1, 2, 3, … without holes, see `storage::messages`). A
//! reconnecting client names its rooms and the last seq it has of each, in the handshake
//! (`auth: {resume: {"<room>": <lastSeq>}}`) or later in a `resume {rooms: {…}}` event. For
//! each room the server then:
//!
//! 1. puts the socket back in the room (before the CONNECT is acknowledged, for the
//!    handshake), so every message committed from now on reaches it live;
//! 2. reads what the client missed from the database: seq `last+1` up to the newest, which
//!    covers everything committed before step 1 (seqs commit in order);
//! 3. sends it as `resume:messages {room, messages}` batches, oldest first, then
//!    `resume:done {room, seq, members}`: every message up to `seq` has now been sent to the
//!    socket.
//!
//! A message committed between steps 1 and 2 can arrive twice (replayed and live), and live
//! messages can arrive before or between replay batches. The client rule in the README makes
//! the stream exactly-once and ordered: keep the last delivered seq per room, drop seqs at or
//! below it, hold seqs above `last+1` until the hole is filled.
//!
//! The window is bounded: a client that missed more than `RECOVERY_MAX_MESSAGES`, or whose
//! first missed message is older than `RECOVERY_WINDOW_SECS` (so it was away at least that
//! long), or whose seq is ahead of the room's (a reset database), gets
//! `resume:reload {room, seq, reason, members}` instead: it is back in the room, with live messages
//! after `seq`, and should reload the room's history.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};

use super::ack::{AckError, reply};
use super::context::{Ctx, InFlight, Ordered, SocketContext};
use super::events::{admit, enter_room, exit_room};
use super::state::RealtimeState;
use crate::domain::RoomName;
use crate::error_code::ErrorCode;
use crate::metrics::Metrics;
use crate::rate_limit::LimitedEvent;
use crate::state::AppState;
use crate::storage::messages::ChatMessage;
use crate::storage::{StorageError, now_millis};

/// Rooms one resume may name; more is refused as a whole (each costs a query).
pub const MAX_RESUME_ROOMS: usize = 100;
/// Messages per `resume:messages` packet: few packets, none of them huge.
pub const REPLAY_BATCH: usize = 100;

/// Rooms to restore and the last seq the client has of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeRequest {
    rooms: Vec<(RoomName, i64)>,
}

impl ResumeRequest {
    /// The `resume` field of a handshake `auth` payload; `None` when the client sent none.
    pub fn from_auth(auth: &Value) -> Result<Option<Self>, AckError> {
        match auth {
            Value::Object(fields) => match fields.get("resume") {
                None | Some(Value::Null) => Ok(None),
                Some(rooms) => Self::from_rooms(rooms).map(Some),
            },
            Value::Null => Ok(None),
            _ => Err(invalid("auth must be an object")),
        }
    }

    /// The payload of a `resume` event: `{rooms: {"<room>": <lastSeq>}}`.
    pub fn from_event(payload: &Value) -> Result<Self, AckError> {
        match payload {
            Value::Object(fields) if fields.len() == 1 && fields.contains_key("rooms") => {
                Self::from_rooms(&fields["rooms"])
            }
            _ => Err(invalid("expected {rooms: {<room>: <last seq>}}")),
        }
    }

    /// `{"<room>": <lastSeq>}` with valid room names and seqs ≥ 0.
    fn from_rooms(value: &Value) -> Result<Self, AckError> {
        let Value::Object(map) = value else {
            return Err(invalid("resume must be an object of room: last seq"));
        };
        if map.len() > MAX_RESUME_ROOMS {
            return Err(invalid(format!(
                "resume names {} rooms, at most {MAX_RESUME_ROOMS} are allowed",
                map.len()
            )));
        }
        let rooms = map
            .iter()
            .map(|(room, seq)| {
                let room = RoomName::parse(room)?;
                let seq = seq
                    .as_i64()
                    .filter(|s| *s >= 0)
                    .ok_or_else(|| invalid("a last seq must be an integer ≥ 0"))?;
                Ok((room, seq))
            })
            .collect::<Result<_, AckError>>()?;
        Ok(Self { rooms })
    }

    /// The rooms named, in order.
    pub fn rooms(&self) -> impl Iterator<Item = &RoomName> {
        self.rooms.iter().map(|(room, _)| room)
    }
}

fn invalid(message: impl Into<String>) -> AckError {
    AckError::new(ErrorCode::InvalidPayload, message)
}

/// A handshake's resume, parsed by the connect middleware and carried out once connected
/// (a socket cannot emit before its CONNECT is acknowledged).
#[derive(Debug, Clone)]
pub struct PendingResume(pub Result<ResumeRequest, AckError>);

/// Why a room must be reloaded instead of replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadReason {
    /// More messages were missed than `RECOVERY_MAX_MESSAGES`.
    TooMany,
    /// The first missed message is older than `RECOVERY_WINDOW_SECS`.
    Expired,
    /// The client's seq is ahead of the room's: its state is from another history.
    UnknownSeq,
}

/// What to do for one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Send these (oldest first); afterwards the socket has everything up to `seq`.
    Replay {
        /// The missed messages.
        messages: Vec<ChatMessage>,
        /// Highest seq covered.
        seq: i64,
    },
    /// Tell the client to reload history; live messages follow from after `seq`.
    Reload {
        /// The room's newest seq when checked.
        seq: i64,
        /// Why.
        reason: ReloadReason,
    },
}

/// The recovery bounds from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Longest absence that is still replayed.
    pub max_age: Duration,
    /// Most messages replayed per room.
    pub max_messages: u32,
}

impl Window {
    /// Decides for a client that has `last` of a room whose newest seq is `head`, given the
    /// first page of what it missed (oldest first) and the time now (epoch ms).
    pub fn decide(&self, last: i64, head: i64, missed: Vec<ChatMessage>, now: i64) -> Recovery {
        if last > head {
            return Recovery::Reload {
                seq: head,
                reason: ReloadReason::UnknownSeq,
            };
        }
        if head - last > i64::from(self.max_messages) {
            return Recovery::Reload {
                seq: head,
                reason: ReloadReason::TooMany,
            };
        }
        let max_age_ms = i64::try_from(self.max_age.as_millis()).unwrap_or(i64::MAX);
        if missed
            .first()
            .is_some_and(|m| now.saturating_sub(m.ts) > max_age_ms)
        {
            return Recovery::Reload {
                seq: head,
                reason: ReloadReason::Expired,
            };
        }
        let seq = missed.last().map_or(last, |m| m.seq.max(last));
        Recovery::Replay {
            messages: missed,
            seq,
        }
    }
}

/// Reads what a client that has `last` of `room` missed and decides. The socket must already
/// be in the room (see the module docs).
pub async fn plan(app: &AppState, room: &RoomName, last: i64) -> Result<Recovery, StorageError> {
    let window = Window {
        max_age: app.config.recovery_window,
        max_messages: app.config.recovery_max_messages,
    };
    let head = app.db.latest_seq(room).await?;
    let missed = if last < head && head - last <= i64::from(window.max_messages) {
        app.db
            .messages_after_seq(room, last, window.max_messages)
            .await?
    } else {
        Vec::new()
    };
    Ok(window.decide(last, head, missed, now_millis()))
}

/// The socket's end of a replay stopped being writable (its buffer is full or it left).
#[derive(Debug, thiserror::Error)]
#[error("replay not delivered: {0}")]
struct NotDelivered(String);

fn send<A: Adapter>(socket: &SocketRef<A>, event: &str, data: &Value) -> Result<(), NotDelivered> {
    socket
        .emit(event, data)
        .map_err(|e| NotDelivered(e.to_string()))
}

/// Carries out `request` for a connected socket that is already in its rooms: per room,
/// replay batches and `resume:done`, or `resume:reload`, or `resume:error` when the database
/// cannot be read (the client retries with a `resume` event).
pub async fn replay<A: Adapter>(socket: &SocketRef<A>, app: &AppState, request: &ResumeRequest) {
    for (room, last) in &request.rooms {
        // The count a join ack would carry; a presence outage only leaves it out.
        let members = app.presence.members(room.as_str()).await.ok();
        let outcome = match plan(app, room, *last).await {
            Ok(Recovery::Replay { messages, seq }) => {
                let count = messages.len();
                messages
                    .chunks(REPLAY_BATCH)
                    .try_for_each(|batch| {
                        send(
                            socket,
                            "resume:messages",
                            &json!({"room": room, "messages": batch}),
                        )
                    })
                    .and_then(|()| {
                        send(
                            socket,
                            "resume:done",
                            &json!({"room": room, "seq": seq, "members": members}),
                        )
                    })
                    .map(|()| {
                        tracing::debug!(room = %room, from = last, to = seq, count, "room recovered");
                    })
            }
            Ok(Recovery::Reload { seq, reason }) => {
                tracing::debug!(room = %room, last, seq, ?reason, "room must reload");
                send(
                    socket,
                    "resume:reload",
                    &json!({"room": room, "seq": seq, "reason": reason, "members": members}),
                )
            }
            Err(err) => {
                app.metrics.database_errors.inc();
                let err = AckError::from(err);
                send(
                    socket,
                    "resume:error",
                    &json!({"room": room, "error": {"code": err.code, "message": err.message}}),
                )
            }
        };
        if let Err(err) = outcome {
            tracing::warn!(room = %room, sid = %socket.id, error = %err, "recovery stopped");
            return;
        }
    }
}

/// Connect handler part: carries out the handshake's resume, or reports why it was refused
/// with `resume:error {error}` (the connection itself stays up, without those rooms).
pub async fn resume_after_connect<A: Adapter>(socket: &SocketRef<A>, app: &AppState) {
    let Some(PendingResume(pending)) = socket.extensions.remove::<PendingResume>() else {
        return;
    };
    match pending {
        Ok(request) => replay(socket, app, &request).await,
        Err(err) => {
            let body = json!({"error": {"code": err.code, "message": err.message}});
            if let Err(err) = send(socket, "resume:error", &body) {
                tracing::debug!(sid = %socket.id, error = %err, "resume error not delivered");
            }
        }
    }
}

/// Puts the socket in every room of `request` it is not in yet. On a failure the rooms this
/// call entered are left again and the error returned, so a handshake can be refused (or a
/// `resume` event answered with an error) without leaving presence counts behind.
pub async fn rejoin<A: Adapter>(
    socket: &SocketRef<A>,
    io: &SocketIo<A>,
    ctx: &SocketContext,
    app: &RealtimeState,
    request: &ResumeRequest,
) -> Result<(), AckError> {
    let mut entered = Vec::new();
    for room in request.rooms().filter(|room| !ctx.in_room(room)) {
        if let Err(err) = enter_room(socket, io, ctx, app, room).await {
            for room in entered {
                if let Err(err) = exit_room(socket, io, ctx, app, room).await {
                    tracing::warn!(room = %room, error = %err, "presence leave failed");
                }
            }
            return Err(err);
        }
        entered.push(room);
    }
    Ok(())
}

/// `resume {rooms: {"<room>": <lastSeq>}}` → enters rooms not joined yet, replays what was
/// missed (as after a handshake), then acks `{rooms: <count>}`. Clients use it to fill a hole
/// in a room's seqs without reconnecting. Like `join`, it takes the socket's turn until the
/// rooms are entered.
#[expect(
    clippy::too_many_arguments,
    reason = "a socketioxide handler takes one extractor per argument"
)]
pub async fn resume<A: Adapter>(
    socket: SocketRef<A>,
    io: SocketIo<A>,
    Ctx(ctx): Ctx,
    InFlight(slot): InFlight,
    Ordered(mut turn): Ordered,
    State(app): State<RealtimeState>,
    TryData(payload): TryData<Value>,
    ack: AckSender<A>,
) {
    Metrics::event(&app.metrics.events_in, "resume");
    let result = async {
        let _slot = admit(&app, &ctx, LimitedEvent::RoomChange, slot)?;
        let payload = payload.map_err(AckError::invalid_payload)?;
        let request = ResumeRequest::from_event(&payload)?;
        turn.wait().await;
        rejoin(&socket, &io, &ctx, &app, &request).await?;
        drop(turn);
        replay(&socket, &app, &request).await;
        Ok(json!({"rooms": request.rooms.len()}))
    }
    .await;
    reply(ack, &app.metrics, result);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;
    use crate::storage::users::User;

    fn message(seq: i64, ts: i64) -> ChatMessage {
        ChatMessage {
            id: seq * 10,
            seq,
            room: "lobby".to_owned(),
            user: User {
                id: UserId(1),
                username: "ann".to_owned(),
            },
            text: format!("m{seq}"),
            ts,
            instance_id: "web-1".to_owned(),
        }
    }

    const WINDOW: Window = Window {
        max_age: Duration::from_secs(60),
        max_messages: 3,
    };

    #[test]
    fn a_short_absence_replays_exactly_what_was_missed() {
        let missed = vec![message(5, 1_000), message(6, 2_000)];
        assert_eq!(
            WINDOW.decide(4, 6, missed.clone(), 30_000),
            Recovery::Replay {
                messages: missed,
                seq: 6
            }
        );
        assert_eq!(
            WINDOW.decide(6, 6, Vec::new(), 30_000),
            Recovery::Replay {
                messages: Vec::new(),
                seq: 6
            },
            "nothing missed: done at once"
        );
    }

    #[test]
    fn past_the_window_the_client_reloads() {
        let reload = |reason| Recovery::Reload { seq: 9, reason };
        assert_eq!(
            WINDOW.decide(5, 9, Vec::new(), 0),
            reload(ReloadReason::TooMany)
        );
        assert_eq!(
            WINDOW.decide(7, 9, vec![message(8, 0), message(9, 70_000)], 61_000),
            reload(ReloadReason::Expired)
        );
        assert_eq!(
            WINDOW.decide(12, 9, Vec::new(), 0),
            reload(ReloadReason::UnknownSeq)
        );
    }

    #[test]
    fn resume_payloads_are_validated() {
        let ok = ResumeRequest::from_auth(&json!({"resume": {"lobby": 3, "b": 0}}))
            .expect("valid")
            .expect("present");
        assert_eq!(ok.rooms().count(), 2);
        assert_eq!(ResumeRequest::from_auth(&json!({})).expect("valid"), None);
        for bad in [
            json!("resume"),
            json!({"resume": [1]}),
            json!({"resume": {"Bad Room": 1}}),
            json!({"resume": {"lobby": -1}}),
            json!({"resume": {"lobby": 1.5}}),
            json!({"resume": {"lobby": "1"}}),
        ] {
            let err = ResumeRequest::from_auth(&bad).expect_err("invalid");
            assert!(
                matches!(err.code, ErrorCode::InvalidPayload | ErrorCode::InvalidRoom),
                "{bad}: {err}"
            );
        }
        let many: serde_json::Map<String, Value> = (0..=MAX_RESUME_ROOMS)
            .map(|i| (format!("r{i}"), json!(0)))
            .collect();
        assert!(ResumeRequest::from_auth(&json!({ "resume": many })).is_err());
        assert!(ResumeRequest::from_event(&json!({"rooms": {"lobby": 1}, "x": 1})).is_err());
    }
}
