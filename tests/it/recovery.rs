//! Connection state recovery across a real cluster (Redis, PostgreSQL, three roomcast
//! processes), with official socket.io-clients applying the documented client rule
//! (`tests/js/recovery/scenario.mjs`): a reconnecting client gets exactly what it missed, in
//! order, on any instance, and its rooms back.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::harness::cluster::TestCluster;
use crate::harness::process::capture_output;

/// Senders write as fast as acks come back; the per-user limit is not what is tested here.
const FAST_SENDERS: [(&str, &str); 2] = [
    ("MESSAGE_RATE_PER_SEC", "2000"),
    ("MESSAGE_RATE_BURST", "2000"),
];
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

/// One run of `recovery/scenario.mjs`, its output collected line by line.
struct Scenario {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    name: String,
}

impl Scenario {
    fn start(name: &str, cluster: &TestCluster) -> Self {
        let mut child = Command::new("node")
            .arg("recovery/scenario.mjs")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js"))
            .env("URLS", cluster.urls())
            .env("SCENARIO", name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("node recovery/scenario.mjs: {err}"));
        let lines = capture_output(&mut child);
        Self {
            child,
            lines,
            name: name.to_owned(),
        }
    }

    fn output(&self) -> String {
        self.lines.lock().expect("output lines").join("\n")
    }

    /// Waits until the script prints `line`.
    async fn wait_for(&mut self, line: &str) {
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
                    "scenario {} ended ({status}) before `{line}`:\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "scenario {} did not print `{line}`:\n{}",
                self.name,
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits for the script to end and returns its `RESULT` JSON, or panics with its output
    /// and `context` (server logs).
    async fn result(mut self, context: impl Fn() -> String) -> Value {
        let status = tokio::time::timeout(SCENARIO_TIMEOUT, self.child.wait()).await;
        // Let the readers take the last lines.
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

fn logs(cluster: &TestCluster) -> String {
    cluster
        .instances
        .iter()
        .enumerate()
        .map(|(i, p)| format!("--- web-{} ---\n{}", i + 1, tail(&p.output(), 60)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[tokio::test]
async fn a_client_back_on_another_instance_gets_exactly_the_200_it_missed_then_live_traffic() {
    let cluster = TestCluster::start_with_env(3, &FAST_SENDERS).await;
    let result = Scenario::start("missed", &cluster)
        .result(|| logs(&cluster))
        .await;
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
    let result = Scenario::start("during_replay", &cluster)
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
    let result = Scenario::start("window", &cluster)
        .result(|| logs(&cluster))
        .await;
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
    let mut scenario = Scenario::start("drain", &cluster);
    scenario.wait_for("READY").await;
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
