//! Real backing services for integration tests: a `redis-server` child process and a throwaway
//! PostgreSQL cluster. Each one gets a free loopback port and its own temporary directory and is
//! torn down on drop, also when the test panics. Nothing here relies on a service started by
//! hand, and the default ports (6379, 5432) are never used, so a system Redis or PostgreSQL that
//! a package installation started cannot interfere.
//!
//! Every wait is bounded: a server that does not come up makes the test panic with its log
//! instead of hanging the suite.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long `redis-server` may take to accept connections.
const REDIS_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long PostgreSQL may take to accept connections (includes crash recovery after `stop`).
const PG_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for one-shot tools that do real work (`initdb`, `pg_ctl start`).
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for quick client tools (`redis-cli`, `psql`, `pg_ctl stop`).
const CLI_TIMEOUT: Duration = Duration::from_secs(15);
/// A port picked by [`free_port`] can be taken by someone else before the server binds it;
/// the first start retries with a new port this many times in total.
const START_ATTEMPTS: usize = 3;

/// A TCP port on 127.0.0.1 that was free a moment ago: the kernel picks it for a listener that
/// is dropped right away. Another process may grab it before the caller binds it, which is why
/// the services retry their first start on "address in use".
pub fn free_port() -> u16 {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local address of the port probe listener")
        .port()
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

/// A `redis-server` child process on a free port, with its data and log in a temp dir.
/// Dropping it kills the process (SIGKILL) and removes the directory.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    password: Option<String>,
    extra_args: Vec<String>,
    dir: TempDir,
}

impl RedisServer {
    /// Starts an in-memory Redis (no RDB snapshots, no AOF) and waits until it answers PING.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Like [`RedisServer::start`], with `extra_args` appended to the command line, where they
    /// override the defaults: e.g. `["--requirepass", "secret"]` or `["--appendonly", "yes"]`.
    pub async fn start_with(extra_args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("roomcast-redis-")
            .tempdir()
            .expect("create a temp dir for redis-server");
        let password = extra_args
            .windows(2)
            .rev()
            .find(|pair| pair[0] == "--requirepass")
            .map(|pair| pair[1].to_owned());
        let mut server = Self {
            child: None,
            port: 0,
            password,
            extra_args: extra_args.iter().map(|&arg| arg.to_owned()).collect(),
            dir,
        };
        let mut attempt = 1;
        loop {
            server.port = free_port();
            match server.launch().await {
                Ok(()) => return server,
                Err(reason) => {
                    let log = server.log();
                    if attempt < START_ATTEMPTS && log.contains("Address already in use") {
                        attempt += 1;
                        // Start the next attempt with a clean log, so only its errors count.
                        let _ = fs::remove_file(server.log_path());
                        let _ = fs::remove_file(server.stdio_path());
                        continue;
                    }
                    panic!(
                        "redis-server did not start on port {}: {reason}\n--- redis log ---\n{log}",
                        server.port
                    );
                }
            }
        }
    }

