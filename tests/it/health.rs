//! Health endpoints answer what probes and operators need.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::cluster::new_key;
use crate::harness::services::RedisServer;
use crate::harness::{ADMIN_TOKEN, TestApp, spawn_app, spawn_app_with};

#[tokio::test]
async fn liveness_and_readiness_answer_200_with_their_aliases() {
    let app = spawn_app().await;
    for path in ["/health/live", "/healthz", "/health/ready", "/readyz"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path} should be 200");
    }
    let ready: Value = app.get("/health/ready").await.json().await.expect("json");
    assert_eq!(
        ready["checks"]["database"]["status"], "ok",
        "ready body: {ready}"
    );
}

#[tokio::test]
async fn health_reports_identity_checks_connections_and_runtime() {
    let before = Instant::now();
    let app = spawn_app_with(&[("INSTANCE_ID", "health-probe-7")]).await;
    let body: Value = app.get("/health").await.json().await.expect("json");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["mode"], "embedded", "{body}");
    assert_eq!(body["draining"], false, "{body}");
    assert_eq!(body["instance_id"], "health-probe-7", "{body}");
    assert_eq!(body["instance"]["id"], "health-probe-7", "{body}");
    assert_eq!(body["instance"]["pid"], std::process::id(), "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"), "{body}");
    let uptime = body["uptime_secs"]
        .as_u64()
        .expect("uptime_secs is a number");
    assert!(
        uptime <= before.elapsed().as_secs(),
        "uptime_secs: expected at most the {}s since the test started the app, got {uptime}",
        before.elapsed().as_secs()
    );
    assert_eq!(body["checks"]["database"]["status"], "ok", "{body}");
    assert_eq!(
        body["checks"]["redis"]["status"], "disabled",
        "no Redis in embedded mode: {body}"
    );

    // Sockets are counted as they connect; in embedded mode the cluster is this instance.
    assert_eq!(body["connections"]["local"], 0, "{body}");
    assert_eq!(body["connections"]["cluster"], 0, "{body}");
    app.signed_in_user().await;
    let sid = connect_polling_socket(&app).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let connections = loop {
        let body: Value = app.get("/health").await.json().await.expect("json");
        if body["connections"]["local"] == 1 || Instant::now() > deadline {
            break body["connections"].clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        connections,
        json!({"local": 1, "cluster": 1}),
        "after one Socket.IO connect (session {sid}): expected one local socket"
    );
}

/// Opens an Engine.IO long-polling session with the app's cookies and connects to the
/// namespace `/`; returns the Engine.IO session id.
async fn connect_polling_socket(app: &TestApp) -> String {
    let open = app
        .get("/socket.io/?EIO=4&transport=polling")
        .await
        .text()
        .await
        .expect("handshake body");
    let handshake: Value =
        serde_json::from_str(open.trim_start_matches('0')).unwrap_or_else(|err| {
            panic!("Engine.IO open packet: expected JSON after `0`, got {open}: {err}")
        });
    let sid = handshake["sid"].as_str().expect("sid").to_owned();
    let posted = app
        .client
        .post(app.url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}")))
        .body("40")
        .send()
        .await
        .expect("namespace CONNECT");
    assert_eq!(posted.status(), StatusCode::OK, "namespace CONNECT");
    let connected = app
        .get(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}"))
        .await
        .text()
        .await
        .expect("CONNECT answer");
    // A polling response may carry several packets, separated by the record separator.
    assert!(
        connected
            .split('\x1e')
            .any(|packet| packet.starts_with("40")),
        "namespace CONNECT: expected a `40` packet, got {connected:?}"
    );
    sid
}

#[tokio::test]
async fn readiness_turns_503_naming_draining_once_the_drain_starts() {
    let app = spawn_app().await;
    // A probe already on the wire when the drain starts (the listener stops accepting new
    // connections at once, so this is the only way a probe can still reach the instance).
    let mut probe = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    probe
        .write_all(format!("GET /health/ready HTTP/1.1\r\nHost: {}\r\n", app.addr).as_bytes())
        .await
        .expect("write request head");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let drained = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    probe
        .write_all(b"Connection: close\r\n\r\n")
        .await
        .expect("finish request");
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), probe.read_to_string(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    assert!(
        response.starts_with("HTTP/1.1 503"),
        "readiness during drain: {response}"
    );
    assert!(
        response.contains(r#""draining""#),
        "failing checks should name draining: {response}"
    );
    drained.await.expect("drain task");
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_routes_not_raw_paths() {
    let app = spawn_app().await;
    app.get("/api/rooms/lobby/messages").await;
    app.get("/health/live").await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.expect("text");
    for metric in [
        "roomcast_http_requests_total",
        "roomcast_http_request_duration_seconds_bucket",
        "roomcast_sockets_connected",
        "roomcast_message_broadcast_seconds",
        "roomcast_redis_errors_total",
    ] {
        assert!(text.contains(metric), "/metrics lacks {metric}:\n{text}");
    }
    assert!(
        text.contains(r#"route="/api/rooms/{room}/messages""#),
        "requests must be labelled by route template:\n{text}"
    );
    assert!(
        !text.contains("/api/rooms/lobby/messages"),
        "raw paths must not become labels"
    );
}

#[tokio::test]
async fn cluster_mode_metrics_count_adapter_messages_lost_before_the_adapter() {
    let redis = RedisServer::start().await;
    let key = new_key();
    let app = spawn_app_with(&[
        ("REDIS_URL", redis.url().as_str()),
        ("SESSION_ENCRYPTION_KEY", key.as_str()),
    ])
    .await;
    // An admin emit travels through the adapter's Pub/Sub channels and back.
    let emitted = app
        .client
        .post(app.url("/api/admin/emit"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"room": "lobby", "event": "notification", "data": {"n": 1}}))
        .send()
        .await
        .expect("admin emit");
    assert_eq!(emitted.status(), StatusCode::ACCEPTED, "admin emit");
    let text = app.get("/metrics").await.text().await.expect("text");
    let line = text
        .lines()
        .find(|l| l.starts_with("roomcast_adapter_messages_dropped_total "))
        .unwrap_or_else(|| {
            panic!("/metrics lacks roomcast_adapter_messages_dropped_total:\n{text}")
        });
    assert_eq!(
        line, "roomcast_adapter_messages_dropped_total 0",
        "a healthy instance loses no adapter message"
    );
}
