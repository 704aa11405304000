//! The embedded mode's session store: records in process memory that go away when they expire.
//!
//! tower-sessions' `MemoryStore` hides expired records from `load` but never deletes them, so
//! every session ever created (an anonymous visitor's opt-out creates one) stays in memory for
//! the life of the process. This store keeps the same map and deletes expired records twice
//! over: `load` drops an expired record it finds, and a sweep task deletes every expired record
//! each `SESSION_SWEEP_INTERVAL_SECS`. The sweep task belongs to the app's `Tasks` and stops
//! when the drain stops background tasks; it holds the map weakly, so it also ends when the
//! store is dropped.
//!
//! The invariant: no record outlives its expiry by more than one sweep interval, so memory is
//! bounded by the sessions created within one session lifetime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};

use crate::shutdown::tasks::Tasks;

type Records = Mutex<HashMap<Id, Record>>;

/// In-process sessions with expiry enforced by deletion. Cheap to clone (shared map).
#[derive(Debug, Clone, Default)]
pub struct ExpiringMemoryStore {
    records: Arc<Records>,
}

impl ExpiringMemoryStore {
    /// A store whose expired records are swept every `sweep_every` by a task of `tasks`.
    pub fn with_sweeper(sweep_every: Duration, tasks: &Tasks) -> Self {
        let store = Self::default();
        let records = Arc::downgrade(&store.records);
        tasks.spawn_until_cancelled("session_sweep", sweep(records, sweep_every));
        store
    }

    /// Records held right now, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Id, Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes every expired record; returns how many.
    fn sweep_now(records: &Records) -> usize {
        let now = OffsetDateTime::now_utc();
        let mut map = records.lock().unwrap_or_else(|p| p.into_inner());
        let before = map.len();
        map.retain(|_, record| record.expiry_date > now);
        before - map.len()
    }
}

async fn sweep(records: Weak<Records>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(records) = records.upgrade() else {
            return;
        };
        let deleted = ExpiringMemoryStore::sweep_now(&records);
        if deleted > 0 {
            tracing::debug!(deleted, "expired sessions deleted");
        }
    }
}

#[async_trait]
impl SessionStore for ExpiringMemoryStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let mut map = self.lock();
        while map.contains_key(&record.id) {
            record.id = Id::default();
        }
        map.insert(record.id, record.clone());
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.lock().insert(record.id, record.clone());
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let mut map = self.lock();
        match map.get(id) {
            Some(record) if record.expiry_date > OffsetDateTime::now_utc() => {
                Ok(Some(record.clone()))
            }
            Some(_) => {
                map.remove(id);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.lock().remove(id);
        Ok(())
    }
}

#[async_trait]
impl ExpiredDeletion for ExpiringMemoryStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        Self::sweep_now(&self.records);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: i128, expires_in: time::Duration) -> Record {
        Record {
            id: Id(id),
            data: HashMap::new(),
            expiry_date: OffsetDateTime::now_utc() + expires_in,
        }
    }

    #[tokio::test]
    async fn expired_records_are_deleted_and_live_ones_kept() {
        let store = ExpiringMemoryStore::default();
        store
            .save(&record(1, time::Duration::seconds(-1)))
            .await
            .expect("save");
        store
            .save(&record(2, time::Duration::hours(1)))
            .await
            .expect("save");
        store.delete_expired().await.expect("sweep");
        assert_eq!(store.len(), 1);
        assert!(store.load(&Id(2)).await.expect("load").is_some());
    }

    #[tokio::test]
    async fn loading_an_expired_record_deletes_it() {
        let store = ExpiringMemoryStore::default();
        store
            .save(&record(1, time::Duration::seconds(-1)))
            .await
            .expect("save");
        assert_eq!(store.load(&Id(1)).await.expect("load"), None);
        assert!(store.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweeper_runs_on_its_interval_and_ends_with_the_store() {
        let store = ExpiringMemoryStore::with_sweeper(Duration::from_secs(5), &Tasks::default());
        store
            .save(&record(1, time::Duration::seconds(-1)))
            .await
            .expect("save");
        tokio::time::sleep(Duration::from_secs(6)).await;
        tokio::task::yield_now().await;
        assert!(store.is_empty(), "the sweep deleted the expired record");
    }
}
