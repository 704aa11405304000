//! Typed settings, parsed once at start from the command line and the environment.
//!
//! `Config` is a clap command: every setting is both a flag (`--session-ttl-secs`) and an
//! environment variable (`SESSION_TTL_SECS`, the SPEC's name), and `roomcast --help` lists them
//! all, grouped by concern, with defaults and units. A flag wins over its variable. The flag is
//! always the variable in kebab case, so either name finds the other.
//!
//! Parsing is strict and typed (see `values`): a value that does not parse stops the process
//! with exit code 2 and a message that names the variable, because a server that silently
//! falls back to a default on a typo is worse than one that does not start. Values that may
//! hold a secret (keys, tokens, URLs with passwords) are never echoed, neither in errors nor in
//! `--help`. Rules that involve several settings (a session key when sessions live in Redis,
//! `REDIS_URL` or `REDIS_CLUSTER_NODES` but not both) run after parsing, in `Config::resolve`.
//!
//! Adding a setting: one field in `Config` with `long`, `env`, a help heading, a value parser
//! from `values` (which fixes its type and bounds) and a default; its doc comment is the help.

mod values;

use std::ffi::OsString;
use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use http::HeaderValue;

pub use values::{ClusterNode, EncryptionKey, LogFormat, Secret};

use crate::instance::InstanceId;

/// The commit the binary was built from, or `unknown` when it was built outside a git
/// checkout (set by the build script).
pub const COMMIT: &str = match option_env!("ROOMCAST_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

/// `<version> (<commit>)`, what `roomcast --version` prints after the name.
pub static VERSION: LazyLock<String> =
    LazyLock::new(|| format!("{} ({COMMIT})", env!("CARGO_PKG_VERSION")));

/// Upper bound of `RECOVERY_WINDOW_SECS` (a day): past that, history is the better tool.
pub const MAX_RECOVERY_WINDOW_SECS: u32 = 86_400;

/// Upper bound of `RECOVERY_MAX_MESSAGES`: one resume must not load an unbounded page.
pub const MAX_RECOVERY_MESSAGES: u32 = 10_000;

/// Upper bound of `ANALYTICS_BATCH_SIZE`: one transaction per batch must stay short.
pub const MAX_ANALYTICS_BATCH_SIZE: u64 = 10_000;

// Help headings, in the order `--help` shows them.
const LISTENER: &str = "Listener";
const IDENTITY: &str = "Identity and logs";
const REDIS: &str = "Cluster mode (Redis)";
const SESSIONS: &str = "Sessions";
const DATABASE: &str = "Database";
const LIMITS: &str = "Limits and hostile clients";
const RECOVERY: &str = "Connection state recovery";
const OPERATIONS: &str = "Operations";
const ANALYTICS: &str = "Analytics pipeline";
const RETENTION: &str = "History retention";
const JOBS: &str = "Cluster jobs and circuit breakers";

/// A configuration value that could not be used; names the variable so operators can fix it.
#[derive(Debug, thiserror::Error)]
#[error("{variable} (--{}): {reason}", flag(.variable))]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: String,
    /// What is wrong with its value, without echoing secrets.
    pub reason: String,
}

