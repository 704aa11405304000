//! A real Redis Cluster for tests, as operators run one: six `redis-server --cluster-enabled
//! yes` nodes on free ports, each in its own temp dir with an AOF, joined by `redis-cli
//! --cluster create --cluster-replicas 1` into three masters with one replica each. Nodes can
//! be SIGKILLed to make a replica take over its master's slots.
//!
//! `RedisClusterDeployment` is the cluster-mode deployment on top of it: PostgreSQL and N
//! roomcast processes configured with `REDIS_CLUSTER_NODES` and nothing else Redis-specific.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use super::cluster::{instance_env, new_key, start_instance};
use super::process::RoomcastProcess;
use super::services::{Postgres, RedisServer, describe, run};

/// Nodes in the cluster: three masters, three replicas.
const NODES: usize = 6;
/// Masters once the cluster is formed (and again after a failover).
const MASTERS: usize = 3;
/// How long a node may be unreachable before the others fail it over. Short, so failover
/// tests are quick, but not so short that a loaded machine triggers spurious failovers.
const NODE_TIMEOUT_MS: &str = "3000";
/// Upper bound for forming the cluster or completing a failover.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);

/// Six `redis-server` nodes forming one Redis Cluster; dropping it kills them all.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    alive: Vec<bool>,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster and waits until every node reports
    /// `cluster_state:ok` and every replica is in sync with its master.
    pub async fn start() -> Self {
        let mut nodes = Vec::with_capacity(NODES);
        for _ in 0..NODES {
            nodes.push(
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    NODE_TIMEOUT_MS,
                    "--appendonly",
                    "yes",
                ])
                .await,
            );
        }
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        create.args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())));
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let output = run(create, CLUSTER_TIMEOUT)
            .await
            .unwrap_or_else(|err| panic!("redis-cli --cluster create: {err}"));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            describe(&output)
        );
        let cluster = Self {
            nodes,
            alive: vec![true; NODES],
        };
        cluster
            .wait_until("the cluster forms", |c| {
                c.is_healthy() && c.replicas_in_sync()
            })
            .await;
        cluster
    }

    /// `REDIS_CLUSTER_NODES` for roomcast: every node as a seed.
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs `redis-cli --raw <args>` on node `i` (no cluster redirection: a key of another
    /// node answers `MOVED …`).
    pub fn command(&self, i: usize, args: &[&str]) -> String {
        self.nodes[i].command(args)
    }

    /// Indexes of the live nodes.
    pub fn live(&self) -> Vec<usize> {
        (0..NODES).filter(|&i| self.alive[i]).collect()
    }

    /// Indexes of the live masters.
    pub fn masters(&self) -> Vec<usize> {
        self.live()
            .into_iter()
            .filter(|&i| self.role(i).as_deref() == Some("master"))
            .collect()
    }

    /// `master` or `slave`, or `None` when the node does not answer.
    fn role(&self, i: usize) -> Option<String> {
        let output = self.nodes[i].command_output(&["ROLE"]);
        output.status.success().then(|| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
    }

    /// The live master serving `key`'s slot (the others answer `MOVED`).
    pub fn master_of(&self, key: &str) -> usize {
        self.owner_of(key)
            .unwrap_or_else(|| panic!("no live master serves the slot of `{key}`"))
    }

    fn owner_of(&self, key: &str) -> Option<usize> {
        self.masters().into_iter().find(|&i| {
            let reply = self.command(i, &["TYPE", key]);
            !reply.starts_with("MOVED") && !reply.starts_with("ASK")
        })
    }

    /// Moves the slot of `key`, with its keys, to master `to`: the steps `redis-cli --cluster
    /// reshard` takes for each slot (IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE).
    pub async fn move_slot_of(&self, key: &str, to: usize) {
        let from = self.master_of(key);
        assert_ne!(from, to, "`{key}` is already on node {to}");
        let slot = self.command(from, &["CLUSTER", "KEYSLOT", key]);
        let from_id = self.command(from, &["CLUSTER", "MYID"]);
        let to_id = self.command(to, &["CLUSTER", "MYID"]);
        let ok = |reply: String, step: &str| assert_eq!(reply.trim(), "OK", "{step}: {reply}");
        ok(
            self.command(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]),
            "IMPORTING",
        );
        ok(
            self.command(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]),
            "MIGRATING",
        );
        let port = self.nodes[to].port().to_string();
        loop {
            let listed = self.command(from, &["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
            let keys: Vec<&str> = listed.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let mut migrate = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            migrate.extend(keys);
            ok(self.command(from, &migrate), "MIGRATE");
        }
        for i in [to, from] {
            ok(
                self.command(i, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]),
                "SETSLOT NODE",
            );
        }
        self.wait_until("the slot moves", |c| {
            c.owner_of(key) == Some(to) && c.is_healthy()
        })
        .await;
    }

    /// The keys stored on node `i`.
    pub fn keys_on(&self, i: usize) -> BTreeSet<String> {
        self.command(i, &["--scan"])
            .lines()
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Kills node `i` with SIGKILL, like a crashed machine.
    pub async fn kill(&mut self, i: usize) {
        self.nodes[i].stop().await;
        self.alive[i] = false;
    }

    /// Waits until master `i`'s replicas have acknowledged everything it has written so far,
    /// so that a failover of `i` loses none of it.
    pub async fn wait_replicated(&self, i: usize) {
        let target = info_field(
            &self.command(i, &["INFO", "replication"]),
            "master_repl_offset",
        )
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("node {i} reports no master_repl_offset"));
        self.wait_until("the replica acknowledges the master's writes", |c| {
            let info = c.command(i, &["INFO", "replication"]);
            // `slave0:ip=…,port=…,state=online,offset=<acknowledged>,lag=…`
            info.lines()
                .filter(|l| l.starts_with("slave"))
                .filter_map(|l| l.split(',').find_map(|kv| kv.strip_prefix("offset=")))
                .filter_map(|v| v.trim().parse::<u64>().ok())
                .any(|offset| offset >= target)
        })
        .await;
    }

    /// Waits until the live nodes have promoted replicas so that three masters serve every
    /// slot again.
    pub async fn wait_for_failover(&self) {
        self.wait_until("a replica takes over the killed master", |c| {
            c.masters().len() == MASTERS && c.is_healthy()
        })
        .await;
    }

    /// Every live node reports `cluster_state:ok` with all slots served.
    fn is_healthy(&self) -> bool {
        self.live().into_iter().all(|i| {
            let output = self.nodes[i].command_output(&["CLUSTER", "INFO"]);
            let info = String::from_utf8_lossy(&output.stdout);
            output.status.success()
                && info_field(&info, "cluster_state").as_deref() == Some("ok")
                && info_field(&info, "cluster_slots_ok").as_deref() == Some("16384")
        })
    }

    /// Every live replica has a working link to its master and has finished the first sync.
    fn replicas_in_sync(&self) -> bool {
        self.live()
            .into_iter()
            .filter(|&i| self.role(i).as_deref() == Some("slave"))
            .all(|i| {
                let info = self.command(i, &["INFO", "replication"]);
                info_field(&info, "master_link_status").as_deref() == Some("up")
                    && info_field(&info, "master_sync_in_progress").as_deref() == Some("0")
            })
    }

    async fn wait_until(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {CLUSTER_TIMEOUT:?}; cluster nodes:\n{}",
                self.describe()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `CLUSTER NODES` as one live node sees it, for failure messages.
    fn describe(&self) -> String {
        self.live()
            .first()
            .map(|&i| {
                let output = self.nodes[i].command_output(&["CLUSTER", "NODES"]);
                String::from_utf8_lossy(&output.stdout).into_owned()
            })
            .unwrap_or_default()
    }
}

/// The value of `name:value` in INFO-style text.
fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .filter_map(|line| line.trim().split_once(':'))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().to_owned())
}

/// A Redis Cluster + PostgreSQL + N instances configured with `REDIS_CLUSTER_NODES`.
pub struct RedisClusterDeployment {
    /// The Redis Cluster.
    pub redis: RedisCluster,
    /// The shared database, running as long as the deployment.
    _postgres: Postgres,
    /// The instances, `web-1` first.
    pub instances: Vec<RoomcastProcess>,
}

impl RedisClusterDeployment {
    /// Starts the Redis Cluster, PostgreSQL and `n` instances.
    pub async fn start(n: usize) -> Self {
        let redis = RedisCluster::start().await;
        let postgres = Postgres::start().await;
        let key = new_key();
        let mut instances = Vec::with_capacity(n);
        for i in 0..n {
            let env = instance_env(
                i,
                ("REDIS_CLUSTER_NODES", redis.seeds()),
                postgres.url(),
                &key,
            );
            instances.push(start_instance(&env).await);
        }
        Self {
            redis,
            _postgres: postgres,
            instances,
        }
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
}
