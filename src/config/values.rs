//! The typed values settings parse into, and one parser per kind of value.
//!
//! Each parser turns the text of one setting into the type the server uses (a `Duration`, a
//! key, an origin, a checked URL), so nothing downstream re-checks a value. Parsers trim
//! surrounding blanks, and their errors say what is wrong without the setting's name (the
//! caller adds it) and, for every value that may hold a secret, without the value.

use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use http::HeaderValue;

/// Log output format selected by `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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

/// One seed node of `REDIS_CLUSTER_NODES`; the entries are combined into one cluster URL by
/// [`redis_cluster_url`], which checks that they agree on credentials and TLS.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// `Some(true)` for `rediss://`, `Some(false)` for `redis://`, `None` when left out.
    tls: Option<bool>,
    /// `user:password` as written, if any.
    credentials: Option<String>,
    /// `host:port`, port filled in.
    address: String,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("tls", &self.tls)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Parser of a boolean: `true/false`, `1/0`, `yes/no`, `on/off`, any case.
pub fn boolean(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("`{}` is not a boolean (true/false)", value.trim())),
    }
}

/// Parser of a whole number from `min` to `max` inclusive.
pub fn number<T>(min: T, max: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync
where
    T: FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
{
    move |value| {
        let value = value.trim();
        let parsed: T = value
            .parse()
            .map_err(|_| format!("`{value}` is not a whole number from {min} to {max}"))?;
        if parsed < min || parsed > max {
            return Err(format!("{parsed} is out of range: from {min} to {max}"));
        }
        Ok(parsed)
    }
}

/// Parser of a whole number of at least 1 (counts, sizes and rates where 0 would disable the
/// server rather than the limit).
pub fn positive<T>() -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync
where
    T: FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + From<u8> + Bounded,
{
    number(T::from(1), T::MAX)
}

/// The largest value of an integer type, for [`positive`].
pub trait Bounded: 'static {
    /// The type's maximum.
    const MAX: Self;
}

macro_rules! bounded {
    ($($t:ty),*) => { $(impl Bounded for $t { const MAX: Self = <$t>::MAX; })* };
}
bounded!(u16, u32, u64, usize);

/// Parser of a duration given as whole seconds, at least `min` seconds.
pub fn seconds(min: u64) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync {
    duration(min, "seconds", Duration::from_secs)
}

/// Parser of a duration given as whole milliseconds, at least `min` milliseconds.
pub fn millis(min: u64) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync {
    duration(min, "milliseconds", Duration::from_millis)
}

fn duration(
    min: u64,
    unit: &'static str,
    make: fn(u64) -> Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync {
    move |value| {
        let value = value.trim();
        let amount: u64 = value
            .parse()
            .map_err(|_| format!("`{value}` is not a whole number of {unit}"))?;
        if amount < min {
            return Err(format!("must be at least {min} {unit}"));
        }
        Ok(make(amount))
    }
}

/// Parser of a secret of at least `min` characters; the error never repeats the value.
pub fn secret(min: usize) -> impl Fn(&str) -> Result<Secret, String> + Clone + Send + Sync {
    move |value| {
        let value = value.trim();
        if value.len() < min {
            return Err(format!(
                "must be at least {min} characters, got {}",
                value.len()
            ));
        }
        Ok(Secret::new(value))
    }
}

/// Parser of an AES-256 key: 64 hex characters or base64 (standard or URL-safe, padded or not)
/// of exactly 32 bytes. The error never repeats the value: it is a secret.
pub fn encryption_key(value: &str) -> Result<EncryptionKey, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("has an empty entry (a stray comma?)".to_owned());
    }
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

/// Parser of one browser origin such as `https://chat.example.com` (scheme and host, no
/// path), ready to be sent as `Access-Control-Allow-Origin`.
pub fn origin(value: &str) -> Result<HeaderValue, String> {
    let value = value.trim();
    let valid = (value.starts_with("http://") || value.starts_with("https://"))
        && !value.trim_end_matches('/').contains(['?', '#', ' '])
        && value
            .split("://")
            .nth(1)
            .is_some_and(|host| !host.is_empty() && !host.contains('/'));
    if !valid {
        return Err(format!(
            "`{value}` is not an origin like https://chat.example.com"
        ));
    }
    HeaderValue::from_str(value).map_err(|_| format!("`{value}` is not a valid origin"))
}

