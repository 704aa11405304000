//! Argon2id password hashing off the async runtime, with a bound on time and on memory.
//!
//! One hash costs tens of milliseconds of CPU and a 19 MiB working block. Run on the
//! runtime's workers it would stall every socket; run unbounded it would let a burst of
//! logins exhaust memory. So hashes run on `spawn_blocking` behind a semaphore of
//! `PASSWORD_HASH_CONCURRENCY` slots, and at most `PASSWORD_HASH_QUEUE` callers may wait: the
//! next one gets `Busy` (a 503) instead of an unbounded queue.
//!
//! Memory: every slot owns one working block, allocated on its first use and then reused for
//! the life of the process (`Argon2::hash_password_into_with_memory`). Allocating and freeing
//! 19 MiB per hash instead made glibc raise its mmap threshold and keep the freed blocks in
//! the arenas of whichever blocking threads ran them: hundreds of MiB after a burst of logins.
//! With reused blocks the hashing memory is at most `concurrency` × 19 MiB, reached once.
//!
//! The invariant that keeps this sound: a block is only taken while holding a semaphore
//! permit, so there are never more blocks than slots.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version, password_hash::rand_core::OsRng};
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

impl From<argon2::Error> for HashError {
    fn from(err: argon2::Error) -> Self {
        Self::Failed(err.to_string())
    }
}

impl From<argon2::password_hash::Error> for HashError {
    fn from(err: argon2::password_hash::Error) -> Self {
        Self::Failed(err.to_string())
    }
}

/// Bounded argon2id hasher shared by all requests.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    slots: Arc<Semaphore>,
    blocks: Arc<BlockPool>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    /// A real hash of a random password, verified against when the username does not exist so
    /// that response time does not reveal which usernames are registered.
    decoy: Arc<str>,
}

impl PasswordHasher {
    /// Creates a hasher with `concurrency` parallel slots and `max_waiting` queued callers.
    pub fn new(concurrency: usize, max_waiting: usize) -> Result<Self, HashError> {
        let blocks = Arc::new(BlockPool::default());
        let decoy = {
            let mut block = blocks.take();
            let decoy = hash_with(&uuid::Uuid::new_v4().to_string(), &mut block);
            blocks.put(block);
            decoy?
        };
        Ok(Self {
            slots: Arc::new(Semaphore::new(concurrency)),
            blocks,
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
            decoy: decoy.into(),
        })
    }

    /// Hashes a new password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        self.run(move |block| hash_with(password.expose(), block))
            .await
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
            .run(move |block| verify_with(password.expose(), &stored, block))
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
        work: impl FnOnce(&mut Vec<Block>) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Busy);
        }
        let permit = self.slots.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let permit = permit.map_err(|_| HashError::Busy)?;
        let blocks = self.blocks.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut block = blocks.take();
            let result = work(&mut block);
            blocks.put(block);
            result
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))?
    }
}

/// Working blocks of finished hashes, kept for the next one.
#[derive(Debug, Default)]
struct BlockPool(Mutex<Vec<Vec<Block>>>);

impl BlockPool {
    /// A block for one hash: a kept one, or a new one (empty; sized by the first hash).
    fn take(&self) -> Vec<Block> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    fn put(&self, block: Vec<Block>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(block);
    }
}

/// Runs `work` on `count` working blocks: the slot's reused block when `count` fits the
/// default parameters (every hash this server makes), a one-off allocation for a stored hash
/// with a higher memory cost, so that such a hash cannot grow the kept blocks for good.
fn with_blocks<T>(block: &mut Vec<Block>, count: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
    if count > Params::default().block_count() {
        return work(&mut vec![Block::default(); count]);
    }
    if block.len() < count {
        block.resize(count, Block::default());
    }
    work(&mut block[..count])
}

/// Hashes `password` with a fresh salt and the default argon2id parameters.
fn hash_with(password: &str, block: &mut Vec<Block>) -> Result<String, HashError> {
    let params = Params::default();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes)?;
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = Output::init_with(output_len, |out| {
        with_blocks(block, params.block_count(), |memory| {
            argon2.hash_password_into_with_memory(password.as_bytes(), salt_raw, out, memory)
        })
        .map_err(Into::into)
    })?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Recomputes `stored`'s hash of `password` with the parameters, version and salt it names;
/// compares in constant time (`Output`'s equality).
fn verify_with(password: &str, stored: &str, block: &mut Vec<Block>) -> Result<bool, HashError> {
    let parsed = PasswordHash::new(stored)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(HashError::Failed(
            "stored hash has no salt or output".into(),
        ));
    };
    let algorithm = Algorithm::try_from(parsed.algorithm)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(&parsed)?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes)?;
    let computed = Output::init_with(expected.len(), |out| {
        with_blocks(block, params.block_count(), |memory| {
            argon2.hash_password_into_with_memory(password.as_bytes(), salt_raw, out, memory)
        })
        .map_err(Into::into)
    })?;
    Ok(computed == expected)
}

#[cfg(test)]
mod tests {
    use argon2::PasswordHasher as _;

    use super::*;

    fn password(p: &str) -> Password {
        Password::parse(p.to_owned()).expect("valid password")
    }

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_match() {
        let hasher = PasswordHasher::new(2, 8).expect("hasher");
        let hash = hasher.hash(password("correct horse")).await.expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "argon2id with the default parameters expected, got {hash}"
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
    async fn hashes_made_by_the_argon2_crate_itself_still_verify() {
        // Stored before the pool existed (default parameters), and with other parameters
        // (a smaller and a larger memory cost than the pool's blocks, argon2i, version 0x10).
        let salt = SaltString::generate(&mut OsRng);
        let stored: Vec<String> = [
            Argon2::default(),
            Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(4096, 3, 1, None).expect("params"),
            ),
            Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(24_576, 1, 2, Some(24)).expect("params"),
            ),
            Argon2::new(Algorithm::Argon2i, Version::V0x10, Params::default()),
        ]
        .iter()
        .map(|a| {
            a.hash_password(b"correct horse", &salt)
                .expect("reference hash")
                .to_string()
        })
        .collect();
        let hasher = PasswordHasher::new(1, 8).expect("hasher");
        for hash in stored {
            assert!(
                hasher
                    .verify(password("correct horse"), Some(hash.clone()))
                    .await
                    .expect("verify"),
                "the right password must match {hash}"
            );
            assert!(
                !hasher
                    .verify(password("correct horsE"), Some(hash.clone()))
                    .await
                    .expect("verify"),
                "a wrong password must not match {hash}"
            );
        }
    }

    #[tokio::test]
    async fn our_hashes_verify_with_the_argon2_crate_itself() {
        use argon2::PasswordVerifier as _;
        let hasher = PasswordHasher::new(1, 8).expect("hasher");
        let hash = hasher.hash(password("correct horse")).await.expect("hash");
        let parsed = PasswordHash::new(&hash).expect("PHC string");
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn an_unreadable_stored_hash_is_an_error_not_a_match() {
        let hasher = PasswordHasher::new(1, 8).expect("hasher");
        let result = hasher
            .verify(password("correct horse"), Some("not a hash".into()))
            .await;
        assert!(matches!(result, Err(HashError::Failed(_))), "{result:?}");
    }

    #[tokio::test]
    async fn blocks_are_reused_and_never_outnumber_the_slots() {
        let hasher = PasswordHasher::new(2, 64).expect("hasher");
        let results =
            futures::future::join_all((0..8).map(|_| hasher.hash(password("correct horse")))).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let kept = hasher
            .blocks
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        assert!(
            (1..=2).contains(&kept),
            "two slots must keep one or two working blocks, kept {kept}"
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
