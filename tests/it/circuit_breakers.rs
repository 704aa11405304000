//! Circuit breakers: with Redis down, requests stop waiting for timeouts once the breaker has
//! opened, and service comes back by itself when Redis returns.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::cluster::TestCluster;
use crate::harness::{browser, get_json, metrics_text};

async fn post_event(base: &str) -> (StatusCode, Duration) {
    let started = Instant::now();
    let res = browser()
        .post(format!("{base}/api/analytics/events"))
        .json(&json!({"name": "probe"}))
        .send()
        .await
        .expect("event answers");
    (res.status(), started.elapsed())
}

async fn breaker(base: &str, dependency: &str) -> Value {
    get_json(&format!("{base}/health")).await["breakers"][dependency].clone()
}

#[tokio::test]
async fn with_redis_down_the_breaker_opens_and_fails_fast_then_closes_when_redis_returns() {
    let mut cluster = TestCluster::start(0).await;
    cluster
        .add_instance_with(&[
            ("BREAKER_FAILURE_THRESHOLD", "3"),
            ("BREAKER_OPEN_MS", "5000"),
        ])
        .await;
    let base = cluster.url(0).to_owned();
    assert_eq!(post_event(&base).await.0, StatusCode::ACCEPTED);
    assert_eq!(breaker(&base, "redis").await["state"], "closed");
    assert_eq!(breaker(&base, "database").await["state"], "closed");

    cluster.redis.stop().await;
    // Each of the first failures waits for the command timeout; then the breaker opens.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = post_event(&base).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        if breaker(&base, "redis").await["state"] == "open" {
            break;
        }
        assert!(Instant::now() < deadline, "the redis breaker never opened");
    }
    // While it is open, requests are refused without trying Redis: concurrent requests do not
    // queue behind 2 s command timeouts. (Half-open probes still wait for their timeout, so
    // some requests may be slow; most are not.)
    let before = breaker(&base, "redis").await["rejections"]
        .as_u64()
        .unwrap_or(0);
    let answers = futures::future::join_all((0..10).map(|_| post_event(&base))).await;
    for (status, _) in &answers {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let fast = answers
        .iter()
        .filter(|(_, took)| *took < Duration::from_millis(1_500))
        .count();
    assert!(
        fast >= 5,
        "requests did not fail fast behind the open breaker: {answers:?}"
    );
    let after = breaker(&base, "redis").await["rejections"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        after > before,
        "the breaker refused calls ({before} → {after})"
    );
    let metrics = metrics_text(&base).await;
    assert!(
        metrics.contains("roomcast_circuit_breaker_rejections_total{dependency=\"redis\"}"),
        "rejections exported"
    );
    assert!(
        metrics.contains("roomcast_circuit_breaker_state{dependency=\"redis\"}"),
        "state exported"
    );

    cluster.redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = post_event(&base).await;
        if status == StatusCode::ACCEPTED && breaker(&base, "redis").await["state"] == "closed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the breaker did not close after Redis returned: {}",
            breaker(&base, "redis").await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn login_unknown(base: &str) -> StatusCode {
    browser()
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"username": "nobody_here", "password": "not-a-real-password"}))
        .send()
        .await
        .expect("login answers")
        .status()
}

#[tokio::test]
async fn with_the_database_down_its_breaker_opens_and_closes_again_when_it_returns() {
    let mut cluster = TestCluster::start(0).await;
    cluster
        .add_instance_with(&[
            ("BREAKER_FAILURE_THRESHOLD", "2"),
            ("BREAKER_OPEN_MS", "5000"),
            ("LOGIN_MAX_FAILURES", "1000"),
        ])
        .await;
    let base = cluster.url(0).to_owned();
    assert_eq!(login_unknown(&base).await, StatusCode::UNAUTHORIZED);

    cluster.postgres.stop().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert_eq!(login_unknown(&base).await, StatusCode::SERVICE_UNAVAILABLE);
        if breaker(&base, "database").await["state"] == "open" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the database breaker never opened"
        );
    }
    let before = breaker(&base, "database").await["rejections"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(login_unknown(&base).await, StatusCode::SERVICE_UNAVAILABLE);
    let after = breaker(&base, "database").await["rejections"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        after > before,
        "the open breaker refused the call ({before} → {after})"
    );

    cluster.postgres.start_again().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if login_unknown(&base).await == StatusCode::UNAUTHORIZED
            && breaker(&base, "database").await["state"] == "closed"
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the database breaker did not close: {}",
            breaker(&base, "database").await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
