//! Outages of Redis and PostgreSQL, injected for real: the instances fail fast while a
//! dependency is down and recover, without restarts, when it returns.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::actor::Actor;
use crate::harness::cluster::TestCluster;
use crate::harness::{
    PASSWORD, browser, crosstalk, get_json, impatient, register_and_login, wait_readiness,
};

fn failing(body: &Value) -> Vec<String> {
    body["failing"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_redis_restart_fails_fast_then_recovers_broadcasts_without_restarting_instances() {
    let mut cluster = TestCluster::start(2).await;
    let urls = cluster.urls();
    crosstalk(&urls)
        .await
        .expect("broadcasts cross instances before the outage");

    let client = browser();
    register_and_login(&client, cluster.url(0), &crate::harness::username()).await;

    cluster.redis.stop().await;
    for i in 0..2 {
        let live = impatient()
            .get(format!("{}/health/live", cluster.url(i)))
            .send()
            .await
            .expect("live");
        assert_eq!(
            live.status(),
            StatusCode::OK,
            "liveness does not depend on Redis"
        );
        let body = wait_readiness(
            cluster.url(i),
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(10),
        )
        .await;
        assert!(
            failing(&body).contains(&"redis".to_owned()),
            "readiness names redis: {body}"
        );
    }
    let res = client
        .get(format!("{}/api/me", cluster.url(1)))
        .send()
        .await
        .expect("me answers, no hang");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let error: Value = res.json().await.expect("JSON error body");
    assert_eq!(error["error"]["code"], "unavailable");

    cluster.redis.restart().await;
    for i in 0..2 {
        wait_readiness(cluster.url(i), StatusCode::OK, Duration::from_secs(20)).await;
    }
    let report = crosstalk(&urls).await;
    assert!(
        report.is_ok(),
        "broadcasts must cross instances again after Redis returns: {report:?}\n--- web-1 ---\n{}",
        cluster.instances[0].output()
    );
}

#[tokio::test]
async fn a_database_outage_turns_readiness_off_and_writes_into_503_until_it_returns() {
    let mut cluster = TestCluster::start(1).await;
    let base = cluster.url(0).to_owned();
    cluster.postgres.stop().await;
    let body = wait_readiness(
        &base,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        failing(&body).contains(&"database".to_owned()),
        "readiness names the database: {body}"
    );
    let res = impatient()
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"username": crate::harness::username(), "password": PASSWORD}))
        .send()
        .await
        .expect("register answers, no hang");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);

    cluster.postgres.start_again().await;
    wait_readiness(&base, StatusCode::OK, Duration::from_secs(30)).await;
    let res = impatient()
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"username": crate::harness::username(), "password": PASSWORD}))
        .send()
        .await
        .expect("register");
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "writes work again once the database is back"
    );
}

fn ack_code(result: &Value) -> Option<&str> {
    result["ack"]["error"]["code"].as_str()
}

#[tokio::test]
async fn socket_actions_answer_unavailable_during_outages_and_recover_on_the_same_connection() {
    let mut cluster = TestCluster::start(1).await;
    let base = cluster.url(0).to_owned();
    let mut actor = Actor::connect(&base, "websocket").await;
    let joined = actor.run("join outage").await;
    assert_eq!(joined["ack"]["ok"], true, "{joined}");
    let sent = actor.run("say outage before").await;
    assert_eq!(sent["ack"]["ok"], true, "{sent}");

    cluster.redis.stop().await;
    let refused = actor.run("say outage during-redis-outage").await;
    assert_eq!(
        ack_code(&refused),
        Some("unavailable"),
        "a message while Redis is down: {refused}"
    );
    cluster.redis.restart().await;
    wait_readiness(&base, StatusCode::OK, Duration::from_secs(20)).await;
    let sent = actor.run("say outage after-redis").await;
    assert_eq!(
        sent["ack"]["ok"], true,
        "the same socket works again once Redis is back: {sent}"
    );

    cluster.postgres.stop().await;
    let refused = actor.run("say outage during-database-outage").await;
    assert_eq!(
        ack_code(&refused),
        Some("unavailable"),
        "a message that cannot be stored is refused: {refused}"
    );
    cluster.postgres.start_again().await;
    wait_readiness(&base, StatusCode::OK, Duration::from_secs(30)).await;
    let sent = actor.run("say outage after-database").await;
    assert_eq!(sent["ack"]["ok"], true, "{sent}");

    let stored = cluster
        .postgres
        .psql("SELECT body FROM messages ORDER BY id")
        .await;
    let bodies: Vec<&str> = stored
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        bodies,
        ["before", "after-redis", "after-database"],
        "exactly the acknowledged messages are stored"
    );
    actor.quit().await;
}

