//! Who is in which room, counted as distinct users, wherever the sockets are.
//!
//! A user with three tabs in a room is one member: the count is of users, and a change is
//! reported only when a user's first socket joins or last socket leaves. Where the counts are
//! kept is decided once, at start (`app.rs`): in this process in embedded mode (`local`),
//! or in Redis, shared by every instance, in cluster mode (`redis`). Everything else sees
//! only the `Presence` trait; the coalesced `presence` events are built on it in
//! `realtime::presence_events`.

pub mod local;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{RoomName, UserId};
use crate::redis::RedisError;

/// Result of a join or leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceChange {
    /// Distinct users in the room afterwards.
    pub members: usize,
    /// Whether the member set changed (first join or last leave of this user).
    pub changed: bool,
    /// The room's change version in cluster mode (0 in embedded mode).
    pub version: u64,
}

/// Whether this instance may send a room's `presence` event now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Yes: the room's window is ours.
    Open,
    /// No need: an event already announced this change.
    Covered,
    /// Not yet: try again after this long.
    Wait(Duration),
}

/// Where presence is counted. Embedded mode counts in memory and never fails; cluster mode
/// counts in Redis, which can be unreachable, hence the `RedisError`s.
#[async_trait]
pub trait Presence: Send + Sync + std::fmt::Debug {
    /// Records one more socket of `user` in `room`.
    async fn join(&self, room: &RoomName, user: UserId) -> Result<PresenceChange, RedisError>;

    /// Records that one socket of `user` left `room`.
    async fn leave(&self, room: &RoomName, user: UserId) -> Result<PresenceChange, RedisError>;

    /// Distinct users in `room`.
    async fn members(&self, room: &str) -> Result<usize, RedisError>;

    /// Every room with members, with its member count.
    async fn rooms(&self) -> Result<Vec<(String, usize)>, RedisError>;

    /// Whether a `presence` event announcing `version` may go out now. One instance owns
    /// every window, so the default answers yes; the cluster shares one window per room.
    async fn gate(
        &self,
        _room: &str,
        _version: u64,
        _window: Duration,
    ) -> Result<Gate, RedisError> {
        Ok(Gate::Open)
    }
}
