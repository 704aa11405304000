//! Hostile input against one instance, each limit through the interface a client uses: what an
//! anonymous client sends is refused or bounded, and nothing it sends stays behind.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::services::RedisServer;
use crate::harness::{
    browser, error_code, get_json, impatient, metrics_text, spawn_app, spawn_app_with,
};

/// 32 random bytes as base64, like a session key.
const SESSION_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

#[tokio::test]
async fn websocket_requests_with_invented_sids_leave_nothing_behind() {
    let app = spawn_app().await;
    let client = impatient();
    let long_sid = "s".repeat(8 * 1024);
    for i in 0..300 {
        let sid = if i % 2 == 0 {
            format!("{long_sid}{i}")
        } else {
            // Well-formed length, unknown to Engine.IO.
            format!("AAAAAAAAAAAA{i:04}")
        };
        let res = client
            .get(app.url(&format!("/socket.io/?EIO=4&transport=websocket&sid={sid}")))
            .send()
            .await
            .expect("engine.io answers");
        assert_ne!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    }
    assert_eq!(
        app.state.session_connections.recorded(),
        0,
        "sids Engine.IO never accepted must not be recorded"
    );
}

#[tokio::test]
async fn invented_http_methods_share_one_metric_label() {
    let app = spawn_app().await;
    let client = impatient();
    for i in 0..200 {
        let method = Method::from_bytes(format!("INVENTED{i}").as_bytes()).expect("method");
        client
            .request(method, app.url("/api/rooms"))
            .send()
            .await
            .expect("answer");
    }
    let metrics = metrics_text(&app.base).await;
    assert!(
        !metrics.contains("INVENTED"),
        "a client-chosen method became a label"
    );
    assert!(
        metrics.contains(r#"method="other""#),
        "invented methods are counted as `other`"
    );
    assert!(
        metrics.len() < 64 * 1024,
        "/metrics grew to {} bytes",
        metrics.len()
    );
}

#[tokio::test]
async fn analytics_props_over_the_cap_get_a_413() {
    let app = spawn_app_with(&[("ANALYTICS_PROPS_MAX_BYTES", "1024")]).await;
    let big = json!({"name": "page_view", "props": {"blob": "x".repeat(2000)}});
    let res = app.post("/api/analytics/events", &big).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(res).await, "payload_too_large");
    let small = json!({"name": "page_view", "props": {"blob": "x".repeat(500)}});
    assert_eq!(
        app.post("/api/analytics/events", &small).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(app.state.db.count_events().await.expect("count"), 1);
}

#[tokio::test]
async fn an_anonymous_analytics_flood_is_rate_limited_per_address() {
    let app = spawn_app_with(&[
        ("ANALYTICS_RATE_PER_SEC", "1"),
        ("ANALYTICS_RATE_BURST", "5"),
    ])
    .await;
    let mut limited = 0;
    for i in 0..15 {
        // A fresh client each time: no cookie ties the requests together, only the address.
        let res = impatient()
            .post(app.url("/api/analytics/events"))
            .json(&json!({"name": format!("flood_{i}")}))
            .send()
            .await
            .expect("answer");
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(res.headers().contains_key("retry-after"));
            assert_eq!(error_code(res).await, "rate_limited");
            limited += 1;
        } else {
            assert_eq!(res.status(), StatusCode::ACCEPTED);
        }
    }
    assert!(
        limited >= 8,
        "15 events at once with a burst of 5: expected ≥8 refusals, got {limited}"
    );
    let stored = app.state.db.count_events().await.expect("count");
    assert!(stored <= 7, "{stored} events stored past the limit");
}

/// Reads until the server closes the connection; `Err` when it is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(received),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => return Err(received),
        }
    }
}

