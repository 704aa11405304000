//! The deployment configuration, exercised for real: the repository's own `nginx.conf` and
//! `haproxy.cfg`, run by the real `nginx` and `haproxy` binaries in front of a real cluster
//! (Redis, PostgreSQL, three roomcast processes `web-1..3`).
//!
//! Only what cannot be the same on a test machine is changed in a temporary copy: the
//! upstream/server addresses (`web-N:3000` become the instances' `127.0.0.1:<port>`) and the
//! listening port (a free one). nginx also gets its prefix (temp directories) and pid file in
//! a temporary directory. Everything else — affinity, WebSocket upgrades, timeouts, retries,
//! forwarded headers, health checks, logging — is the file users deploy, so a change that
//! breaks long-polling affinity or the drain behind a proxy fails here.
//!
//! nginx hashes the client address for affinity, so clients on distinct loopback addresses
//! (127.0.0.2, 127.0.0.3, …, all loopback on Linux) are how a test sees requests spread.
//! Browser behaviour comes from the official `socket.io-client` (scripts in `tests/js/deploy`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::harness::cluster::TestCluster;
use crate::harness::services::free_port;
use crate::harness::{PASSWORD, username};

/// How long a proxy may take to answer its first request.
const PROXY_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Upper bound for one node script.
const NODE_TIMEOUT: Duration = Duration::from_secs(120);
/// Upper bound for one HTTP request through a proxy.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// A free port can be taken before the proxy binds it; starting retries this many times.
const START_ATTEMPTS: usize = 3;

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// `name` in PATH or in the sbin directories (missing from PATH for some users).
fn program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is not installed: `apt-get install {name}` (scripts/test does)")
        })
}

/// The port of a `http://127.0.0.1:<port>` base URL.
fn port_of(base: &str) -> u16 {
    base.rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {base}"))
}

/// `config` with every `(from, to)` replaced; each `from` must occur, so a config that no
/// longer has the expected upstream lines fails loudly instead of proxying to nowhere.
fn rewrite(config: &str, replacements: &[(String, String)]) -> String {
    replacements
        .iter()
        .fold(config.to_owned(), |text, (from, to)| {
            assert!(
                text.contains(from.as_str()),
                "expected `{from}` in the config to substitute for the test; the file changed?"
            );
            text.replace(from.as_str(), to)
        })
}

/// Which proxy, and how to run it from a rewritten copy of its config.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Nginx,
    Haproxy,
}

/// A running nginx or HAProxy in front of a cluster, on a free loopback port. Stopped on drop
/// (SIGTERM, then SIGKILL): the nginx master takes its workers with it.
struct Proxy {
    kind: Kind,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    port: u16,
    _dir: TempDir,
}

impl Proxy {
    async fn nginx(cluster: &TestCluster) -> Self {
        Self::start(Kind::Nginx, cluster).await
    }

    async fn haproxy(cluster: &TestCluster) -> Self {
        Self::start(Kind::Haproxy, cluster).await
    }

    async fn start(kind: Kind, cluster: &TestCluster) -> Self {
        let mut attempt = 1;
        loop {
            let port = free_port();
            let mut proxy = Self::launch(kind, cluster, port);
            match proxy.wait_ready().await {
                Ok(()) => return proxy,
                Err(reason) => {
                    let output = proxy.output();
                    if attempt < START_ATTEMPTS && output.contains("ddress already in use") {
                        attempt += 1;
                        continue;
                    }
                    panic!("{kind:?} did not start on port {port}: {reason}\n{output}");
                }
            }
        }
    }

