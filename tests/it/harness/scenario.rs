//! A Node script under `tests/js` that plays official socket.io-clients through a scenario:
//! commanded over stdin (`go`), reporting progress lines and a final `RESULT <json>` on
//! stdout. The Rust side starts the servers, injects faults between the phases and checks the
//! result; every wait has a deadline.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;

use super::process::{RoomcastProcess, capture_output_with_readers};

/// One run of a scenario script, its output collected line by line.
pub struct NodeScenario {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    name: String,
    timeout: Duration,
}

impl NodeScenario {
    /// Runs `script` (relative to `tests/js`) with `SCENARIO=name`, `URLS=urls` and `env`;
    /// each wait on it may take up to `timeout`.
    pub fn start(
        script: &str,
        name: &str,
        urls: &str,
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Self {
        let mut child = Command::new("node")
            .arg(script)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js"))
            .env("URLS", urls)
            .env("SCENARIO", name)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("node {script}: {err}"));
        let stdin = child.stdin.take().expect("scenario stdin");
        let (lines, readers) = capture_output_with_readers(&mut child);
        Self {
            child,
            stdin,
            lines,
            readers,
            name: name.to_owned(),
            timeout,
        }
    }

    fn output(&self) -> String {
        self.lines.lock().expect("output lines").join("\n")
    }

    /// The whole output of a script that has ended: waits (up to the timeout) until its
    /// stdout and stderr are read to the end, so no last line is missing.
    async fn final_output(&mut self) -> String {
        let deadline = Instant::now() + self.timeout;
        for reader in std::mem::take(&mut self.readers) {
            let _ =
                tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), reader)
                    .await;
        }
        self.output()
    }

    /// Waits until the script prints `line`; panics with its output and `context` (server
    /// logs) when it ends first or the timeout passes.
    pub async fn wait_for(&mut self, line: &str, context: impl Fn() -> String) {
        let deadline = Instant::now() + self.timeout;
        while !self
            .lines
            .lock()
            .expect("output lines")
            .iter()
            .any(|l| l == line)
        {
            if let Ok(Some(status)) = self.child.try_wait() {
                let output = self.final_output().await;
                if output.lines().any(|l| l == line) {
                    return;
                }
                panic!(
                    "scenario {} ended ({status}) before `{line}`:\n{output}\n{}",
                    self.name,
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
    pub async fn go(&mut self) {
        self.stdin.write_all(b"go\n").await.expect("scenario stdin");
    }

    /// Waits for the script to end and returns its `RESULT` JSON, or panics with its output
    /// and `context` (server logs).
    pub async fn result(mut self, context: impl Fn() -> String) -> Value {
        let status = tokio::time::timeout(self.timeout, self.child.wait()).await;
        let output = self.final_output().await;
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

/// The last `lines` lines of each instance's output (`web-1` first), for a failure message.
pub fn instance_logs(instances: &[RoomcastProcess], lines: usize) -> String {
    instances
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let output = p.output();
            let all: Vec<&str> = output.lines().collect();
            format!(
                "--- web-{} ---\n{}",
                i + 1,
                all[all.len().saturating_sub(lines)..].join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
