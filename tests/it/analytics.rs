//! Analytics consent: opted-out callers are never recorded.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{browser, spawn_app};

async fn events_stored(app: &crate::harness::TestApp) -> i64 {
    app.state.db.count_events().await.expect("count events")
}

#[tokio::test]
async fn anonymous_opt_out_drops_events_and_opt_in_records_them() {
    let app = spawn_app().await;
    let status: Value = app
        .get("/api/analytics/status")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(status["opted_out"], false);

    let event = json!({"name": "page_view", "props": {"path": "/"}});
    assert_eq!(
        app.post("/api/analytics/events", &event).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(events_stored(&app).await, 1);

    assert_eq!(
        app.post("/api/analytics/opt-out", &json!({}))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let status: Value = app
        .get("/api/analytics/status")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(status["opted_out"], true);
    assert_eq!(
        app.post("/api/analytics/events", &event).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        events_stored(&app).await,
        1,
        "an opted-out event must not be stored"
    );

    assert_eq!(
        app.post("/api/analytics/opt-in", &json!({})).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.post("/api/analytics/events", &event).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(events_stored(&app).await, 2);
}

#[tokio::test]
async fn a_logged_in_users_opt_out_follows_them_to_another_device() {
    let app = spawn_app().await;
    let name = app.signed_in_user().await;
    assert_eq!(
        app.post("/api/analytics/opt-out", &json!({}))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );

    // A second device: a fresh browser that logs in as the same user.
    let phone = browser();
    let res = phone
        .post(app.url("/api/auth/login"))
        .json(&json!({"username": name, "password": crate::harness::PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), StatusCode::OK);
    let me: Value = phone
        .get(app.url("/api/me"))
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["analytics_opted_out"], true, "{me}");
    let res = phone
        .post(app.url("/api/analytics/events"))
        .json(&json!({"name": "tap"}))
        .send()
        .await
        .expect("event");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(events_stored(&app).await, 0);
}

#[tokio::test]
async fn an_anonymous_opt_out_carries_into_the_account_on_login() {
    let app = spawn_app().await;
    let name = crate::harness::username();
    app.register(&name).await;
    app.post("/api/analytics/opt-out", &json!({})).await;
    app.login(&name).await;
    let me: Value = app.get("/api/me").await.json().await.expect("json");
    assert_eq!(me["analytics_opted_out"], true, "{me}");
}

#[tokio::test]
async fn malformed_events_are_rejected() {
    let app = spawn_app().await;
    for body in [
        json!({"name": ""}),
        json!({"name": "a b"}),
        json!({"name": "ok", "props": [1]}),
        json!({}),
    ] {
        let res = app.post("/api/analytics/events", &body).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    assert_eq!(events_stored(&app).await, 0);
}
