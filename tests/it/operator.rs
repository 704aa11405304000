//! The operator view's API: a cluster-wide overview, a drain of one chosen instance (the same
//! sequence as SIGTERM), and disconnecting a user everywhere, all behind `ADMIN_TOKEN`.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::cluster::TestCluster;
use crate::harness::{ADMIN_TOKEN, error_code, impatient, spawn_app};

const DEADLINE: Duration = Duration::from_secs(30);

async fn admin_post(base: &str, path: &str) -> reqwest::Response {
    impatient()
        .post(format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("POST")
}

async fn overview(base: &str) -> Value {
    let res = impatient()
        .get(format!("{base}/api/admin/overview"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("GET overview");
    assert_eq!(res.status(), StatusCode::OK, "overview");
    res.json().await.expect("overview json")
}

fn ids(overview: &Value) -> Vec<String> {
    overview["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect()
}

fn row<'a>(overview: &'a Value, id: &str) -> Option<&'a Value> {
    overview["instances"]
        .as_array()?
        .iter()
        .find(|i| i["id"] == id)
}

#[tokio::test]
async fn the_operator_endpoints_need_the_admin_token() {
    let app = spawn_app().await;
    let id = app.state.config.instance_id.to_string();
    let client = impatient();
    for (method, path) in [
        ("GET", "/api/admin/overview".to_owned()),
        ("POST", format!("/api/admin/instances/{id}/drain")),
        ("POST", "/api/admin/users/1/disconnect".to_owned()),
    ] {
        let url = app.url(&path);
        let request = match method {
            "GET" => client.get(&url),
            _ => client.post(&url),
        };
        let res = request
            .bearer_auth("not-the-admin-token")
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(error_code(res).await, "unauthorized", "{method} {path}");
    }
    assert!(
        !app.state.drain.is_draining(),
        "a refused drain request must not drain"
    );
    let res = admin_post(&app.base, "/api/admin/instances/web-unknown/drain").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(res).await, "not_found");
    let res = admin_post(&app.base, "/api/admin/users/not-a-number/disconnect").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(res).await, "invalid_request");
}

#[tokio::test]
async fn an_operator_drain_of_this_instance_runs_the_graceful_drain() {
    let mut app = spawn_app().await;
    let id = app.state.config.instance_id.to_string();
    let view = overview(&app.base).await;
    assert_eq!(ids(&view), vec![id.clone()]);
    let me = row(&view, &id).expect("own row");
    assert_eq!(me["ready"], true, "{me}");
    assert_eq!(me["draining"], false, "{me}");
    assert_eq!(me["breakers"]["database"], "closed", "{me}");

    let res = admin_post(&app.base, &format!("/api/admin/instances/{id}/drain")).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let report = app
        .stopped_by_itself(DEADLINE)
        .await
        .expect("the instance drains and stops by itself after an operator's drain");
    assert!(report.http_finished, "in-flight HTTP finished: {report:?}");
}

#[tokio::test]
async fn the_overview_shows_every_instance_and_a_drain_reaches_the_chosen_one() {
    let mut cluster = TestCluster::start_with_env(3, &[("ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let base = cluster.url(0).to_owned();
    // Every instance's first heartbeat is written at start, so all three are listed at once.
    let view = overview(&base).await;
    assert_eq!(ids(&view), vec!["web-1", "web-2", "web-3"], "{view}");
    for id in ["web-1", "web-2", "web-3"] {
        let entry = row(&view, id).expect("row");
        assert_eq!(entry["ready"], true, "{entry}");
        assert_eq!(entry["draining"], false, "{entry}");
        assert_eq!(entry["breakers"]["redis"], "closed", "{entry}");
    }
    assert_eq!(view["served_by"], "web-1");

    // Drain web-3 through web-1's API: the command travels over Redis.
    let res = admin_post(&base, "/api/admin/instances/web-3/drain").await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let code = cluster.instances[2].wait_exit(DEADLINE).await;
    assert_eq!(
        code,
        Some(0),
        "web-3 exits 0 after the operator's drain; log:\n{}",
        cluster.instances[2].output()
    );
    assert!(
        cluster.instances[2]
            .output()
            .contains("drain requested by an operator"),
        "web-3 logs why it drained"
    );
    let started = Instant::now();
    loop {
        let view = overview(&base).await;
        if ids(&view) == vec!["web-1", "web-2"] {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "web-3 should leave the overview after its drain; last: {view}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The others were not asked to drain.
    for i in 0..2 {
        assert!(
            !cluster.instances[i]
                .output()
                .contains("drain requested by an operator"),
            "web-{} must not drain",
            i + 1
        );
    }
}
