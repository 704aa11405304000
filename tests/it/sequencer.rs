//! The ordered group commit of a room, through Socket.IO against real servers: many messages
//! of one room in flight at once from several sockets on two instances, a database that fails
//! under a queue, and a drain with messages still queued (`tests/js/sequencer/scenario.mjs`
//! plays the clients; this side starts the servers and injects the faults).

use std::time::{Duration, Instant};

use crate::harness::cluster::TestCluster;
use crate::harness::metrics_text;
use crate::harness::process::RoomcastProcess;
use crate::harness::scenario::{NodeScenario, instance_logs};

/// Senders write as fast as acks come back; the per-user limit is not what is tested here.
/// Nor is the bound on events in flight per socket: each sender keeps its whole burst in flight.
const FAST_SENDERS: [(&str, &str); 3] = [
    ("MESSAGE_RATE_PER_SEC", "100000"),
    ("MESSAGE_RATE_BURST", "100000"),
    ("MAX_EVENTS_IN_FLIGHT_PER_SOCKET", "100000"),
];
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

/// One run of `sequencer/scenario.mjs` for `urls`, with `extra` environment.
fn scenario(name: &str, urls: &str, extra: &[(&str, &str)]) -> NodeScenario {
    NodeScenario::start(
        "sequencer/scenario.mjs",
        name,
        urls,
        extra,
        SCENARIO_TIMEOUT,
    )
}

fn logs(instances: &[RoomcastProcess]) -> String {
    instance_logs(instances, 40)
}

/// `message` events this instance has received, from its metrics.
async fn messages_received(base: &str) -> u64 {
    metrics_text(base)
        .await
        .lines()
        .find(|l| l.contains("socketio_events_received_total{") && l.contains("\"message\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}

#[tokio::test]
async fn a_burst_from_sockets_on_two_instances_is_stored_gap_free_and_seen_in_one_order() {
    let cluster = TestCluster::start_with_env(2, &FAST_SENDERS).await;
    let scenario = scenario(
        "burst",
        &cluster.urls(),
        &[("SENDERS", "6"), ("MESSAGES", "150")],
    );
    let result = scenario.result(|| logs(&cluster.instances)).await;
    let room = result["room"].as_str().expect("room in result");
    assert_eq!(result["total"], 900, "{result}");
    let stored = cluster
        .sql_number(&format!(
            "SELECT COUNT(*) FROM messages WHERE room = '{room}' AND seq BETWEEN 1 AND 900"
        ))
        .await;
    assert_eq!(
        stored, 900,
        "every message stored once with a seq in 1..900"
    );
    let sequence = cluster
        .sql_number(&format!(
            "SELECT value FROM room_sequences WHERE room = '{room}'"
        ))
        .await;
    assert_eq!(sequence, 900, "the room's sequence ends at the last seq");
}

#[tokio::test]
async fn a_burst_on_the_embedded_sqlite_server_is_stored_gap_free_in_send_order() {
    let server = RoomcastProcess::start(&FAST_SENDERS).await;
    server.wait_ready(Duration::from_secs(30)).await;
    let scenario = scenario(
        "burst",
        &server.base,
        &[("SENDERS", "4"), ("MESSAGES", "150")],
    );
    let result = scenario
        .result(|| logs(std::slice::from_ref(&server)))
        .await;
    assert_eq!(result["total"], 600, "{result}");
}

#[tokio::test]
async fn a_failed_store_acks_errors_broadcasts_nothing_and_takes_no_seq() {
    let mut cluster = TestCluster::start_with_env(2, &FAST_SENDERS).await;
    let mut scenario = scenario("store_failure", &cluster.urls(), &[]);
    scenario
        .wait_for("READY", || logs(&cluster.instances))
        .await;
    cluster.postgres.stop().await;
    scenario.go().await;
    scenario
        .wait_for("STORE_FAILED", || logs(&cluster.instances))
        .await;
    cluster.postgres.start_again().await;
    scenario.go().await;
    let result = scenario.result(|| logs(&cluster.instances)).await;
    assert_eq!(result["failed"], 20, "{result}");
}

#[tokio::test]
async fn a_drain_stores_and_delivers_the_messages_still_queued() {
    let mut cluster = TestCluster::start_with_env(2, &FAST_SENDERS).await;
    let mut scenario = scenario("drain", &cluster.urls(), &[("MESSAGES", "40")]);
    scenario
        .wait_for("READY", || logs(&cluster.instances))
        .await;
    // Block every append on the counters row, so web-1's messages stay queued.
    let mut lock = cluster.postgres.psql_session().await;
    lock.run("BEGIN; SELECT value FROM counters WHERE name = 'messages' FOR UPDATE;")
        .await;
    scenario.go().await;
    scenario.wait_for("SENT", || logs(&cluster.instances)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while messages_received(cluster.url(0)).await < 80 {
        assert!(
            Instant::now() < deadline,
            "web-1 did not receive the 80 messages:\n{}",
            logs(&cluster.instances)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.instances[0].signal("TERM");
    scenario
        .wait_for("DISCONNECTED", || logs(&cluster.instances))
        .await;
    lock.run("COMMIT;").await;
    let code = cluster.instances[0]
        .wait_exit(Duration::from_secs(30))
        .await;
    assert_eq!(
        code,
        Some(0),
        "web-1 drains and exits 0:\n{}",
        logs(&cluster.instances)
    );
    let result = scenario.result(|| logs(&cluster.instances)).await;
    let room = result["room"].as_str().expect("room in result");
    let stored = cluster
        .sql_number(&format!(
            "SELECT COUNT(*) FROM messages WHERE room = '{room}'"
        ))
        .await;
    assert_eq!(stored, 80, "every queued message is stored");
}