#[tokio::test]
async fn a_connection_that_never_sends_a_byte_is_closed() {
    let app = spawn_app_with(&[("HEADER_READ_TIMEOUT_SECS", "1")]).await;
    let mut silent = TcpStream::connect(app.addr).await.expect("connect");
    assert!(
        closed_within(&mut silent, Duration::from_secs(6))
            .await
            .is_ok(),
        "a silent connection is still open 6 s after a 1 s header timeout"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = spawn_app_with(&[("HEADER_READ_TIMEOUT_SECS", "1")]).await;
    let mut idle = TcpStream::connect(app.addr).await.expect("connect");
    idle.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let received = closed_within(&mut idle, Duration::from_secs(6))
        .await
        .unwrap_or_else(|partial| {
            panic!(
                "an idle keep-alive connection is still open 6 s after a 1 s timeout; read: {}",
                String::from_utf8_lossy(&partial)
            )
        });
    assert!(
        String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"),
        "the request itself was answered"
    );
}

#[tokio::test]
async fn cleartext_http2_is_refused() {
    let app = spawn_app().await;
    let mut h2c = TcpStream::connect(app.addr).await.expect("connect");
    // The HTTP/2 connection preface, then an empty SETTINGS frame.
    h2c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("write");
    let received = closed_within(&mut h2c, Duration::from_secs(5))
        .await
        .unwrap_or_else(|partial| {
            panic!(
                "an h2c connection is kept open ({} bytes received)",
                partial.len()
            )
        });
    // An HTTP/2 server answers with its own SETTINGS frame (type 0x04 at offset 3).
    assert!(
        received.len() < 9 || received[3] != 0x04,
        "the server spoke HTTP/2: {received:?}"
    );
}

#[tokio::test]
async fn cookieless_sessions_expire_and_are_deleted() {
    let app = spawn_app_with(&[
        ("SESSION_TTL_SECS", "1"),
        ("SESSION_SWEEP_INTERVAL_SECS", "1"),
    ])
    .await;
    for _ in 0..200 {
        // No cookie jar: each opt-out creates a new anonymous session.
        let res = impatient()
            .post(app.url("/api/analytics/opt-out"))
            .send()
            .await
            .expect("opt-out");
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }
    let records = |health: &Value| health["sessions"]["records"].as_u64();
    let health = get_json(&app.url("/health")).await;
    assert_eq!(health["sessions"]["store"], "memory", "{health}");
    assert!(records(&health).is_some(), "{health}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let health = get_json(&app.url("/health")).await;
        if records(&health) == Some(0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expired sessions were never deleted: {}",
            health["sessions"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_security_headers(res: &reqwest::Response, what: &str) {
    let headers = res.headers();
    assert_eq!(
        headers
            .get("x-content-type-options")
            .map(|v| v.to_str().unwrap_or_default()),
        Some("nosniff"),
        "{what}: X-Content-Type-Options"
    );
    assert!(
        headers.contains_key("content-security-policy"),
        "{what}: Content-Security-Policy"
    );
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    for path in [
        "/api/me",
        "/health/live",
        "/no/such/route",
        "/socket.io/?EIO=4&transport=polling",
    ] {
        let res = app.get(path).await;
        assert_security_headers(&res, path);
        assert!(
            !res.headers().contains_key("strict-transport-security"),
            "{path}: no HSTS without COOKIE_SECURE"
        );
    }
    let index = app.get("/").await;
    assert_security_headers(&index, "/");
    let csp = index.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        csp.contains("connect-src 'self';") && !csp.contains("ws:"),
        "the app may connect to its own origin only: {csp}"
    );

    let secure = spawn_app_with(&[("COOKIE_SECURE", "true")]).await;
    let res = secure.get("/health/live").await;
    assert!(
        res.headers()["strict-transport-security"]
            .to_str()
            .expect("ascii")
            .starts_with("max-age="),
        "HSTS with COOKIE_SECURE"
    );
}

#[tokio::test]
async fn metrics_and_the_detailed_health_need_the_metrics_token_when_set() {
    let token = "metrics-token-0123456789";
    let app = spawn_app_with(&[("METRICS_TOKEN", token)]).await;
    for path in ["/metrics", "/health"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(error_code(res).await, "unauthorized");
        let wrong = app
            .client
            .get(app.url(path))
            .bearer_auth("not-the-token-at-all")
            .send()
            .await
            .expect("answer");
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{path}");
        let res = app
            .client
            .get(app.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("answer");
        assert_eq!(res.status(), StatusCode::OK, "{path} with the token");
    }
    for probe in ["/health/live", "/health/ready"] {
        assert_eq!(app.get(probe).await.status(), StatusCode::OK, "{probe}");
    }
}

#[tokio::test]
async fn a_failing_dependency_is_reported_without_its_error_text() {
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    let app = spawn_app_with(&[
        ("REDIS_URL", url.as_str()),
        ("SESSION_ENCRYPTION_KEY", SESSION_KEY),
    ])
    .await;
    redis.stop().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let health = get_json(&app.url("/health")).await;
        let redis_check = &health["checks"]["redis"];
        if redis_check["status"] != "ok" {
            assert!(
                redis_check.get("error").is_none(),
                "raw error text in /health: {redis_check}"
            );
            let ready = get_json(&app.url("/health/ready")).await;
            assert!(
                ready["checks"]["redis"].get("error").is_none(),
                "raw error text in /health/ready: {ready}"
            );
            if let Some(analytics) = health["analytics"].as_object() {
                assert!(analytics.get("error").is_none(), "{health}");
            }
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis still reported ok after it stopped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_unchanged_session_is_not_resealed_on_every_request() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let app = spawn_app_with(&[
        ("REDIS_URL", url.as_str()),
        ("SESSION_ENCRYPTION_KEY", SESSION_KEY),
    ])
    .await;
    let client = browser();
    let name = crate::harness::username();
    let cookie = crate::harness::register_and_login(&client, &app.base, &name).await;
    assert!(cookie.starts_with("roomcast.sid="));
    // Session records are the keys outside roomcast's own namespaces.
    let session_keys = || {
        redis
            .command(&["--scan"])
            .lines()
            .filter(|k| !k.is_empty() && !k.starts_with("roomcast"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let keys = session_keys();
    assert_eq!(keys.len(), 1, "one session record: {keys:?}");
    let sealed_value = || redis.command(&["GET", &keys[0]]);
    let before = sealed_value();
    assert!(!before.is_empty());
    for _ in 0..5 {
        let res = client
            .get(format!("{}/api/me", app.base))
            .send()
            .await
            .expect("me");
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(
        sealed_value(),
        before,
        "the session record was re-sealed by requests that changed nothing"
    );
    // A change is sealed at once.
    let res = client
        .post(format!("{}/api/analytics/opt-out", app.base))
        .send()
        .await
        .expect("opt-out");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_ne!(sealed_value(), before, "a changed session is re-sealed");
}

#[tokio::test]
async fn the_analytics_stream_is_bounded_by_its_memory_budget() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    // 2 × (2048 + 64) + 1024 = 5248 bytes per worst-case entry: 100,000 bytes hold 19.
    let app = spawn_app_with(&[
        ("REDIS_URL", url.as_str()),
        ("SESSION_ENCRYPTION_KEY", SESSION_KEY),
        ("ANALYTICS_PROPS_MAX_BYTES", "2048"),
        ("ANALYTICS_STREAM_MAX_BYTES", "100000"),
    ])
    .await;
    let event = json!({"name": "big", "props": {"blob": "x".repeat(2000)}});
    for _ in 0..80 {
        assert_eq!(
            app.post("/api/analytics/events", &event).await.status(),
            StatusCode::ACCEPTED
        );
    }
    let length: u64 = redis
        .command(&["XLEN", "roomcast:analytics:events"])
        .parse()
        .expect("XLEN");
    let bytes: u64 = redis
        .command(&["MEMORY", "USAGE", "roomcast:analytics:events"])
        .parse()
        .expect("MEMORY USAGE");
    // `MAXLEN ~` trims whole stream nodes, so a little more than the cap may stay.
    assert!(
        length <= 30,
        "80 events of 2 KiB kept {length} entries in the stream"
    );
    assert!(
        bytes <= 150_000,
        "the stream holds {bytes} bytes for a 100,000-byte budget"
    );
}
