//! The drain owns every task the server started: after `run_until_stopped` returns, none is
//! left running (none was detached), and the Socket.IO server is closed, also when the socket
//! steps outlast their half of the budget.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::actor::Actor;
use crate::harness::cluster::new_key;
use crate::harness::services::{Postgres, RedisServer};
use crate::harness::spawn_app_with;

/// Waits up to `within` for `condition`, failing with `what` and `context()` otherwise.
async fn wait_until(
    within: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "{what} within {within:?}: {}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// No socket is left and an emit is refused: the Socket.IO server is closed.
async fn assert_socketio_closed(realtime: &roomcast::realtime::broadcast::Realtime) {
    assert_eq!(realtime.local_sockets(), 0, "no socket outlives the drain");
    assert!(
        realtime
            .emit("lobby".to_owned(), "notification", json!({"n": 1}))
            .await
            .is_err(),
        "an emit after the drain must be refused: the Socket.IO server is closed"
    );
}

#[tokio::test]
async fn after_the_drain_no_background_task_is_left_and_the_socketio_server_is_closed() {
    let redis = RedisServer::start().await;
    let key = new_key();
    let app = spawn_app_with(&[
        ("REDIS_URL", redis.url().as_str()),
        ("SESSION_ENCRYPTION_KEY", key.as_str()),
    ])
    .await;
    let mut actor = Actor::connect(&app.base, "websocket").await;
    let joined = actor.run("join lobby").await;
    assert_eq!(joined["ack"]["ok"], true, "join: {joined}");
    let tasks = app.state.tasks.clone();
    let realtime = app.realtime.clone();
    let running = tasks.running_names();
    for expected in [
        "http_server",
        "operator_view",
        "operator_commands",
        "cluster_jobs",
        "analytics_consumer",
        "adapter_pump",
        "adapter_resubscribe",
        "adapter_errors",
    ] {
        assert!(
            running.contains(&expected),
            "expected the task {expected} to be owned while serving, got {running:?}"
        );
    }
    assert_eq!(realtime.local_sockets(), 1, "the actor's socket");

    let report = app.stop().await;

    assert_eq!(
        tasks.running(),
        0,
        "expected every background task joined by the drain, still running: {:?}",
        tasks.running_names()
    );
    assert!(tasks.is_cancelled(), "the drain cancels the tasks' token");
    assert_eq!(report.tasks_abandoned, 0, "{report:?}");
    assert!(report.sockets_on_time, "{report:?}");
    assert!(report.socketio_closed, "{report:?}");
    assert!(report.http_finished, "{report:?}");
    assert_eq!(report.sockets, 1, "{report:?}");
    assert_socketio_closed(&realtime).await;
    actor.quit().await;
}

#[tokio::test]
async fn socket_work_past_half_the_budget_still_closes_the_socketio_server() {
    let postgres = Postgres::start().await;
    let app = spawn_app_with(&[
        ("DATABASE_URL", postgres.url().as_str()),
        ("SHUTDOWN_TIMEOUT_SECS", "1"),
    ])
    .await;
    let mut actor = Actor::connect(&app.base, "websocket").await;
    let joined = actor.run("join lobby").await;
    assert_eq!(joined["ack"]["ok"], true, "join: {joined}");
    // Block every append on the counters row: the message stays queued, so flushing the room
    // sequencers cannot finish within half of the one-second budget.
    let mut lock = postgres.psql_session().await;
    lock.run("BEGIN; SELECT value FROM counters WHERE name = 'messages' FOR UPDATE;")
        .await;
    actor.start("say lobby held by the lock").await;
    let sequencers = app.realtime_state.sequencers().clone();
    wait_until(
        Duration::from_secs(10),
        "the message reaches its room's sequencer",
        || sequencers.live() == 1,
        || format!("{} live sequencers", sequencers.live()),
    )
    .await;
    let tasks = app.state.tasks.clone();
    let realtime = app.realtime.clone();

    let started = Instant::now();
    let report = app.stop().await;

    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the drain keeps to its budget: {:?}",
        started.elapsed()
    );
    assert!(
        !report.sockets_on_time,
        "expected the socket steps to run out of time: {report:?}"
    );
    assert!(
        report.socketio_closed,
        "the timeout path must close the Socket.IO server: {report:?}"
    );
    assert_socketio_closed(&realtime).await;
    assert!(
        report.tasks_abandoned >= 1,
        "the sequencer held by the database is reported at the deadline: {report:?}"
    );
    assert!(
        tasks.running_names().contains(&"room_sequencer"),
        "the abandoned task is still owned and named: {:?}",
        tasks.running_names()
    );
    // Once the database answers, the owned task ends: nothing was detached.
    lock.run("COMMIT;").await;
    wait_until(
        Duration::from_secs(10),
        "the sequencer ends once the database answers",
        || tasks.running() == 0,
        || format!("still running: {:?}", tasks.running_names()),
    )
    .await;
    actor.quit().await;
}

/// Where `src/` may call `tokio::spawn` directly: the signal watcher, which must outlive the
/// drain to exit on a second signal (see `main.rs`). Every other task goes through the app's
/// `Tasks` (or a scoped `TaskTracker`), so the drain joins it.
const UNOWNED_SPAWNS: &[&str] = &["main.rs"];

#[test]
fn no_task_is_spawned_outside_an_owner() {
    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut detached = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        let source = std::fs::read_to_string(&file).expect("source");
        // Test modules run to the end of their file by convention.
        let code = source
            .split("#[cfg(test)]\nmod ")
            .next()
            .unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            if (line.contains("tokio::spawn(") || line.contains("task::spawn("))
                && !UNOWNED_SPAWNS.contains(&relative.as_str())
            {
                detached.push(format!("src/{relative}:{}: {line}", n + 1));
            }
        }
    }
    assert!(
        detached.is_empty(),
        "expected every task spawned through the app's `Tasks` (src/shutdown/tasks.rs), so \
         the drain cancels and joins it; detached spawns:\n{}",
        detached.join("\n")
    );
}
