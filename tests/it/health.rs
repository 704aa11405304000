//! Health endpoints answer what probes and operators need.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::spawn_app;

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
    let app = spawn_app().await;
    let body: Value = app.get("/health").await.json().await.expect("json");
    for field in [
        "status",
        "instance_id",
        "version",
        "uptime_secs",
        "draining",
        "checks",
        "connections",
        "instance",
        "runtime",
    ] {
        assert!(body.get(field).is_some(), "/health lacks `{field}`: {body}");
    }
    assert_eq!(body["status"], "ok");
    assert_eq!(body["draining"], false);
    assert!(
        body["checks"]["database"]["latency_ms"].is_number(),
        "{body}"
    );
    assert!(body["connections"]["local"].is_number());
    assert!(body["connections"]["cluster"].is_number());
    assert_eq!(body["instance"]["pid"], std::process::id());
    assert!(
        body["runtime"]["workers"].as_u64().unwrap_or(0) >= 1,
        "{body}"
    );
    assert!(body["runtime"]["password_hashing"]["queued"].is_number());
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