    fn launch(kind: Kind, cluster: &TestCluster, port: u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("roomcast-proxy-")
            .tempdir()
            .expect("temp dir for the proxy");
        let upstreams: Vec<u16> = (0..3).map(|i| port_of(cluster.url(i))).collect();
        let mut command = match kind {
            Kind::Nginx => {
                let mut replacements = vec![(
                    "listen 8080;".to_owned(),
                    format!("listen 127.0.0.1:{port};"),
                )];
                for (i, upstream) in upstreams.iter().enumerate() {
                    replacements.push((
                        format!("server web-{}:3000", i + 1),
                        format!("server 127.0.0.1:{upstream}"),
                    ));
                }
                let config = rewrite(&read(&repo_file("nginx.conf")), &replacements);
                let path = dir.path().join("nginx.conf");
                std::fs::write(&path, config).expect("write nginx.conf copy");
                let mut command = Command::new(program("nginx"));
                command
                    .arg("-e")
                    .arg("stderr")
                    .arg("-p")
                    .arg(format!("{}/", dir.path().display()))
                    .arg("-c")
                    .arg(&path)
                    .arg("-g")
                    .arg(format!(
                        "daemon off; pid {};",
                        dir.path().join("nginx.pid").display()
                    ));
                command
            }
            Kind::Haproxy => {
                let mut replacements =
                    vec![("bind :8080".to_owned(), format!("bind 127.0.0.1:{port}"))];
                for (i, upstream) in upstreams.iter().enumerate() {
                    replacements.push((
                        format!("server web-{n} web-{n}:3000", n = i + 1),
                        format!("server web-{} 127.0.0.1:{upstream}", i + 1),
                    ));
                }
                let config = rewrite(&read(&repo_file("haproxy.cfg")), &replacements);
                let path = dir.path().join("haproxy.cfg");
                std::fs::write(&path, config).expect("write haproxy.cfg copy");
                let mut command = Command::new(program("haproxy"));
                command.arg("-db").arg("-f").arg(&path);
                command
            }
        };
        command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {kind:?}: {err}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        capture(child.stdout.take(), &lines);
        capture(child.stderr.take(), &lines);
        Self {
            kind,
            child,
            lines,
            port,
            _dir: dir,
        }
    }

    /// Waits until the proxy forwards `/health/live` to an instance.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + PROXY_READY_TIMEOUT;
        let client = http_client(None);
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the output readers drain the pipes before reporting.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Err(format!("it exited ({status})"));
            }
            match client.get(self.url("/health/live")).send().await {
                Ok(res) if res.status() == StatusCode::OK => return Ok(()),
                Ok(res) => last = format!("status {}", res.status()),
                Err(err) => last = err.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "GET /health/live through the proxy not 200 within {PROXY_READY_TIMEOUT:?} (last: {last})"
        ))
    }

    /// `http://127.0.0.1:<port><path>`.
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything the proxy printed (nginx: access log on stdout, errors on stderr; HAProxy:
    /// its log on stdout).
    fn output(&self) -> String {
        self.lines.lock().expect("proxy output").join("\n")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let Some(pid) = self.child.id() else {
            return;
        };
        // SIGTERM lets the nginx master stop its workers; SIGKILL would orphan them.
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{:?} did not stop on SIGTERM; killing it", self.kind);
        let _ = self.child.start_kill();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

/// Collects a child's output lines.
fn capture<R: AsyncRead + Unpin + Send + 'static>(
    stream: Option<R>,
    lines: &Arc<Mutex<Vec<String>>>,
) {
    let Some(stream) = stream else {
        return;
    };
    let lines = lines.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            lines.lock().expect("output lines").push(line);
        }
    });
}

/// An HTTP client with a cookie jar, a deadline per request, and optionally a loopback source
/// address other than 127.0.0.1 (a distinct "client address" for the proxy).
fn http_client(source: Option<Ipv4Addr>) -> Client {
    Client::builder()
        .cookie_store(true)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .local_address(source.map(IpAddr::V4))
        .build()
        .expect("http client")
}

fn instance_of(res: &Response) -> String {
    res.headers()
        .get("x-instance-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| {
            panic!(
                "expected an X-Instance-Id header through the proxy, got headers {:?}",
                res.headers()
            )
        })
        .to_owned()
}

/// Registers and logs in a fresh user through `base` with `client`'s cookie jar.
async fn sign_in(client: &Client, base: &str) -> String {
    let name = username();
    let body = json!({"username": name, "password": PASSWORD});
    for (path, want) in [
        ("/api/auth/register", StatusCode::CREATED),
        ("/api/auth/login", StatusCode::OK),
    ] {
        let res = client
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {path}: {err}"));
        let status = res.status();
        assert_eq!(
            status,
            want,
            "POST {path} through the proxy: expected {want}, got {status} {}",
            res.text().await.unwrap_or_default()
        );
    }
    name
}

// ---------------------------------------------------------------------------------------------
// Engine.IO long-polling by hand: every request's X-Instance-Id is visible
// ---------------------------------------------------------------------------------------------

