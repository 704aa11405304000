//! Runtime stats and breaker states in `/health` of an embedded instance.

use serde_json::Value;

use crate::harness::spawn_app;

#[tokio::test]
async fn health_shows_runtime_pools_breakers_and_the_direct_analytics_pipeline() {
    let app = spawn_app().await;
    app.signed_in_user().await;
    let body: Value = app.get("/health").await.json().await.expect("json");
    let runtime = &body["runtime"];
    assert!(runtime["workers"].as_u64().unwrap_or(0) >= 1, "{runtime}");
    if cfg!(target_os = "linux") {
        assert!(
            runtime["blocking_threads"].is_number(),
            "blocking threads are counted on Linux: {runtime}"
        );
    }
    for field in ["concurrency", "in_progress", "queued"] {
        assert!(
            runtime["password_hashing"][field].is_number(),
            "password_hashing.{field}: {runtime}"
        );
    }
    for field in ["size", "idle", "in_use", "max"] {
        assert!(
            runtime["database_pool"][field].is_number(),
            "database_pool.{field}: {runtime}"
        );
    }
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
        "breaker state exported"
    );
}
