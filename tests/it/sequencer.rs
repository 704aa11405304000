//! The ordered group commit of a room, through Socket.IO against real servers: many messages
//! of one room in flight at once from several sockets on two instances, a database that fails
//! under a queue, and a drain with messages still queued (`tests/js/sequencer/scenario.mjs`
//! plays the clients; this side starts the servers and injects the faults).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};

use crate::harness::cluster::TestCluster;
use crate::harness::metrics_text;
use crate::harness::process::{RoomcastProcess, capture_output};

/// Senders write as fast as acks come back; the per-user limit is not what is tested here.
/// Nor is the bound on events in flight per socket: each sender keeps its whole burst in flight.
const FAST_SENDERS: [(&str, &str); 3] = [
    ("MESSAGE_RATE_PER_SEC", "100000"),
    ("MESSAGE_RATE_BURST", "100000"),
    ("MAX_EVENTS_IN_FLIGHT_PER_SOCKET", "100000"),
];
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

/// One run of `sequencer/scenario.mjs`, commanded over stdin, its output collected.
struct Scenario {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<String>>>,
    name: String,
}

impl Scenario {
    fn start(name: &str, urls: &str, extra: &[(&str, &str)]) -> Self {
        let mut child = Command::new("node")
            .arg("sequencer/scenario.mjs")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js"))
            .env("URLS", urls)
            .env("SCENARIO", name)
            .envs(extra.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("node sequencer/scenario.mjs: {err}"));
        let stdin = child.stdin.take().expect("scenario stdin");
        let lines = capture_output(&mut child);
        Self {
            child,
            stdin,
            lines,
            name: name.to_owned(),
        }
    }

    fn output(&self) -> String {
        self.lines.lock().expect("output lines").join("\n")
    }

    /// Waits until the script prints `line`.
    async fn wait_for(&mut self, line: &str, context: impl Fn() -> String) {
        let deadline = Instant::now() + SCENARIO_TIMEOUT;
        while !self
            .lines
            .lock()
            .expect("output lines")
            .iter()
            .any(|l| l == line)
        {
            if let Ok(Some(status)) = self.child.try_wait() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "scenario {} ended ({status}) before `{line}`:\n{}\n{}",
                    self.name,
                    self.output(),
                    context()
                );
            }
            assert!(
                Instant::now() < deadline,
                "scenario {} did not print `{line}`:\n{}\n{}",
                self.name,
                self.output(),
                context()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Lets the script go on to its next phase.
    async fn go(&mut self) {
        self.stdin.write_all(b"go\n").await.expect("scenario stdin");
    }

    /// Waits for the script to end and returns its `RESULT` JSON, or panics with its output
    /// and `context` (server logs).
    async fn result(mut self, context: impl Fn() -> String) -> Value {
        let status = tokio::time::timeout(SCENARIO_TIMEOUT, self.child.wait()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let output = self.output();
        let ok = matches!(&status, Ok(Ok(s)) if s.success());
        let result = output
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .and_then(|json| serde_json::from_str::<Value>(json).ok());
        match (ok, result) {
            (true, Some(result)) => result,
            _ => panic!(
                "scenario {} failed ({status:?}):\n{output}\n{}",
                self.name,
                context()
            ),
        }
    }
}

fn logs(instances: &[RoomcastProcess]) -> String {
    instances
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let output = p.output();
            let all: Vec<&str> = output.lines().collect();
            format!(
                "--- web-{} ---\n{}",
                i + 1,
                all[all.len().saturating_sub(40)..].join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
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
    let scenario = Scenario::start(
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
    let scenario = Scenario::start(
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
    let mut scenario = Scenario::start("store_failure", &cluster.urls(), &[]);
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
    let mut scenario = Scenario::start("drain", &cluster.urls(), &[("MESSAGES", "40")]);
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
