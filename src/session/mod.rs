//! HTTP sessions: the `roomcast.sid` cookie and the store behind it.
//!
//! tower-sessions does the session protocol (lazy load, save on change, id rotation); this
//! module picks the store and the cookie policy, and lets Socket.IO handshakes read the same
//! session from their `Cookie` header. The cookie value is the session id signed with a key
//! derived from `SESSION_SECRET`, so a forged or altered cookie never reaches the store.
//!
//! Expiry is sliding: every request that carries a non-empty session saves it again, which
//! pushes its expiry `SESSION_TTL_SECS` (or `SESSION_REMEMBER_TTL_SECS`) into the future.

use std::sync::Arc;

use async_trait::async_trait;
use http::HeaderMap;
use sha2::{Digest, Sha256, Sha512};
use time::OffsetDateTime;
use tower_sessions::cookie::{Cookie, CookieJar, Key, SameSite};
use tower_sessions::service::SignedCookie;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions::{Expiry, SessionManagerLayer};

use crate::config::Config;

pub mod encrypted_store;
pub mod memory_store;

use memory_store::ExpiringMemoryStore;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "roomcast.sid";

/// The session store chosen at start, shared by the HTTP layer and Socket.IO handshakes.
#[derive(Debug, Clone)]
pub struct SharedStore(Arc<dyn SessionStore>, Option<ExpiringMemoryStore>);

impl SharedStore {
    /// Wraps a concrete store.
    pub fn new(store: impl SessionStore) -> Self {
        Self(Arc::new(store), None)
    }

    /// The embedded mode's in-process store.
    pub fn embedded(store: ExpiringMemoryStore) -> Self {
        Self(Arc::new(store.clone()), Some(store))
    }

    /// Records held in this process (embedded store only; `None` when they live in Redis).
    pub fn local_records(&self) -> Option<usize> {
        self.1.as_ref().map(ExpiringMemoryStore::len)
    }
}

#[async_trait]
impl SessionStore for SharedStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.0.create(record).await
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

/// Derives the cookie-signing key from `SESSION_SECRET`. The domain-separation prefix keeps
/// the key distinct from anything else a deployment might derive from the same secret.
pub fn cookie_key(config: &Config) -> Key {
    let mut hasher = Sha512::new();
    hasher.update(b"roomcast/session-cookie/v1\0");
    hasher.update(config.session_secret.expose().as_bytes());
    Key::from(hasher.finalize().as_slice())
}

/// The tower-sessions layer with roomcast's cookie policy.
pub fn layer(
    store: SharedStore,
    key: Key,
    config: &Config,
) -> SessionManagerLayer<SharedStore, SignedCookie> {
    SessionManagerLayer::new(store)
        .with_name(COOKIE_NAME)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(config.cookie_secure)
        .with_path("/")
        .with_expiry(default_expiry(config))
        .with_always_save(true)
        .with_signed(key)
}

/// Idle expiry of an ordinary session.
pub fn default_expiry(config: &Config) -> Expiry {
    Expiry::OnInactivity(to_time(config.session_ttl))
}

/// Idle expiry of a "remember me" session.
pub fn remember_expiry(config: &Config) -> Expiry {
    Expiry::OnInactivity(to_time(config.session_remember_ttl))
}

fn to_time(d: std::time::Duration) -> time::Duration {
    time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Reads and verifies the session cookie from request headers, as the HTTP layer does.
/// Returns `None` for a missing, unsigned, tampered or malformed cookie.
pub fn session_id_from_headers(headers: &HeaderMap, key: &Key) -> Option<Id> {
    let mut jar = CookieJar::new();
    for value in headers.get_all(http::header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for cookie in Cookie::split_parse(value.to_owned()).flatten() {
            if cookie.name() == COOKIE_NAME {
                jar.add_original(cookie);
            }
        }
    }
    let verified = jar.signed(key).get(COOKIE_NAME)?;
    verified.value().parse().ok()
}

/// Loads a live session record by id; expired records count as absent.
pub async fn load_active(
    store: &SharedStore,
    id: &Id,
) -> Result<Option<Record>, session_store::Error> {
    Ok(store
        .load(id)
        .await?
        .filter(|record| record.expiry_date > OffsetDateTime::now_utc()))
}

/// A Socket.IO room per session, so that logout can disconnect exactly that session's sockets
/// on every instance. The id is hashed so room names never reveal a usable session id.
pub fn session_room(id: &Id) -> String {
    let digest = Sha256::digest(format!("roomcast/session-room\0{id}").as_bytes());
    format!("session:{}", hex::encode(&digest[..12]))
}

/// A stable pseudonym for an anonymous session in analytics, unlinkable to the cookie.
pub fn anonymous_id(id: &Id) -> String {
    let digest = Sha256::digest(format!("roomcast/anonymous\0{id}").as_bytes());
    hex::encode(&digest[..16])
}
