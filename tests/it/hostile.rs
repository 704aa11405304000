//! Hostile clients at the connection level: slow headers, huge headers, connection floods.
//! Each gets a clear refusal, and the server keeps serving everyone else.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{TestApp, spawn_app_with};

async fn read_all(stream: &mut TcpStream, within: Duration) -> String {
    let mut response = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut response))
        .await
        .expect("the server ends the connection in time");
    String::from_utf8_lossy(&response).into_owned()
}

async fn still_healthy(app: &TestApp) {
    assert_eq!(
        app.get("/health/ready").await.status(),
        StatusCode::OK,
        "the server keeps serving others"
    );
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_after_the_header_timeout() {
    let app = spawn_app_with(&[("HEADER_READ_TIMEOUT_SECS", "1")]).await;
    let mut slow = TcpStream::connect(app.addr).await.expect("connect");
    slow.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // Dribble a header byte now and then, never finishing the head.
    let dribble = async {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow.write_all(b"X").await.is_err() {
                return;
            }
        }
    };
    dribble.await;
    let response = read_all(&mut slow, Duration::from_secs(5)).await;
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 408"),
        "a head that never completes is cut off, got: {response}"
    );
    still_healthy(&app).await;
}

#[tokio::test]
async fn oversized_request_heads_are_refused() {
    let app = spawn_app_with(&[]).await;
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    let huge = "a".repeat(64 * 1024);
    let request = format!("GET /health/live HTTP/1.1\r\nHost: x\r\nX-Filler: {huge}\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let response = read_all(&mut stream, Duration::from_secs(5)).await;
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 431"),
        "a 64 KiB header is refused, got: {}",
        response.chars().take(200).collect::<String>()
    );
    still_healthy(&app).await;
}

#[tokio::test]
async fn connections_over_the_instance_limit_get_a_clear_503() {
    let app = spawn_app_with(&[("MAX_CONNECTIONS", "3")]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(app.addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(app.addr).await.expect("connect");
    let response = read_all(&mut extra, Duration::from_secs(5)).await;
    assert!(
        response.starts_with("HTTP/1.1 503"),
        "expected 503, got: {response}"
    );
    assert!(response.contains(r#""code":"unavailable""#), "{response}");
    assert!(
        response.contains(&format!("X-Instance-Id: {}", app.state.config.instance_id)),
        "{response}"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    still_healthy(&app).await;
}

#[tokio::test]
async fn a_connection_flood_from_one_address_is_rate_limited() {
    let app = spawn_app_with(&[
        ("CONNECTION_RATE_PER_IP", "1"),
        ("CONNECTION_BURST_PER_IP", "5"),
    ])
    .await;
    let mut refused = 0;
    for _ in 0..10 {
        let mut stream = TcpStream::connect(app.addr).await.expect("connect");
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok();
        let response = read_all(&mut stream, Duration::from_secs(5)).await;
        if response.starts_with("HTTP/1.1 429") {
            assert!(response.contains(r#""code":"rate_limited""#), "{response}");
            refused += 1;
        } else {
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        }
    }
    assert!(
        refused >= 4,
        "10 connections at once with a burst of 5: expected ≥4 refusals, got {refused}"
    );
}
