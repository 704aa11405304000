//! Session records sealed with AES-256-GCM before they reach the inner store (Redis).
//!
//! What Redis holds for a session is the record's id and expiry (the inner store needs both)
//! and one opaque value: `v2.<key id>.<base64(nonce ‖ ciphertext ‖ tag)>`.
//!
//! - Plaintext: the record's data as JSON (user, opt-out flag, …). Nothing a user typed,
//!   not even the username, is readable in Redis.
//! - A fresh random 96-bit nonce per seal.
//! - Associated data: the session id and the expiry (unix seconds), so a sealed value copied
//!   under another id fails to open, and so does a record whose expiry was pushed out by
//!   someone who can write to Redis but does not hold the key.
//! - Key id: the first 4 bytes of SHA-256 of the key. `SESSION_ENCRYPTION_KEYS_OLD` keys still
//!   open records they sealed; a record sealed under a retired key is re-sealed under the
//!   current one at its next request, so rotation completes as users come back.
//! - A record that does not open (unknown key, tampering, garbage) is treated as no session:
//!   the user is logged out, a warning without contents is logged, and no request fails.
//!
//! **Re-sealing only on change.** Expiry is sliding, so tower-sessions saves the session on
//! every request. Sealing each of those would spend a random nonce per request. Instead the
//! store remembers, per session, the data and expiry it last loaded or saved, and skips a save
//! whose data is unchanged and whose expiry moved by less than `RESEAL_AFTER` and less than a
//! tenth of the remaining lifetime. A session's expiry can therefore lag its last request by
//! at most that much. The memory is bounded (`SEEN_CAPACITY` sessions; forgetting one only
//! costs one extra seal).
//!
//! **Nonce budget.** Random 96-bit nonces stay within NIST's collision bound (2^-32) for 2^32
//! seals per key. With one seal per session change or per `RESEAL_AFTER` of activity, a key
//! sealing 1,000 records a second would reach that in about 136 years; rotate the key
//! (`SESSION_ENCRYPTION_KEY`, old one into `SESSION_ENCRYPTION_KEYS_OLD`) well before 2^32
//! seals, for example yearly.
//!
//! **Migration from `v1`.** Records sealed by earlier versions (`v1`: the id alone as
//! associated data) still open; they are re-sealed as `v2` at their next request, so they are
//! gone after one session lifetime.
//!
//! The inner store's `create` may change the id on a collision; since the id is bound into the
//! ciphertext, `create` re-seals under the final id when that happens.

use std::collections::HashMap;
use std::sync::Mutex;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use crate::config::EncryptionKey;

/// Field of the inner record's data that holds the sealed envelope.
const SEALED_FIELD: &str = "sealed";
const VERSION: &str = "v2";
/// Envelopes written before the expiry was bound into the associated data; opened, never written.
const VERSION_ID_ONLY: &str = "v1";
const NONCE_LEN: usize = 12;

/// Longest a sliding expiry is left unsaved while the data does not change.
pub const RESEAL_AFTER: time::Duration = time::Duration::seconds(60);

/// Sessions whose last sealed state this instance remembers.
const SEEN_CAPACITY: usize = 10_000;

/// What the inner store holds for a session, as this instance last loaded or saved it.
#[derive(Debug)]
struct Seen {
    data: HashMap<String, Value>,
    expiry: time::OffsetDateTime,
}

/// One usable key with its identifier.
struct SealingKey {
    id: String,
    cipher: Aes256Gcm,
}

impl SealingKey {
    fn new(key: &EncryptionKey) -> Self {
        let digest = Sha256::digest(key.0);
        Self {
            id: hex::encode(&digest[..4]),
            cipher: Aes256Gcm::new(&key.0.into()),
        }
    }
}

