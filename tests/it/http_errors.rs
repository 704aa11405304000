//! Bad HTTP input always gets a clear JSON error, never a panic or a hang.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{error_code, spawn_app, spawn_app_with};

#[tokio::test]
async fn malformed_bodies_get_json_errors_with_fitting_statuses() {
    let app = spawn_app_with(&[("HTTP_BODY_LIMIT_BYTES", "2048")]).await;
    let url = app.url("/api/auth/register");
    let cases = [
        (
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body("{not json"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            app.client
                .post(&url)
                .header("content-type", "text/plain")
                .body("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body(vec![b' '; 4096]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body(format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body(format!("{}1{}", "[".repeat(500), "]".repeat(500))),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body(vec![0xff, 0xfe, b'{']),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (request, status, code) in cases {
        let res = request.send().await.expect("request");
        assert_eq!(res.status(), status);
        assert_eq!(error_code(res).await, code);
    }
    assert_eq!(
        app.get("/health/ready").await.status(),
        StatusCode::OK,
        "still healthy"
    );
}

#[tokio::test]
async fn history_needs_a_login_and_validates_its_query() {
    let app = spawn_app().await;
    assert_eq!(
        app.get("/api/rooms/lobby/messages").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/rooms").await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.signed_in_user().await;
    let res = app.get("/api/rooms/lobby/messages").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["messages"], json!([]));
    for (path, code) in [
        ("/api/rooms/Not%20A%20Room/messages", "invalid_room"),
        ("/api/rooms/lobby/messages?limit=101", "invalid_request"),
        ("/api/rooms/lobby/messages?limit=0", "invalid_request"),
        ("/api/rooms/lobby/messages?before=abc", "invalid_request"),
    ] {
        let res = app.get(path).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(error_code(res).await, code, "{path}");
    }
}

#[tokio::test]
async fn cross_origin_state_changes_are_refused_unless_allowed() {
    let app = spawn_app_with(&[("CORS_ORIGINS", "https://chat.example.com")]).await;
    let post = |origin: &'static str| {
        app.client
            .post(app.url("/api/analytics/opt-out"))
            .header("origin", origin)
            .send()
    };
    let res = post("https://evil.example.net").await.expect("POST");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "forbidden_origin");
    assert_eq!(
        post("https://chat.example.com")
            .await
            .expect("POST")
            .status(),
        StatusCode::NO_CONTENT
    );
    let same_origin = app
        .client
        .post(app.url("/api/analytics/opt-out"))
        .header("origin", app.base.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(
        same_origin.status(),
        StatusCode::NO_CONTENT,
        "same origin is always allowed"
    );
    let hijack = app
        .client
        .get(app.url("/socket.io/?EIO=4&transport=polling"))
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .expect("GET");
    assert_eq!(
        hijack.status(),
        StatusCode::FORBIDDEN,
        "cross-site Socket.IO handshakes are refused"
    );
}
