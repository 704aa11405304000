//! Accounts and login sessions through the HTTP API.

use reqwest::StatusCode;
use reqwest::header::SET_COOKIE;
use serde_json::{Value, json};

use crate::harness::{PASSWORD, browser, error_code, spawn_app, spawn_app_with, username};

fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("roomcast.sid="))
        .map(str::to_owned)
}

#[tokio::test]
async fn register_then_login_then_me_then_logout() {
    let app = spawn_app().await;
    let name = username();
    let registered = app.register(&name).await;
    assert_eq!(registered["user"]["username"], name);
    assert!(registered["user"]["id"].is_i64(), "{registered}");

    assert_eq!(app.get("/api/me").await.status(), StatusCode::UNAUTHORIZED);
    let login = app.login(&name).await;
    assert_eq!(login["user"], registered["user"]);

    let me: Value = app.get("/api/me").await.json().await.expect("json");
    assert_eq!(me["user"]["username"], name);
    assert_eq!(me["analytics_opted_out"], false);

    let res = app.post("/api/auth/logout", &json!({})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/me").await.status(),
        StatusCode::UNAUTHORIZED,
        "logged out session must be gone"
    );
}

#[tokio::test]
async fn the_session_cookie_is_http_only_lax_signed_and_rotated_on_login() {
    let app = spawn_app().await;
    let name = username();
    app.register(&name).await;
    // An anonymous session first (opt-out creates one), so there is an id to rotate.
    let res = app.post("/api/analytics/opt-out", &json!({})).await;
    let anonymous = session_cookie(&res).expect("anonymous session cookie");
    let res = app
        .post(
            "/api/auth/login",
            &json!({"username": name, "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = session_cookie(&res).expect("login sets the session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "Secure only with COOKIE_SECURE: {cookie}"
    );
    let value = |c: &str| c.split(';').next().unwrap_or_default().to_owned();
    assert_ne!(
        value(&anonymous),
        value(&cookie),
        "session id must change on login"
    );

    // A tampered cookie is no session at all.
    let tampered = value(&cookie).replace("roomcast.sid=", "roomcast.sid=x");
    let res = browser()
        .get(app.url("/api/me"))
        .header("cookie", tampered)
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn secure_cookies_when_configured_and_remember_me_lasts_longer() {
    let app = spawn_app_with(&[("COOKIE_SECURE", "true"), ("SESSION_TTL_SECS", "600")]).await;
    let name = username();
    app.register(&name).await;
    let res = app
        .post(
            "/api/auth/login",
            &json!({"username": name, "password": PASSWORD}),
        )
        .await;
    let cookie = session_cookie(&res).expect("cookie");
    assert!(cookie.contains("Secure"), "{cookie}");
    assert!(
        cookie.contains("Max-Age=600"),
        "plain login lives SESSION_TTL_SECS: {cookie}"
    );
    let res = browser()
        .post(app.url("/api/auth/login"))
        .json(&json!({"username": name, "password": PASSWORD, "remember": true}))
        .send()
        .await
        .expect("POST");
    let cookie = session_cookie(&res).expect("cookie");
    assert!(
        cookie.contains("Max-Age=2592000"),
        "remember-me lives 30 days: {cookie}"
    );
}

#[tokio::test]
async fn usernames_are_unique_regardless_of_case() {
    let app = spawn_app().await;
    let name = username();
    app.register(&name).await;
    let res = app
        .post(
            "/api/auth/register",
            &json!({"username": name.to_uppercase(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(res).await, "username_taken");
}

#[tokio::test]
async fn invalid_usernames_and_passwords_are_refused_with_their_codes() {
    let app = spawn_app().await;
    for (body, code) in [
        (
            json!({"username": "ab", "password": PASSWORD}),
            "invalid_username",
        ),
        (
            json!({"username": "has space", "password": PASSWORD}),
            "invalid_username",
        ),
        (
            json!({"username": username(), "password": "short"}),
            "invalid_password",
        ),
        (
            json!({"username": username(), "password": "x".repeat(129)}),
            "invalid_password",
        ),
        (
            json!({"username": 42, "password": PASSWORD}),
            "invalid_request",
        ),
        (json!({"password": PASSWORD}), "invalid_request"),
    ] {
        let res = app.post("/api/auth/register", &body).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(res).await, code, "{body}");
    }
}

#[tokio::test]
async fn wrong_passwords_fail_and_are_throttled_after_ten() {
    let app = spawn_app().await;
    let name = username();
    app.register(&name).await;
    for attempt in 1..=10 {
        let res = app
            .post(
                "/api/auth/login",
                &json!({"username": name, "password": "wrong password"}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
        assert_eq!(error_code(res).await, "invalid_credentials");
    }
    let res = app
        .post(
            "/api/auth/login",
            &json!({"username": name, "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the 11th attempt is throttled, even with the right password"
    );
    assert!(
        res.headers().get("retry-after").is_some(),
        "429 says when to retry"
    );
    assert_eq!(error_code(res).await, "rate_limited");
}

#[tokio::test]
async fn unknown_users_get_the_same_answer_as_wrong_passwords() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/api/auth/login",
            &json!({"username": username(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(res).await, "invalid_credentials");
}