/// Why a sealed record did not open. Never carries record contents.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The record is not an envelope this version writes.
    #[error("not a sealed session envelope")]
    Malformed,
    /// No configured key has this id (rotated out, or another deployment's record).
    #[error("sealed with an unknown key {0}")]
    UnknownKey(String),
    /// Authentication failed: tampered, or copied from another session id.
    #[error("authentication failed")]
    Forged,
}

/// A session store that encrypts record data before handing it to `S`.
pub struct EncryptedStore<S> {
    inner: S,
    current: SealingKey,
    old: Vec<SealingKey>,
    seen: Mutex<HashMap<Id, Seen>>,
}

impl<S> std::fmt::Debug for EncryptedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedStore")
            .field("key_id", &self.current.id)
            .field("old_keys", &self.old.len())
            .finish_non_exhaustive()
    }
}

impl<S: SessionStore> EncryptedStore<S> {
    /// Seals with `current`; opens with `current` or any of `old`.
    pub fn new(inner: S, current: &EncryptionKey, old: &[EncryptionKey]) -> Self {
        Self {
            inner,
            current: SealingKey::new(current),
            old: old.iter().map(SealingKey::new).collect(),
            seen: Mutex::default(),
        }
    }

    fn aad(id: &Id, expiry: time::OffsetDateTime) -> String {
        format!(
            "roomcast-session/{VERSION}/{id}/{}",
            expiry.unix_timestamp()
        )
    }

    fn aad_id_only(id: &Id) -> String {
        format!("roomcast-session/{VERSION_ID_ONLY}/{id}")
    }

