//! Test harness: roomcast in-process on port 0 (`spawn_app`) or as a real child process
//! (`RoomcastProcess`), each with its own temporary SQLite database, torn down on drop.

pub mod actor;
pub mod cluster;
pub mod process;
pub mod redis_cluster;
pub mod scenario;
pub mod services;
pub mod tap;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Client, Response, StatusCode};
use roomcast::App;
use roomcast::config::Config;
use roomcast::state::AppState;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The admin token every test app is configured with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// A password that satisfies the policy.
pub const PASSWORD: &str = "correct horse battery";

/// A running in-process app with an HTTP client that keeps cookies like a browser.
pub struct TestApp {
    /// Base URL, `http://127.0.0.1:<port>`.
    pub base: String,
    /// Bound address.
    pub addr: SocketAddr,
    /// Client with its own cookie jar.
    pub client: Client,
    /// The app's shared state (database, metrics, the tasks it owns).
    pub state: AppState,
    /// The app's Socket.IO handle, as the HTTP layer uses it.
    pub realtime: roomcast::realtime::broadcast::Realtime,
    /// Realtime's own state (the room sequencers).
    pub realtime_state: roomcast::realtime::state::RealtimeState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<roomcast::shutdown::plan::DrainReport>>,
    _dir: TempDir,
}

/// Environment every test app gets, before per-test overrides.
pub fn base_env(dir: &TempDir) -> HashMap<String, String> {
    HashMap::from([
        ("PORT".into(), "0".into()),
        ("INSTANCE_ID".into(), format!("test-{}", uuid_fragment())),
        (
            "DATABASE_URL".into(),
            format!("sqlite://{}/roomcast.db", dir.path().display()),
        ),
        ("ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
        (
            "SESSION_SECRET".into(),
            "a-test-session-secret-that-is-long-enough".into(),
        ),
        ("PASSWORD_HASH_CONCURRENCY".into(), "2".into()),
        ("SHUTDOWN_TIMEOUT_SECS".into(), "5".into()),
    ])
}

fn uuid_fragment() -> String {
    use rand::Rng;
    format!("{:06x}", rand::thread_rng().gen_range(0..0x100_0000))
}

/// A new cookie-keeping client, like a fresh browser profile.
pub fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        // A hang fails the test instead of stalling it.
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// `GET url` answered with JSON (any status), for health and admin views.
pub async fn get_json(url: &str) -> Value {
    impatient()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"))
        .json()
        .await
        .unwrap_or_else(|err| panic!("GET {url} is not JSON: {err}"))
}

/// `GET /metrics` of `base` as text.
pub async fn metrics_text(base: &str) -> String {
    browser()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// Registers and logs in through `base`; returns the session cookie (`roomcast.sid=…`).
pub async fn register_and_login(client: &Client, base: &str, name: &str) -> String {
    let body = json!({"username": name, "password": PASSWORD});
    let res = client
        .post(format!("{base}/api/auth/register"))
        .json(&body)
        .send()
        .await
        .expect("register");
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = client
        .post(format!("{base}/api/auth/login"))
        .json(&body)
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), StatusCode::OK);
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';')
                .next()
                .filter(|c| c.starts_with("roomcast.sid="))
        })
        .expect("session cookie")
        .to_owned()
}

/// Runs a script under `tests/js` with node to completion (bounded by `timeout`); returns
/// `Ok(output)` when it exits 0 and `Err(output)` otherwise, stdout then stderr.
pub async fn run_node(
    args: &[&str],
    env: &[(&str, &str)],
    timeout: std::time::Duration,
) -> Result<String, String> {
    let output = tokio::process::Command::new("node")
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js"))
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(timeout, output)
        .await
        .map_err(|_| format!("node {args:?} did not finish within {timeout:?}"))?
        .map_err(|e| format!("node {args:?} did not run: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Starts an app with the base environment plus `overrides`.
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env = base_env(&dir);
    for (k, v) in overrides {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let config = Config::from_lookup(|k| env.get(k).cloned())
        .unwrap_or_else(|err| panic!("test config is invalid: {err}"));
    let app = App::build(config).await.expect("app builds");
    let addr = app.local_addr().expect("bound address");
    let state = app.state().clone();
    let realtime = app.realtime();
    let realtime_state = app.realtime_state().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp {
        base: format!("http://{addr}"),
        addr,
        client: browser(),
        state,
        realtime,
        realtime_state,
        stop: Some(stop),
        task: Some(task),
        _dir: dir,
    }
}

/// Starts an app with the base environment.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// A unique valid username.
pub fn username() -> String {
    format!("u_{}", uuid_fragment())
}

impl TestApp {
    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET with this app's client.
    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// POST JSON with this app's client.
    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    /// Registers `username` with the standard password; asserts 201.
    pub async fn register(&self, username: &str) -> Value {
        let res = self
            .post(
                "/api/auth/register",
                &json!({"username": username, "password": PASSWORD}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "register {username}");
        res.json().await.expect("json")
    }

    /// Logs this app's client in as `username`; asserts 200.
    pub async fn login(&self, username: &str) -> Value {
        let res = self
            .post(
                "/api/auth/login",
                &json!({"username": username, "password": PASSWORD}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK, "login {username}");
        res.json().await.expect("json")
    }

    /// Registers and logs in a fresh user; returns the username.
    pub async fn signed_in_user(&self) -> String {
        let name = username();
        self.register(&name).await;
        self.login(&name).await;
        name
    }

    /// Waits up to `within` for the app to stop without being told to (an operator's drain);
    /// `None` when it is still running then.
    pub async fn stopped_by_itself(
        &mut self,
        within: Duration,
    ) -> Option<roomcast::shutdown::plan::DrainReport> {
        let task = self.task.as_mut().expect("task");
        let report = tokio::time::timeout(within, task).await.ok()?;
        self.task = None;
        Some(report.expect("app task"))
    }

    /// Triggers the drain and waits for the app to finish.
    pub async fn stop(mut self) -> roomcast::shutdown::plan::DrainReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().expect("task").await.expect("app task")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The error code of a JSON error response.
pub async fn error_code(res: Response) -> String {
    let body: Value = res.json().await.expect("error body is JSON");
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A client whose every request gives up after 10 s: a hang fails the test instead of
/// stalling it.
pub fn impatient() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Polls `/health/ready` of `base` until it answers `expected`; returns that body. A refused
/// connection counts as not ready yet.
pub async fn wait_readiness(base: &str, expected: StatusCode, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (status, body) = match impatient().get(format!("{base}/health/ready")).send().await {
            Ok(res) => (res.status(), res.json().await.unwrap_or(Value::Null)),
            Err(err) => (StatusCode::BAD_GATEWAY, Value::from(err.to_string())),
        };
        if status == expected {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{base}: readiness stayed {status} (wanted {expected}) for {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the socket.io-client probe `cluster/crosstalk.mjs`: a message sent on the first of
/// `urls` (comma-separated) must reach the second.
pub async fn crosstalk(urls: &str) -> Result<String, String> {
    run_node(
        &["cluster/crosstalk.mjs"],
        &[("ROOMCAST_URLS", urls)],
        Duration::from_secs(60),
    )
    .await
}
