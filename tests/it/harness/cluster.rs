//! A cluster as users deploy it: one real Redis, one real PostgreSQL, and N roomcast
//! processes (`web-1` … `web-N`) sharing them, each restartable with a changed environment.

use std::time::Duration;

use base64::Engine as _;

use super::process::RoomcastProcess;
use super::services::{Postgres, RedisServer};

/// Secret every instance signs cookies with.
pub const CLUSTER_SECRET: &str = "cluster-test-session-secret-0123456789";

/// A fresh random session encryption key, base64.
pub fn new_key() -> String {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// The environment of cluster-mode instance `i` (0-based): its id, Redis (`redis`: the
/// variable, `REDIS_URL` or `REDIS_CLUSTER_NODES`, and its value), the database and the
/// secrets every instance shares.
pub fn instance_env(
    i: usize,
    redis: (&str, String),
    database_url: String,
    key: &str,
) -> Vec<(String, String)> {
    vec![
        ("INSTANCE_ID".to_owned(), format!("web-{}", i + 1)),
        (redis.0.to_owned(), redis.1),
        ("DATABASE_URL".to_owned(), database_url),
        ("SESSION_SECRET".to_owned(), CLUSTER_SECRET.to_owned()),
        ("SESSION_ENCRYPTION_KEY".to_owned(), key.to_owned()),
        ("SHUTDOWN_TIMEOUT_SECS".to_owned(), "10".to_owned()),
        // Tests register their users from 127.0.0.1 and use typing and room events as probes;
        // those limits are tested on their own (tests/it/auth.rs, tests/it/event_limits.rs).
        ("REGISTER_RATE_PER_MIN".to_owned(), "100000".to_owned()),
        ("REGISTER_RATE_BURST".to_owned(), "100000".to_owned()),
        ("TYPING_RATE_PER_SEC".to_owned(), "100000".to_owned()),
        ("TYPING_RATE_BURST".to_owned(), "100000".to_owned()),
        ("ROOM_EVENT_RATE_PER_SEC".to_owned(), "100000".to_owned()),
        ("ROOM_EVENT_RATE_BURST".to_owned(), "100000".to_owned()),
    ]
}

/// Starts one instance with `env` and waits until it is ready.
pub async fn start_instance(env: &[(String, String)]) -> RoomcastProcess {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let process = RoomcastProcess::start(&pairs).await;
    process.wait_ready(Duration::from_secs(30)).await;
    process
}

/// Redis + PostgreSQL + N instances.
pub struct TestCluster {
    /// The shared Redis.
    pub redis: RedisServer,
    /// The shared database.
    pub postgres: Postgres,
    /// The instances, `web-1` first.
    pub instances: Vec<RoomcastProcess>,
    /// The current `SESSION_ENCRYPTION_KEY`.
    pub key: String,
    /// `REDIS_URL` for the instances when not the server's own (an ACL user, say).
    pub redis_url: Option<String>,
}

impl TestCluster {
    /// Starts the services and `n` instances.
    pub async fn start(n: usize) -> Self {
        Self::start_with_redis(RedisServer::start().await, n).await
    }

    /// Starts the services and `n` instances with `extra` environment on top of the usual.
    pub async fn start_with_env(n: usize, extra: &[(&str, &str)]) -> Self {
        Self::start_with_redis_env(RedisServer::start().await, n, extra).await
    }

    /// Starts PostgreSQL and `n` instances on the given Redis.
    pub async fn start_with_redis(redis: RedisServer, n: usize) -> Self {
        Self::start_with_redis_env(redis, n, &[]).await
    }

    /// Starts PostgreSQL and `n` instances with `extra` environment on the given Redis.
    pub async fn start_with_redis_env(
        redis: RedisServer,
        n: usize,
        extra: &[(&str, &str)],
    ) -> Self {
        let postgres = Postgres::start().await;
        let key = new_key();
        let mut cluster = Self {
            redis,
            postgres,
            instances: Vec::new(),
            key,
            redis_url: None,
        };
        for i in 0..n {
            let process = cluster.spawn(i, extra).await;
            cluster.instances.push(process);
        }
        cluster
    }

    /// Environment of instance `i` (0-based) plus `extra`.
    fn env(&self, i: usize, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let redis_url = self.redis_url.clone().unwrap_or_else(|| self.redis.url());
        let mut env = instance_env(i, ("REDIS_URL", redis_url), self.postgres.url(), &self.key);
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        env
    }

    async fn spawn(&self, i: usize, extra: &[(&str, &str)]) -> RoomcastProcess {
        start_instance(&self.env(i, extra)).await
    }

    /// Starts one more instance (`web-<n+1>`) with the current settings.
    pub async fn add_instance(&mut self) {
        let process = self.spawn(self.instances.len(), &[]).await;
        self.instances.push(process);
    }

    /// Starts one more instance (`web-<n+1>`) with `extra` environment on top of the
    /// current settings.
    pub async fn add_instance_with(&mut self, extra: &[(&str, &str)]) {
        let process = self.spawn(self.instances.len(), extra).await;
        self.instances.push(process);
    }

    /// Base URL of instance `i`.
    pub fn url(&self, i: usize) -> &str {
        &self.instances[i].base
    }

    /// All base URLs, comma-separated.
    pub fn urls(&self) -> String {
        self.instances
            .iter()
            .map(|p| p.base.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Stops instance `i` with SIGTERM and starts it again with `extra` environment.
    pub async fn restart(&mut self, i: usize, extra: &[(&str, &str)]) {
        self.instances[i].signal("TERM");
        let code = self.instances[i].wait_exit(Duration::from_secs(20)).await;
        assert_eq!(code, Some(0), "web-{} should drain and exit 0", i + 1);
        let process = self.spawn(i, extra).await;
        self.instances[i] = process;
    }

    /// The number a one-value SQL query returns (a `COUNT(*)`, say).
    pub async fn sql_number(&self, sql: &str) -> i64 {
        self.postgres
            .psql(sql)
            .await
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("`{sql}` returns a number"))
    }

    /// Every key in Redis with its type and value, for leak checks.
    pub fn dump_redis(&self) -> Vec<(String, String)> {
        let keys = self.redis.command(&["--scan"]);
        keys.lines()
            .filter(|k| !k.is_empty())
            .map(|key| {
                let kind = self.redis.command(&["TYPE", key]);
                let value = match kind.trim() {
                    "string" => self.redis.command(&["GET", key]),
                    "hash" => self.redis.command(&["HGETALL", key]),
                    "set" => self.redis.command(&["SMEMBERS", key]),
                    "zset" => self
                        .redis
                        .command(&["ZRANGE", key, "0", "-1", "WITHSCORES"]),
                    "list" => self.redis.command(&["LRANGE", key, "0", "-1"]),
                    other => format!("<{other}>"),
                };
                (key.to_owned(), value)
            })
            .collect()
    }
}
