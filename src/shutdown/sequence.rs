//! The drain, from the stop signal to the exit, as one function: `drain`.
//!
//! Each step is a line of `drain`; the steps with more to them are functions below it or in
//! `close_sockets`, named for what they do. See the module documentation of `shutdown` for
//! why the steps come in this order.

use std::time::Instant;

use super::close_sockets;
use super::plan::{Deadline, DrainPlan, DrainReport};
use crate::realtime::broadcast::Realtime;
use crate::realtime::room_sequencer::RoomSequencers;
use crate::server::Serving;
use crate::state::AppState;

/// Drains this instance and returns what the drain did; the process may exit afterwards.
///
/// `http` is the running server, `realtime` the Socket.IO server, `sequencers` the rooms'
/// message queues, and `app.tasks` the owner of every background task. The whole drain takes
/// at most `SHUTDOWN_TIMEOUT_SECS`; socket work at most half of it.
pub async fn drain(
    app: &AppState,
    realtime: &Realtime,
    sequencers: &RoomSequencers,
    mut http: Serving,
) -> DrainReport {
    let started = Instant::now();
    let plan = DrainPlan::new(app.config.shutdown_timeout);
    let deadline = Deadline::after(plan.timeout);
    tracing::info!(
        timeout_secs = plan.timeout.as_secs(),
        sockets = realtime.local_sockets(),
        "drain started"
    );

    // 1. Refuse new sessions: readiness turns 503, new Engine.IO sessions and handshakes are
    //    refused, jobs and the analytics consumer stop taking work.
    app.drain.begin();

    // 2. Tell and close the sockets, then flush the room sequencers (what was accepted is
    //    stored and broadcast while the adapter still reaches the other instances); at most
    //    half the budget.
    let socket_work = close_sockets::within_socket_budget(plan, realtime.as_ref(), async {
        let sockets =
            close_sockets::tell_and_close(realtime.as_ref(), plan, &app.session_connections).await;
        flush_room_sequencers(sequencers).await;
        sockets
    })
    .await;

    // 3. Close the Socket.IO server, on time or not: nothing keeps running on it.
    let socketio_closed = close_sockets::close_server(realtime.as_ref(), deadline).await;
    app.metrics
        .drained_sockets
        .inc_by(socket_work.sockets as u64);

    // 4. Stop accepting connections. Only now: until the transports were closed, polling
    //    clients needed new connections to fetch `server:draining` and the close packet.
    http.stop_accepting();

    // 5. Let in-flight HTTP requests finish.
    let http_finished = http.finished_by(deadline).await;

    // 6. Stop background tasks: cancel their token and join them (the HTTP server's
    //    connections still open past the deadline are dropped here).
    let tasks_abandoned = app.tasks.close(deadline).await.len();

    // 7. Leave the cluster and close the Redis connections.
    close_redis(app, deadline).await;

    // 8. Close the database pool; its in-flight writes finish first.
    close_database(app, deadline).await;

    // 9. Report.
    report(DrainReport {
        sockets: socket_work.sockets,
        sockets_on_time: socket_work.on_time,
        socketio_closed,
        http_finished,
        tasks_abandoned,
        elapsed: started.elapsed(),
    })
}

/// Stops the room sequencers taking messages and waits until every queued one is stored and
/// published. Runs before the Socket.IO server closes, so the flushed messages still reach
/// their rooms.
async fn flush_room_sequencers(sequencers: &RoomSequencers) {
    sequencers.flush().await;
}

/// Removes this instance from the registry, tells operators, and closes the adapter's and
/// the shared Redis connections (cluster mode only).
async fn close_redis(app: &AppState, deadline: Deadline) {
    let Some(cluster) = &app.cluster else {
        return;
    };
    let close = async {
        if let Err(err) = cluster.registry.leave().await {
            tracing::warn!(error = %err, "could not remove this instance from the registry");
        }
        crate::operator::commands::announce_change(cluster).await;
        cluster.driver.close().await;
        cluster.redis.close().await;
    };
    if tokio::time::timeout(deadline.remaining(), close)
        .await
        .is_err()
    {
        tracing::warn!("redis connections did not close before the shutdown timeout");
    }
}

/// Closes the database pool, so every acknowledged write is on disk before the exit.
async fn close_database(app: &AppState, deadline: Deadline) {
    if tokio::time::timeout(deadline.remaining(), app.db.close())
        .await
        .is_err()
    {
        tracing::warn!("database pool did not close before the shutdown timeout");
    }
}

/// Logs the closing line of the drain.
fn report(report: DrainReport) -> DrainReport {
    tracing::info!(
        sockets = report.sockets,
        sockets_on_time = report.sockets_on_time,
        socketio_closed = report.socketio_closed,
        http_finished = report.http_finished,
        tasks_abandoned = report.tasks_abandoned,
        elapsed_ms = u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
        "drain complete"
    );
    report
}
