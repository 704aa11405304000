//! Cluster mode on a real Redis Cluster (three masters, three replicas), configured with
//! nothing but `REDIS_CLUSTER_NODES`: the cluster suite passes, broadcasts ride sharded
//! Pub/Sub, and a killed master's replica takes over without losing replicated sessions.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::harness::process::run_to_exit;
use crate::harness::redis_cluster::{RedisCluster, RedisClusterDeployment};
use crate::harness::{
    ADMIN_TOKEN, PASSWORD, browser, crosstalk, get_json, impatient, register_and_login, run_node,
    username, wait_readiness,
};

/// The adapter's broadcast channel of namespace `/` (`<prefix>-request#<namespace>#`).
const BROADCAST_CHANNEL: &str = "roomcast-sio-request#/#";
/// How long the deployment may take to work again once the cluster has failed over.
const RECOVERY: Duration = Duration::from_secs(60);

/// Subscribers of `channel` on node `i`: `PUBSUB SHARDNUMSUB` (sharded) or `NUMSUB` (classic).
fn subscribers(redis: &RedisCluster, i: usize, subcommand: &str, channel: &str) -> u64 {
    let reply = redis.command(i, &["PUBSUB", subcommand, channel]);
    reply
        .lines()
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("PUBSUB {subcommand} on node {i}: {reply}"))
}

/// Waits until the master serving the broadcast channel counts `n` sharded subscribers.
async fn wait_sharded_subscribers(redis: &RedisCluster, n: u64) {
    let deadline = tokio::time::Instant::now() + RECOVERY;
    loop {
        let owner = redis.master_of(BROADCAST_CHANNEL);
        let sharded = subscribers(redis, owner, "SHARDNUMSUB", BROADCAST_CHANNEL);
        if sharded == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{BROADCAST_CHANNEL} has {sharded} sharded subscribers on node {owner}, wanted {n}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Session records: the keys outside roomcast's own `roomcast:` namespace.
fn sessions_on(redis: &RedisCluster, i: usize) -> BTreeSet<String> {
    redis
        .keys_on(i)
        .into_iter()
        .filter(|key| !key.starts_with("roomcast:"))
        .collect()
}

async fn login(client: &Client, base: &str, name: &str) -> StatusCode {
    client
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"username": name, "password": PASSWORD}))
        .send()
        .await
        .expect("login answers")
        .status()
}

async fn me(client: &Client, base: &str) -> (StatusCode, Value) {
    let res = client
        .get(format!("{base}/api/me"))
        .send()
        .await
        .expect("me answers");
    (res.status(), res.json().await.unwrap_or(Value::Null))
}

/// Retries the probe until a message crosses instances again, within `RECOVERY`.
async fn crosstalk_recovers(deployment: &RedisClusterDeployment, after: &str) {
    let deadline = tokio::time::Instant::now() + RECOVERY;
    loop {
        match crosstalk(&deployment.urls()).await {
            Ok(_) => return,
            Err(report) => assert!(
                tokio::time::Instant::now() < deadline,
                "broadcasts must cross instances again after {after}: {report}\n--- web-1 ---\n{}",
                deployment.instances[0].output()
            ),
        }
    }
}

#[tokio::test]
async fn the_cluster_suite_passes_on_a_redis_cluster_with_sharded_pubsub() {
    let deployment = RedisClusterDeployment::start(3).await;
    let redis = &deployment.redis;

    let health: Value = get_json(&format!("{}/health", deployment.url(0))).await;
    assert_eq!(health["mode"], "cluster", "{health}");
    assert_eq!(health["checks"]["redis"]["status"], "ok", "{health}");

    // Broadcasts ride sharded Pub/Sub: every instance listens on the shard that owns the
    // channel, and no node carries a classic subscription.
    for instance in &deployment.instances {
        assert!(
            instance
                .wait_for_line("redis connected", Duration::from_secs(5))
                .await
                .is_some_and(
                    |line| line.contains("redis=cluster") && line.contains("pubsub=sharded")
                ),
            "the instance logs that it runs on a cluster with sharded Pub/Sub:\n{}",
            instance.output()
        );
    }
    wait_sharded_subscribers(redis, 3).await;
    for i in redis.live() {
        let classic = subscribers(redis, i, "NUMSUB", BROADCAST_CHANNEL);
        assert_eq!(classic, 0, "node {i} has classic subscribers");
        let channels = redis.command(i, &["PUBSUB", "CHANNELS"]);
        assert!(
            channels.trim().is_empty(),
            "node {i} has classic channels: {channels}"
        );
    }

    // The official socket.io-client cluster suite: sessions across instances, broadcasts,
    // `user:<id>` emits, presence, history, logout, the cluster-wide rate limit, opt-outs.
    let run = run_node(
        &[
            "--test",
            "--test-reporter=tap",
            "--test-concurrency=1",
            "cluster/cluster.test.mjs",
        ],
        &[
            ("ROOMCAST_URLS", deployment.urls().as_str()),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
        ],
        Duration::from_secs(300),
    )
    .await;
    let report = run.unwrap_or_else(|report| {
        panic!(
            "socket.io-client cluster suite failed on a Redis Cluster:\n{report}\n--- web-1 log ---\n{}",
            deployment.instances[0].output()
        )
    });
    crate::harness::tap::assert_every_test_passed(&report, "cluster/cluster.test.mjs");

    // The registry's listing reads every entry at once: its keys share one slot.
    let listed: Value = impatient()
        .get(format!("{}/api/admin/instances", deployment.url(1)))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("GET /api/admin/instances")
        .json()
        .await
        .expect("instances json");
    let mut ids: Vec<&str> = listed["instances"]
        .as_array()
        .map(|all| all.iter().filter_map(|i| i["id"].as_str()).collect())
        .unwrap_or_default();
    ids.sort_unstable();
    assert_eq!(ids, ["web-1", "web-2", "web-3"], "{listed}");

    // Sessions spread over the shards; presence keys share one slot (its scripts touch
    // several keys at once).
    let masters = redis.masters();
    let with_sessions = masters
        .iter()
        .filter(|&&i| !sessions_on(redis, i).is_empty())
        .count();
    assert!(
        with_sessions >= 2,
        "the suite's sessions should land on several of the {} masters, found them on {with_sessions}",
        masters.len()
    );
    let with_presence: Vec<usize> = masters
        .iter()
        .copied()
        .filter(|&i| {
            redis
                .keys_on(i)
                .iter()
                .any(|k| k.starts_with("roomcast:{presence}:"))
        })
        .collect();
    assert_eq!(
        with_presence.len(),
        1,
        "presence keys live on exactly one master: {with_presence:?}"
    );
}

