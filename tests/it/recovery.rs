//! Connection state recovery across a real cluster (Redis, PostgreSQL, three roomcast
//! processes), with official socket.io-clients applying the documented client rule
//! (`tests/js/recovery/scenario.mjs`): a reconnecting client gets exactly what it missed, in
//! order, on any instance, and its rooms back.

use std::time::Duration;

use serde_json::Value;

use crate::harness::cluster::TestCluster;
use crate::harness::scenario::{NodeScenario, instance_logs};

/// Senders write as fast as acks come back; the per-user limit is not what is tested here.
const FAST_SENDERS: [(&str, &str); 2] = [
    ("MESSAGE_RATE_PER_SEC", "2000"),
    ("MESSAGE_RATE_BURST", "2000"),
];
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

/// One run of `recovery/scenario.mjs` against `cluster`.
fn scenario(name: &str, cluster: &TestCluster) -> NodeScenario {
    NodeScenario::start(
        "recovery/scenario.mjs",
        name,
        &cluster.urls(),
        &[],
        SCENARIO_TIMEOUT,
    )
}

fn logs(cluster: &TestCluster) -> String {
    instance_logs(&cluster.instances, 60)
}

#[tokio::test]
async fn a_client_back_on_another_instance_gets_exactly_the_200_it_missed_then_live_traffic() {
    let cluster = TestCluster::start_with_env(3, &FAST_SENDERS).await;
    let result = scenario("missed", &cluster).result(|| logs(&cluster)).await;
    eprintln!("missed: {result}");
    assert_eq!(result["missed"], 200, "{result}");
    assert_eq!(result["replayed"], 200, "{result}");
    assert_eq!(
        result["replayed_on_request"], 5,
        "a resume event replays again from the seq it names: {result}"
    );
    assert_eq!(
        result["delivered"], 221,
        "200 recovered, its own message and 20 live ones: {result}"
    );
    let connects = result["connects"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        connects,
        vec![Value::from(cluster.url(0)), Value::from(cluster.url(1))],
        "the client must come back on another instance: {result}"
    );
}

#[tokio::test]
async fn messages_arriving_during_the_replay_are_delivered_once_and_in_order() {
    let cluster = TestCluster::start_with_env(3, &FAST_SENDERS).await;
    let result = scenario("during_replay", &cluster)
        .result(|| logs(&cluster))
        .await;
    eprintln!("during replay: {result}");
    assert_eq!(
        result["delivered"], result["sent"],
        "every acknowledged message exactly once: {result}"
    );
    assert_eq!(result["rounds"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn a_reconnect_past_the_window_gets_the_reload_event() {
    let mut env = FAST_SENDERS.to_vec();
    env.extend([
        ("RECOVERY_WINDOW_SECS", "2"),
        ("RECOVERY_MAX_MESSAGES", "50"),
    ]);
    let cluster = TestCluster::start_with_env(2, &env).await;
    let result = scenario("window", &cluster).result(|| logs(&cluster)).await;
    eprintln!("window: {result}");
    assert_eq!(result["expired"]["reason"], "expired", "{result}");
    assert_eq!(result["too_many"]["reason"], "too_many", "{result}");
    assert_eq!(
        result["invalid"]["error"]["code"], "invalid_room",
        "{result}"
    );
}

#[tokio::test]
async fn a_drained_instances_clients_all_recover_on_the_others_with_nothing_lost() {
    let mut cluster = TestCluster::start_with_env(3, &FAST_SENDERS).await;
    let mut scenario = scenario("drain", &cluster);
    scenario.wait_for("READY", || logs(&cluster)).await;
    cluster.instances[0].signal("TERM");
    let result = scenario.result(|| logs(&cluster)).await;
    eprintln!("drain: {result}");
    let code = cluster.instances[0]
        .wait_exit(Duration::from_secs(30))
        .await;
    assert_eq!(code, Some(0), "web-1 should drain and exit 0");
    let head = result["head"].as_u64().expect("head");
    assert!(head > 0, "{result}");
    let clients = result["clients"].as_object().cloned().unwrap_or_default();
    assert_eq!(clients.len(), 6, "{result}");
    for (name, client) in clients {
        assert_eq!(
            client["delivered"].as_u64(),
            Some(head),
            "{name} must have every message exactly once: {client}"
        );
        let last_instance = client["connects"]
            .as_array()
            .and_then(|c| c.last())
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        assert_ne!(
            last_instance,
            cluster.url(0),
            "{name} must end on a surviving instance: {client}"
        );
    }
}