    /// Remembers what the inner store now holds for `record.id`.
    fn remember(&self, record: &Record) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= SEEN_CAPACITY && !seen.contains_key(&record.id) {
            seen.clear();
        }
        seen.insert(
            record.id,
            Seen {
                data: record.data.clone(),
                expiry: record.expiry_date,
            },
        );
    }

    fn forget(&self, id: &Id) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Whether saving `record` would change nothing that matters: same data, and an expiry
    /// that slid by less than `RESEAL_AFTER` and less than a tenth of the remaining lifetime.
    fn unchanged(&self, record: &Record) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let Some(last) = seen.get(&record.id) else {
            return false;
        };
        let slide = record.expiry_date - last.expiry;
        let remaining = last.expiry - time::OffsetDateTime::now_utc();
        last.data == record.data
            && slide >= time::Duration::ZERO
            && slide < RESEAL_AFTER
            && slide * 10 < remaining
    }

    /// The record as the inner store sees it: same id and expiry, data replaced by the envelope.
    fn seal(&self, record: &Record) -> session_store::Result<Record> {
        self.seal_as(record, VERSION, &Self::aad(&record.id, record.expiry_date))
    }

    /// Seals under envelope `version` with associated data `aad` (tests write old formats).
    fn seal_as(&self, record: &Record, version: &str, aad: &str) -> session_store::Result<Record> {
        let plaintext = serde_json::to_vec(&record.data)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| session_store::Error::Encode("encryption failed".to_owned()))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        let envelope = format!("{version}.{}.{}", self.current.id, B64.encode(blob));
        Ok(Record {
            id: record.id,
            data: HashMap::from([(SEALED_FIELD.to_owned(), Value::String(envelope))]),
            expiry_date: record.expiry_date,
        })
    }

    /// Opens a sealed record; the result has the original data.
    pub fn open(&self, sealed: Record) -> Result<Record, OpenError> {
        let envelope = sealed
            .data
            .get(SEALED_FIELD)
            .and_then(Value::as_str)
            .ok_or(OpenError::Malformed)?;
        let mut parts = envelope.splitn(3, '.');
        let (Some(version), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(OpenError::Malformed);
        };
        let aad = match version {
            VERSION => Self::aad(&sealed.id, sealed.expiry_date),
            VERSION_ID_ONLY => Self::aad_id_only(&sealed.id),
            _ => return Err(OpenError::Malformed),
        };
        let key = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == key_id)
            .ok_or_else(|| OpenError::UnknownKey(key_id.to_owned()))?;
        let blob = B64.decode(body).map_err(|_| OpenError::Malformed)?;
        if blob.len() < NONCE_LEN {
            return Err(OpenError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let plaintext = key
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| OpenError::Forged)?;
        let data = serde_json::from_slice(&plaintext).map_err(|_| OpenError::Malformed)?;
        Ok(Record {
            id: sealed.id,
            data,
            expiry_date: sealed.expiry_date,
        })
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for EncryptedStore<S> {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let mut sealed = self.seal(record)?;
        self.inner.create(&mut sealed).await?;
        if sealed.id != record.id {
            // The inner store picked a new id; the envelope must be bound to it.
            record.id = sealed.id;
            let resealed = self.seal(record)?;
            self.inner.save(&resealed).await?;
        }
        self.remember(record);
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        if self.unchanged(record) {
            return Ok(());
        }
        self.inner.save(&self.seal(record)?).await?;
        self.remember(record);
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let Some(sealed) = self.inner.load(id).await? else {
            self.forget(id);
            return Ok(None);
        };
        // Records sealed by the previous format or under a retired key are re-sealed at the
        // next save: only records sealed as this store seals them count as seen.
        let current_format = sealed
            .data
            .get(SEALED_FIELD)
            .and_then(Value::as_str)
            .is_some_and(|envelope| {
                let mut parts = envelope.splitn(3, '.');
                parts.next() == Some(VERSION) && parts.next() == Some(self.current.id.as_str())
            });
        match self.open(sealed) {
            Ok(record) => {
                if current_format {
                    self.remember(&record);
                } else {
                    self.forget(id);
                }
                Ok(Some(record))
            }
            Err(err) => {
                tracing::warn!(reason = %err, "session record did not open; treating it as logged out");
                Ok(None)
            }
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.forget(id);
        self.inner.delete(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_sessions::MemoryStore;

    fn record(id: i128) -> Record {
        Record {
            id: Id(id),
            data: HashMap::from([(
                "user".to_owned(),
                serde_json::json!({"username": "alice-secret"}),
            )]),
            expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        }
    }

    fn key(byte: u8) -> EncryptionKey {
        EncryptionKey([byte; 32])
    }

    #[test]
    fn sealed_records_hide_their_contents_and_reopen() {
        let store = EncryptedStore::new(MemoryStore::default(), &key(1), &[]);
        let sealed = store.seal(&record(7)).expect("seal");
        let text = serde_json::to_string(&sealed.data).expect("json");
        assert!(!text.contains("alice"), "plaintext leaked: {text}");
        assert_eq!(store.open(sealed).expect("open").data, record(7).data);
    }

    #[test]
    fn each_save_uses_a_fresh_nonce() {
        let store = EncryptedStore::new(MemoryStore::default(), &key(1), &[]);
        let a = store.seal(&record(7)).expect("seal");
        let b = store.seal(&record(7)).expect("seal");
        assert_ne!(a.data, b.data);
    }

    #[test]
    fn a_sealed_value_copied_under_another_id_does_not_open() {
        let store = EncryptedStore::new(MemoryStore::default(), &key(1), &[]);
        let mut sealed = store.seal(&record(7)).expect("seal");
        sealed.id = Id(8);
        assert!(matches!(store.open(sealed), Err(OpenError::Forged)));
    }

    #[test]
    fn old_keys_open_and_unknown_keys_do_not() {
        let before = EncryptedStore::new(MemoryStore::default(), &key(1), &[]);
        let sealed = before.seal(&record(7)).expect("seal");
        let rotated = EncryptedStore::new(MemoryStore::default(), &key(2), &[key(1)]);
        assert!(rotated.open(sealed.clone()).is_ok());
        let unrelated = EncryptedStore::new(MemoryStore::default(), &key(3), &[]);
        assert!(matches!(
            unrelated.open(sealed),
            Err(OpenError::UnknownKey(_))
        ));
    }

    #[test]
    fn a_record_whose_expiry_was_pushed_out_does_not_open() {
        let store = EncryptedStore::new(MemoryStore::default(), &key(1), &[]);
        let mut sealed = store.seal(&record(7)).expect("seal");
        sealed.expiry_date += time::Duration::days(30);
        assert!(matches!(store.open(sealed), Err(OpenError::Forged)));
    }

    #[test]
    fn records_sealed_by_the_previous_format_still_open() {
        let store = EncryptedStore::new(MemoryStore::default(), &key(1), &[]);
        let original = record(7);
        let aad = EncryptedStore::<MemoryStore>::aad_id_only(&original.id);
        let mut v1 = store
            .seal_as(&original, VERSION_ID_ONLY, &aad)
            .expect("seal v1");
        // v1 did not bind the expiry: a changed expiry still opens.
        v1.expiry_date += time::Duration::days(1);
        assert_eq!(store.open(v1).expect("v1 opens").data, original.data);
    }

    #[tokio::test]
    async fn an_unchanged_session_is_not_resealed_until_its_expiry_slides_far_enough() {
        let inner = MemoryStore::default();
        let store = EncryptedStore::new(inner.clone(), &key(1), &[]);
        let mut r = record(7);
        store.create(&mut r).await.expect("create");
        let stored = || async { inner.load(&r.id).await.expect("load").expect("stored") };
        let first = stored().await;
        store.load(&r.id).await.expect("load").expect("opens");

        let mut slid = r.clone();
        slid.expiry_date += time::Duration::seconds(5);
        store.save(&slid).await.expect("save");
        assert_eq!(
            stored().await.data,
            first.data,
            "a 5 s slide is not re-sealed"
        );

        slid.expiry_date += RESEAL_AFTER;
        store.save(&slid).await.expect("save");
        assert_ne!(
            stored().await.data,
            first.data,
            "a slide past RESEAL_AFTER is"
        );

        let mut changed = slid.clone();
        changed
            .data
            .insert("opted_out".to_owned(), serde_json::json!(true));
        let before = stored().await;
        store.save(&changed).await.expect("save");
        assert_ne!(
            stored().await.data,
            before.data,
            "a data change is re-sealed at once"
        );
    }

    #[tokio::test]
    async fn a_record_that_does_not_open_is_no_session() {
        let inner = MemoryStore::default();
        let writer = EncryptedStore::new(inner.clone(), &key(1), &[]);
        let mut r = record(7);
        writer.create(&mut r).await.expect("create");
        let reader = EncryptedStore::new(inner, &key(9), &[]);
        assert_eq!(reader.load(&r.id).await.expect("load must not fail"), None);
        assert_eq!(
            writer.load(&r.id).await.expect("load").map(|r| r.data),
            Some(record(7).data)
        );
    }

    /// An inner store whose ids always collide once: `create` must re-seal under the new id.
    #[derive(Debug, Clone, Default)]
    struct CollidingStore(MemoryStore);

    #[async_trait]
    impl SessionStore for CollidingStore {
        async fn create(&self, record: &mut Record) -> session_store::Result<()> {
            record.id = Id(record.id.0.wrapping_add(1));
            self.0.save(record).await
        }
        async fn save(&self, record: &Record) -> session_store::Result<()> {
            self.0.save(record).await
        }
        async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
            self.0.load(id).await
        }
        async fn delete(&self, id: &Id) -> session_store::Result<()> {
            self.0.delete(id).await
        }
    }

    #[tokio::test]
    async fn an_id_changed_by_the_inner_create_still_opens() {
        let store = EncryptedStore::new(CollidingStore::default(), &key(1), &[]);
        let mut r = record(7);
        store.create(&mut r).await.expect("create");
        assert_eq!(r.id, Id(8), "the caller learns the new id");
        let loaded = store
            .load(&r.id)
            .await
            .expect("load")
            .expect("record opens under its new id");
        assert_eq!(loaded.data, record(7).data);
    }
}