/// A Socket.IO session over long-polling, request by request.
struct PollingSession<'a> {
    client: &'a Client,
    url: String,
    /// X-Instance-Id of every response, in order.
    instances: Vec<String>,
}

impl<'a> PollingSession<'a> {
    /// Engine.IO handshake and Socket.IO CONNECT to `/`.
    async fn open(client: &'a Client, base: &str) -> Result<Self, String> {
        let handshake = format!("{base}/socket.io/?EIO=4&transport=polling");
        let res = client
            .get(&handshake)
            .send()
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let instance = instance_of(&res);
        let body = res.text().await.map_err(|e| e.to_string())?;
        let open: Value = body
            .strip_prefix('0')
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or_else(|| format!("expected an Engine.IO open packet `0{{...}}`, got {body:?}"))?;
        let sid = open["sid"]
            .as_str()
            .ok_or_else(|| format!("no sid in {open}"))?;
        let mut session = Self {
            client,
            url: format!("{handshake}&sid={sid}"),
            instances: vec![instance],
        };
        session.send("40").await?;
        let connected = session.receive_until(|p| p.starts_with("40")).await?;
        if !connected.starts_with("40{") {
            return Err(format!(
                "expected Socket.IO CONNECT ok `40{{sid}}`, got {connected:?}"
            ));
        }
        Ok(session)
    }

    async fn send(&mut self, packet: &str) -> Result<(), String> {
        let res = self
            .client
            .post(&self.url)
            .header("content-type", "text/plain;charset=UTF-8")
            .body(packet.to_owned())
            .send()
            .await
            .map_err(|e| format!("POST {packet}: {e}"))?;
        self.instances.push(instance_of(&res));
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        if status != StatusCode::OK {
            return Err(format!(
                "POST {packet}: expected 200 ok, got {status} {body}"
            ));
        }
        Ok(())
    }

    /// Polls until a packet matching `wanted` arrives (answering pings on the way).
    async fn receive_until(&mut self, wanted: impl Fn(&str) -> bool) -> Result<String, String> {
        for _ in 0..10 {
            let res = self
                .client
                .get(&self.url)
                .send()
                .await
                .map_err(|e| format!("GET poll: {e}"))?;
            self.instances.push(instance_of(&res));
            let status = res.status();
            let body = res.text().await.unwrap_or_default();
            if status != StatusCode::OK {
                return Err(format!("GET poll: expected 200, got {status} {body}"));
            }
            let mut found = None;
            for packet in body.split('\u{1e}') {
                if packet == "2" {
                    self.send("3").await?;
                } else if packet.starts_with('1') {
                    return Err(format!("the server closed the session: {body:?}"));
                } else if found.is_none() && wanted(packet) {
                    found = Some(packet.to_owned());
                }
            }
            if let Some(packet) = found {
                return Ok(packet);
            }
        }
        Err("the wanted packet did not arrive within 10 polls".to_owned())
    }

    /// Emits `event` with `data` and ack id `id`; returns the ack's payload.
    async fn emit_with_ack(&mut self, id: u32, event: &str, data: Value) -> Result<Value, String> {
        self.send(&format!("42{id}{}", json!([event, data])))
            .await?;
        let prefix = format!("43{id}[");
        let ack = self.receive_until(|p| p.starts_with(&prefix)).await?;
        let args: Value = serde_json::from_str(&ack[prefix.len() - 1..])
            .map_err(|e| format!("ack {ack:?}: {e}"))?;
        Ok(args[0].clone())
    }
}

/// A polling client on `source`: signs in, joins a room and makes `rounds` ack round trips;
/// returns the X-Instance-Id of every Engine.IO response.
async fn polling_client(base: &str, source: Option<Ipv4Addr>, rounds: u32) -> Vec<String> {
    let client = http_client(source);
    sign_in(&client, base).await;
    let mut session = PollingSession::open(&client, base)
        .await
        .unwrap_or_else(|err| panic!("polling session from {source:?}: {err}"));
    let room = format!("poll-{}", username().to_lowercase().replace('_', "-"));
    let joined = session
        .emit_with_ack(0, "join", json!({"room": room}))
        .await
        .unwrap_or_else(|err| panic!("join from {source:?}: {err}"));
    assert_eq!(joined["ok"], true, "join ack: expected ok, got {joined}");
    for id in 1..=rounds {
        let ack = session
            .emit_with_ack(id, "typing", json!({"room": room}))
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "round trip {id} from {source:?} failed (did the session change instance? {:?}): {err}",
                    session.instances
                )
            });
        assert_eq!(ack["ok"], true, "typing ack {id}: expected ok, got {ack}");
    }
    session.instances
}