    /// Connection URL: `redis://127.0.0.1:<port>`, or `redis://:<password>@127.0.0.1:<port>`
    /// when started with `--requirepass` (the password is not percent-encoded).
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The port it listens on; stays the same across [`RedisServer::restart`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server abruptly (SIGKILL, like a crash) and reaps it. Nothing is saved; only
    /// what the AOF already holds survives (with `--appendonly yes`, every acknowledged write).
    /// Does nothing when it is not running.
    pub async fn stop(&mut self) {
        self.kill();
    }

    /// Stops the server cleanly with SIGTERM (Redis saves an RDB snapshot if save points are
    /// configured and flushes the AOF) and waits up to 10 s for it to exit.
    pub async fn shutdown_graceful(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let mut kill = Command::new("kill");
        kill.arg("-TERM").arg(child.id().to_string());
        if let Err(err) = run(kill, CLI_TIMEOUT).await {
            let _ = child.kill();
            let _ = child.wait();
            panic!("could not send SIGTERM to redis-server: {err}");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "redis-server did not exit within 10 s of SIGTERM; killed it\n\
                         --- redis log ---\n{}",
                        self.log()
                    );
                }
            }
        }
    }

    /// Starts the server again (stopping it first if it is running) on the same port, in the
    /// same directory, with the same arguments. Data survives only if persistence was enabled
    /// (`--appendonly yes`, or a graceful shutdown with save points).
    pub async fn restart(&mut self) {
        self.kill();
        if let Err(reason) = self.launch().await {
            panic!(
                "redis-server did not restart on port {}: {reason}\n--- redis log ---\n{}",
                self.port,
                self.log()
            );
        }
    }

    /// Runs `redis-cli --raw <args…>` against this server (with the password, if any) and
    /// returns its stdout without trailing newlines, e.g. `command(&["GET", "k"])` or
    /// `command(&["--scan"])`. Error replies (`WRONGTYPE …`) are returned as text, because
    /// redis-cli exits 0 for them; panics if redis-cli itself fails (e.g. cannot connect).
    pub fn command(&self, args: &[&str]) -> String {
        let output = self.command_output(args);
        assert!(
            output.status.success(),
            "redis-cli {args:?} failed: {}",
            describe(&output)
        );
        String::from_utf8_lossy(&output.stdout)
            .trim_end_matches('\n')
            .to_owned()
    }

    /// Like [`RedisServer::command`] but returns the whole output without checking the exit
    /// status, for tests that expect redis-cli to fail (e.g. while the server is stopped).
    pub fn command_output(&self, args: &[&str]) -> Output {
        let mut cli = Command::new("redis-cli");
        cli.args(["-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("--raw");
        if let Some(password) = &self.password {
            cli.args(["-a", password, "--no-auth-warning"]);
        }
        cli.args(args);
        run_blocking(cli, CLI_TIMEOUT).unwrap_or_else(|err| panic!("redis-cli {args:?}: {err}"))
    }

    /// The server's log file plus anything it printed to stdout/stderr (startup errors such
    /// as a bad argument are printed before the log file is opened).
    pub fn log(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let stdio = fs::read_to_string(self.stdio_path()).unwrap_or_default();
        format!("{log}{stdio}")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn stdio_path(&self) -> PathBuf {
        self.dir.path().join("redis.stdout")
    }

    /// Spawns `redis-server` on `self.port` and waits for it; on failure the process is gone.
    async fn launch(&mut self) -> Result<(), String> {
        let stdio = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stdio_path())
            .map_err(|err| format!("could not open redis-server's stdout file: {err}"))?;
        let stderr = stdio
            .try_clone()
            .map_err(|err| format!("could not clone redis-server's stdout file: {err}"))?;
        let mut command = Command::new("redis-server");
        command
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--dir"])
            .arg(self.dir.path())
            .args(["--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no", "--logfile"])
            .arg(self.log_path())
            .args(&self.extra_args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(stdio)
            .stderr(stderr);
        let child = command.spawn().map_err(|err| {
            format!("could not spawn redis-server (apt-get install redis-server): {err}")
        })?;
        self.child = Some(child);
        let ready = self.wait_ready().await;
        if ready.is_err() {
            self.kill();
        }
        ready
    }

    /// Polls with PING until the server answers (`-NOAUTH` counts: it is up, just locked),
    /// failing early if the process exits (e.g. the port was taken).
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + REDIS_READY_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("redis-server exited with {status}"));
            }
            if redis_answers_ping(self.port).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("not answering PING after {REDIS_READY_TIMEOUT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL and reap, so no zombie or orphan is left behind.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True if something on `port` answers `PING` like a Redis server (`+PONG` or `-NOAUTH`).
/// A server still loading its AOF answers `-LOADING`, which is not ready yet.
async fn redis_answers_ping(port: u16) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 64];
        let read = stream.read(&mut reply).await.ok()?;
        let reply = &reply[..read];
        Some(reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH"))
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), probe).await,
        Ok(Some(true))
    )
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