impl ConfigError {
    fn new(variable: &str, reason: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The flag of a variable: `SESSION_TTL_SECS` → `session-ttl-secs`.
fn flag(variable: &str) -> String {
    variable.to_ascii_lowercase().replace('_', "-")
}

/// Why no `Config` came out of the command line and the environment.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `--help` or `--version` was asked for, or the command line itself is malformed (an
    /// unknown flag): clap prints it and picks the exit code (`0` for help, `2` otherwise).
    #[error(transparent)]
    Cli(#[from] clap::Error),
    /// A setting has a value that cannot be used (exit code 2).
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// Everything the server needs to know about its environment.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "roomcast",
    version = VERSION.as_str(),
    about = "Horizontally scalable realtime web server: HTTP + Socket.IO, sessions and \
             broadcasts shared through Redis.",
    long_about = "Horizontally scalable realtime web server: HTTP + Socket.IO, sessions and \
                  broadcasts shared through Redis.\n\nWith no settings at all it serves \
                  127.0.0.1:3000 in embedded mode (in-process sessions, SQLite in ./data). \
                  Set REDIS_URL (or REDIS_CLUSTER_NODES) to run any number of instances as one.",
    after_help = "Every option can also be set through the environment variable shown with it; \
                  a flag wins over its variable. Pass secrets through the environment: command \
                  lines are visible to other users of the machine. An invalid value exits with \
                  code 2 and a message naming the variable.",
    max_term_width = 100
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long = "host", env = "HOST", value_name = "IP", default_value = "127.0.0.1",
          value_parser = ip_address, help_heading = LISTENER)]
    pub host: IpAddr,
    /// Port to listen on; 0 picks a free port (logged as `listening addr=…`).
    #[arg(long = "port", env = "PORT", value_name = "PORT", default_value = "3000",
          value_parser = values::number(0u16, u16::MAX), help_heading = LISTENER)]
    pub port: u16,
    /// Behind a reverse proxy: take the client address from X-Forwarded-For (the entry
    /// TRUST_PROXY_HOPS places from the right) and the host from X-Forwarded-Host.
    #[arg(long = "trust-proxy", env = "TRUST_PROXY", value_name = "BOOL", default_value = "false",
          action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          value_parser = values::boolean, help_heading = LISTENER)]
    pub trust_proxy: bool,
    /// Proxies in front of the instances that each append one X-Forwarded-For entry; the
    /// client address is that many entries from the right (with TRUST_PROXY).
    #[arg(long = "trust-proxy-hops", env = "TRUST_PROXY_HOPS", value_name = "COUNT",
          default_value = "1", value_parser = values::positive::<usize>(), help_heading = LISTENER)]
    pub trust_proxy_hops: usize,
    /// Comma-separated browser origins allowed to call the API with credentials, such as
    /// https://chat.example.com [default: same origin only].
    #[arg(long = "cors-origins", env = "CORS_ORIGINS", value_name = "ORIGIN,…",
          value_delimiter = ',', value_parser = values::origin, help_heading = LISTENER)]
    pub cors_origins: Vec<HeaderValue>,

    /// This instance's identity on every log line, response (X-Instance-Id) and health body:
    /// 1-64 visible ASCII characters [default: <hostname>-<pid>-<6 random hex>].
    #[arg(id = "instance_id", long = "instance-id", env = "INSTANCE_ID", value_name = "ID",
          value_parser = instance_id, help_heading = IDENTITY)]
    given_instance_id: Option<InstanceId>,
    /// Resolved `INSTANCE_ID`: the given one or a generated one.
    #[arg(skip = InstanceId::generate())]
    pub instance_id: InstanceId,
    /// Log line format; the level comes from RUST_LOG (default `info`).
    #[arg(long = "log-format", env = "LOG_FORMAT", value_name = "FORMAT", default_value = "text",
          value_enum, help_heading = IDENTITY)]
    pub log_format: LogFormat,

    /// Redis for sessions, opt-outs, the Socket.IO adapter, presence and rate limits; unset
    /// means embedded mode. redis://[user:password@]host:port[/db], rediss:// for TLS.
    #[arg(long = "redis-url", env = "REDIS_URL", value_name = "URL", hide_env_values = true,
          value_parser = values::redis_url, help_heading = REDIS)]
    pub redis_url: Option<String>,
    /// A Redis Cluster instead of REDIS_URL: comma-separated seed nodes host:port (port 6379
    /// if left out), each optionally redis:// or rediss:// and with user:password@; one set
    /// of credentials and one TLS setting for the whole cluster.
    #[arg(long = "redis-cluster-nodes", env = "REDIS_CLUSTER_NODES", value_name = "NODE,…",
          value_delimiter = ',', hide_env_values = true, value_parser = values::cluster_node,
          help_heading = REDIS)]
    redis_cluster_nodes: Vec<ClusterNode>,

    /// Keep sessions in Redis rather than in this process [default: true when REDIS_URL or
    /// REDIS_CLUSTER_NODES is set].
    #[arg(id = "use_redis_sessions", long = "use-redis-sessions", env = "USE_REDIS_SESSIONS",
          value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          value_parser = values::boolean, help_heading = SESSIONS)]
    given_use_redis_sessions: Option<bool>,
    /// Resolved `USE_REDIS_SESSIONS`.
    #[arg(skip)]
    pub use_redis_sessions: bool,
    /// AES-256-GCM key sealing session records in Redis: 32 bytes as base64 or 64 hex
    /// characters; required when sessions are in Redis.
    #[arg(long = "session-encryption-key", env = "SESSION_ENCRYPTION_KEY", value_name = "KEY",
          hide_env_values = true, value_parser = values::encryption_key, help_heading = SESSIONS)]
    pub session_encryption_key: Option<EncryptionKey>,
    /// Comma-separated retired keys still accepted for opening session records (rotation).
    #[arg(long = "session-encryption-keys-old", env = "SESSION_ENCRYPTION_KEYS_OLD",
          value_name = "KEY,…", value_delimiter = ',', hide_env_values = true,
          value_parser = values::encryption_key, help_heading = SESSIONS)]
    pub session_encryption_keys_old: Vec<EncryptionKey>,
    /// Signs the session cookie; at least 32 characters [default: random per process in
    /// embedded mode, required in cluster mode].
    #[arg(id = "session_secret", long = "session-secret", env = "SESSION_SECRET",
          value_name = "SECRET", hide_env_values = true, value_parser = values::secret(32),
          help_heading = SESSIONS)]
    given_session_secret: Option<Secret>,
    /// Resolved `SESSION_SECRET`.
    #[arg(skip = Secret::new(String::new()))]
    pub session_secret: Secret,
    /// Idle lifetime of a session (sliding: every request extends it).
    #[arg(long = "session-ttl-secs", env = "SESSION_TTL_SECS", value_name = "SECONDS",
          default_value = "86400", value_parser = values::seconds(1), help_heading = SESSIONS)]
    pub session_ttl: Duration,
    /// Idle lifetime of a "remember me" session.
    #[arg(long = "session-remember-ttl-secs", env = "SESSION_REMEMBER_TTL_SECS",
          value_name = "SECONDS", default_value = "2592000", value_parser = values::seconds(1),
          help_heading = SESSIONS)]
    pub session_remember_ttl: Duration,
    /// Mark the session cookie Secure; set it when TLS terminates in front of roomcast.
    #[arg(long = "cookie-secure", env = "COOKIE_SECURE", value_name = "BOOL",
          default_value = "false", action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_parser = values::boolean, help_heading = SESSIONS)]
    pub cookie_secure: bool,

    /// PostgreSQL (postgres://…) or SQLite (sqlite://path; the directory is created if
    /// missing).
    #[arg(long = "database-url", env = "DATABASE_URL", value_name = "URL",
          default_value = "sqlite://./data/roomcast.db", hide_env_values = true,
          value_parser = values::database_url, help_heading = DATABASE)]
    pub database_url: String,
    /// Upper bound of the database connection pool.
    #[arg(long = "database-max-connections", env = "DATABASE_MAX_CONNECTIONS",
          value_name = "COUNT", default_value = "10", value_parser = values::positive::<u32>(),
          help_heading = DATABASE)]
    pub database_max_connections: u32,

    /// Sustained per-user message rate, cluster-wide.
    #[arg(long = "message-rate-per-sec", env = "MESSAGE_RATE_PER_SEC", value_name = "PER_SECOND",
          default_value = "20", value_parser = values::positive::<u32>(), help_heading = LIMITS)]
    pub message_rate_per_sec: u32,
    /// Per-user message burst.
    #[arg(long = "message-rate-burst", env = "MESSAGE_RATE_BURST", value_name = "COUNT",
          default_value = "40", value_parser = values::positive::<u32>(), help_heading = LIMITS)]
    pub message_rate_burst: u32,
    /// Failed logins per username (and per address and username) before 429.
    #[arg(long = "login-max-failures", env = "LOGIN_MAX_FAILURES", value_name = "COUNT",
          default_value = "10", value_parser = values::positive::<u32>(), help_heading = LIMITS)]
    pub login_max_failures: u32,
    /// Window in which failed logins are counted.
    #[arg(long = "login-window-secs", env = "LOGIN_WINDOW_SECS", value_name = "SECONDS",
          default_value = "900", value_parser = values::seconds(1), help_heading = LIMITS)]
    pub login_window: Duration,
    /// Failed logins per client address per window before its wrong passwords get 429;
    /// looser than per username, and never refuses a correct password.
    #[arg(long = "login-max-failures-per-ip", env = "LOGIN_MAX_FAILURES_PER_IP", value_name = "COUNT",
          default_value = "100", value_parser = values::positive::<u32>(), help_heading = LIMITS)]
    pub login_max_failures_per_address: u32,
    /// Sustained registrations per client address per minute.
    #[arg(long = "register-rate-per-min", env = "REGISTER_RATE_PER_MIN", value_name = "PER_MINUTE",
          default_value = "10", value_parser = values::positive::<u32>(), help_heading = LIMITS)]
    pub register_rate_per_min: u32,
    /// Registrations one client address may make at once.
    #[arg(long = "register-rate-burst", env = "REGISTER_RATE_BURST", value_name = "COUNT",
          default_value = "20", value_parser = values::positive::<u32>(), help_heading = LIMITS)]
    pub register_rate_burst: u32,
    /// Sustained join/leave/resume events per user per second.
    #[arg(long = "room-event-rate-per-sec", env = "ROOM_EVENT_RATE_PER_SEC", value_name = "PER_SECOND",
          default_value = "10", value_parser = values::positive::<u32>(), help_heading = LIMITS)]
    pub room_event_rate_per_sec: u32,
    /// Burst of join/leave/resume events per user.
    #[arg(long = "room-event-rate-burst", env = "ROOM_EVENT_RATE_BURST", value_name = "COUNT",
          default_value = "60", value_parser = values::positive::<u32>(), help_heading = LIMITS)]
    pub room_event_rate_burst: u32,
    /// Sustained typing events per user per second.
    #[arg(long = "typing-rate-per-sec", env = "TYPING_RATE_PER_SEC", value_name = "PER_SECOND",
          default_value = "5", value_parser = values::positive::<u32>(), help_heading = LIMITS)]
    pub typing_rate_per_sec: u32,
    /// Burst of typing events per user.
    #[arg(long = "typing-rate-burst", env = "TYPING_RATE_BURST", value_name = "COUNT",
          default_value = "10", value_parser = values::positive::<u32>(), help_heading = LIMITS)]
    pub typing_rate_burst: u32,
    /// Rooms a socket may be in besides user:<id>; one more join gets too_many_rooms.
    #[arg(long = "max-rooms-per-socket", env = "MAX_ROOMS_PER_SOCKET", value_name = "COUNT",
          default_value = "50", value_parser = values::positive::<usize>(), help_heading = LIMITS)]
    pub max_rooms_per_socket: usize,
    /// Event handlers one socket may have running or queued; more get rate_limited at once.
    #[arg(long = "max-events-in-flight-per-socket", env = "MAX_EVENTS_IN_FLIGHT_PER_SOCKET",
          value_name = "COUNT", default_value = "100", value_parser = values::positive::<usize>(),
          help_heading = LIMITS)]
    pub max_events_in_flight: usize,
    /// Largest accepted HTTP request body (413 above).
    #[arg(long = "http-body-limit-bytes", env = "HTTP_BODY_LIMIT_BYTES", value_name = "BYTES",
          default_value = "65536", value_parser = values::positive::<usize>(),
          help_heading = LIMITS)]
    pub http_body_limit: usize,
    /// Largest accepted Engine.IO packet or WebSocket message.
    #[arg(long = "socketio-max-payload-bytes", env = "SOCKETIO_MAX_PAYLOAD_BYTES",
          value_name = "BYTES", default_value = "65536", value_parser = values::positive::<u64>(),
          help_heading = LIMITS)]
    pub socketio_max_payload: u64,
    /// Argon2id password hashes computed at once [default: number of CPUs].
    #[arg(id = "password_hash_concurrency", long = "password-hash-concurrency",
          env = "PASSWORD_HASH_CONCURRENCY", value_name = "COUNT",
          value_parser = values::positive::<usize>(), help_heading = LIMITS)]
    given_password_hash_concurrency: Option<usize>,
    /// Resolved `PASSWORD_HASH_CONCURRENCY`.
    #[arg(skip)]
    pub password_hash_concurrency: usize,
    /// Logins and registrations allowed to wait for a hashing slot before 503.
    #[arg(long = "password-hash-queue", env = "PASSWORD_HASH_QUEUE", value_name = "COUNT",
          default_value = "256", value_parser = values::positive::<usize>(),
          help_heading = LIMITS)]
    pub password_hash_queue: usize,
    /// Time a client has to send a complete request head (slowloris protection).
    #[arg(long = "header-read-timeout-secs", env = "HEADER_READ_TIMEOUT_SECS",
          value_name = "SECONDS", default_value = "10", value_parser = values::seconds(1),
          help_heading = LIMITS)]
    pub header_read_timeout: Duration,
    /// Open TCP connections per instance at most; more get an immediate 503 and are closed.
    #[arg(long = "max-connections", env = "MAX_CONNECTIONS", value_name = "COUNT",
          default_value = "20000", value_parser = values::positive::<usize>(),
          help_heading = LIMITS)]
    pub max_connections: usize,
    /// New connections per second per client address (by TCP peer); more get 429.
    #[arg(long = "connection-rate-per-ip", env = "CONNECTION_RATE_PER_IP",
          value_name = "PER_SECOND", default_value = "200", value_parser = values::positive::<u32>(),
          help_heading = LIMITS)]
    pub connection_rate_per_ip: u32,
    /// Burst of new connections per client address.
    #[arg(long = "connection-burst-per-ip", env = "CONNECTION_BURST_PER_IP", value_name = "COUNT",
          default_value = "400", value_parser = values::positive::<u32>(), help_heading = LIMITS)]
    pub connection_burst_per_ip: u32,

    /// Longest absence after which a reconnecting client still gets what it missed replayed,
    /// judged by the age of the first message it missed (1-86400).
    #[arg(long = "recovery-window-secs", env = "RECOVERY_WINDOW_SECS", value_name = "SECONDS",
          default_value = "120", value_parser = recovery_window, help_heading = RECOVERY)]
    pub recovery_window: Duration,
    /// Most messages replayed per room on a resume (1-10000); a client that missed more is
    /// told to reload the room's history instead.
    #[arg(long = "recovery-max-messages", env = "RECOVERY_MAX_MESSAGES", value_name = "COUNT",
          default_value = "1000", value_parser = values::number(1, MAX_RECOVERY_MESSAGES),
          help_heading = RECOVERY)]
    pub recovery_max_messages: u32,

    /// Bearer token for /api/admin/*, at least 16 characters [default: unset, the admin API
    /// answers 404].
    #[arg(long = "admin-token", env = "ADMIN_TOKEN", value_name = "TOKEN", hide_env_values = true,
          value_parser = values::secret(16), help_heading = OPERATIONS)]
    pub admin_token: Option<Secret>,
    /// Hard limit for the graceful drain after SIGTERM.
    #[arg(long = "shutdown-timeout-secs", env = "SHUTDOWN_TIMEOUT_SECS", value_name = "SECONDS",
          default_value = "30", value_parser = values::seconds(1), help_heading = OPERATIONS)]
    pub shutdown_timeout: Duration,

    /// Approximate cap of the analytics stream in Redis.
    #[arg(long = "analytics-stream-maxlen", env = "ANALYTICS_STREAM_MAXLEN", value_name = "COUNT",
          default_value = "1000000", value_parser = values::positive::<u64>(),
          help_heading = ANALYTICS)]
    pub analytics_stream_maxlen: u64,
    /// Events stored per transaction at most (1-10000).
    #[arg(long = "analytics-batch-size", env = "ANALYTICS_BATCH_SIZE", value_name = "COUNT",
          default_value = "100", value_parser = values::number(1, MAX_ANALYTICS_BATCH_SIZE),
          help_heading = ANALYTICS)]
    pub analytics_batch_size: u64,
    /// How long a consumer keeps collecting a batch after its first entry (0 = store at
    /// once); must be below ANALYTICS_CLAIM_IDLE_MS.
    #[arg(long = "analytics-batch-linger-ms", env = "ANALYTICS_BATCH_LINGER_MS",
          value_name = "MILLISECONDS", default_value = "200", value_parser = values::millis(0),
          help_heading = ANALYTICS)]
    pub analytics_batch_linger: Duration,
    /// Idle time after which another consumer takes over pending entries; also the delay
    /// before a failed batch is retried.
    #[arg(long = "analytics-claim-idle-ms", env = "ANALYTICS_CLAIM_IDLE_MS",
          value_name = "MILLISECONDS", default_value = "30000", value_parser = values::millis(1),
          help_heading = ANALYTICS)]
    pub analytics_claim_idle: Duration,

    /// Delete chat messages older than this many days [default: unset, history is kept
    /// forever].
    #[arg(long = "history-retention-days", env = "HISTORY_RETENTION_DAYS", value_name = "DAYS",
          value_parser = values::positive::<u32>(), help_heading = RETENTION)]
    pub history_retention_days: Option<u32>,
    /// How often the retention job runs.
    #[arg(long = "history-retention-interval-secs", env = "HISTORY_RETENTION_INTERVAL_SECS",
          value_name = "SECONDS", default_value = "3600", value_parser = values::seconds(1),
          help_heading = RETENTION)]
    pub history_retention_interval: Duration,
    /// Messages deleted per statement.
    #[arg(long = "history-retention-batch-size", env = "HISTORY_RETENTION_BATCH_SIZE",
          value_name = "COUNT", default_value = "1000", value_parser = values::positive::<u32>(),
          help_heading = RETENTION)]
    pub history_retention_batch_size: u32,
    /// Pause between two delete statements, so a large purge does not monopolise the
    /// database.
    #[arg(long = "history-retention-batch-pause-ms", env = "HISTORY_RETENTION_BATCH_PAUSE_MS",
          value_name = "MILLISECONDS", default_value = "50", value_parser = values::millis(0),
          help_heading = RETENTION)]
    pub history_retention_batch_pause: Duration,

    /// Lease of a cluster job lock (at least 3, renewed every third of it): how long a killed
    /// holder blocks its job.
    #[arg(long = "job-lock-ttl-secs", env = "JOB_LOCK_TTL_SECS", value_name = "SECONDS",
          default_value = "30", value_parser = values::seconds(3), help_heading = JOBS)]
    pub job_lock_ttl: Duration,
    /// Consecutive failures that open a circuit breaker (Redis, database).
    #[arg(long = "breaker-failure-threshold", env = "BREAKER_FAILURE_THRESHOLD",
          value_name = "COUNT", default_value = "5", value_parser = values::positive::<u32>(),
          help_heading = JOBS)]
    pub breaker_failure_threshold: u32,
    /// How long an open breaker fails fast before letting a probe through.
    #[arg(long = "breaker-open-ms", env = "BREAKER_OPEN_MS", value_name = "MILLISECONDS",
          default_value = "5000", value_parser = values::millis(1), help_heading = JOBS)]
    pub breaker_open: Duration,

    /// Largest analytics `props` object, serialized; larger events get 413.
    #[arg(long = "analytics-props-max-bytes", env = "ANALYTICS_PROPS_MAX_BYTES",
          value_name = "BYTES", default_value = "4096", value_parser = values::positive::<usize>(),
          help_heading = ANALYTICS)]
    pub analytics_props_max_bytes: usize,
    /// Sustained analytics events per second per user, or per address for anonymous callers,
    /// on each instance.
    #[arg(long = "analytics-rate-per-sec", env = "ANALYTICS_RATE_PER_SEC", value_name = "PER_SECOND",
          default_value = "10", value_parser = values::positive::<u32>(), help_heading = ANALYTICS)]
    pub analytics_rate_per_sec: u32,
    /// Burst of analytics events per user or address.
    #[arg(long = "analytics-rate-burst", env = "ANALYTICS_RATE_BURST", value_name = "COUNT",
          default_value = "100", value_parser = values::positive::<u32>(), help_heading = ANALYTICS)]
    pub analytics_rate_burst: u32,
    /// Memory budget of the analytics stream in Redis: the stream keeps at most as many
    /// entries as fit when every entry has the largest `props`.
    #[arg(long = "analytics-stream-max-bytes", env = "ANALYTICS_STREAM_MAX_BYTES",
          value_name = "BYTES", default_value = "536870912",
          value_parser = values::positive::<u64>(), help_heading = ANALYTICS)]
    pub analytics_stream_max_bytes: u64,
    /// Bearer token for /metrics and the detailed /health, at least 16 characters [default:
    /// unset, both open: keep them on a listener only the scraper and operators reach].
    #[arg(long = "metrics-token", env = "METRICS_TOKEN", value_name = "TOKEN", hide_env_values = true,
          value_parser = values::secret(16), help_heading = OPERATIONS)]
    pub metrics_token: Option<Secret>,
    /// How often the embedded session store deletes expired sessions.
    #[arg(long = "session-sweep-interval-secs", env = "SESSION_SWEEP_INTERVAL_SECS",
          value_name = "SECONDS", default_value = "60", value_parser = values::seconds(1),
          help_heading = SESSIONS)]
    pub session_sweep_interval: Duration,

    /// Initial capacity of every WebSocket's read buffer, and the most one read takes. Each
    /// idle socket holds this much; frames above it take more than one read.
    #[arg(long = "socketio-ws-read-buffer-bytes", env = "SOCKETIO_WS_READ_BUFFER_BYTES",
          value_name = "BYTES", default_value = "1024", value_parser = values::positive::<usize>(),
          help_heading = LIMITS)]
    pub socketio_ws_read_buffer: usize,
}

