//! What a connected socket carries: its user, its joined rooms and its turn queue, plus the
//! extractors that hand them to event handlers.
//!
//! The connect middleware authenticates the handshake and stores a `SocketContext` in the
//! socket's extensions; handlers ask for `Ctx` (and `Ordered` where order matters) instead of
//! looking anything up, in the spirit of axum's auth extractors.
//!
//! Two bounds hold per socket: it is in at most `MAX_ROOMS_PER_SOCKET` rooms (besides
//! `user:<id>`), and at most `MAX_EVENTS_IN_FLIGHT_PER_SOCKET` of its event handlers run or
//! wait at once. The second is taken by the `InFlight` extractor, which runs before
//! socketioxide spawns the handler's task; an event over the bound is answered
//! `rate_limited` at once, so a client that emits without waiting for acks cannot pile up
//! tasks (each `message` waits for its turn in the socket's queue).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use socketioxide::adapter::Adapter;
use socketioxide::handler::FromMessageParts;
use socketioxide::handler::Value;
use socketioxide::socket::Socket;

use super::ack::AckError;
use super::ordering::{Turn, TurnQueue};
use crate::domain::RoomName;
use crate::error_code::ErrorCode;
use crate::state::AppState;
use crate::storage::users::User;

/// Per-socket state, created by the connect middleware.
#[derive(Debug)]
pub struct SocketContext {
    /// The authenticated user.
    pub user: User,
    /// The session's private room (for logout).
    pub session_room: String,
    rooms: Mutex<BTreeSet<RoomName>>,
    turns: TurnQueue,
    in_flight: Arc<AtomicUsize>,
    /// Set by `InFlight` for the event being extracted when it is refused, so that `Ordered`
    /// does not put a refused event in the queue (its early ack must not release later turns
    /// before earlier ones finish).
    refusing: AtomicBool,
}

/// The socket is already in `MAX_ROOMS_PER_SOCKET` rooms.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("a socket may be in at most {max} rooms")]
pub struct TooManyRooms {
    /// The configured cap.
    pub max: usize,
}

impl From<TooManyRooms> for AckError {
    fn from(err: TooManyRooms) -> Self {
        AckError::new(ErrorCode::TooManyRooms, err.to_string())
    }
}

impl SocketContext {
    /// Context for a freshly authenticated socket.
    pub fn new(user: User, session_room: String) -> Self {
        Self {
            user,
            session_room,
            rooms: Mutex::default(),
            turns: TurnQueue::default(),
            in_flight: Arc::default(),
            refusing: AtomicBool::new(false),
        }
    }

    /// Records a join unless the socket is in `max` rooms already (checked and recorded under
    /// one lock, so concurrent joins cannot pass the cap); `Ok(false)` when it was in the room.
    pub fn add_room_within(&self, room: &RoomName, max: usize) -> Result<bool, TooManyRooms> {
        let mut rooms = self.lock_rooms();
        if rooms.contains(room) {
            return Ok(false);
        }
        if rooms.len() >= max {
            return Err(TooManyRooms { max });
        }
        Ok(rooms.insert(room.clone()))
    }

    /// Records a leave; false when the socket was not in the room.
    pub fn remove_room(&self, room: &RoomName) -> bool {
        self.lock_rooms().remove(room)
    }

    /// Whether the socket joined `room`.
    pub fn in_room(&self, room: &RoomName) -> bool {
        self.lock_rooms().contains(room)
    }

    /// Forgets and returns every joined room (on disconnect).
    pub fn take_rooms(&self) -> Vec<RoomName> {
        std::mem::take(&mut *self.lock_rooms())
            .into_iter()
            .collect()
    }

    fn lock_rooms(&self) -> std::sync::MutexGuard<'_, BTreeSet<RoomName>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The socket's context was missing: the connect middleware did not run (a bug).
#[derive(Debug, thiserror::Error)]
#[error("socket has no authenticated context")]
pub struct MissingContext;

/// Extractor for the socket's context.
pub struct Ctx(pub Arc<SocketContext>);

impl<A: Adapter> FromMessageParts<A> for Ctx {
    type Error = MissingContext;
    fn from_message_parts(
        s: &Arc<Socket<A>>,
        _: &mut Value,
        _: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        s.extensions
            .get::<Arc<SocketContext>>()
            .map(Ctx)
            .ok_or(MissingContext)
    }
}

/// Extractor that takes the event's place in the socket's queue, in arrival order. An event
/// refused by `InFlight` (extracted before this) gets a turn of its own outside the queue.
pub struct Ordered(pub Turn);

impl<A: Adapter> FromMessageParts<A> for Ordered {
    type Error = MissingContext;
    fn from_message_parts(
        s: &Arc<Socket<A>>,
        _: &mut Value,
        _: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        let ctx = s
            .extensions
            .get::<Arc<SocketContext>>()
            .ok_or(MissingContext)?;
        if ctx.refusing.swap(false, Ordering::AcqRel) {
            return Ok(Ordered(TurnQueue::default().take()));
        }
        Ok(Ordered(ctx.turns.take()))
    }
}

/// A slot among the socket's in-flight handlers, given back when the handler ends.
#[derive(Debug)]
pub struct InFlightSlot(Arc<AtomicUsize>);

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Extractor that takes a slot among the socket's in-flight handlers: `Err(rate_limited)`
/// when `MAX_EVENTS_IN_FLIGHT_PER_SOCKET` are taken. Handlers answer the error and return at
/// once, before doing or awaiting anything. List it before `Ordered`.
pub struct InFlight(pub Result<InFlightSlot, AckError>);

impl<A: Adapter> FromMessageParts<A> for InFlight {
    type Error = MissingContext;
    fn from_message_parts(
        s: &Arc<Socket<A>>,
        value: &mut Value,
        ack: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        let ctx = s
            .extensions
            .get::<Arc<SocketContext>>()
            .ok_or(MissingContext)?;
        let max = socketioxide::extract::State::<AppState>::from_message_parts(s, value, ack)
            .map_or(usize::MAX, |socketioxide::extract::State(app)| {
                app.config.max_events_in_flight
            });
        let taken = ctx.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = InFlightSlot(ctx.in_flight.clone());
        let refused = taken >= max;
        ctx.refusing.store(refused, Ordering::Release);
        if refused {
            drop(slot);
            return Ok(InFlight(Err(AckError::new(
                ErrorCode::RateLimited,
                "too many events in flight on this socket; wait for their acks",
            ))));
        }
        Ok(InFlight(Ok(slot)))
    }
}