/// Parser of `REDIS_URL`: checked by the Redis client's own URL parser, so a URL that passes
/// here is one the client connects with. The error does not repeat the URL (it may carry a
/// password).
pub fn redis_url(value: &str) -> Result<String, String> {
    let value = value.trim();
    // fred reads any scheme it does not know as a plain connection, so an `http://` URL
    // would pass its parser; only Redis schemes name a server roomcast can use.
    const SCHEMES: [&str; 6] = [
        "redis://",
        "rediss://",
        "redis-cluster://",
        "rediss-cluster://",
        "redis-sentinel://",
        "rediss-sentinel://",
    ];
    if !SCHEMES.iter().any(|scheme| value.starts_with(scheme)) {
        return Err(
            "is not a Redis URL like redis://host:6379 or rediss://user:password@host:6380 \
             (the scheme must be redis:// or rediss://)"
                .to_owned(),
        );
    }
    fred::types::config::Config::from_url(value)
        .map(|_| value.to_owned())
        .map_err(|err| {
            format!(
                "is not a Redis URL like redis://host:6379 or rediss://user:password@host:6380 ({})",
                err.details()
            )
        })
}

/// Parser of `DATABASE_URL`: `postgres://…`/`postgresql://…` or a SQLite file
/// (`sqlite://path`), checked by the database driver's own option parser. The error does not
/// repeat the URL (it may carry a password).
pub fn database_url(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        sqlx::postgres::PgConnectOptions::from_str(value)
            .map_err(|err| format!("is not a valid PostgreSQL URL ({err})"))?;
    } else if let Some(rest) = value.strip_prefix("sqlite:") {
        let file = rest.trim_start_matches("//");
        let file = file.split_once('?').map_or(file, |(file, _)| file);
        if file.is_empty() || file == ":memory:" {
            return Err(
                "names no file; an in-memory SQLite database cannot be shared by a pool".to_owned(),
            );
        }
        sqlx::sqlite::SqliteConnectOptions::from_str(value)
            .map_err(|err| format!("is not a valid SQLite URL ({err})"))?;
    } else {
        return Err("must start with postgres://, postgresql:// or sqlite://".to_owned());
    }
    Ok(value.to_owned())
}

/// Parser of one entry of `REDIS_CLUSTER_NODES`: `host:port` (port 6379 when left out; IPv6
/// hosts in brackets), optionally with `redis://` or `rediss://` and `user:password@`. The
/// error never repeats credentials.
pub fn cluster_node(entry: &str) -> Result<ClusterNode, String> {
    let entry = entry.trim();
    if entry.is_empty() {
        return Err("has an empty entry (a stray comma?)".to_owned());
    }
    let (tls, rest) = if let Some(rest) = entry.strip_prefix("redis://") {
        (Some(false), rest)
    } else if let Some(rest) = entry.strip_prefix("rediss://") {
        (Some(true), rest)
    } else if entry.contains("://") {
        return Err("nodes must be host:port, optionally with redis:// or rediss://".to_owned());
    } else {
        (None, entry)
    };
    let (credentials, address) = match rest.rsplit_once('@') {
        Some((userinfo, address)) => (Some(userinfo.to_owned()), address),
        None => (None, rest),
    };
    Ok(ClusterNode {
        tls,
        credentials,
        address: node_address(address.trim_end_matches('/'))?,
    })
}