impl Config {
    /// Reads the command line and the process environment.
    pub fn from_env() -> Result<Self, LoadError> {
        Self::from_args(std::env::args_os())
    }

    /// Reads `args` (the program name first) and the process environment; a blank variable
    /// counts as unset.
    pub fn from_args<I, T>(args: I) -> Result<Self, LoadError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        // A blank variable counts as unset (compose files often pass `VAR=` through).
        let mut command = Self::command().mut_args(|arg| {
            let blank = arg
                .get_env()
                .and_then(std::env::var_os)
                .is_some_and(|value| value.to_string_lossy().trim().is_empty());
            if blank { arg.env(None::<&str>) } else { arg }
        });
        let matches = command
            .try_get_matches_from_mut(args)
            .map_err(|err| invalid_value(err, &command))?;
        let parsed =
            Self::from_arg_matches(&matches).map_err(|err| invalid_value(err, &command))?;
        Ok(parsed.resolve()?)
    }

    /// Reads settings through `lookup` alone (which returns a variable's value if it is
    /// set), ignoring the process environment and command line, so tests build configs from
    /// a map. Blank values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, LoadError> {
        let mut command = Self::command();
        let mut args = vec![OsString::from("roomcast")];
        for arg in command.get_arguments() {
            let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            if let Some(value) = env.to_str().and_then(&lookup) {
                if !value.trim().is_empty() {
                    args.push(format!("--{long}={value}").into());
                }
            }
        }
        // Only `lookup` counts: the variables of the test process itself must not leak in.
        command = command.mut_args(|arg| arg.env(None::<&str>));
        let matches = command
            .try_get_matches_from_mut(args)
            .map_err(|err| invalid_value(err, &Self::command()))?;
        let parsed =
            Self::from_arg_matches(&matches).map_err(|err| invalid_value(err, &Self::command()))?;
        Ok(parsed.resolve()?)
    }

    /// Whether this instance shares state with others through Redis.
    pub fn is_cluster(&self) -> bool {
        self.redis_url.is_some()
    }

    /// The rules that involve several settings, and the defaults that depend on others.
    fn resolve(mut self) -> Result<Self, ConfigError> {
        if !self.redis_cluster_nodes.is_empty() {
            if self.redis_url.is_some() {
                return Err(ConfigError::new(
                    "REDIS_URL",
                    "cannot be combined with REDIS_CLUSTER_NODES; set REDIS_URL for one Redis \
                     or REDIS_CLUSTER_NODES for a Redis Cluster, not both",
                ));
            }
            let url = values::redis_cluster_url(&self.redis_cluster_nodes)
                .map_err(|reason| ConfigError::new("REDIS_CLUSTER_NODES", reason))?;
            self.redis_url = Some(url);
        }
        self.use_redis_sessions = self
            .given_use_redis_sessions
            .unwrap_or(self.redis_url.is_some());
        if self.use_redis_sessions && self.redis_url.is_none() {
            return Err(ConfigError::new(
                "USE_REDIS_SESSIONS",
                "is true but neither REDIS_URL nor REDIS_CLUSTER_NODES is set",
            ));
        }
        if self.use_redis_sessions && self.session_encryption_key.is_none() {
            return Err(ConfigError::new(
                "SESSION_ENCRYPTION_KEY",
                "is required when sessions are kept in Redis (32 bytes as base64 or 64 hex \
                 characters)",
            ));
        }
        self.session_secret = match self.given_session_secret.take() {
            Some(secret) => secret,
            None if self.redis_url.is_some() => {
                return Err(ConfigError::new(
                    "SESSION_SECRET",
                    "is required in cluster mode so that every instance accepts the same cookies",
                ));
            }
            None => Secret::new(random_secret()),
        };
        if let Some(id) = self.given_instance_id.take() {
            self.instance_id = id;
        }
        self.password_hash_concurrency =
            self.given_password_hash_concurrency.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
            });
        if self.analytics_batch_linger >= self.analytics_claim_idle {
            return Err(ConfigError::new(
                "ANALYTICS_BATCH_LINGER_MS",
                "must be shorter than ANALYTICS_CLAIM_IDLE_MS, or other instances would take \
                 over a batch that is still being collected",
            ));
        }
        Ok(self)
    }
}