/// Settings appended to the cluster's `postgresql.conf` (rather than passed with `pg_ctl -o`,
/// which goes through one or two shells), so `start_again` reuses them as they are.
/// `fsync`/`full_page_writes` off only risk data on an OS crash, which tests never survive
/// anyway. `synchronous_commit` is deliberately left on: with `fsync = off` a commit costs one
/// `write()`, and turning it off would let `stop()` (an immediate shutdown) lose the last
/// acknowledged commits, which makes "data survives a database restart" tests flaky.
const PG_SETTINGS: &[(&str, &str)] = &[
    ("fsync", "off"),
    ("full_page_writes", "off"),
    ("listen_addresses", "'127.0.0.1'"),
];

/// A PostgreSQL cluster created with `initdb` in a temp dir and run with `pg_ctl` on a free
/// port, with a `roomcast` database. Dropping it stops the server (`pg_ctl stop -m
/// immediate`) and removes the directory.
pub struct Postgres {
    tools: PgTools,
    port: u16,
    running: bool,
    dir: TempDir,
}

impl Postgres {
    /// Creates the cluster, starts it, waits until it accepts connections and creates the
    /// `roomcast` database. When the tests run as root, `initdb` and `pg_ctl` (which refuse to
    /// run as root) run as the `postgres` system user, who then owns the directory.
    pub async fn start() -> Self {
        let tools = PgTools::discover();
        let dir = pg_temp_dir(tools.as_postgres_user).await;
        let mut pg = Self {
            tools,
            port: 0,
            running: false,
            dir,
        };
        pg.initdb().await;
        let mut attempt = 1;
        loop {
            pg.port = free_port();
            pg.write_settings();
            match pg.launch().await {
                Ok(()) => break,
                Err(reason) => {
                    let log = pg.log();
                    let port_taken = log.contains("Address already in use")
                        || log.contains("could not create any TCP/IP sockets");
                    if attempt < START_ATTEMPTS && port_taken {
                        attempt += 1;
                        pg.stop_blocking();
                        let _ = fs::remove_file(pg.log_path());
                        continue;
                    }
                    panic!(
                        "PostgreSQL did not start on port {}: {reason}\n--- server log ---\n{log}",
                        pg.port
                    );
                }
            }
        }
        pg.create_database("roomcast").await;
        pg
    }

    /// `postgres://postgres@127.0.0.1:<port>/roomcast` (trust authentication, no password).
    pub fn url(&self) -> String {
        self.url_for("roomcast")
    }

