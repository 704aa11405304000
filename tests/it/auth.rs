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

/// A login attempt for `name` with `password`, from the client address `from` as a trusted
/// proxy reports it in `X-Forwarded-For` (`None`: no header).
async fn login_from(
    app: &crate::harness::TestApp,
    from: Option<&str>,
    name: &str,
    password: &str,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/api/auth/login"))
        .json(&json!({"username": name, "password": password}));
    if let Some(from) = from {
        request = request.header("x-forwarded-for", from);
    }
    request.send().await.expect("POST /api/auth/login")
}

#[tokio::test]
async fn parallel_wrong_passwords_are_checked_at_most_ten_times() {
    let app = spawn_app().await;
    let name = username();
    app.register(&name).await;
    let attempts = (0..60).map(|_| login_from(&app, None, &name, "wrong password"));
    let statuses: Vec<StatusCode> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(reqwest::Response::status)
        .collect();
    let unauthorized = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let throttled = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(
        (unauthorized, throttled),
        (10, 50),
        "60 parallel guesses: exactly 10 may be checked (401), the rest refused (429); got {statuses:?}"
    );
}

#[tokio::test]
async fn bad_logins_by_one_user_behind_a_shared_address_do_not_lock_out_the_others() {
    // TRUST_PROXY off: every client arrives from 127.0.0.1, as behind a misconfigured proxy.
    let app = spawn_app_with(&[("LOGIN_MAX_FAILURES_PER_IP", "20")]).await;
    let victim = username();
    let bystander = username();
    app.register(&victim).await;
    app.register(&bystander).await;
    for attempt in 1..=10 {
        let res = login_from(&app, None, &victim, "wrong password").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let res = login_from(&app, None, &bystander, PASSWORD).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "another user's correct password from the same address must log in after 10 bad \
         logins by someone else"
    );
    // Past the address's soft limit (20), wrong passwords from it get 429, but a correct
    // one still logs in.
    for _ in 0..15 {
        login_from(&app, None, &username(), "wrong password").await;
    }
    let res = login_from(&app, None, &username(), "wrong password").await;
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a wrong password from an address over its limit is throttled"
    );
    assert!(res.headers().get("retry-after").is_some());
    let res = login_from(&app, None, &bystander, PASSWORD).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the address limit never refuses a correct password"
    );
}

#[tokio::test]
async fn a_forged_forwarded_for_entry_does_not_escape_the_address_limit() {
    let app = spawn_app_with(&[("TRUST_PROXY", "true"), ("LOGIN_MAX_FAILURES_PER_IP", "5")]).await;
    // The proxy appends the client's address with a port; the client forged the entry
    // before it. The forged entries must not become the throttle's key.
    let mut statuses = Vec::new();
    for attempt in 0..8 {
        let header = format!("203.0.113.{attempt}, 198.51.100.7:41000");
        let res = login_from(&app, Some(&header), &username(), "wrong password").await;
        statuses.push(res.status());
    }
    assert_eq!(
        statuses[5..],
        [StatusCode::TOO_MANY_REQUESTS; 3],
        "after 5 failures from 198.51.100.7, whatever it forges, wrong passwords get 429: \
         {statuses:?}"
    );
    // An entry the proxy wrote that is not an address is refused, not skipped.
    let res = login_from(
        &app,
        Some("203.0.113.99, unknown"),
        &username(),
        "wrong password",
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(res).await, "invalid_request");
    // Another client behind the same proxy is unaffected.
    let res = login_from(&app, Some("198.51.100.8"), &username(), "wrong password").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_malformed_password_is_refused_before_it_is_checked() {
    let app = spawn_app().await;
    // An account whose password is the stand-in that malformed passwords used to be replaced by.
    let name = username();
    let res = app
        .post(
            "/api/auth/register",
            &json!({"username": name, "password": "decoy-password-never-matches"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    for bad in ["x".to_owned(), "y".repeat(129)] {
        let res = login_from(&app, None, &name, &bad).await;
        assert_eq!(
            res.status(),
            StatusCode::BAD_REQUEST,
            "password of {} chars",
            bad.len()
        );
        assert_eq!(error_code(res).await, "invalid_password");
    }
    let res = login_from(&app, None, "no", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(res).await, "invalid_username");
}

#[tokio::test]
async fn registrations_are_rate_limited_per_address() {
    let app = spawn_app_with(&[("TRUST_PROXY", "true"), ("REGISTER_RATE_BURST", "3")]).await;
    let register = |from: &'static str| {
        let request = app
            .client
            .post(app.url("/api/auth/register"))
            .header("x-forwarded-for", from)
            .json(&json!({"username": username(), "password": PASSWORD}));
        async move { request.send().await.expect("register") }
    };
    for _ in 0..3 {
        assert_eq!(
            register("198.51.100.20").await.status(),
            StatusCode::CREATED
        );
    }
    let res = register("198.51.100.20").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get("retry-after").is_some());
    assert_eq!(error_code(res).await, "rate_limited");
    assert_eq!(
        register("198.51.100.21").await.status(),
        StatusCode::CREATED,
        "another address is not limited"
    );
}
