//! Hostile clients at the connection level: slow headers, huge headers, connection floods.
//! Each gets a clear refusal, and the server keeps serving everyone else. The last test floods
//! the real binary with every kind of anonymous input at once and measures what stays behind.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{TestApp, metrics_text, spawn_app_with};

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

/// How much the server's resident memory may grow over a flood (allocator slack and the
/// caches a warm server keeps; the floods below would keep tens of MiB without their limits).
const RSS_GROWTH_BOUND_KIB: u64 = 16 * 1024;
/// Largest `/metrics` text after the floods (a fresh instance serves about 10 KiB).
const METRICS_BOUND_BYTES: usize = 64 * 1024;

/// Runs `total` requests built by `request`, `parallel` at a time; the answers do not matter
/// (refusals are what most of them should get), only that each is answered.
async fn flood<F>(total: usize, parallel: usize, request: F)
where
    F: Fn(usize) -> reqwest::RequestBuilder,
{
    use futures::StreamExt;
    futures::stream::iter((0..total).map(|i| {
        let request = request(i);
        async move {
            if let Ok(res) = request.send().await {
                let _ = res.bytes().await;
            }
        }
    }))
    .buffer_unordered(parallel)
    .collect::<Vec<_>>()
    .await;
}

/// Every flood of issue-level hostile input at once against the real binary, while a
/// well-behaved user chats on the same instance: invented Engine.IO sids (8 KiB each),
/// invented HTTP methods, oversized anonymous analytics events, cookieless sessions, and
/// connections that never send a byte. Afterwards the server's memory is back within a bound
/// of where it started, `/metrics` is small, and the user got every message.
#[tokio::test]
async fn floods_of_anonymous_input_leave_no_state_behind_and_spare_other_users() {
    use crate::harness::actor::Actor;
    use crate::harness::process::RoomcastProcess;

    let server = RoomcastProcess::start(&[
        ("HEADER_READ_TIMEOUT_SECS", "2"),
        ("SESSION_TTL_SECS", "2"),
        ("SESSION_SWEEP_INTERVAL_SECS", "1"),
        ("CONNECTION_RATE_PER_IP", "1000"),
        ("CONNECTION_BURST_PER_IP", "2000"),
        ("RUST_LOG", "warn,roomcast::app=info"),
    ])
    .await;
    server.wait_ready(Duration::from_secs(20)).await;
    let base = server.base.clone();
    let mut user = Actor::connect(&base, "websocket").await;
    let joined = user.run("join lobby").await;
    assert_eq!(joined["ack"]["ok"], true, "{joined}");

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(16)
        .build()
        .expect("client");
    let long_sid = "s".repeat(8 * 1024);
    let big_props = json!({"name": "flood", "props": {"blob": "x".repeat(60 * 1024)}});
    // Warm up every path once, so the baseline includes what a working server allocates
    // anyway (pools, caches, metric series of the known routes).
    flood(50, 8, |i| {
        client.get(format!(
            "{base}/socket.io/?EIO=4&transport=websocket&sid=warm{i}"
        ))
    })
    .await;
    flood(50, 8, |_| {
        client
            .post(format!("{base}/api/analytics/events"))
            .json(&big_props)
    })
    .await;
    flood(50, 8, |_| {
        reqwest::Client::new().post(format!("{base}/api/analytics/opt-out"))
    })
    .await;
    let rss_before = server.rss_kib().expect("rss");
    let metrics_before = metrics_text(&base).await.len();

    let floods = async {
        flood(4000, 8, |i| {
            client.get(format!(
                "{base}/socket.io/?EIO=4&transport=websocket&sid={long_sid}{i}"
            ))
        })
        .await;
        flood(1000, 8, |i| {
            let method = reqwest::Method::from_bytes(format!("M{i}X").as_bytes()).expect("method");
            client.request(method, format!("{base}/api/rooms"))
        })
        .await;
        flood(500, 8, |_| {
            client
                .post(format!("{base}/api/analytics/events"))
                .json(&big_props)
        })
        .await;
        // Each request without a cookie jar opens a new anonymous session.
        let cookieless = reqwest::Client::new();
        flood(2000, 8, |_| {
            cookieless.post(format!("{base}/api/analytics/opt-out"))
        })
        .await;
        let mut silent = Vec::new();
        for _ in 0..300 {
            if let Ok(stream) = TcpStream::connect(server.base.trim_start_matches("http://")).await
            {
                silent.push(stream);
            }
        }
        silent
    };
    let chat = async {
        let mut acks = Vec::new();
        for i in 0..20 {
            acks.push(user.run(&format!("say lobby during-flood-{i}")).await);
        }
        acks
    };
    let (silent, acks) = tokio::join!(floods, chat);
    for ack in &acks {
        assert_eq!(ack["ack"]["ok"], true, "a message during the flood: {ack}");
    }

    // The silent connections are closed by the server on its own.
    for mut stream in silent {
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .is_ok();
        assert!(closed, "a connection that never sent a byte is still open");
    }
    // Sessions of the flood expire (2 s) and are swept (every 1 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let health = crate::harness::get_json(&format!("{base}/health")).await;
        if health["sessions"]["records"].as_u64() == Some(0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "flood sessions still held: {}",
            health["sessions"]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let received = user.run("received lobby").await;
    let ids = received["ids"].as_array().map_or(0, Vec::len);
    assert_eq!(
        ids, 20,
        "the user got its messages during the flood: {received}"
    );

    let metrics = metrics_text(&base).await;
    assert!(
        metrics.len() <= METRICS_BOUND_BYTES,
        "/metrics grew from {metrics_before} to {} bytes",
        metrics.len()
    );
    let rss_after = server.rss_kib().expect("rss");
    assert!(
        rss_after <= rss_before + RSS_GROWTH_BOUND_KIB,
        "RSS grew from {rss_before} KiB to {rss_after} KiB over the floods (bound: +{RSS_GROWTH_BOUND_KIB} KiB)"
    );
    eprintln!(
        "flood: RSS {rss_before} → {rss_after} KiB, /metrics {metrics_before} → {} bytes",
        metrics.len()
    );
    user.quit().await;
}

/// Refused cross-origin requests cost a client nothing, so they must not cost the log a line
/// each; and what a client sends appears in the log escaped, never as raw control characters.
#[tokio::test]
async fn refusals_do_not_flood_the_log_and_client_strings_are_escaped() {
    use crate::harness::process::RoomcastProcess;

    let server = RoomcastProcess::start(&[("RUST_LOG", "info")]).await;
    server.wait_ready(Duration::from_secs(20)).await;
    let client = crate::harness::impatient();
    for i in 0..30 {
        let res = client
            .post(format!("{}/api/analytics/opt-out", server.base))
            .header("Origin", format!("https://evil-{i}.example"))
            .send()
            .await
            .expect("answer");
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    // A tab is legal in a header value; it must not reach the log raw.
    let res = client
        .get(format!("{}/api/rooms", server.base))
        .header("X-Request-Id", "forged\tfield=1")
        .send()
        .await
        .expect("answer");
    let _ = res.bytes().await;
    let marker = server
        .wait_for_line("forged", Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("the request was not logged:\n{}", server.output()));
    assert!(
        !marker.contains('\t') && marker.contains(r#"request_id="forged\tfield=1""#),
        "a client-supplied value is written quoted and escaped: {marker}"
    );
    let refusals = server
        .lines()
        .iter()
        .filter(|l| l.contains("[INFO]") && l.contains("refused cross-origin"))
        .count();
    assert!(
        refusals <= 1,
        "{refusals} info lines for 30 refused requests:\n{}",
        server.output()
    );
}
