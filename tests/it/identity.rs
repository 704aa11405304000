//! Every response says which instance produced it.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{TestApp, spawn_app, spawn_app_with};

fn instance_of(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get("x-instance-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn assert_stamped(app: &TestApp, res: reqwest::Response, what: &str, status: StatusCode) {
    assert_eq!(res.status(), status, "{what}: unexpected status");
    let expected = app.state.config.instance_id.to_string();
    assert_eq!(
        instance_of(&res).as_deref(),
        Some(expected.as_str()),
        "{what} lacks X-Instance-Id"
    );
}

#[tokio::test]
async fn every_kind_of_response_carries_the_instance_id() {
    let app = spawn_app_with(&[("HTTP_BODY_LIMIT_BYTES", "1024")]).await;
    assert_stamped(
        &app,
        app.get("/api/me").await,
        "401",
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_stamped(&app, app.get("/").await, "static page", StatusCode::OK).await;
    assert_stamped(
        &app,
        app.get("/assets/app.js").await,
        "asset",
        StatusCode::OK,
    )
    .await;
    assert_stamped(
        &app,
        app.get("/no/such/path").await,
        "404",
        StatusCode::NOT_FOUND,
    )
    .await;
    let res = app
        .client
        .delete(app.url("/api/me"))
        .send()
        .await
        .expect("DELETE");
    assert_stamped(&app, res, "405", StatusCode::METHOD_NOT_ALLOWED).await;
    let big = serde_json::json!({"username": "x".repeat(4096), "password": "y"});
    assert_stamped(
        &app,
        app.post("/api/auth/register", &big).await,
        "413",
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_stamped(&app, app.get("/metrics").await, "metrics", StatusCode::OK).await;
    let polling = app.get("/socket.io/?EIO=4&transport=polling").await;
    assert_stamped(&app, polling, "Socket.IO polling handshake", StatusCode::OK).await;
}

#[tokio::test]
async fn the_websocket_upgrade_response_carries_the_instance_id() {
    let app = spawn_app().await;
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let request = format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        app.addr
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 2048];
    let mut head = String::new();
    while !head.contains("\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("upgrade response in time")
            .expect("read");
        assert!(
            n > 0,
            "connection closed before the upgrade response: {head}"
        );
        head.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "expected 101, got: {head}"
    );
    let expected = format!("x-instance-id: {}", app.state.config.instance_id);
    assert!(
        head.to_ascii_lowercase()
            .contains(&expected.to_ascii_lowercase()),
        "101 lacks X-Instance-Id: {head}"
    );
}

#[tokio::test]
async fn request_ids_are_generated_or_echoed() {
    let app = spawn_app().await;
    let res = app.get("/health/live").await;
    let generated = res
        .headers()
        .get("x-request-id")
        .expect("generated request id");
    assert!(!generated.is_empty());
    let res = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .expect("GET");
    assert_eq!(
        res.headers().get("x-request-id").map(|v| v.as_bytes()),
        Some(&b"trace-abc-123"[..])
    );
}
