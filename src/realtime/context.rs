//! What a connected socket carries: its user, its joined rooms and its turn queue, plus the
//! extractors that hand them to event handlers.
//!
//! The connect middleware authenticates the handshake and stores a `SocketContext` in the
//! socket's extensions; handlers ask for `Ctx` (and `Ordered` where order matters) instead of
//! looking anything up, in the spirit of axum's auth extractors.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use socketioxide::adapter::Adapter;
use socketioxide::handler::FromMessageParts;
use socketioxide::handler::Value;
use socketioxide::socket::Socket;

use super::ordering::{Turn, TurnQueue};
use crate::domain::RoomName;
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
}

impl SocketContext {
    /// Context for a freshly authenticated socket.
    pub fn new(user: User, session_room: String) -> Self {
        Self {
            user,
            session_room,
            rooms: Mutex::default(),
            turns: TurnQueue::default(),
        }
    }

    /// Records a join; false when the socket was already in the room.
    pub fn add_room(&self, room: &RoomName) -> bool {
        self.lock_rooms().insert(room.clone())
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

/// Extractor that takes the event's place in the socket's queue, in arrival order.
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
        Ok(Ordered(ctx.turns.take()))
    }
}
