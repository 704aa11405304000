//! A Socket.IO user driven from Rust: `tests/js/cluster/actor.mjs` with the official client,
//! commanded line by line over stdin, so tests can interleave client actions with faults they
//! inject into server processes (SIGKILL, Redis or PostgreSQL outages).

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// One connected Socket.IO user.
pub struct Actor {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// `{id, username}` of the actor's account.
    pub user: Value,
}

impl Actor {
    /// Registers, logs in and connects a new user on `base` over `transport`.
    pub async fn connect(base: &str, transport: &str) -> Self {
        let mut child = Command::new("node")
            .arg("cluster/actor.mjs")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js"))
            .env("ROOMCAST_URL", base)
            .env("TRANSPORT", transport)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs the actor");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut actor = Self {
            child,
            stdin,
            stdout,
            user: Value::Null,
        };
        let ready = actor.next_line(Duration::from_secs(30)).await;
        assert_eq!(ready["ready"], true, "actor did not connect: {ready}");
        actor.user = ready["user"].clone();
        actor
    }

    /// The next JSON line the actor printed.
    pub async fn next_line(&mut self, within: Duration) -> Value {
        let line = tokio::time::timeout(within, self.stdout.next_line())
            .await
            .expect("actor answers in time")
            .expect("actor output")
            .expect("actor still running");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("actor printed non-JSON ({e}): {line}"))
    }

    /// Starts one command without waiting for its result (one that will not be answered in
    /// time, such as a message the database holds).
    pub async fn start(&mut self, command: &str) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("actor stdin");
    }

    /// Runs one command and returns its result line (skipping unrelated lines).
    pub async fn run(&mut self, command: &str) -> Value {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("actor stdin");
        loop {
            let line = self.next_line(Duration::from_secs(30)).await;
            if line.get("command").is_some() {
                return line;
            }
        }
    }

    /// Stops the actor (its socket closes).
    pub async fn quit(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}
