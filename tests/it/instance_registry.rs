//! The instance registry: live instances listed for operators, a killed one forgotten within
//! its TTL.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::cluster::TestCluster;
use crate::harness::{ADMIN_TOKEN, browser, get_json, spawn_app};

async fn instances(base: &str) -> Value {
    let res = browser()
        .get(format!("{base}/api/admin/instances"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("instances answers");
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.expect("json")
}

fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test]
async fn the_registry_lists_live_instances_and_forgets_a_killed_one_within_its_ttl() {
    let cluster = TestCluster::start(2).await;
    let res = browser()
        .get(format!("{}/api/admin/instances", cluster.url(0)))
        .send()
        .await
        .expect("instances");
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "admin token required"
    );

    let list = instances(cluster.url(0)).await;
    assert_eq!(ids(&list), ["web-1", "web-2"], "{list}");
    for (i, entry) in list["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let base = cluster.url(i);
        assert_eq!(
            Some(base.trim_start_matches("http://")),
            entry["address"].as_str(),
            "address of {entry}"
        );
        assert_eq!(entry["version"], env!("CARGO_PKG_VERSION"), "{entry}");
        assert!(entry["started_at"].as_str().is_some(), "{entry}");
        assert!(entry["sockets"].as_u64().is_some(), "{entry}");
    }
    // Each entry is a key with a TTL, so Redis forgets an instance that stops refreshing it.
    let ttl: i64 = cluster
        .redis
        .command(&["PTTL", "roomcast:{registry}:instance:web-2"])
        .trim()
        .parse()
        .expect("PTTL is a number");
    assert!(
        (1..=15_000).contains(&ttl),
        "the entry of web-2 expires within 15 s, PTTL {ttl}"
    );

    cluster.instances[1].signal("KILL");
    // TTL 15 s; generous slack for a loaded machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let list = instances(cluster.url(0)).await;
        if ids(&list) == ["web-1"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the killed web-2 is still listed: {list}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let health = get_json(&format!("{}/health", cluster.url(0))).await;
    assert_eq!(health["connections"]["cluster"], 0, "{health}");
}

#[tokio::test]
async fn an_embedded_instance_lists_itself() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/api/admin/instances"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("instances");
    assert_eq!(res.status(), StatusCode::OK);
    let list: Value = res.json().await.expect("json");
    let entries = list["instances"].as_array().expect("instances array");
    assert_eq!(entries.len(), 1, "{list}");
    assert_eq!(entries[0]["address"], app.addr.to_string(), "{list}");
    assert_eq!(
        entries[0]["id"],
        app.state.config.instance_id.as_str(),
        "{list}"
    );
}
