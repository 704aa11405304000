//! Argon2id password hashing off the async runtime, with a bound.
//!
//! One hash costs tens of milliseconds of CPU and 19 MiB of memory. Run on the runtime's
//! workers it would stall every socket; run unbounded it would let a burst of logins exhaust
//! memory. So hashes run on `spawn_blocking` behind a semaphore of `PASSWORD_HASH_CONCURRENCY`
//! slots, and at most `PASSWORD_HASH_QUEUE` callers may wait: the next one gets `Busy` (a 503)
//! instead of an unbounded queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Argon2, password_hash::rand_core::OsRng};
use tokio::sync::Semaphore;

use crate::domain::Password;

/// Why hashing did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Too many hashes queued; shed load.
    #[error("password hashing is saturated")]
    Busy,
    /// The blocking task failed or the stored hash is unreadable.
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// Bounded argon2id hasher shared by all requests.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    /// A real hash of a random password, verified against when the username does not exist so
    /// that response time does not reveal which usernames are registered.
    decoy: Arc<str>,
}

impl PasswordHasher {
    /// Creates a hasher with `concurrency` parallel slots and `max_waiting` queued callers.
    pub fn new(concurrency: usize, max_waiting: usize) -> Result<Self, HashError> {
        let decoy = hash_blocking(&uuid::Uuid::new_v4().to_string())?;
        Ok(Self {
            slots: Arc::new(Semaphore::new(concurrency)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
            decoy: decoy.into(),
        })
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        self.run(move || hash_blocking(password.expose())).await
    }

    /// Checks `password` against `stored`, or against the decoy when there is no account.
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        let exists = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.decoy.to_string());
        let matches = self
            .run(move || {
                let parsed =
                    PasswordHash::new(&stored).map_err(|e| HashError::Failed(e.to_string()))?;
                Ok(Argon2::default()
                    .verify_password(password.expose().as_bytes(), &parsed)
                    .is_ok())
            })
            .await?;
        Ok(exists && matches)
    }

    /// Callers waiting for a slot, for `/health`.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Hashes running right now, for `/health`.
    pub fn in_progress(&self, concurrency: usize) -> usize {
        concurrency.saturating_sub(self.slots.available_permits())
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Busy);
        }
        let permit = self.slots.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let permit = permit.map_err(|_| HashError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))?
    }
}

fn hash_blocking(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(p: &str) -> Password {
        Password::parse(p.to_owned()).expect("valid password")
    }

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_match() {
        let hasher = PasswordHasher::new(2, 8).expect("hasher");
        let hash = hasher.hash(password("correct horse")).await.expect("hash");
        assert!(
            hash.starts_with("$argon2id$"),
            "argon2id expected, got {hash}"
        );
        assert!(
            hasher
                .verify(password("correct horse"), Some(hash.clone()))
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify(password("wrong horse!"), Some(hash))
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify(password("correct horse"), None)
                .await
                .expect("decoy")
        );
    }

    #[tokio::test]
    async fn a_full_queue_sheds_load_instead_of_growing() {
        let hasher = PasswordHasher::new(1, 1).expect("hasher");
        let results =
            futures::future::join_all((0..6).map(|_| hasher.hash(password("correct horse")))).await;
        assert!(
            results.iter().any(|r| matches!(r, Err(HashError::Busy))),
            "six hashes through one slot and a queue of one must shed some"
        );
        assert!(results.iter().any(Result::is_ok));
    }
}
