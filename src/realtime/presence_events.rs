//! The coalesced `presence` events, built on the counts of `crate::presence`.
//!
//! The notifier turns changes into `presence {room, members}` events at most once per room per
//! second: the first change is sent at once, later changes within the second are folded into
//! one event sent when the second is over, carrying the count at that moment.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::broadcast::Realtime;
use crate::domain::RoomName;
use crate::presence::{Gate, Presence, PresenceChange};
use crate::shutdown::tasks::Tasks;

/// Minimum spacing of `presence` events for one room.
pub const PRESENCE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct RoomSchedule {
    last_sent: Instant,
    pending: bool,
    /// Highest change version seen; the pending event must announce at least this.
    version: u64,
}

/// Coalesces presence changes into at most one event per room per interval (per instance
/// here, and across the cluster through `Presence::gate`).
#[derive(Debug, Clone)]
pub struct PresenceNotifier {
    registry: Arc<dyn Presence>,
    schedule: Arc<Mutex<HashMap<String, RoomSchedule>>>,
    interval: Duration,
    /// Owner of the delayed sends, so the drain stops them.
    tasks: Tasks,
}

impl PresenceNotifier {
    /// A notifier reading counts from `registry`; its delayed sends are tasks of `tasks`.
    pub fn new(registry: Arc<dyn Presence>, interval: Duration, tasks: Tasks) -> Self {
        Self {
            registry,
            schedule: Arc::default(),
            interval,
            tasks,
        }
    }

    /// Reports that the member set of `room` changed (`change.changed`).
    pub fn changed(&self, room: &RoomName, change: PresenceChange, realtime: Realtime) {
        let now = Instant::now();
        let delay = {
            let mut schedule = self.lock();
            if schedule.len() > 10_000 {
                let interval = self.interval;
                schedule.retain(|_, s| s.pending || now.duration_since(s.last_sent) < interval);
            }
            match schedule.get_mut(room.as_str()) {
                Some(s) if s.pending => {
                    s.version = s.version.max(change.version);
                    return;
                }
                Some(s) if now.duration_since(s.last_sent) < self.interval => {
                    s.pending = true;
                    s.version = s.version.max(change.version);
                    self.interval - now.duration_since(s.last_sent)
                }
                _ => {
                    schedule.insert(
                        room.as_str().to_owned(),
                        RoomSchedule {
                            last_sent: now,
                            pending: true,
                            version: change.version,
                        },
                    );
                    Duration::ZERO
                }
            }
        };
        let this = self.clone();
        let room = room.clone();
        self.tasks
            .spawn_until_cancelled("presence_event", async move {
                this.send(room, delay, realtime).await;
            });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RoomSchedule>> {
        self.schedule.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits out this instance's interval, then the cluster's window, then emits the count.
    async fn send(&self, room: RoomName, delay: Duration, realtime: Realtime) {
        tokio::time::sleep(delay).await;
        loop {
            let version = {
                let mut schedule = self.lock();
                let Some(entry) = schedule.get_mut(room.as_str()) else {
                    return;
                };
                entry.pending = false;
                entry.last_sent = Instant::now();
                entry.version
            };
            match self
                .registry
                .gate(room.as_str(), version, self.interval)
                .await
            {
                Ok(Gate::Open) => break,
                Ok(Gate::Covered) => return,
                Ok(Gate::Wait(wait)) => {
                    if let Some(entry) = self.lock().get_mut(room.as_str()) {
                        entry.pending = true;
                    }
                    tokio::time::sleep(wait).await;
                }
                Err(err) => {
                    tracing::warn!(room = %room, error = %err, "presence window unavailable");
                    return;
                }
            }
        }
        let members = match self.registry.members(room.as_str()).await {
            Ok(members) => members,
            Err(err) => {
                tracing::warn!(room = %room, error = %err, "presence count unavailable");
                return;
            }
        };
        let payload = json!({"room": room.as_str(), "members": members});
        if let Err(err) = realtime
            .emit(room.as_str().to_owned(), "presence", payload)
            .await
        {
            tracing::warn!(room = %room, error = %err, "presence broadcast failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;

    /// Records every emit instead of sending it.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, serde_json::Value)>>);

    impl super::super::broadcast::Broadcast for Recorder {
        fn emit_named(
            &self,
            room: String,
            _event: String,
            data: serde_json::Value,
        ) -> futures::future::BoxFuture<'static, Result<(), super::super::broadcast::BroadcastFailed>>
        {
            self.0.lock().expect("lock").push((room, data));
            Box::pin(async { Ok(()) })
        }
        fn disconnect_room(
            &self,
            _room: String,
        ) -> futures::future::BoxFuture<'static, Result<(), super::super::broadcast::BroadcastFailed>>
        {
            Box::pin(async { Ok(()) })
        }
        fn local_sockets(&self) -> usize {
            0
        }
        fn local_sockets_of(&self, _namespace: &'static str) -> usize {
            0
        }
        fn emit_local(
            &self,
            _namespace: &'static str,
            _event: &'static str,
            _data: serde_json::Value,
        ) -> futures::future::BoxFuture<'static, ()> {
            Box::pin(async {})
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_changes_gives_one_event_now_and_one_with_the_final_count() {
        let presence: Arc<dyn Presence> =
            Arc::new(crate::presence::local::PresenceRegistry::default());
        let notifier = PresenceNotifier::new(presence.clone(), PRESENCE_INTERVAL, Tasks::default());
        let recorder = Arc::new(Recorder::default());
        let room = RoomName::parse("lobby").expect("room");
        for user in 1..=5 {
            let change = presence.join(&room, UserId(user)).await.expect("join");
            notifier.changed(&room, change, recorder.clone());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let sent = recorder.0.lock().expect("lock").clone();
        assert_eq!(
            sent.len(),
            2,
            "one event at once and one for the rest of the second: {sent:?}"
        );
        assert_eq!(sent[0].1["members"], 1);
        assert_eq!(
            sent[1].1["members"], 5,
            "the coalesced event carries the count at send time"
        );
    }
}