/// Turns the nodes of `REDIS_CLUSTER_NODES` into the `redis-cluster://` URL the Redis client
/// takes: the first node in the authority, the others as `node=` parameters. Any node is only
/// a seed: the client learns the whole topology from it. Credentials and TLS hold for the
/// whole cluster, so entries must not disagree on them. Errors never echo credentials.
pub fn redis_cluster_url(nodes: &[ClusterNode]) -> Result<String, String> {
    let Some((first, others)) = nodes.split_first() else {
        return Err("lists no node; expected host:port,host:port".to_owned());
    };
    let mut tls = None;
    let mut credentials: Option<&str> = None;
    for node in nodes {
        if let Some(node_tls) = node.tls {
            if tls.is_some_and(|tls| tls != node_tls) {
                return Err("mixes redis:// and rediss:// nodes".to_owned());
            }
            tls = Some(node_tls);
        }
        if let Some(userinfo) = node.credentials.as_deref() {
            if credentials.is_some_and(|c| c != userinfo) {
                return Err("nodes carry different credentials; the cluster has one".to_owned());
            }
            credentials = Some(userinfo);
        }
    }
    let scheme = if tls == Some(true) {
        "rediss-cluster"
    } else {
        "redis-cluster"
    };
    let userinfo = credentials.map(|c| format!("{c}@")).unwrap_or_default();
    let query = others
        .iter()
        .map(|node| format!("node={}", node.address))
        .collect::<Vec<_>>()
        .join("&");
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    Ok(format!("{scheme}://{userinfo}{}{query}", first.address))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(list: &str) -> Result<String, String> {
        let nodes = list
            .split(',')
            .map(cluster_node)
            .collect::<Result<Vec<_>, _>>()?;
        redis_cluster_url(&nodes)
    }

    #[test]
    fn encryption_keys_accept_hex_and_base64_and_never_echo_the_value() {
        let hex_key = "00".repeat(32);
        let b64_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(encryption_key(&hex_key).expect("hex").0, [0u8; 32]);
        assert_eq!(encryption_key(&b64_key).expect("base64").0, [7u8; 32]);
        let err = encryption_key("c2VjcmV0LXRoYXQtaXMtdG9vLXNob3J0").expect_err("too short");
        assert!(!err.contains("c2Vj"), "error leaked the key: {err}");
    }

    #[test]
    fn redis_cluster_nodes_become_one_cluster_url() {
        assert_eq!(
            cluster("10.0.0.1:7000, 10.0.0.2:7001,10.0.0.3").as_deref(),
            Ok("redis-cluster://10.0.0.1:7000?node=10.0.0.2:7001&node=10.0.0.3:6379")
        );
        assert_eq!(
            cluster("rediss://app:pw@a:7000,rediss://app:pw@b:7000").as_deref(),
            Ok("rediss-cluster://app:pw@a:7000?node=b:7000")
        );
        assert_eq!(
            cluster("redis://:pw@[::1]:7000").as_deref(),
            Ok("redis-cluster://:pw@[::1]:7000")
        );
        for bad in [
            "",
            " , ",
            "a:1,,b:2",
            "a:0",
            "a:port",
            "http://a:7000",
            "redis://a:1,rediss://b:2",
            "a/0",
            "::1:7000",
        ] {
            assert!(cluster(bad).is_err(), "`{bad}` must be rejected");
        }
        let err = cluster("redis://:pw-a@a:1,redis://:pw-b@b:2").expect_err("two passwords");
        assert!(!err.contains("pw-"), "{err}");
    }

    #[test]
    fn urls_are_checked_by_the_clients_that_use_them() {
        assert!(redis_url("redis://127.0.0.1:6379").is_ok());
        assert!(redis_url("rediss://user:pw@redis.example:6380/2").is_ok());
        let err = redis_url("not-a-url").expect_err("relative");
        assert!(!err.contains("not-a-url"), "{err}");
        assert!(redis_url("http://127.0.0.1:6379").is_err());
        assert!(database_url("sqlite://./data/roomcast.db").is_ok());
        assert!(database_url("postgres://roomcast:pw@db:5432/roomcast").is_ok());
        for bad in [
            "mysql://db/x",
            "sqlite://",
            "sqlite::memory:",
            "./roomcast.db",
        ] {
            assert!(database_url(bad).is_err(), "`{bad}` must be rejected");
        }
    }

    #[test]
    fn numbers_and_durations_have_bounds_and_units() {
        assert_eq!(number(1u32, 10)(" 7 "), Ok(7));
        assert!(number(1u32, 10)("11").is_err());
        assert!(positive::<u32>()("0").is_err());
        assert!(positive::<u32>()("-5").is_err());
        assert_eq!(seconds(3)("30"), Ok(Duration::from_secs(30)));
        assert!(seconds(3)("2").expect_err("below").contains("3 seconds"));
        assert_eq!(millis(0)("0"), Ok(Duration::ZERO));
        assert!(
            millis(1)("soon")
                .expect_err("text")
                .contains("milliseconds")
        );
    }
}