    /// The URL of another database on this server, e.g. `url_for("postgres")`.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The port it listens on; stays the same across [`Postgres::start_again`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server with `pg_ctl stop -m immediate`: no checkpoint, connections are cut,
    /// like a crash (committed data is kept: it is recovered from the WAL on the next start).
    /// Does nothing when it is not running.
    pub async fn stop(&mut self) {
        if !self.running {
            return;
        }
        let result = run(self.stop_command(), CLI_TIMEOUT).await;
        self.running = false;
        match result {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                self.kill_postmaster();
                panic!("pg_ctl stop failed: {}", describe(&output));
            }
            Err(err) => {
                self.kill_postmaster();
                panic!("pg_ctl stop: {err}");
            }
        }
    }

    /// Starts the server again (stopping it first if it is running) on the same port, with the
    /// same data directory, and waits until it accepts connections.
    pub async fn start_again(&mut self) {
        self.stop().await;
        if let Err(reason) = self.launch().await {
            panic!(
                "PostgreSQL did not start again on port {}: {reason}\n--- server log ---\n{}",
                self.port,
                self.log()
            );
        }
    }

    /// An open `psql` session on the `roomcast` database, for holding a transaction (and its
    /// locks) open while the test does something else.
    pub async fn psql_session(&self) -> PsqlSession {
        let mut child = tokio::process::Command::new(self.tools.program("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("psql session: {err}"));
        let stdin = child.stdin.take().expect("psql stdin");
        let stdout = tokio::io::BufReader::new(child.stdout.take().expect("psql stdout"));
        PsqlSession {
            _child: child,
            stdin,
            stdout: tokio::io::AsyncBufReadExt::lines(stdout),
        }
    }

    /// Runs `sql` with `psql` against the `roomcast` database (unaligned, tuples only, stop on
    /// the first error) and returns stdout without trailing newlines; panics if psql fails.
    pub async fn psql(&self, sql: &str) -> String {
        let mut psql = Command::new(self.tools.program("psql"));
        psql.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url())
            .arg("-c")
            .arg(sql);
        let output = run(psql, CLI_TIMEOUT)
            .await
            .unwrap_or_else(|err| panic!("psql -c {sql:?}: {err}"));
        assert!(
            output.status.success(),
            "psql -c {sql:?} failed: {}",
            describe(&output)
        );
        String::from_utf8_lossy(&output.stdout)
            .trim_end_matches('\n')
            .to_owned()
    }

    /// The server log (`pg.log` in the temp dir).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("pg.log")
    }

    /// `initdb` with a UTF-8 C locale, falling back to `--no-locale` where `C.UTF-8` is missing.
    async fn initdb(&self) {
        let data = path_arg(&self.data_dir());
        let mut failures = Vec::new();
        for locale in ["--locale=C.UTF-8", "--no-locale"] {
            // initdb refuses a non-empty directory; a failed attempt may leave one behind.
            let _ = fs::remove_dir_all(self.data_dir());
            let args = [
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                locale,
            ];
            let command = self.tools.server_command("initdb", &args, self.dir.path());
            match run(command, TOOL_TIMEOUT).await {
                Ok(output) if output.status.success() => return,
                Ok(output) => failures.push(format!("initdb {locale}: {}", describe(&output))),
                Err(err) => failures.push(format!("initdb {locale}: {err}")),
            }
        }
        panic!(
            "initdb failed (running as the postgres user: {}):\n{}",
            self.tools.as_postgres_user,
            failures.join("\n")
        );
    }

    /// Appends the harness settings; later lines win, so a port retry just appends again.
    fn write_settings(&self) {
        let socket_dir = path_arg(self.dir.path()).replace('\'', "''");
        let mut settings = format!(
            "\n# roomcast test harness\nport = {}\nunix_socket_directories = '{socket_dir}'\n",
            self.port
        );
        for (name, value) in PG_SETTINGS {
            settings.push_str(&format!("{name} = {value}\n"));
        }
        OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))
            .and_then(|mut conf| conf.write_all(settings.as_bytes()))
            .expect("append the harness settings to postgresql.conf");
    }

    /// `pg_ctl start`, then waits until the server accepts TCP connections on its port.
    async fn launch(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + PG_READY_TIMEOUT;
        let data = path_arg(&self.data_dir());
        let log = path_arg(&self.log_path());
        let timeout = PG_READY_TIMEOUT.as_secs().to_string();
        let args = ["-D", &data, "-l", &log, "-w", "-t", &timeout, "start"];
        let command = self.tools.server_command("pg_ctl", &args, self.dir.path());
        // From here on Drop must stop it, even if `pg_ctl start` fails half-way.
        self.running = true;
        match run(command, TOOL_TIMEOUT).await {
            Ok(output) if output.status.success() => {}
            Ok(output) => return Err(format!("pg_ctl start failed: {}", describe(&output))),
            Err(err) => return Err(format!("pg_ctl start: {err}")),
        }
        loop {
            if self.accepts_connections().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not accepting connections after {PG_READY_TIMEOUT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `pg_isready` on the TCP port; a plain TCP connect where `pg_isready` is missing.
    async fn accepts_connections(&self) -> bool {
        let mut isready = Command::new(self.tools.program("pg_isready"));
        isready
            .args(["-q", "-h", "127.0.0.1", "-t", "1", "-p"])
            .arg(self.port.to_string());
        match run(isready, Duration::from_secs(5)).await {
            Ok(output) => output.status.success(),
            Err(_) => tokio::time::timeout(
                Duration::from_secs(1),
                TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)),
            )
            .await
            .is_ok_and(|connected| connected.is_ok()),
        }
    }

    /// `createdb`, or `CREATE DATABASE` through psql where `createdb` is missing.
    async fn create_database(&self, name: &str) {
        let port = self.port.to_string();
        let mut createdb = Command::new(self.tools.program("createdb"));
        createdb.args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name]);
        let output = match run(createdb, CLI_TIMEOUT).await {
            Ok(output) => output,
            Err(_) => {
                let mut psql = Command::new(self.tools.program("psql"));
                psql.args(["-X", "-v", "ON_ERROR_STOP=1", "-d"])
                    .arg(self.url_for("postgres"))
                    .arg("-c")
                    .arg(format!("CREATE DATABASE \"{name}\""));
                run(psql, CLI_TIMEOUT)
                    .await
                    .unwrap_or_else(|err| panic!("create database {name}: {err}"))
            }
        };
        assert!(
            output.status.success(),
            "create database {name} failed: {}",
            describe(&output)
        );
    }

    fn stop_command(&self) -> Command {
        let data = path_arg(&self.data_dir());
        let args = ["-D", &data, "-m", "immediate", "-w", "-t", "10", "stop"];
        self.tools.server_command("pg_ctl", &args, self.dir.path())
    }

    /// Synchronous stop for Drop and start retries: never panics.
    fn stop_blocking(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let stopped = run_blocking(self.stop_command(), CLI_TIMEOUT)
            .is_ok_and(|output| output.status.success());
        if !stopped {
            self.kill_postmaster();
        }
    }

    /// Last resort when `pg_ctl stop` fails: SIGKILL the postmaster named in `postmaster.pid`
    /// (its children exit on their own once it is gone).
    fn kill_postmaster(&self) {
        let pid = fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()
            .and_then(|contents| contents.lines().next()?.trim().parse::<u32>().ok());
        if let Some(pid) = pid {
            let mut kill = Command::new("kill");
            kill.arg("-KILL").arg(pid.to_string());
            let _ = run_blocking(kill, CLI_TIMEOUT);
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_blocking();
    }
}

