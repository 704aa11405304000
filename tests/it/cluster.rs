//! Cluster mode with real processes: three instances, one Redis, one PostgreSQL.

use std::time::Duration;

use base64::Engine as _;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::cluster::{TestCluster, new_key};
use crate::harness::services::RedisServer;
use crate::harness::{PASSWORD, browser, register_and_login, run_node, username};

async fn me(client: &Client, base: &str) -> (StatusCode, Option<String>, Value) {
    let res = client
        .get(format!("{base}/api/me"))
        .send()
        .await
        .expect("me");
    let status = res.status();
    let instance = res
        .headers()
        .get("x-instance-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, instance, res.json().await.unwrap_or(Value::Null))
}

fn key_id(base64_key: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(base64_key)
        .expect("key");
    hex::encode(&Sha256::digest(key)[..4])
}

/// Session records are the keys outside roomcast's own `roomcast:` namespace.
fn session_values(cluster: &TestCluster) -> Vec<String> {
    cluster
        .dump_redis()
        .into_iter()
        .filter(|(key, _)| !key.starts_with("roomcast:"))
        .map(|(_, value)| value)
        .collect()
}

#[tokio::test]
async fn one_cluster_behaves_as_one_server() {
    let cluster = TestCluster::start(3).await;

    // A login on A works on B and C; logout on B ends it everywhere.
    let alice = browser();
    let alice_name = username();
    let alice_cookie = register_and_login(&alice, cluster.url(0), &alice_name).await;
    for i in 0..3 {
        let (status, instance, body) = me(&alice, cluster.url(i)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "web-{} should accept the cookie from web-1: {body}",
            i + 1
        );
        assert_eq!(instance.as_deref(), Some(format!("web-{}", i + 1).as_str()));
    }
    let res = alice
        .post(format!("{}/api/auth/logout", cluster.url(1)))
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // Replay the old cookie by hand: the browser forgot it, an attacker might not have.
    let replay = Client::new()
        .get(format!("{}/api/me", cluster.url(0)))
        .header("cookie", &alice_cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(
        replay.status(),
        StatusCode::UNAUTHORIZED,
        "logout on web-2 must end the session on web-1"
    );

    // An opt-out on A is honoured on C, and nothing reaches the database.
    let bob = browser();
    register_and_login(&bob, cluster.url(0), &username()).await;
    let res = bob
        .post(format!("{}/api/analytics/opt-out", cluster.url(0)))
        .send()
        .await
        .expect("opt-out");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let phone = browser();
    let body = json!({"username": me(&bob, cluster.url(2)).await.2["user"]["username"], "password": PASSWORD});
    let res = phone
        .post(format!("{}/api/auth/login", cluster.url(2)))
        .json(&body)
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), StatusCode::OK);
    let (_, _, body) = me(&phone, cluster.url(2)).await;
    assert_eq!(
        body["analytics_opted_out"], true,
        "a second device on web-3 sees the opt-out: {body}"
    );
    let res = phone
        .post(format!("{}/api/analytics/events", cluster.url(2)))
        .json(&json!({"name": "tap"}))
        .send()
        .await
        .expect("event");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        cluster
            .postgres
            .psql("SELECT COUNT(*) FROM analytics_events")
            .await
            .trim(),
        "0"
    );

    // Nothing a user typed is readable in Redis.
    let dump = cluster.dump_redis();
    assert!(!dump.is_empty());
    for (key, value) in &dump {
        for secret in [alice_name.as_str(), PASSWORD] {
            assert!(
                !key.contains(secret) && !value.contains(secret),
                "`{secret}` found in plaintext in Redis key {key}: {value}"
            );
        }
    }

    // /health reports Redis and the cluster-wide view.
    let health: Value = reqwest::get(format!("{}/health", cluster.url(2)))
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["mode"], "cluster");
    assert_eq!(health["checks"]["redis"]["status"], "ok", "{health}");
    assert!(health["connections"]["cluster"].is_number(), "{health}");

    // The official socket.io-client suite, against these three instances.
    let urls = cluster.urls();
    let run = run_node(
        &[
            "--test",
            "--test-reporter=tap",
            "--test-concurrency=1",
            "cluster/cluster.test.mjs",
        ],
        &[
            ("ROOMCAST_URLS", urls.as_str()),
            ("ADMIN_TOKEN", crate::harness::ADMIN_TOKEN),
        ],
        Duration::from_secs(300),
    )
    .await;
    let report = run.unwrap_or_else(|report| {
        panic!(
            "socket.io-client cluster suite failed:\n{report}\n--- web-1 log ---\n{}",
            cluster.instances[0].output()
        )
    });
    crate::harness::tap::assert_every_test_passed(&report, "cluster/cluster.test.mjs");
    // Failed logins are counted cluster-wide: spreading them over instances does not help.
    // (Last, because it also locks out this test's client address.)
    let target = username();
    register_and_login(&browser(), cluster.url(0), &target).await;
    let guesser = browser();
    for attempt in 0..10 {
        let res = guesser
            .post(format!("{}/api/auth/login", cluster.url(attempt % 3)))
            .json(&json!({"username": target, "password": "wrong password"}))
            .send()
            .await
            .expect("login");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let res = guesser
        .post(format!("{}/api/auth/login", cluster.url(1)))
        .json(&json!({"username": target, "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the 11th attempt, on any instance, is throttled"
    );

    // Nothing a user typed is readable in Redis, throttle keys included.
    for (key, value) in cluster.dump_redis() {
        assert!(
            !key.contains(&target) && !value.contains(&target),
            "`{target}` in Redis key {key}: {value}"
        );
    }
}

#[tokio::test]
async fn session_keys_rotate_without_logging_anyone_out() {
    let mut cluster = TestCluster::start(2).await;
    let old_key = cluster.key.clone();
    let user = browser();
    register_and_login(&user, cluster.url(0), &username()).await;
    let sealed = session_values(&cluster);
    assert!(
        sealed
            .iter()
            .any(|v| v.contains(&format!("v2.{}.", key_id(&old_key)))),
        "session sealed under the first key: {sealed:?}"
    );

    // Rotate: a new current key, the old one retired but accepted.
    let new = new_key();
    cluster.key = new.clone();
    for i in 0..2 {
        cluster
            .restart(i, &[("SESSION_ENCRYPTION_KEYS_OLD", old_key.as_str())])
            .await;
    }
    let (status, _, body) = me(&user, cluster.url(1)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the session survives the rotation: {body}"
    );
    let resealed = session_values(&cluster);
    assert!(
        resealed
            .iter()
            .any(|v| v.contains(&format!("v2.{}.", key_id(&new)))),
        "the next save re-seals under the new key: {resealed:?}"
    );
    assert!(
        !resealed
            .iter()
            .any(|v| v.contains(&format!("v2.{}.", key_id(&old_key)))),
        "no record is left under the old key: {resealed:?}"
    );

    // An unrelated key: users are simply logged out, nobody gets a 500.
    cluster.key = new_key();
    for i in 0..2 {
        cluster.restart(i, &[]).await;
    }
    let (status, _, body) = me(&user, cluster.url(0)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _, _) = me(&user, cluster.url(1)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        cluster.instances[0]
            .output()
            .contains("session record did not open"),
        "the failed decryption is logged as a warning"
    );
}

#[tokio::test]
async fn password_protected_redis_and_acl_users_are_accepted_as_plain_urls() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cret-pass"]).await;
    assert!(redis.url().contains(":s3cret-pass@"), "{}", redis.url());
    let mut cluster = TestCluster::start_with_redis(redis, 1).await;
    let user = browser();
    register_and_login(&user, cluster.url(0), &username()).await;
    assert_eq!(me(&user, cluster.url(0)).await.0, StatusCode::OK);

    // An ACL user limited to what roomcast needs.
    let created = cluster.redis.command(&[
        "ACL",
        "SETUSER",
        "roomcast",
        "on",
        ">acl-pass",
        "~*",
        "&*",
        "+@all",
        "-@dangerous",
        "+info",
    ]);
    assert_eq!(created.trim(), "OK", "ACL SETUSER: {created}");
    cluster.redis_url = Some(format!(
        "redis://roomcast:acl-pass@127.0.0.1:{}",
        cluster.redis.port()
    ));
    cluster.add_instance().await;
    assert_eq!(
        me(&user, cluster.url(1)).await.0,
        StatusCode::OK,
        "the ACL user reads the same sessions"
    );
}
