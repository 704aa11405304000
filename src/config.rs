//! Typed settings, parsed once from the environment at start.
//!
//! Every variable of the SPEC's configuration table is read here and nowhere else. Parsing is
//! strict: a value that does not parse stops the process with a message that names the variable,
//! because a server that silently falls back to a default on a typo is worse than one that does
//! not start. `Config::from_lookup` takes any key lookup so tests build configs from a map
//! without touching the process environment.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use http::HeaderValue;

use crate::instance::InstanceId;

/// A configuration value that could not be used; names the variable so operators can fix it.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with its value, without echoing secrets.
    pub reason: String,
}

impl ConfigError {
    fn new(variable: &'static str, reason: impl Into<String>) -> Self {
        Self {
            variable,
            reason: reason.into(),
        }
    }
}

/// Log output format selected by `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `[ts] [LEVEL] [instance] message key=value…`, for humans.
    Text,
    /// One JSON object per line with an `instance_id` field, for log pipelines.
    Json,
}

/// A 256-bit AES-GCM key for session records at rest.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey(pub [u8; 32]);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(<redacted>)")
    }
}

/// A secret string that never shows up in `Debug` output or logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call sites are few and easy to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Everything the server needs to know about its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address (`HOST`).
    pub host: IpAddr,
    /// Listen port (`PORT`); 0 picks a free port, which tests use.
    pub port: u16,
    /// This instance's identity on logs, responses and health (`INSTANCE_ID`).
    pub instance_id: InstanceId,
    /// Redis for cluster mode: `REDIS_URL` as given, or the `redis-cluster://` URL built from
    /// `REDIS_CLUSTER_NODES`, so every connection is made the same way whichever Redis
    /// deployment is behind it; `None` means embedded mode.
    pub redis_url: Option<String>,
    /// Whether sessions live in Redis (`USE_REDIS_SESSIONS`).
    pub use_redis_sessions: bool,
    /// Current key sealing session records in Redis (`SESSION_ENCRYPTION_KEY`).
    pub session_encryption_key: Option<EncryptionKey>,
    /// Retired keys still accepted for opening records (`SESSION_ENCRYPTION_KEYS_OLD`).
    pub session_encryption_keys_old: Vec<EncryptionKey>,
    /// Secret that signs the session cookie (`SESSION_SECRET`).
    pub session_secret: Secret,
    /// Idle lifetime of a session (`SESSION_TTL_SECS`).
    pub session_ttl: Duration,
    /// Lifetime of a "remember me" session (`SESSION_REMEMBER_TTL_SECS`).
    pub session_remember_ttl: Duration,
    /// Mark the cookie `Secure` (`COOKIE_SECURE`); set it when TLS terminates in front.
    pub cookie_secure: bool,
    /// PostgreSQL or SQLite (`DATABASE_URL`).
    pub database_url: String,
    /// Upper bound of the database pool (`DATABASE_MAX_CONNECTIONS`).
    pub database_max_connections: u32,
    /// Hard limit for the graceful drain (`SHUTDOWN_TIMEOUT_SECS`).
    pub shutdown_timeout: Duration,
    /// Bearer token for `/api/admin/*` (`ADMIN_TOKEN`); `None` turns the admin API off.
    pub admin_token: Option<Secret>,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// Browser origins allowed to call the API with credentials (`CORS_ORIGINS`).
    pub cors_origins: Vec<HeaderValue>,
    /// Take the client address from `X-Forwarded-For` (`TRUST_PROXY`); only behind a proxy.
    pub trust_proxy: bool,
    /// Sustained per-user message rate (`MESSAGE_RATE_PER_SEC`).
    pub message_rate_per_sec: u32,
    /// Per-user message burst (`MESSAGE_RATE_BURST`).
    pub message_rate_burst: u32,
    /// Failed logins per username (and per address and username) before `429` (`LOGIN_MAX_FAILURES`).
    pub login_max_failures: u32,
    /// Window in which failed logins are counted (`LOGIN_WINDOW_SECS`).
    pub login_window: Duration,
    /// Proxies in front of the app that each append one `X-Forwarded-For` entry
    /// (`TRUST_PROXY_HOPS`); the client address is that many entries from the right.
    pub trust_proxy_hops: usize,
    /// Failed logins per client address per window before its wrong passwords get `429`
    /// (`LOGIN_MAX_FAILURES_PER_IP`); looser than per username and never refuses a correct password.
    pub login_max_failures_per_address: u32,
    /// Sustained registrations per client address per minute (`REGISTER_RATE_PER_MIN`).
    pub register_rate_per_min: u32,
    /// Registrations one client address may make at once (`REGISTER_RATE_BURST`).
    pub register_rate_burst: u32,
    /// Sustained `join`/`leave`/`resume` events per user per second (`ROOM_EVENT_RATE_PER_SEC`).
    pub room_event_rate_per_sec: u32,
    /// Burst of `join`/`leave`/`resume` events per user (`ROOM_EVENT_RATE_BURST`).
    pub room_event_rate_burst: u32,
    /// Sustained `typing` events per user per second (`TYPING_RATE_PER_SEC`).
    pub typing_rate_per_sec: u32,
    /// Burst of `typing` events per user (`TYPING_RATE_BURST`).
    pub typing_rate_burst: u32,
    /// Rooms a socket may be in besides `user:<id>` (`MAX_ROOMS_PER_SOCKET`).
    pub max_rooms_per_socket: usize,
    /// Event handlers one socket may have running or queued (`MAX_EVENTS_IN_FLIGHT_PER_SOCKET`).
    pub max_events_in_flight: usize,
    /// Largest accepted HTTP request body (`HTTP_BODY_LIMIT_BYTES`).
    pub http_body_limit: usize,
    /// Largest accepted Engine.IO payload (`SOCKETIO_MAX_PAYLOAD_BYTES`).
    pub socketio_max_payload: u64,
    /// Password hashes computed at once (`PASSWORD_HASH_CONCURRENCY`).
    pub password_hash_concurrency: usize,
    /// Password hashes allowed to wait for a slot before `503` (`PASSWORD_HASH_QUEUE`).
    pub password_hash_queue: usize,
    /// Time a client has to send a complete request head (`HEADER_READ_TIMEOUT_SECS`).
    pub header_read_timeout: Duration,
    /// Open connections at most (`MAX_CONNECTIONS`); more are refused with `503`.
    pub max_connections: usize,
    /// New connections per second per client address (`CONNECTION_RATE_PER_IP`).
    pub connection_rate_per_ip: u32,
    /// Burst of new connections per client address (`CONNECTION_BURST_PER_IP`).
    pub connection_burst_per_ip: u32,
    /// How long a disconnected client may be away and still get what it missed replayed
    /// (`RECOVERY_WINDOW_SECS`); judged by the age of the first message it missed.
    pub recovery_window: Duration,
    /// Most messages replayed per room on a resume (`RECOVERY_MAX_MESSAGES`); a client that
    /// missed more is told to reload the room's history instead.
    pub recovery_max_messages: u32,
    /// Approximate cap of the analytics stream (`ANALYTICS_STREAM_MAXLEN`).
    pub analytics_stream_maxlen: u64,
    /// Events stored per transaction at most (`ANALYTICS_BATCH_SIZE`).
    pub analytics_batch_size: u64,
    /// Time a consumer keeps collecting a batch after its first entry
    /// (`ANALYTICS_BATCH_LINGER_MS`, 0 = store at once).
    pub analytics_batch_linger: Duration,
    /// Idle time after which a consumer's pending entries are taken over
    /// (`ANALYTICS_CLAIM_IDLE_MS`).
    pub analytics_claim_idle: Duration,
    /// Age after which chat messages are deleted (`HISTORY_RETENTION_DAYS`); `None` keeps
    /// history forever.
    pub history_retention_days: Option<u32>,
    /// How often the retention job runs (`HISTORY_RETENTION_INTERVAL_SECS`).
    pub history_retention_interval: Duration,
    /// Messages deleted per statement (`HISTORY_RETENTION_BATCH_SIZE`).
    pub history_retention_batch_size: u32,
    /// Pause between two delete statements (`HISTORY_RETENTION_BATCH_PAUSE_MS`), so a large
    /// purge does not monopolise the database.
    pub history_retention_batch_pause: Duration,
    /// Lifetime of a cluster job lock between renewals (`JOB_LOCK_TTL_SECS`): how long a
    /// killed holder blocks its job.
    pub job_lock_ttl: Duration,
    /// Consecutive failures that open a circuit breaker (`BREAKER_FAILURE_THRESHOLD`).
    pub breaker_failure_threshold: u32,
    /// Time an open breaker fails fast before letting a probe through (`BREAKER_OPEN_MS`).
    pub breaker_open: Duration,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads settings through `lookup`, which returns a variable's value if it is set.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let redis_url = match (
            env.string("REDIS_URL"),
            env.parse("REDIS_CLUSTER_NODES", redis_cluster_url)?,
        ) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "REDIS_URL",
                    "and REDIS_CLUSTER_NODES are both set; set REDIS_URL for one Redis or \
                     REDIS_CLUSTER_NODES for a Redis Cluster, not both",
                ));
            }
            (single, cluster) => single.or(cluster),
        };
        let use_redis_sessions = env
            .parse("USE_REDIS_SESSIONS", parse_bool)?
            .unwrap_or(redis_url.is_some());
        if use_redis_sessions && redis_url.is_none() {
            return Err(ConfigError::new(
                "USE_REDIS_SESSIONS",
                "is true but neither REDIS_URL nor REDIS_CLUSTER_NODES is set",
            ));
        }
        let session_encryption_key = env.parse("SESSION_ENCRYPTION_KEY", parse_key)?;
        if use_redis_sessions && session_encryption_key.is_none() {
            return Err(ConfigError::new(
                "SESSION_ENCRYPTION_KEY",
                "is required when sessions are kept in Redis (32 bytes as base64 or 64 hex characters)",
            ));
        }
        let session_encryption_keys_old = match env.string("SESSION_ENCRYPTION_KEYS_OLD") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| {
                    parse_key(k)
                        .map_err(|reason| ConfigError::new("SESSION_ENCRYPTION_KEYS_OLD", reason))
                })
                .collect::<Result<_, _>>()?,
        };
        let session_secret = match env.string("SESSION_SECRET") {
            Some(secret) if secret.len() >= 32 => Secret::new(secret),
            Some(_) => {
                return Err(ConfigError::new(
                    "SESSION_SECRET",
                    "must be at least 32 characters",
                ));
            }
            None if redis_url.is_some() => {
                return Err(ConfigError::new(
                    "SESSION_SECRET",
                    "is required in cluster mode so that every instance accepts the same cookies",
                ));
            }
            None => Secret::new(random_secret()),
        };
        let instance_id = match env.string("INSTANCE_ID") {
            Some(id) => {
                InstanceId::parse(&id).map_err(|reason| ConfigError::new("INSTANCE_ID", reason))?
            }
            None => InstanceId::generate(),
        };
        let log_format = match env.string("LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(ConfigError::new("LOG_FORMAT", "must be `text` or `json`")),
        };
        let cors_origins = match env.string("CORS_ORIGINS") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(parse_origin)
                .collect::<Result<_, _>>()?,
        };
        let hash_default = std::thread::available_parallelism().map_or(2, |n| n.get());
        let config = Self {
            host: env
                .parse("HOST", parse_from_str)?
                .unwrap_or(IpAddr::from([127, 0, 0, 1])),
            port: env.parse("PORT", parse_from_str)?.unwrap_or(3000),
            instance_id,
            redis_url,
            use_redis_sessions,
            session_encryption_key,
            session_encryption_keys_old,
            session_secret,
            session_ttl: env.secs("SESSION_TTL_SECS", 86_400)?,
            session_remember_ttl: env.secs("SESSION_REMEMBER_TTL_SECS", 2_592_000)?,
            cookie_secure: env.parse("COOKIE_SECURE", parse_bool)?.unwrap_or(false),
            database_url: env
                .string("DATABASE_URL")
                .unwrap_or_else(|| "sqlite://./data/roomcast.db".to_owned()),
            database_max_connections: env.positive("DATABASE_MAX_CONNECTIONS", 10)?,
            shutdown_timeout: env.secs("SHUTDOWN_TIMEOUT_SECS", 30)?,
            admin_token: match env.string("ADMIN_TOKEN") {
                Some(token) if token.len() >= 16 => Some(Secret::new(token)),
                Some(_) => {
                    return Err(ConfigError::new(
                        "ADMIN_TOKEN",
                        "must be at least 16 characters",
                    ));
                }
                None => None,
            },
            log_format,
            cors_origins,
            trust_proxy: env.parse("TRUST_PROXY", parse_bool)?.unwrap_or(false),
            message_rate_per_sec: env.positive("MESSAGE_RATE_PER_SEC", 20)?,
            message_rate_burst: env.positive("MESSAGE_RATE_BURST", 40)?,
            login_max_failures: env.positive("LOGIN_MAX_FAILURES", 10)?,
            login_window: env.secs("LOGIN_WINDOW_SECS", 900)?,
            trust_proxy_hops: env.positive("TRUST_PROXY_HOPS", 1)?,
            login_max_failures_per_address: env.positive("LOGIN_MAX_FAILURES_PER_IP", 100)?,
            register_rate_per_min: env.positive("REGISTER_RATE_PER_MIN", 10)?,
            register_rate_burst: env.positive("REGISTER_RATE_BURST", 20)?,
            room_event_rate_per_sec: env.positive("ROOM_EVENT_RATE_PER_SEC", 10)?,
            room_event_rate_burst: env.positive("ROOM_EVENT_RATE_BURST", 60)?,
            typing_rate_per_sec: env.positive("TYPING_RATE_PER_SEC", 5)?,
            typing_rate_burst: env.positive("TYPING_RATE_BURST", 10)?,
            max_rooms_per_socket: env.positive("MAX_ROOMS_PER_SOCKET", 50)?,
            max_events_in_flight: env.positive("MAX_EVENTS_IN_FLIGHT_PER_SOCKET", 100)?,
            http_body_limit: env.positive("HTTP_BODY_LIMIT_BYTES", 64 * 1024)?,
            socketio_max_payload: env.positive("SOCKETIO_MAX_PAYLOAD_BYTES", 64 * 1024)?,
            password_hash_concurrency: env.positive("PASSWORD_HASH_CONCURRENCY", hash_default)?,
            password_hash_queue: env.positive("PASSWORD_HASH_QUEUE", 256)?,
            header_read_timeout: env.secs("HEADER_READ_TIMEOUT_SECS", 10)?,
            max_connections: env.positive("MAX_CONNECTIONS", 20_000)?,
            connection_rate_per_ip: env.positive("CONNECTION_RATE_PER_IP", 200)?,
            connection_burst_per_ip: env.positive("CONNECTION_BURST_PER_IP", 400)?,
            recovery_window: Duration::from_secs(u64::from(at_most(
                "RECOVERY_WINDOW_SECS",
                env.positive("RECOVERY_WINDOW_SECS", 120)?,
                MAX_RECOVERY_WINDOW_SECS,
            )?)),
            recovery_max_messages: at_most(
                "RECOVERY_MAX_MESSAGES",
                env.positive("RECOVERY_MAX_MESSAGES", 1000)?,
                MAX_RECOVERY_MESSAGES,
            )?,
            analytics_stream_maxlen: env.positive("ANALYTICS_STREAM_MAXLEN", 1_000_000)?,
            analytics_batch_size: env.positive("ANALYTICS_BATCH_SIZE", 100)?,
            analytics_batch_linger: Duration::from_millis(
                env.parse("ANALYTICS_BATCH_LINGER_MS", parse_from_str::<u64>)?
                    .unwrap_or(200),
            ),
            analytics_claim_idle: Duration::from_millis(
                env.positive("ANALYTICS_CLAIM_IDLE_MS", 30_000)?,
            ),
            history_retention_days: env
                .parse("HISTORY_RETENTION_DAYS", parse_from_str::<u32>)?
                .map(|days| {
                    if days == 0 {
                        Err(ConfigError::new(
                            "HISTORY_RETENTION_DAYS",
                            "must be at least 1 (unset keeps history forever)",
                        ))
                    } else {
                        Ok(days)
                    }
                })
                .transpose()?,
            history_retention_interval: env.secs("HISTORY_RETENTION_INTERVAL_SECS", 3_600)?,
            history_retention_batch_size: env.positive("HISTORY_RETENTION_BATCH_SIZE", 1_000)?,
            history_retention_batch_pause: Duration::from_millis(
                env.parse("HISTORY_RETENTION_BATCH_PAUSE_MS", parse_from_str::<u64>)?
                    .unwrap_or(50),
            ),
            job_lock_ttl: env.secs("JOB_LOCK_TTL_SECS", 30)?,
            breaker_failure_threshold: env.positive("BREAKER_FAILURE_THRESHOLD", 5)?,
            breaker_open: Duration::from_millis(env.positive("BREAKER_OPEN_MS", 5_000)?),
        };
        if config.analytics_batch_size > 10_000 {
            return Err(ConfigError::new(
                "ANALYTICS_BATCH_SIZE",
                "must be at most 10000 (one transaction per batch)",
            ));
        }
        if config.analytics_batch_linger >= config.analytics_claim_idle {
            return Err(ConfigError::new(
                "ANALYTICS_BATCH_LINGER_MS",
                "must be shorter than ANALYTICS_CLAIM_IDLE_MS, or other instances would take \
                 over a batch that is still being collected",
            ));
        }
        if config.job_lock_ttl < Duration::from_secs(3) {
            return Err(ConfigError::new(
                "JOB_LOCK_TTL_SECS",
                "must be at least 3 (the lock is renewed every third of it)",
            ));
        }
        Ok(config)
    }

    /// Whether this instance shares state with others through Redis.
    pub fn is_cluster(&self) -> bool {
        self.redis_url.is_some()
    }
}

