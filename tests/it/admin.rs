//! The admin API is off without a token and refuses wrong tokens.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{ADMIN_TOKEN, error_code, spawn_app, spawn_app_with};

#[tokio::test]
async fn admin_emit_requires_the_bearer_token() {
    let app = spawn_app().await;
    let body = json!({"room": "user:1", "event": "notification", "data": {"message": "hi"}});
    let url = app.url("/api/admin/emit");
    let res = app
        .client
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .client
        .post(&url)
        .bearer_auth("wrong-token-wrong-token")
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(res).await, "unauthorized");
    let res = app
        .client
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn admin_emit_validates_room_and_event() {
    let app = spawn_app().await;
    let url = app.url("/api/admin/emit");
    for (body, code) in [
        (
            json!({"room": "user:abc", "event": "notification"}),
            "invalid_room",
        ),
        (
            json!({"room": "Bad Room", "event": "notification"}),
            "invalid_room",
        ),
        (
            json!({"room": "lobby", "event": "connect"}),
            "invalid_event",
        ),
        (json!({"room": "lobby", "event": ""}), "invalid_event"),
    ] {
        let res = app
            .client
            .post(&url)
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("POST");
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(res).await, code, "{body}");
    }
}

#[tokio::test]
async fn the_admin_api_does_not_exist_without_a_token() {
    let app = spawn_app_with(&[("ADMIN_TOKEN", "")]).await;
    let res = app
        .client
        .post(app.url("/api/admin/emit"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"room": "lobby", "event": "notification"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