/// Turns clap's error about one value into a `ConfigError` that names the variable and, for
/// secrets, leaves the value out; every other error (help, version, unknown flags) stays
/// clap's.
fn invalid_value(err: clap::Error, command: &clap::Command) -> LoadError {
    if !matches!(
        err.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return LoadError::Cli(err);
    }
    let Some(ContextValue::String(shown)) = err.get(ContextKind::InvalidArg) else {
        return LoadError::Cli(err);
    };
    let flag = shown.split([' ', '=']).next().unwrap_or_default();
    let Some(arg) = command.get_arguments().find(|arg| {
        arg.get_long()
            .is_some_and(|long| format!("--{long}") == flag)
    }) else {
        return LoadError::Cli(err);
    };
    let Some(variable) = arg.get_env().and_then(|env| env.to_str()) else {
        return LoadError::Cli(err);
    };
    let value = match err.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => value.trim().to_owned(),
        _ => String::new(),
    };
    let reason = match (err.kind(), std::error::Error::source(&err)) {
        (ErrorKind::ValueValidation, Some(source)) => source.to_string(),
        _ => {
            let valid = match err.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(valid)) => valid.join(", "),
                _ => String::new(),
            };
            if arg.is_hide_env_values_set() {
                format!("must be one of: {valid}")
            } else {
                format!("`{value}` is not one of: {valid}")
            }
        }
    };
    LoadError::Invalid(ConfigError::new(variable, reason))
}

