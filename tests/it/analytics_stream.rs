//! The analytics pipeline of cluster mode: events go through a Redis Stream and a consumer
//! group into PostgreSQL, each exactly once, even when a consumer is killed holding entries.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::harness::cluster::TestCluster;
use crate::harness::{browser, get_json, metrics_text, register_and_login, username};

const STREAM: &str = "roomcast:analytics:events";

async fn post_event(client: &Client, base: &str, name: &str) -> StatusCode {
    client
        .post(format!("{base}/api/analytics/events"))
        .json(&json!({"name": name, "props": {"n": name}}))
        .send()
        .await
        .expect("event answers")
        .status()
}

async fn health(base: &str) -> Value {
    get_json(&format!("{base}/health")).await
}

async fn stored(cluster: &TestCluster, sql: &str) -> i64 {
    cluster.sql_number(sql).await
}

/// Starts `web-1` collecting one long batch (and waiting long before claiming anything
/// itself), posts `total` events through it and waits until it holds them all
/// unacknowledged.
async fn cluster_holding_a_batch(total: usize, prefix: &str) -> TestCluster {
    let mut cluster = TestCluster::start(0).await;
    cluster
        .add_instance_with(&[
            ("ANALYTICS_BATCH_LINGER_MS", "600000"),
            ("ANALYTICS_CLAIM_IDLE_MS", "900000"),
        ])
        .await;
    let client = browser();
    for i in 0..total {
        assert_eq!(
            post_event(&client, cluster.url(0), &format!("{prefix}-{i}")).await,
            StatusCode::ACCEPTED
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let analytics = health(cluster.url(0)).await["analytics"].clone();
        let held = analytics["consumers"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "web-1"))
            .and_then(|c| c["pending"].as_u64())
            .unwrap_or(0);
        if held == total as u64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "web-1 never held all {total} entries: {analytics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        stored(&cluster, "SELECT COUNT(*) FROM analytics_events").await,
        0,
        "nothing stored while web-1 collects its batch"
    );
    cluster
}