/// Typed access to the variables through the caller's lookup.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// A set, non-blank value.
    fn string(&self, key: &str) -> Option<String> {
        (self.0)(key).filter(|v| !v.trim().is_empty())
    }

    fn parse<T>(
        &self,
        key: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.string(key)
            .map(|v| parse(v.trim()).map_err(|reason| ConfigError::new(key, reason)))
            .transpose()
    }

    fn positive<T>(&self, key: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + Default,
    {
        let value = self.parse(key, parse_from_str)?.unwrap_or(default);
        if value <= T::default() {
            return Err(ConfigError::new(key, "must be greater than zero"));
        }
        Ok(value)
    }

    fn secs(&self, key: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.positive(key, default).map(Duration::from_secs)
    }
}

/// Upper bound of `RECOVERY_WINDOW_SECS` (a day): past that, history is the better tool.
pub const MAX_RECOVERY_WINDOW_SECS: u32 = 86_400;

/// Upper bound of `RECOVERY_MAX_MESSAGES`: one resume must not load an unbounded page.
pub const MAX_RECOVERY_MESSAGES: u32 = 10_000;

/// `value` if it is at most `max`, else an error naming `key`.
fn at_most(key: &'static str, value: u32, max: u32) -> Result<u32, ConfigError> {
    if value > max {
        return Err(ConfigError::new(key, format!("must be at most {max}")));
    }
    Ok(value)
}