#[tokio::test]
async fn a_sigkilled_instance_is_forgotten_by_presence_and_the_connection_count() {
    let cluster = TestCluster::start(2).await;
    let mut actor = Actor::connect(cluster.url(1), "websocket").await;
    let joined = actor.run("join doomed").await;
    assert_eq!(joined["ack"]["members"], 1, "{joined}");

    let observer = browser();
    register_and_login(&observer, cluster.url(0), &crate::harness::username()).await;
    let members = |rooms: &Value| {
        rooms["rooms"]
            .as_array()
            .and_then(|rooms| rooms.iter().find(|r| r["name"] == "doomed"))
            .and_then(|r| r["members"].as_u64())
            .unwrap_or(0)
    };
    let rooms: Value = observer
        .get(format!("{}/api/rooms", cluster.url(0)))
        .send()
        .await
        .expect("rooms")
        .json()
        .await
        .expect("json");
    assert_eq!(
        members(&rooms),
        1,
        "web-1 sees the member on web-2: {rooms}"
    );
    let cluster_sockets = |health: &Value| health["connections"]["cluster"].as_u64().unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let health: Value = get_json(&format!("{}/health", cluster.url(0))).await;
        if cluster_sockets(&health) >= 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "web-2's socket never showed in connections.cluster: {health}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    cluster.instances[1].signal("KILL");
    // The documented bound is INSTANCE_TTL + HEARTBEAT = 20 s; allow slack for a loaded machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        let rooms: Value = observer
            .get(format!("{}/api/rooms", cluster.url(0)))
            .send()
            .await
            .expect("rooms")
            .json()
            .await
            .expect("json");
        let health: Value = get_json(&format!("{}/health", cluster.url(0))).await;
        if members(&rooms) == 0 && cluster_sockets(&health) == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the killed instance's socket is still counted: rooms {rooms}, health {health}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn messages_acked_by_a_draining_instance_reach_the_other_instances_and_are_stored() {
    let mut cluster = TestCluster::start(2).await;
    let mut sender = Actor::connect(cluster.url(0), "websocket").await;
    let mut listener = Actor::connect(cluster.url(1), "polling").await;
    for actor in [&mut sender, &mut listener] {
        let joined = actor.run("join handover").await;
        assert_eq!(joined["ack"]["ok"], true, "{joined}");
    }
    let mut acked = Vec::new();
    for i in 0..200 {
        if i == 20 {
            cluster.instances[0].signal("TERM");
        }
        let result = sender.run(&format!("say handover m{i}")).await;
        match result["ack"]["id"].as_i64() {
            Some(id) if result["ack"]["ok"] == true => acked.push(id),
            _ => break,
        }
    }
    assert!(
        acked.len() >= 20,
        "messages were acked before the signal: {acked:?}"
    );
    assert_eq!(
        cluster.instances[0]
            .wait_exit(Duration::from_secs(20))
            .await,
        Some(0),
        "web-1 drains and exits 0"
    );

    // Every acked message reached the listener on web-2 ...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let received = listener.run("received handover").await;
        let ids: Vec<i64> = received["ids"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        let missing: Vec<_> = acked.iter().filter(|id| !ids.contains(id)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acked messages never reached web-2: {missing:?} (received {ids:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ... and is stored.
    let stored = cluster
        .postgres
        .psql("SELECT id FROM messages WHERE room = 'handover'")
        .await;
    let stored: Vec<i64> = stored
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for id in &acked {
        assert!(stored.contains(id), "acked message {id} is not stored");
    }
    listener.quit().await;
}
