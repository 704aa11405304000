//! Runtime stats and breaker states in `/health` of an embedded instance: the figures are
//! the runtime's and the configuration's own, not placeholders of the right shape.

use serde_json::Value;

use crate::harness::spawn_app_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn health_shows_runtime_pools_breakers_and_the_direct_analytics_pipeline() {
    let app = spawn_app_with(&[
        ("PASSWORD_HASH_CONCURRENCY", "3"),
        ("DATABASE_MAX_CONNECTIONS", "7"),
    ])
    .await;
    // A login hashes a password on the blocking pool and uses the database pool.
    app.signed_in_user().await;
    let body: Value = app.get("/health").await.json().await.expect("json");
    let runtime = &body["runtime"];
    assert_eq!(
        runtime["workers"], 3,
        "workers: expected the 3 worker threads of this test's runtime: {runtime}"
    );
    if cfg!(target_os = "linux") {
        // The hashing thread stays alive (idle) for 10 s after the login's hash.
        let blocking = runtime["blocking_threads"].as_u64().unwrap_or(0);
        assert!(
            blocking >= 1,
            "blocking_threads: expected at least the thread that hashed the login's password, got {runtime}"
        );
    }
    assert_eq!(
        runtime["password_hashing"],
        serde_json::json!({"concurrency": 3, "in_progress": 0, "queued": 0}),
        "password_hashing: expected the configured concurrency and nothing running or waiting"
    );
    let pool = &runtime["database_pool"];
    assert_eq!(
        pool["max"], 7,
        "database_pool.max: expected DATABASE_MAX_CONNECTIONS: {pool}"
    );
    let count = |field: &str| {
        pool[field]
            .as_u64()
            .unwrap_or_else(|| panic!("database_pool.{field}: expected a number, got {pool}"))
    };
    assert!(
        (1..=7).contains(&count("size")),
        "database_pool.size: expected between 1 (the login used a connection) and max, got {pool}"
    );
    assert_eq!(
        count("size"),
        count("idle") + count("in_use"),
        "database_pool: size must be idle + in_use: {pool}"
    );
    assert_eq!(body["breakers"]["database"]["state"], "closed", "{body}");
    assert_eq!(body["breakers"]["database"]["rejections"], 0, "{body}");
    assert!(
        body["breakers"]["redis"].is_null(),
        "no Redis breaker in embedded mode: {body}"
    );
    assert_eq!(body["analytics"]["pipeline"], "direct", "{body}");

    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("roomcast_circuit_breaker_state{dependency=\"database\"} 0"),
        "breaker state exported:\n{metrics}"
    );
}
