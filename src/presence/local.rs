//! Presence counted in this process: embedded mode, one instance.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Presence, PresenceChange};
use crate::domain::{RoomName, UserId};
use crate::redis::RedisError;

/// Socket counts per user per room on this instance.
#[derive(Debug, Default)]
pub struct PresenceRegistry {
    rooms: Mutex<HashMap<String, HashMap<UserId, usize>>>,
}

impl PresenceRegistry {
    /// Records one more socket of `user` in `room`.
    pub fn join(&self, room: &RoomName, user: UserId) -> PresenceChange {
        let mut rooms = self.lock();
        let members = rooms.entry(room.as_str().to_owned()).or_default();
        let sockets = members.entry(user).or_insert(0);
        *sockets += 1;
        let changed = *sockets == 1;
        PresenceChange {
            members: members.len(),
            changed,
            version: 0,
        }
    }

    /// Records that one socket of `user` left `room`.
    pub fn leave(&self, room: &RoomName, user: UserId) -> PresenceChange {
        let mut rooms = self.lock();
        let Some(members) = rooms.get_mut(room.as_str()) else {
            return PresenceChange {
                members: 0,
                changed: false,
                version: 0,
            };
        };
        let mut changed = false;
        if let Some(sockets) = members.get_mut(&user) {
            *sockets -= 1;
            if *sockets == 0 {
                members.remove(&user);
                changed = true;
            }
        }
        let count = members.len();
        if count == 0 {
            rooms.remove(room.as_str());
        }
        PresenceChange {
            members: count,
            changed,
            version: 0,
        }
    }

    /// Distinct users in `room`.
    pub fn members(&self, room: &str) -> usize {
        self.lock().get(room).map_or(0, HashMap::len)
    }

    /// Every room with at least one member, with its member count.
    pub fn rooms(&self) -> Vec<(String, usize)> {
        self.lock()
            .iter()
            .map(|(room, members)| (room.clone(), members.len()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<UserId, usize>>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Presence for PresenceRegistry {
    async fn join(&self, room: &RoomName, user: UserId) -> Result<PresenceChange, RedisError> {
        Ok(PresenceRegistry::join(self, room, user))
    }

    async fn leave(&self, room: &RoomName, user: UserId) -> Result<PresenceChange, RedisError> {
        Ok(PresenceRegistry::leave(self, room, user))
    }

    async fn members(&self, room: &str) -> Result<usize, RedisError> {
        Ok(PresenceRegistry::members(self, room))
    }

    async fn rooms(&self) -> Result<Vec<(String, usize)>, RedisError> {
        Ok(PresenceRegistry::rooms(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn members_are_distinct_users_not_sockets() {
        let registry = PresenceRegistry::default();
        let room = RoomName::parse("lobby").expect("room");
        let alice = UserId(1);
        let bob = UserId(2);
        assert_eq!(
            registry.join(&room, alice),
            PresenceChange {
                members: 1,
                changed: true,
                version: 0
            }
        );
        assert_eq!(
            registry.join(&room, alice),
            PresenceChange {
                members: 1,
                changed: false,
                version: 0
            }
        );
        assert_eq!(
            registry.join(&room, bob),
            PresenceChange {
                members: 2,
                changed: true,
                version: 0
            }
        );
        assert_eq!(
            registry.leave(&room, alice),
            PresenceChange {
                members: 2,
                changed: false,
                version: 0
            }
        );
        assert_eq!(
            registry.leave(&room, alice),
            PresenceChange {
                members: 1,
                changed: true,
                version: 0
            }
        );
        assert_eq!(
            registry.leave(&room, bob),
            PresenceChange {
                members: 0,
                changed: true,
                version: 0
            }
        );
        assert!(registry.rooms().is_empty(), "empty rooms are forgotten");
    }
}