fn parse_from_str<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("`{value}` is not a valid {}", short_type_name::<T>()))
}

fn short_type_name<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    name.rsplit("::").next().unwrap_or(name)
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("`{value}` is not a boolean (true/false)")),
    }
}

/// Accepts 64 hex characters or base64 (standard or URL-safe, padded or not) of exactly 32 bytes.
/// The error never repeats the value: it is a secret.
fn parse_key(value: &str) -> Result<EncryptionKey, String> {
    let bytes = if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(value).ok()
    } else {
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        engines.iter().find_map(|engine| engine.decode(value).ok())
    };
    match bytes.map(<[u8; 32]>::try_from) {
        Some(Ok(key)) => Ok(EncryptionKey(key)),
        Some(Err(bytes)) => Err(format!("must decode to 32 bytes, got {}", bytes.len())),
        None => Err("must be 32 bytes as base64 or 64 hex characters".to_owned()),
    }
}

/// Turns `REDIS_CLUSTER_NODES` (`host:port,host:port`, each optionally `redis://` or
/// `rediss://` and with `user:password@`) into the `redis-cluster://` URL the Redis client
/// takes: the first node in the authority, the others as `node=` parameters. Any node is
/// only a seed: the client learns the whole topology from it. Credentials and TLS hold for
/// the whole cluster, so entries must not disagree on them. Errors never echo credentials.
fn redis_cluster_url(value: &str) -> Result<String, String> {
    let mut tls = None;
    let mut credentials: Option<&str> = None;
    let mut nodes = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (entry_tls, rest) = if let Some(rest) = entry.strip_prefix("redis://") {
            (Some(false), rest)
        } else if let Some(rest) = entry.strip_prefix("rediss://") {
            (Some(true), rest)
        } else if entry.contains("://") {
            return Err(
                "nodes must be host:port, optionally with redis:// or rediss://".to_owned(),
            );
        } else {
            (None, entry)
        };
        if let Some(entry_tls) = entry_tls {
            if tls.is_some_and(|tls| tls != entry_tls) {
                return Err("mixes redis:// and rediss:// nodes".to_owned());
            }
            tls = Some(entry_tls);
        }
        let (userinfo, address) = match rest.rsplit_once('@') {
            Some((userinfo, address)) => (Some(userinfo), address),
            None => (None, rest),
        };
        if let Some(userinfo) = userinfo {
            if credentials.is_some_and(|c| c != userinfo) {
                return Err("nodes carry different credentials; the cluster has one".to_owned());
            }
            credentials = Some(userinfo);
        }
        nodes.push(node_address(address.trim_end_matches('/'))?);
    }
    let Some((first, others)) = nodes.split_first() else {
        return Err("lists no node; expected host:port,host:port".to_owned());
    };
    let scheme = if tls == Some(true) {
        "rediss-cluster"
    } else {
        "redis-cluster"
    };
    let userinfo = credentials.map(|c| format!("{c}@")).unwrap_or_default();
    let query = others
        .iter()
        .map(|node| format!("node={node}"))
        .collect::<Vec<_>>()
        .join("&");
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    Ok(format!("{scheme}://{userinfo}{first}{query}"))
}