fn ip_address(value: &str) -> Result<IpAddr, String> {
    let value = value.trim();
    value
        .parse()
        .map_err(|_| format!("`{value}` is not an IP address such as 127.0.0.1 or ::"))
}

fn instance_id(value: &str) -> Result<InstanceId, String> {
    InstanceId::parse(value.trim())
}

fn recovery_window(value: &str) -> Result<Duration, String> {
    values::number(1, MAX_RECOVERY_WINDOW_SECS)(value)
        .map(|secs| Duration::from_secs(u64::from(secs)))
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
        match Config::from_lookup(|k| map.get(k).cloned()) {
            Ok(config) => Ok(config),
            Err(LoadError::Invalid(err)) => Err(err),
            Err(LoadError::Cli(err)) => panic!("{vars:?} gave a command-line error: {err}"),
        }
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
        assert!(c.password_hash_concurrency >= 1);
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn every_setting_is_a_flag_named_after_its_variable() {
        let command = Config::command();
        let mut seen = 0;
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["help", "version"].contains(&long) {
                continue;
            }
            let env = arg
                .get_env()
                .and_then(|e| e.to_str())
                .unwrap_or_else(|| panic!("--{long} has no environment variable"));
            assert_eq!(long, flag(env), "--{long} must be the kebab case of {env}");
            assert!(arg.get_help_heading().is_some(), "--{long} has no heading");
            assert!(arg.get_help().is_some(), "--{long} has no help");
            seen += 1;
        }
        assert!(seen >= 40, "only {seen} settings");
        command.debug_assert();
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (vars, variable) in [
            (vec![("PORT", "eighty")], "PORT"),
            (vec![("PORT", "70000")], "PORT"),
            (vec![("HOST", "localhost:1")], "HOST"),
            (vec![("LOG_FORMAT", "xml")], "LOG_FORMAT"),
            (
                vec![("SHUTDOWN_TIMEOUT_SECS", "0")],
                "SHUTDOWN_TIMEOUT_SECS",
            ),
            (vec![("SESSION_SECRET", "short")], "SESSION_SECRET"),
            (vec![("ADMIN_TOKEN", "short")], "ADMIN_TOKEN"),
            (vec![("INSTANCE_ID", "has space")], "INSTANCE_ID"),
            (vec![("CORS_ORIGINS", "example.com")], "CORS_ORIGINS"),
            (vec![("REDIS_URL", "not-a-url")], "REDIS_URL"),
            (vec![("DATABASE_URL", "mysql://db/x")], "DATABASE_URL"),
            (
                vec![("REDIS_URL", "redis://127.0.0.1:6379")],
                "SESSION_ENCRYPTION_KEY",
            ),
            (vec![("USE_REDIS_SESSIONS", "maybe")], "USE_REDIS_SESSIONS"),
            (vec![("USE_REDIS_SESSIONS", "true")], "USE_REDIS_SESSIONS"),
            (vec![("COOKIE_SECURE", "2")], "COOKIE_SECURE"),
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
            (
                vec![("SESSION_ENCRYPTION_KEYS_OLD", "abc")],
                "SESSION_ENCRYPTION_KEYS_OLD",
            ),
        ] {
            let err = config(&vars).expect_err("bad value must be rejected");
            assert_eq!(err.variable, variable, "{vars:?} gave {err}");
        }
    }

    #[test]
    fn typed_values_come_out_parsed() {
        let key = "22".repeat(32);
        let c = config(&[
            ("HOST", " 0.0.0.0 "),
            ("COOKIE_SECURE", "yes"),
            ("CORS_ORIGINS", "https://a.example, http://b.example:8080"),
            ("SESSION_ENCRYPTION_KEYS_OLD", &format!("{key},{key}")),
            ("BREAKER_OPEN_MS", "250"),
            ("HISTORY_RETENTION_DAYS", "30"),
            ("LOG_FORMAT", "json"),
            ("INSTANCE_ID", "web-7"),
            ("PASSWORD_HASH_CONCURRENCY", "3"),
        ])
        .expect("valid");
        assert_eq!(c.host.to_string(), "0.0.0.0");
        assert!(c.cookie_secure);
        assert_eq!(c.cors_origins.len(), 2);
        assert_eq!(c.cors_origins[1], "http://b.example:8080");
        assert_eq!(
            c.session_encryption_keys_old,
            vec![EncryptionKey([0x22; 32]); 2]
        );
        assert_eq!(c.breaker_open, Duration::from_millis(250));
        assert_eq!(c.history_retention_days, Some(30));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.instance_id.as_str(), "web-7");
        assert_eq!(c.password_hash_concurrency, 3);
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

    #[test]
    fn a_flag_wins_over_nothing_and_secrets_stay_out_of_errors() {
        let c = Config::from_args(["roomcast", "--port", "0", "--cookie-secure"]).expect("valid");
        assert_eq!(c.port, 0);
        assert!(c.cookie_secure);
        match Config::from_args(["roomcast", "--admin-token=hunter2"]) {
            Err(LoadError::Invalid(err)) => {
                assert_eq!(err.variable, "ADMIN_TOKEN");
                assert!(!err.to_string().contains("hunter2"), "{err}");
            }
            other => panic!("expected an invalid ADMIN_TOKEN, got {other:?}"),
        }
    }
}