/// Where the PostgreSQL programs are and who must run the server-side ones.
struct PgTools {
    /// Directory holding `initdb`, `pg_ctl`, `pg_isready`, `createdb`, `psql` of one version.
    bin_dir: PathBuf,
    /// We are root: `initdb` and `pg_ctl` must run as the `postgres` system user.
    as_postgres_user: bool,
}

impl PgTools {
    /// Prefers the `pg_ctl` on PATH (following symlinks to its real bin dir, so the other
    /// programs come from the same version), else the highest `/usr/lib/postgresql/*/bin`.
    fn discover() -> Self {
        let from_path = find_program("pg_ctl", &[])
            .and_then(|pg_ctl| fs::canonicalize(pg_ctl).ok())
            .and_then(|pg_ctl| pg_ctl.parent().map(Path::to_path_buf))
            .filter(|dir| dir.join("initdb").is_file());
        let bin_dir = from_path.or_else(highest_debian_bin_dir).expect(
            "PostgreSQL server programs (initdb, pg_ctl) not found on PATH or in \
             /usr/lib/postgresql/*/bin (apt-get install postgresql)",
        );
        Self {
            bin_dir,
            as_postgres_user: running_as_root(),
        }
    }

    /// The program from the bin dir, else by name from PATH (e.g. Debian's `psql` wrapper).
    fn program(&self, name: &str) -> PathBuf {
        let path = self.bin_dir.join(name);
        if path.is_file() {
            path
        } else {
            PathBuf::from(name)
        }
    }

    /// A command for a server-side program (`initdb`, `pg_ctl`), run as `postgres` when we are
    /// root: through `runuser`, else `su` (which needs the command line as one shell string).
    /// It runs in `dir`, because the tools complain when they cannot read the working
    /// directory, and the test's one may be closed to the `postgres` user.
    fn server_command(&self, name: &str, args: &[&str], dir: &Path) -> Command {
        let program = path_arg(&self.program(name));
        let mut command = if !self.as_postgres_user {
            let mut command = Command::new(&program);
            command.args(args);
            command
        } else if let Some(runuser) = find_program("runuser", &["/usr/sbin", "/sbin"]) {
            let mut command = Command::new(runuser);
            command.args(["-u", "postgres", "--", &program]).args(args);
            command
        } else {
            let script = std::iter::once(program.as_str())
                .chain(args.iter().copied())
                .map(shell_quote)
                .collect::<Vec<_>>()
                .join(" ");
            let mut command = Command::new("su");
            command.args(["postgres", "-s", "/bin/sh", "-c", &format!("exec {script}")]);
            command
        };
        command.current_dir(dir);
        command
    }
}