/// `host:port` (port 6379 when left out; IPv6 hosts in brackets), checked.
fn node_address(address: &str) -> Result<String, String> {
    let invalid = || format!("`{address}` is not host:port");
    let (host, port) = match address.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']').ok_or_else(invalid)?;
            let port = match rest {
                "" => None,
                rest => Some(rest.strip_prefix(':').ok_or_else(invalid)?),
            };
            (host, port)
        }
        None => match address.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        },
    };
    let bracketed = address.starts_with('[');
    if host.is_empty()
        || host.contains(['/', '?', '#', ' ', '@', '&', '=', '[', ']'])
        || (!bracketed && host.contains(':'))
    {
        return Err(invalid());
    }
    let port = match port {
        None => 6379,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{address}` does not end in a valid port"))?,
    };
    Ok(if bracketed {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

fn parse_origin(value: &str) -> Result<HeaderValue, ConfigError> {
    let valid = (value.starts_with("http://") || value.starts_with("https://"))
        && !value.trim_end_matches('/').contains(['?', '#', ' '])
        && value
            .split("://")
            .nth(1)
            .is_some_and(|host| !host.is_empty() && !host.contains('/'));
    if !valid {
        return Err(ConfigError::new(
            "CORS_ORIGINS",
            format!("`{value}` is not an origin like https://chat.example.com"),
        ));
    }
    HeaderValue::from_str(value)
        .map_err(|_| ConfigError::new("CORS_ORIGINS", format!("`{value}` is not a valid origin")))
}

fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 48];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_describe_embedded_mode() {
        let c = config(&[]).expect("empty environment is valid");
        assert_eq!(c.port, 3000);
        assert_eq!(c.host.to_string(), "127.0.0.1");
        assert!(!c.is_cluster());
        assert!(!c.use_redis_sessions);
        assert_eq!(c.session_ttl, Duration::from_secs(86_400));
        assert_eq!(c.database_url, "sqlite://./data/roomcast.db");
        assert!(c.session_secret.expose().len() >= 32);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (vars, variable) in [
            (vec![("PORT", "eighty")], "PORT"),
            (vec![("HOST", "localhost:1")], "HOST"),
            (vec![("LOG_FORMAT", "xml")], "LOG_FORMAT"),
            (
                vec![("SHUTDOWN_TIMEOUT_SECS", "0")],
                "SHUTDOWN_TIMEOUT_SECS",
            ),
            (vec![("SESSION_SECRET", "short")], "SESSION_SECRET"),
            (vec![("INSTANCE_ID", "has space")], "INSTANCE_ID"),
            (vec![("CORS_ORIGINS", "example.com")], "CORS_ORIGINS"),
            (
                vec![("REDIS_URL", "redis://127.0.0.1:6379")],
                "SESSION_ENCRYPTION_KEY",
            ),
            (vec![("USE_REDIS_SESSIONS", "maybe")], "USE_REDIS_SESSIONS"),
            (
                vec![("ANALYTICS_CLAIM_IDLE_MS", "0")],
                "ANALYTICS_CLAIM_IDLE_MS",
            ),
            (
                vec![
                    ("ANALYTICS_BATCH_LINGER_MS", "5000"),
                    ("ANALYTICS_CLAIM_IDLE_MS", "1000"),
                ],
                "ANALYTICS_BATCH_LINGER_MS",
            ),
            (
                vec![("ANALYTICS_BATCH_SIZE", "100000")],
                "ANALYTICS_BATCH_SIZE",
            ),
            (
                vec![("HISTORY_RETENTION_DAYS", "0")],
                "HISTORY_RETENTION_DAYS",
            ),
            (
                vec![("HISTORY_RETENTION_DAYS", "soon")],
                "HISTORY_RETENTION_DAYS",
            ),
            (vec![("JOB_LOCK_TTL_SECS", "1")], "JOB_LOCK_TTL_SECS"),
            (vec![("BREAKER_OPEN_MS", "-5")], "BREAKER_OPEN_MS"),
        ] {
            let err = config(&vars).expect_err("bad value must be rejected");
            assert_eq!(err.variable, variable, "{vars:?} gave {err}");
        }
    }

    #[test]
    fn encryption_keys_accept_hex_and_base64_and_never_echo_the_value() {
        let hex_key = "00".repeat(32);
        let b64_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(parse_key(&hex_key).expect("hex").0, [0u8; 32]);
        assert_eq!(parse_key(&b64_key).expect("base64").0, [7u8; 32]);
        let err = parse_key("c2VjcmV0LXRoYXQtaXMtdG9vLXNob3J0").expect_err("too short");
        assert!(!err.contains("c2Vj"), "error leaked the key: {err}");
    }

    #[test]
    fn redis_cluster_nodes_become_one_cluster_url() {
        assert_eq!(
            redis_cluster_url("10.0.0.1:7000, 10.0.0.2:7001,,10.0.0.3").as_deref(),
            Ok("redis-cluster://10.0.0.1:7000?node=10.0.0.2:7001&node=10.0.0.3:6379")
        );
        assert_eq!(
            redis_cluster_url("rediss://app:pw@a:7000,rediss://app:pw@b:7000").as_deref(),
            Ok("rediss-cluster://app:pw@a:7000?node=b:7000")
        );
        assert_eq!(
            redis_cluster_url("redis://:pw@[::1]:7000").as_deref(),
            Ok("redis-cluster://:pw@[::1]:7000")
        );
        for bad in [
            "",
            " , ",
            "a:0",
            "a:port",
            "http://a:7000",
            "redis://a:1,rediss://b:2",
            "a/0",
            "::1:7000",
        ] {
            assert!(redis_cluster_url(bad).is_err(), "`{bad}` must be rejected");
        }
        let err =
            redis_cluster_url("redis://:pw-a@a:1,redis://:pw-b@b:2").expect_err("two passwords");
        assert!(!err.contains("pw-"), "{err}");
    }

    #[test]
    fn redis_url_and_redis_cluster_nodes_exclude_each_other() {
        let key = "11".repeat(32);
        let base = [
            ("SESSION_ENCRYPTION_KEY", key.as_str()),
            ("SESSION_SECRET", "a-cluster-wide-cookie-secret-0123456789"),
        ];
        let both = [
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("REDIS_CLUSTER_NODES", "127.0.0.1:7000"),
        ];
        let err = config(&[&base[..], &both[..]].concat()).expect_err("both set");
        assert!(
            err.to_string().contains("REDIS_URL")
                && err.to_string().contains("REDIS_CLUSTER_NODES"),
            "{err}"
        );
        let c = config(&[&base[..], &[("REDIS_CLUSTER_NODES", "127.0.0.1:7000")][..]].concat())
            .expect("a cluster alone is valid");
        assert!(c.is_cluster() && c.use_redis_sessions);
        assert_eq!(
            c.redis_url.as_deref(),
            Some("redis-cluster://127.0.0.1:7000")
        );
    }

    #[test]
    fn cluster_mode_needs_a_shared_cookie_secret() {
        let key = "11".repeat(32);
        let err = config(&[
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("SESSION_ENCRYPTION_KEY", &key),
        ])
        .expect_err("cluster without SESSION_SECRET");
        assert_eq!(err.variable, "SESSION_SECRET");
    }

    #[test]
    fn recovery_bounds_have_defaults_and_are_validated() {
        let c = config(&[]).expect("defaults");
        assert_eq!(c.recovery_window, Duration::from_secs(120));
        assert_eq!(c.recovery_max_messages, 1000);
        for (key, value) in [
            ("RECOVERY_WINDOW_SECS", "0"),
            ("RECOVERY_WINDOW_SECS", "86401"),
            ("RECOVERY_WINDOW_SECS", "soon"),
            ("RECOVERY_MAX_MESSAGES", "0"),
            ("RECOVERY_MAX_MESSAGES", "10001"),
            ("RECOVERY_MAX_MESSAGES", "-5"),
        ] {
            let err = config(&[(key, value)]).expect_err("invalid value");
            assert_eq!(err.variable, key, "{key}={value} gave {err}");
        }
    }
}
