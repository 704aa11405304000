//! The state of the Socket.IO handlers that need more than `AppState`: the app's state plus
//! what only the Socket.IO side shares, the coalesced presence events and the room
//! sequencers. Those are kept out of `AppState`, which every layer reads, so that the shared
//! state does not depend on realtime. The drain gets it from `App` to flush the sequencers.

use std::ops::Deref;
use std::sync::Arc;

use super::presence_events::{PRESENCE_INTERVAL, PresenceNotifier};
use super::room_sequencer::RoomSequencers;
use crate::state::AppState;

/// `AppState` plus realtime's own handles; one `Arc`, so extracting it per event costs one
/// increment, like `AppState`.
#[derive(Clone)]
pub struct RealtimeState(Arc<Handles>);

struct Handles {
    app: AppState,
    presence_notifier: PresenceNotifier,
    sequencers: RoomSequencers,
}

impl RealtimeState {
    /// Handles over `app`'s presence counts, with their tasks owned by `app.tasks`.
    pub fn new(app: &AppState) -> Self {
        Self(Arc::new(Handles {
            app: app.clone(),
            presence_notifier: PresenceNotifier::new(
                app.presence.clone(),
                PRESENCE_INTERVAL,
                app.tasks.clone(),
            ),
            sequencers: RoomSequencers::default(),
        }))
    }

    /// Coalesces presence changes into `presence` events.
    pub fn presence_notifier(&self) -> &PresenceNotifier {
        &self.0.presence_notifier
    }

    /// One sequencer per room with traffic: batches a room's messages into one store and
    /// publishes them in seq order.
    pub fn sequencers(&self) -> &RoomSequencers {
        &self.0.sequencers
    }
}

impl Deref for RealtimeState {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.0.app
    }
}