/// The numerically highest `/usr/lib/postgresql/<version>/bin` that has `pg_ctl` and `initdb`.
fn highest_debian_bin_dir() -> Option<PathBuf> {
    let version = |name: &str| -> Vec<u32> {
        name.split('.')
            .map(|part| part.parse().unwrap_or(0))
            .collect()
    };
    fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok())
        .map(|entry| (version(&entry.file_name().to_string_lossy()), entry.path()))
        .filter(|(_, dir)| dir.join("bin/pg_ctl").is_file() && dir.join("bin/initdb").is_file())
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, dir)| dir.join("bin"))
}

/// The temp dir for a cluster. As root it is created under `/tmp` (every user can traverse
/// it, unlike e.g. a `TMPDIR` under `/root`) and handed to `postgres`, who must create the
/// data directory, the log and the socket in it.
async fn pg_temp_dir(as_postgres_user: bool) -> TempDir {
    let base = if as_postgres_user && Path::new("/tmp").is_dir() {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::Builder::new()
        .prefix("roomcast-pg-")
        .tempdir_in(&base)
        .expect("create a temp dir for PostgreSQL");
    if as_postgres_user {
        make_traversable(&base);
        let mut chown = Command::new("chown");
        chown.args(["-R", "postgres:postgres"]).arg(dir.path());
        let output = run(chown, CLI_TIMEOUT)
            .await
            .unwrap_or_else(|err| panic!("chown the PostgreSQL temp dir: {err}"));
        assert!(
            output.status.success(),
            "chown -R postgres:postgres {} failed (does the postgres user exist?): {}",
            dir.path().display(),
            describe(&output)
        );
    }
    dir
}

/// Adds search permission for others on `dir` and its ancestors where it is missing, so the
/// `postgres` user can reach the temp dir.
fn make_traversable(dir: &Path) {
    for ancestor in dir.ancestors() {
        let Ok(metadata) = fs::metadata(ancestor) else {
            continue;
        };
        let mode = metadata.permissions().mode();
        if mode & 0o001 == 0 {
            let _ = fs::set_permissions(ancestor, fs::Permissions::from_mode(mode | 0o055));
        }
    }
}

/// Whether this process runs as root: `/proc/self` is owned by the effective uid.
fn running_as_root() -> bool {
    match fs::metadata("/proc/self") {
        Ok(metadata) => metadata.uid() == 0,
        Err(_) => Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| output.stdout.trim_ascii() == b"0"),
    }
}

// ---------------------------------------------------------------------------------------------
// Running helper programs with a deadline
// ---------------------------------------------------------------------------------------------

/// Runs `command` to completion within `timeout` (killing it otherwise) without blocking the
/// runtime. Output goes to temp files, not pipes: `pg_ctl start` leaves a daemon behind, and a
/// daemon that inherited a pipe would keep a pipe reader waiting forever.
pub async fn run(mut command: Command, timeout: Duration) -> io::Result<Output> {
    let (mut stdout, mut stderr) = capture(&mut command)?;
    let description = format!("{command:?}");
    let mut child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()?;
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            let _ = child.kill().await;
            return Err(timed_out(&description, timeout));
        }
    };
    collect(status, &mut stdout, &mut stderr)
}

/// [`run`] for places that cannot await (Drop, `RedisServer::command`).
fn run_blocking(mut command: Command, timeout: Duration) -> io::Result<Output> {
    let (mut stdout, mut stderr) = capture(&mut command)?;
    let mut child = command.spawn()?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(timed_out(&format!("{command:?}"), timeout));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    collect(status, &mut stdout, &mut stderr)
}

/// Points the command's stdout/stderr at fresh temp files (returned for reading back) and
/// closes its stdin.
fn capture(command: &mut Command) -> io::Result<(File, File)> {
    let stdout = tempfile::tempfile()?;
    let stderr = tempfile::tempfile()?;
    command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?);
    Ok((stdout, stderr))
}