/// Polls until the database holds `expected` analytics rows; fails with what it holds.
async fn wait_stored(cluster: &TestCluster, expected: i64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let count = stored(cluster, "SELECT COUNT(*) FROM analytics_events").await;
        if count == expected {
            return;
        }
        assert!(
            count < expected,
            "more rows than events posted: {count} > {expected}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} of {expected} events stored after {within:?}; stream: {}",
            health(cluster.url(cluster.instances.len() - 1)).await["analytics"]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls `/health` of `base` until the group holds nothing pending.
async fn wait_acknowledged(base: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let analytics = health(base).await["analytics"].clone();
        if analytics["pending"] == 0 && analytics["lag"].as_u64().unwrap_or(0) == 0 {
            return analytics;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "entries still pending or undelivered: {analytics}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `total` distinct events are stored and the group holds nothing pending (seen
/// through `base`); returns the group's view.
async fn wait_each_stored_once(cluster: &TestCluster, total: usize, base: &str) -> Value {
    wait_stored(cluster, total as i64, Duration::from_secs(60)).await;
    let analytics = wait_acknowledged(base, Duration::from_secs(30)).await;
    assert_eq!(
        stored(cluster, "SELECT COUNT(DISTINCT name) FROM analytics_events").await,
        total as i64,
        "each event stored once, none lost: {analytics}"
    );
    analytics
}

fn stream_length(cluster: &TestCluster) -> u64 {
    cluster
        .redis
        .command(&["XLEN", STREAM])
        .trim()
        .parse()
        .expect("XLEN is a number")
}

#[tokio::test]
async fn events_posted_through_three_instances_land_exactly_once_and_opted_out_ones_never_reach_the_stream()
 {
    let cluster = TestCluster::start(3).await;
    let clients = [browser(), browser(), browser()];
    let total = 60;
    for i in 0..total {
        let status = post_event(&clients[i % 3], cluster.url(i % 3), &format!("ev-{i}")).await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "event {i} through web-{}",
            i % 3 + 1
        );
    }
    let analytics = wait_each_stored_once(&cluster, total, cluster.url(0)).await;
    assert_eq!(
        stored(
            &cluster,
            "SELECT COUNT(DISTINCT instance_id) FROM analytics_events"
        )
        .await,
        3,
        "each instance received some of them"
    );
    let consumers: Vec<&str> = analytics["consumers"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    for name in ["web-1", "web-2", "web-3"] {
        assert!(
            consumers.contains(&name),
            "{name} is a consumer of the group: {analytics}"
        );
    }
    assert!(
        analytics["length"].as_u64().unwrap_or(0) >= total as u64,
        "{analytics}"
    );
    for instance in &cluster.instances {
        let output = instance.output();
        assert!(
            !output.contains("analytics consumer:") && !output.contains("claimed idle"),
            "consumers read, stored and acknowledged without errors or claims:\n{output}"
        );
    }
    let metrics = metrics_text(cluster.url(1)).await;
    for series in [
        "roomcast_analytics_stream_length ",
        "roomcast_analytics_group_pending 0",
        "roomcast_analytics_consumer_idle_seconds{consumer=\"web-2\"}",
        "roomcast_analytics_stream_stored_total",
    ] {
        assert!(metrics.contains(series), "/metrics lacks `{series}`");
    }

    // An opted-out user's events are answered 204 and never appended.
    let shy = browser();
    register_and_login(&shy, cluster.url(0), &username()).await;
    let res = shy
        .post(format!("{}/api/analytics/opt-out", cluster.url(0)))
        .send()
        .await
        .expect("opt-out");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let before = stream_length(&cluster);
    for i in 0..3 {
        assert_eq!(
            post_event(&shy, cluster.url(i), "secret-step").await,
            StatusCode::NO_CONTENT,
            "web-{} drops an opted-out event",
            i + 1
        );
    }
    assert_eq!(stream_length(&cluster), before, "nothing was appended");
    let entries = cluster.redis.command(&["XRANGE", STREAM, "-", "+"]);
    assert!(
        !entries.contains("secret-step"),
        "an opted-out event reached the stream"
    );
    assert_eq!(
        stored(
            &cluster,
            "SELECT COUNT(*) FROM analytics_events WHERE name = 'secret-step'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn entries_held_by_a_sigkilled_consumer_are_claimed_by_another_and_stored_exactly_once() {
    let total = 25;
    let mut cluster = cluster_holding_a_batch(total, "held").await;

    cluster.instances[0].signal("KILL");
    assert_eq!(
        cluster.instances[0]
            .wait_exit(Duration::from_secs(10))
            .await,
        None,
        "killed by the signal"
    );
    cluster
        .add_instance_with(&[("ANALYTICS_CLAIM_IDLE_MS", "1000")])
        .await;
    wait_each_stored_once(&cluster, total, cluster.url(1)).await;
    let metrics = metrics_text(cluster.url(1)).await;
    let claimed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("roomcast_analytics_stream_claimed_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert_eq!(
        claimed, total as u64,
        "web-2 took the entries over from web-1"
    );
}

#[tokio::test]
async fn a_draining_consumer_stores_and_acknowledges_the_batch_it_holds_before_exiting() {
    let total = 12;
    let mut cluster = cluster_holding_a_batch(total, "drained").await;

    cluster.instances[0].signal("TERM");
    let code = cluster.instances[0]
        .wait_exit(Duration::from_secs(20))
        .await;
    assert_eq!(code, Some(0), "{}", cluster.instances[0].output());
    assert_eq!(
        stored(&cluster, "SELECT COUNT(*) FROM analytics_events").await,
        total as i64,
        "the batch was stored during the drain; web-1 said:\n{}",
        cluster.instances[0].output()
    );
    let pending = cluster
        .redis
        .command(&["XPENDING", STREAM, "roomcast:analytics"]);
    assert_eq!(
        pending.lines().next().map(str::trim),
        Some("0"),
        "and acknowledged: {pending}"
    );
}
