//! The bounded password-hashing pool under parallel logins, through HTTP: every login either
//! succeeds or gets a clean JSON error, and the pool is whole again afterwards.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{PASSWORD, TestApp, browser, get_json, spawn_app_with, username};

/// Logs `name` in `n` times at once, each from its own client; returns (status, body) pairs.
async fn parallel_logins(app: &TestApp, name: &str, n: usize) -> Vec<(StatusCode, Value)> {
    let logins = (0..n).map(|_| {
        let client = browser();
        let url = app.url("/api/auth/login");
        let body = json!({"username": name, "password": PASSWORD});
        async move {
            let res = client.post(url).json(&body).send().await.expect("login");
            let status = res.status();
            let body: Value = res.json().await.expect("login answers with JSON");
            (status, body)
        }
    });
    futures::future::join_all(logins).await
}

/// Waits until `/health` reports no hash running and none queued.
async fn wait_pool_idle(app: &TestApp) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body = get_json(&app.url("/health")).await;
        let pool = body["runtime"]["password_hashing"].clone();
        if pool["in_progress"] == 0 && pool["queued"] == 0 {
            return pool;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hashing pool should drain after the logins, /health says {pool}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn parallel_logins_beyond_the_pool_all_succeed_when_the_queue_holds_them() {
    let app = spawn_app_with(&[
        ("PASSWORD_HASH_CONCURRENCY", "2"),
        ("PASSWORD_HASH_QUEUE", "64"),
        // Attempts are counted before hashing (SPEC), so 12 at once would pass the login
        // throttle's 10; the pool, not the throttle, is under test here.
        ("LOGIN_MAX_FAILURES", "1000"),
    ])
    .await;
    let name = username();
    app.register(&name).await;
    let results = parallel_logins(&app, &name, 12).await;
    for (status, body) in &results {
        assert_eq!(
            *status,
            StatusCode::OK,
            "12 logins through 2 hashing slots and a queue of 64 must all succeed: {body}"
        );
        assert_eq!(body["user"]["username"], name.as_str(), "{body}");
    }
    wait_pool_idle(&app).await;
}

#[tokio::test]
async fn parallel_logins_past_the_queue_get_a_clean_busy_error_and_the_pool_recovers() {
    let app = spawn_app_with(&[
        ("PASSWORD_HASH_CONCURRENCY", "1"),
        ("PASSWORD_HASH_QUEUE", "1"),
    ])
    .await;
    let name = username();
    app.register(&name).await;
    let results = parallel_logins(&app, &name, 24).await;
    let mut ok = 0;
    for (status, body) in &results {
        match *status {
            StatusCode::OK => {
                ok += 1;
                assert_eq!(body["user"]["username"], name.as_str(), "{body}");
            }
            // The pool sheds load with 503; a login throttle may answer 429 first. Either way
            // a JSON error with a code, never a dropped connection or a 500.
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                assert!(
                    body["error"]["code"].is_string(),
                    "a refused login must carry an error code: {body}"
                );
            }
            other => panic!("a login must succeed or be refused cleanly, got {other}: {body}"),
        }
    }
    assert!(ok >= 1, "the first login to reach the pool must succeed");
    assert!(
        results.iter().any(|(status, _)| *status != StatusCode::OK),
        "24 logins at once through one slot and a queue of one must shed some"
    );
    wait_pool_idle(&app).await;
    // Slots and working blocks went back: the next login goes through.
    app.login(&name).await;
}