#[tokio::test]
async fn a_killed_master_fails_over_and_the_instances_carry_on_with_replicated_sessions() {
    let mut deployment = RedisClusterDeployment::start(2).await;
    let urls = deployment.urls();
    crosstalk(&urls)
        .await
        .expect("broadcasts cross instances before the failover");

    // The master to kill is the one carrying the broadcast channel, and a session must live
    // on it: log in with fresh browsers until one session lands there (one in three does).
    let victim = deployment.redis.master_of(BROADCAST_CHANNEL);
    let name = username();
    register_and_login(&browser(), deployment.url(0), &name).await;
    let mut replicated = None;
    for _ in 0..40 {
        let before = sessions_on(&deployment.redis, victim);
        let client = browser();
        assert_eq!(
            login(&client, deployment.url(0), &name).await,
            StatusCode::OK
        );
        if sessions_on(&deployment.redis, victim).len() > before.len() {
            replicated = Some(client);
            break;
        }
    }
    let replicated = replicated.expect("one of 40 sessions lands on the victim master");
    deployment.redis.wait_replicated(victim).await;

    deployment.redis.kill(victim).await;

    // Readiness reflects the outage while the cluster fails over.
    let body = wait_readiness(
        deployment.url(0),
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(30),
    )
    .await;
    assert!(
        body["failing"]
            .as_array()
            .is_some_and(|f| f.iter().any(|v| v == "redis")),
        "readiness names redis: {body}"
    );
    deployment.redis.wait_for_failover().await;

    // Within a bounded time every instance is ready again, resubscribed on the promoted
    // master, and broadcasts, logins and the replicated session work.
    for i in 0..2 {
        wait_readiness(deployment.url(i), StatusCode::OK, RECOVERY).await;
    }
    let promoted = deployment.redis.master_of(BROADCAST_CHANNEL);
    assert_ne!(promoted, victim, "the killed node cannot serve the channel");
    wait_sharded_subscribers(&deployment.redis, 2).await;

    crosstalk_recovers(&deployment, "the failover").await;
    let (status, body) = me(&replicated, deployment.url(1)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the session replicated before the kill survives the failover: {body}"
    );
    assert_eq!(body["user"]["username"], name.as_str(), "{body}");
    assert_eq!(
        login(&browser(), deployment.url(1), &name).await,
        StatusCode::OK,
        "logins work again after the failover"
    );
}

#[tokio::test]
async fn a_resharded_broadcast_channel_is_followed_to_its_new_master() {
    let deployment = RedisClusterDeployment::start(2).await;
    crosstalk(&deployment.urls())
        .await
        .expect("broadcasts cross instances before the reshard");
    let redis = &deployment.redis;
    let from = redis.master_of(BROADCAST_CHANNEL);
    let to = redis
        .masters()
        .into_iter()
        .find(|&m| m != from)
        .expect("another master");

    // The old master drops the slot's shard subscriptions; the instances find the channel's
    // new master from the slot map and subscribe there.
    redis.move_slot_of(BROADCAST_CHANNEL, to).await;
    wait_sharded_subscribers(redis, 2).await;
    crosstalk_recovers(&deployment, "the reshard").await;
}

#[tokio::test]
async fn redis_url_and_redis_cluster_nodes_together_stop_the_start_naming_both() {
    let (code, output) = run_to_exit(&[
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("REDIS_CLUSTER_NODES", "127.0.0.1:7000,127.0.0.1:7001"),
    ])
    .await;
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("REDIS_URL") && output.contains("REDIS_CLUSTER_NODES"),
        "the message names both variables: {output}"
    );
    let (code, output) = run_to_exit(&[("REDIS_CLUSTER_NODES", "http://127.0.0.1:7000")]).await;
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("REDIS_CLUSTER_NODES"), "{output}");
}
