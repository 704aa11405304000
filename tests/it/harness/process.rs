//! roomcast as a real child process: its stdout/stderr captured line by line, its address
//! learned from the `listening addr=…` line, stopped with real signals.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// A running roomcast binary.
pub struct RoomcastProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    _dir: TempDir,
}

/// Collects a child's stdout and stderr, line by line, into one shared list (read it while
/// the child runs, to wait for a line or to show the output in a failure).
pub fn capture_output(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    capture_output_with_readers(child).0
}

/// `capture_output`, with the tasks reading the two streams: they end once the child's
/// output is read to the end, so awaiting them after it exits gives the complete output.
pub fn capture_output_with_readers(
    child: &mut Child,
) -> (Arc<Mutex<Vec<String>>>, Vec<JoinHandle<()>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let readers = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let lines = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                lines.lock().expect("lines").push(line);
            }
        })
    })
    .collect();
    (lines, readers)
}

/// Path of the binary Cargo built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_roomcast")
}

impl RoomcastProcess {
    /// Starts the binary with the harness environment plus `env`, waits for it to listen.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new(binary());
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(super::base_env(&dir))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn roomcast");
        let lines = capture_output(&mut child);
        let mut process = Self {
            child,
            lines,
            base: String::new(),
            _dir: dir,
        };
        let addr = process
            .wait_for_line("listening", Duration::from_secs(20))
            .await
            .and_then(|line| listening_addr(&line))
            .unwrap_or_else(|| {
                panic!(
                    "roomcast did not log its address; output:\n{}",
                    process.output()
                )
            });
        process.base = format!("http://{addr}");
        process
    }

    /// Waits until `/health/ready` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(res) = reqwest::get(format!("{}/health/ready", self.base)).await {
                if res.status() == 200 {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} not ready within {timeout:?}; output:\n{}",
                self.base,
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Resident memory of the process in KiB (`VmRSS` in `/proc`), while it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// Lines printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// Waits until a line containing `needle` appears.
    pub async fn wait_for_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .lines
                .lock()
                .expect("lines")
                .iter()
                .find(|l| l.contains(needle))
            {
                return Some(line.clone());
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends `signal` (e.g. `libc`-free: "TERM", "INT", "KILL") with the `kill` command.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("process still running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill command");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Waits for the process to exit; returns its exit code (None if killed by a signal).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => {
                let _ = self.child.kill().await;
                panic!(
                    "roomcast did not exit within {timeout:?}; output:\n{}",
                    self.output()
                );
            }
        }
    }
}

/// The address in a `listening` line, text (`addr=…`) or JSON (`"addr":"…"`).
fn listening_addr(line: &str) -> Option<String> {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(line) {
        return value["addr"].as_str().map(str::to_owned);
    }
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("addr=").map(str::to_owned))
}

/// Runs the binary with `env` expecting it to exit at once; returns (exit code, stderr+stdout).
pub async fn run_to_exit(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(binary())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .expect("binary exits")
        .expect("binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    (output.status.code(), text)
}