fn collect(status: ExitStatus, stdout: &mut File, stderr: &mut File) -> io::Result<Output> {
    let read_back = |file: &mut File| -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        file.rewind()?;
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    Ok(Output {
        status,
        stdout: read_back(stdout)?,
        stderr: read_back(stderr)?,
    })
}

fn timed_out(description: &str, timeout: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{description} did not finish within {timeout:?}; killed it"),
    )
}

/// Exit status and both output streams, for panic messages.
pub fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `name` in PATH or in one of `extra_dirs` (root's sbin dirs may be missing from PATH).
fn find_program(name: &str, extra_dirs: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A path as a command-line argument; the harness only creates UTF-8 paths.
fn path_arg(path: &Path) -> String {
    path.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", path.display()))
        .to_owned()
}

/// Single-quotes `arg` for `sh -c`.
fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// A `psql` process kept open; see [`Postgres::psql_session`].
pub struct PsqlSession {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl PsqlSession {
    /// Runs `sql` in the session and waits until psql has executed it.
    pub async fn run(&mut self, sql: &str) {
        let marker = "-- statement done --";
        let script = format!("{sql}\n\\echo '{marker}'\n");
        self.stdin
            .write_all(script.as_bytes())
            .await
            .expect("psql session stdin");
        let done = async {
            while let Some(line) = self.stdout.next_line().await.expect("psql session output") {
                if line == marker {
                    return;
                }
            }
            panic!("psql session ended before running {sql:?}");
        };
        tokio::time::timeout(CLI_TIMEOUT, done)
            .await
            .unwrap_or_else(|_| panic!("psql session did not run {sql:?} in time"));
    }
}

#[cfg(test)]
mod selftest {
    use super::*;

    #[tokio::test]
    async fn services_redis_starts_restarts_and_loses_unpersisted_data() {
        let mut redis = RedisServer::start().await;
        let port = redis.port();
        assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}"));
        assert_eq!(redis.command(&["SET", "k", "v"]), "OK");
        assert_eq!(redis.command(&["GET", "k"]), "v");
        assert_eq!(redis.command(&["--scan"]), "k");

        redis.stop().await;
        assert!(
            !redis.command_output(&["PING"]).status.success(),
            "redis-cli must fail while the server is stopped"
        );
        redis.restart().await;
        assert_eq!(redis.port(), port, "restart keeps the port");
        assert_eq!(
            redis.command(&["GET", "k"]),
            "",
            "no persistence: the key is gone"
        );
        assert!(redis.log().contains("Ready to accept connections"));
    }

    #[tokio::test]
    async fn services_redis_with_password_and_aof_keeps_data_across_a_kill() {
        let mut redis =
            RedisServer::start_with(&["--requirepass", "secret", "--appendonly", "yes"]).await;
        let port = redis.port();
        assert_eq!(redis.url(), format!("redis://:secret@127.0.0.1:{port}"));
        assert_eq!(redis.command(&["SET", "k", "v"]), "OK");

        redis.restart().await; // SIGKILL, then start again
        assert_eq!(redis.command(&["GET", "k"]), "v", "the AOF survives a kill");

        redis.shutdown_graceful().await;
        redis.restart().await;
        assert_eq!(redis.command(&["GET", "k"]), "v");
    }

    #[tokio::test]
    async fn services_postgres_starts_stops_and_starts_again() {
        let mut pg = Postgres::start().await;
        let port = pg.port();
        assert_eq!(
            pg.url(),
            format!("postgres://postgres@127.0.0.1:{port}/roomcast")
        );
        assert_eq!(pg.psql("select 1").await, "1");
        assert_eq!(pg.psql("select current_database()").await, "roomcast");
        pg.psql("create table t (v text); insert into t values ('kept')")
            .await;

        pg.stop().await;
        assert!(
            TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .is_err(),
            "nothing listens after stop"
        );
        pg.start_again().await;
        assert_eq!(pg.port(), port, "start_again keeps the port");
        assert_eq!(pg.psql("select v from t").await, "kept");
        assert!(pg.url_for("postgres").ends_with("/postgres"));
        assert!(!pg.log().is_empty());
    }
}