fn distinct(instances: &[String]) -> Vec<String> {
    let mut set: Vec<String> = instances.to_vec();
    set.sort();
    set.dedup();
    set
}

// ---------------------------------------------------------------------------------------------
// Node scripts with the official client
// ---------------------------------------------------------------------------------------------

/// A node script from `tests/js`, its output collected line by line.
struct NodeScript {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    name: String,
}

impl NodeScript {
    fn start(script: &str, env: &[(&str, String)]) -> Self {
        let mut child = Command::new("node")
            .arg(script)
            .current_dir(repo_file("tests/js"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("node {script}: {err} (is node installed?)"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        capture(child.stdout.take(), &lines);
        capture(child.stderr.take(), &lines);
        Self {
            child,
            lines,
            name: script.to_owned(),
        }
    }

    fn output(&self) -> String {
        self.lines.lock().expect("node output").join("\n")
    }

    /// Waits for a line equal to `line`; panics with the output if the script ends first.
    async fn wait_for_line(&mut self, line: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .lines
                .lock()
                .expect("node output")
                .iter()
                .any(|l| l == line)
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the output readers drain the pipes before reporting.
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "{} ended ({status}) before printing `{line}`:\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print `{line}` within {timeout:?}:\n{}",
                self.name,
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits for the script to end; returns the JSON after `RESULT ` or panics with the output.
    async fn result(mut self, timeout: Duration, context: impl Fn() -> String) -> Value {
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait for node"),
            Err(_) => panic!(
                "{} did not finish within {timeout:?}:\n{}\n{}",
                self.name,
                self.output(),
                context()
            ),
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let output = self.output();
        assert!(
            status.success(),
            "{} failed ({status}):\n{output}\n{}",
            self.name,
            context()
        );
        output
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_else(|| panic!("{} printed no RESULT line:\n{output}", self.name))
    }
}

/// Runs `deploy/through-proxy.mjs` against `proxy` and checks every mode's result.
async fn official_client_through(proxy: &Proxy) -> Value {
    let script = NodeScript::start("deploy/through-proxy.mjs", &[("PROXY_URL", proxy.url(""))]);
    let result = script.result(NODE_TIMEOUT, || proxy.output()).await;
    eprintln!("official client through {:?}: {result}", proxy.kind);
    let modes: Vec<&str> = result
        .as_array()
        .map(|r| r.iter().filter_map(|m| m["mode"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        modes,
        ["websocket", "polling", "upgrade"],
        "expected results for every transport: {result}"
    );
    for mode in result.as_array().into_iter().flatten() {
        let want = if mode["mode"] == "polling" {
            "polling"
        } else {
            "websocket"
        };
        assert_eq!(
            mode["transport"], want,
            "expected the {} client on {want}: {mode}",
            mode["mode"]
        );
        for key in ["alice_instance", "bob_instance"] {
            assert!(
                mode[key].as_str().is_some_and(|id| id.starts_with("web-")),
                "expected {key} to name an instance: {mode}"
            );
        }
    }
    result
}

/// POST with a browser's same-origin `Origin` through the proxy: roomcast compares it with
/// the Host the proxy forwards, so this fails if the proxy rewrites Host.
async fn same_origin_post_is_accepted(proxy: &Proxy) {
    let client = http_client(None);
    let origin = proxy.url("");
    let res = client
        .post(proxy.url("/api/auth/register"))
        .header("origin", &origin)
        .json(&json!({"username": username(), "password": PASSWORD}))
        .send()
        .await
        .expect("register with Origin");
    let status = res.status();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a same-origin POST (Origin {origin}) through the proxy: expected 201, got {status} {}",
        res.text().await.unwrap_or_default()
    );
}

/// `/metrics` is not published through the proxy, but each instance serves it.
async fn metrics_stay_internal(proxy: &Proxy, cluster: &TestCluster) {
    let client = http_client(None);
    let res = client
        .get(proxy.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics via proxy");
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "/metrics through the proxy: expected 404, got {}",
        res.status()
    );
    let direct = client
        .get(format!("{}/metrics", cluster.url(0)))
        .send()
        .await
        .expect("GET /metrics direct");
    assert_eq!(
        direct.status(),
        StatusCode::OK,
        "/metrics on an instance: expected 200 for Prometheus, got {}",
        direct.status()
    );
}

// ---------------------------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn nginx_serves_the_api_and_socketio_on_every_transport_and_spreads_client_addresses() {
    let cluster = TestCluster::start(3).await;
    let nginx = Proxy::nginx(&cluster).await;

    official_client_through(&nginx).await;

    // One client address stays on one instance; different addresses are spread out.
    let mut seen = Vec::new();
    for last in 2..=25u8 {
        let client = http_client(Some(Ipv4Addr::new(127, 0, 0, last)));
        let mut instances = Vec::new();
        for _ in 0..3 {
            let res = client
                .get(nginx.url("/health/live"))
                .send()
                .await
                .expect("GET /health/live via nginx");
            assert_eq!(res.status(), StatusCode::OK);
            instances.push(instance_of(&res));
        }
        assert_eq!(
            distinct(&instances).len(),
            1,
            "127.0.0.{last}: expected one instance for one client address, got {instances:?}"
        );
        seen.push(instances.remove(0));
    }
    let spread = distinct(&seen);
    assert!(
        spread.len() >= 2,
        "expected 24 client addresses spread over more than one instance, got {spread:?}"
    );

    same_origin_post_is_accepted(&nginx).await;
    metrics_stay_internal(&nginx, &cluster).await;

    // The request id is kept or made, and roomcast echoes it.
    let client = http_client(None);
    let res = client
        .get(nginx.url("/health/live"))
        .header("x-request-id", "deploy-test-request-id")
        .send()
        .await
        .expect("GET with a request id");
    assert_eq!(
        res.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("deploy-test-request-id"),
        "expected the client's X-Request-Id echoed through nginx: {:?}",
        res.headers()
    );
    for probe in ["/healthz", "/readyz", "/health/ready", "/health"] {
        let res = client
            .get(nginx.url(probe))
            .send()
            .await
            .expect("probe via nginx");
        assert!(
            res.status().is_success(),
            "{probe} through nginx: expected 2xx, got {}",
            res.status()
        );
    }

    // The access log names the instance of each request and leaves probes out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = nginx.output();
    assert!(
        log.lines()
            .any(|l| l.contains("\"POST /api/auth/register") && l.contains("instance=web-")),
        "expected an access log line for POST /api/auth/register naming the instance:\n{log}"
    );
    for probe in ["/health/live", "/health/ready", "/healthz", "/readyz"] {
        assert!(
            !log.lines().any(|l| l.contains(&format!("GET {probe} "))),
            "expected no access log line for the probe {probe}:\n{log}"
        );
    }
}

#[tokio::test]
async fn nginx_keeps_every_request_of_a_polling_session_on_one_instance() {
    let cluster = TestCluster::start(3).await;
    let nginx = Proxy::nginx(&cluster).await;

    // One client address per instance (where nginx's hash sends it), so the sessions below
    // cover more than one instance whatever ports the instances got.
    let mut sources: Vec<(Ipv4Addr, String)> = Vec::new();
    for last in 2..=60u8 {
        let source = Ipv4Addr::new(127, 0, 0, last);
        let res = http_client(Some(source))
            .get(nginx.url("/health/live"))
            .send()
            .await
            .expect("GET /health/live via nginx");
        let instance = instance_of(&res);
        if !sources.iter().any(|(_, seen)| *seen == instance) {
            sources.push((source, instance));
        }
        if sources.len() == 3 {
            break;
        }
    }
    assert!(
        sources.len() >= 2,
        "expected 59 client addresses hashed to more than one instance, got {sources:?}"
    );

    for (source, instance) in &sources {
        let instances = polling_client(&nginx.url(""), Some(*source), 20).await;
        assert!(
            instances.len() > 40,
            "expected 20 round trips of POST + GET, got {} responses",
            instances.len()
        );
        assert_eq!(
            distinct(&instances),
            std::slice::from_ref(instance),
            "{source}: expected every request of the polling session on {instance} (where its \
             plain HTTP requests go), got {instances:?}"
        );
    }
}

#[tokio::test]
async fn nginx_moves_the_clients_of_a_draining_instance_to_the_others_without_losing_messages() {
    let mut cluster = TestCluster::start(3).await;
    let nginx = Proxy::nginx(&cluster).await;

    // Every client of this test connects from 127.0.0.1, which nginx pins to one instance.
    let client = http_client(None);
    let res = client
        .get(nginx.url("/health/live"))
        .send()
        .await
        .expect("GET /health/live via nginx");
    let draining = instance_of(&res);
    let index: usize = draining
        .strip_prefix("web-")
        .and_then(|n| n.parse::<usize>().ok())
        .map(|n| n - 1)
        .unwrap_or_else(|| panic!("expected an instance id web-N, got {draining}"));
    let sender = (index + 1) % 3;

    let mut script = NodeScript::start(
        "deploy/drain.mjs",
        &[
            ("PROXY_URL", nginx.url("")),
            ("SENDER_URL", cluster.url(sender).to_owned()),
            ("DRAINING_ID", draining.clone()),
            ("CLIENTS", "6".to_owned()),
        ],
    );
    script.wait_for_line("READY", Duration::from_secs(60)).await;
    cluster.instances[index].signal("TERM");

    let result = script
        .result(NODE_TIMEOUT, || {
            format!(
                "--- nginx ---\n{}\n--- {draining} ---\n{}",
                nginx.output(),
                cluster.instances[index].output()
            )
        })
        .await;
    eprintln!("drain of {draining} through nginx: {result}");
    let code = cluster.instances[index]
        .wait_exit(Duration::from_secs(30))
        .await;
    assert_eq!(
        code,
        Some(0),
        "{draining} should drain and exit 0, got {code:?}"
    );
    assert!(
        result["sender_acked_during_drain"].as_u64() > Some(0),
        "expected messages acknowledged during the drain: {result}"
    );
    let moved_to: Vec<&str> = result["after"]
        .as_object()
        .map(|after| after.values().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        moved_to.len() == 6 && moved_to.iter().all(|id| *id != draining),
        "expected all 6 clients on other instances than {draining}, got {result}"
    );

    // New requests from the same address now reach a surviving instance.
    let res = client
        .get(nginx.url("/health/ready"))
        .send()
        .await
        .expect("GET /health/ready via nginx after the drain");
    assert_eq!(res.status(), StatusCode::OK);
    assert_ne!(
        instance_of(&res),
        draining,
        "expected nginx to route around the stopped instance"
    );
}

// ---------------------------------------------------------------------------------------------
// HAProxy
// ---------------------------------------------------------------------------------------------

fn serverid_cookie(res: &Response) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("SERVERID="))
        .map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
}

/// GET `/health/live` through `proxy` with `SERVERID=<instance>`; returns the instance that
/// answered.
async fn with_serverid(proxy: &Proxy, instance: &str) -> String {
    let res = Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("client")
        .get(proxy.url("/health/live"))
        .header("cookie", format!("SERVERID={instance}"))
        .send()
        .await
        .expect("GET with SERVERID");
    instance_of(&res)
}

#[tokio::test]
async fn haproxy_serves_socketio_and_pins_clients_with_its_serverid_cookie() {
    let mut cluster = TestCluster::start(3).await;
    let haproxy = Proxy::haproxy(&cluster).await;

    // Wait until the health checks have every instance up; then the cookie decides.
    for n in 1..=3 {
        let wanted = format!("web-{n}");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = with_serverid(&haproxy, &wanted).await;
            if got == wanted {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "SERVERID={wanted}: expected {wanted} to answer, got {got}\n{}",
                haproxy.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // A new client gets the cookie and keeps its instance with it.
    let client = http_client(None);
    let res = client
        .get(haproxy.url("/health/live"))
        .send()
        .await
        .expect("first GET via haproxy");
    let first = instance_of(&res);
    assert_eq!(
        serverid_cookie(&res).as_deref(),
        Some(first.as_str()),
        "expected Set-Cookie SERVERID={first}, got {:?}",
        res.headers().get_all("set-cookie")
    );
    for _ in 0..10 {
        let res = client
            .get(haproxy.url("/health/live"))
            .send()
            .await
            .expect("GET via haproxy");
        assert_eq!(
            instance_of(&res),
            first,
            "expected the SERVERID cookie to keep the client on {first}"
        );
    }

    official_client_through(&haproxy).await;
    let instances = polling_client(&haproxy.url(""), None, 20).await;
    assert_eq!(
        distinct(&instances).len(),
        1,
        "expected a cookie-pinned polling session on one instance, got {:?}",
        distinct(&instances)
    );
    same_origin_post_is_accepted(&haproxy).await;
    metrics_stay_internal(&haproxy, &cluster).await;

    // A draining instance fails its /health/ready check; its cookie clients go elsewhere.
    cluster.instances[1].signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = with_serverid(&haproxy, "web-2").await;
        if got != "web-2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SERVERID=web-2 after SIGTERM: expected another instance within 15 s, still web-2\n{}",
            haproxy.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let code = cluster.instances[1]
        .wait_exit(Duration::from_secs(30))
        .await;
    assert_eq!(code, Some(0), "web-2 should drain and exit 0, got {code:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !haproxy.output().contains("web-2 is DOWN") {
        assert!(
            Instant::now() < deadline,
            "expected HAProxy's health check to mark web-2 DOWN:\n{}",
            haproxy.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Probes are not logged; requests are, with the instance that answered.
    let log = haproxy.output();
    assert!(
        log.lines()
            .any(|l| l.contains("POST /api/auth/register") && l.contains("{web-")),
        "expected a log line for POST /api/auth/register with the instance:\n{log}"
    );
    assert!(
        !log.lines().any(|l| l.contains("GET /health/live ")),
        "expected no log line for the probe /health/live:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// Forwarded headers, as deployed (TRUST_PROXY=true)
// ---------------------------------------------------------------------------------------------

/// A failed login through `proxy` from `source`, with a forged X-Forwarded-For entry.
async fn failed_login(proxy: &Proxy, source: Ipv4Addr, attempt: u8) -> StatusCode {
    http_client(Some(source))
        .post(proxy.url("/api/auth/login"))
        .header("x-forwarded-for", format!("203.0.113.{attempt}"))
        .json(&json!({"username": username(), "password": "not the password"}))
        .send()
        .await
        .expect("POST /api/auth/login")
        .status()
}

#[tokio::test]
async fn behind_either_proxy_roomcast_sees_the_real_client_address_and_host() {
    let mut cluster = TestCluster::start(3).await;
    for i in 0..3 {
        cluster
            .restart(
                i,
                &[
                    ("TRUST_PROXY", "true"),
                    ("TRUST_PROXY_HOPS", "1"),
                    ("LOGIN_MAX_FAILURES_PER_IP", "10"),
                ],
            )
            .await;
    }
    let nginx = Proxy::nginx(&cluster).await;
    let haproxy = Proxy::haproxy(&cluster).await;

    // The login throttle's address limit (here 10 failures) keys on the address the proxy
    // appended to X-Forwarded-For: one client's wrong passwords are throttled whatever it
    // forges in that header, and another client behind the same proxy is not.
    for (proxy, client, bystander) in [
        (
            &nginx,
            Ipv4Addr::new(127, 0, 0, 31),
            Ipv4Addr::new(127, 0, 0, 32),
        ),
        (
            &haproxy,
            Ipv4Addr::new(127, 0, 0, 33),
            Ipv4Addr::new(127, 0, 0, 34),
        ),
    ] {
        let kind = proxy.kind;
        for attempt in 1..=10 {
            let status = failed_login(proxy, client, attempt).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{kind:?}: failed login {attempt} from {client}: expected 401, got {status}"
            );
        }
        let status = failed_login(proxy, client, 11).await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "{kind:?}: the 11th failure from {client} (each with another forged \
             X-Forwarded-For) should be throttled, got {status}"
        );
        let status = failed_login(proxy, bystander, 1).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{kind:?}: a different client ({bystander}) behind the same proxy must not be \
             throttled, got {status}"
        );
        // The browser's host arrives as X-Forwarded-Host and passes the same-origin check.
        same_origin_post_is_accepted(proxy).await;
    }
}
