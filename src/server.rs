//! The HTTP server loop: hyper with roomcast's connection policy.
//!
//! `axum::serve` does not expose hyper's per-connection settings, and two of them are part of
//! surviving hostile clients:
//!
//! - `HEADER_READ_TIMEOUT_SECS`: a connection must deliver a complete request head within
//!   this time (default 10 s) of opening, and again within this time of its previous response
//!   while it is kept alive. That closes connections that never send a byte, keep-alive
//!   connections left idle, and slowloris clients dribbling header bytes;
//! - `MAX_HEADER_BYTES`: request heads above 32 KiB are refused (`431`) instead of buffered.
//!
//! HTTP/1.1 only: nothing roomcast serves needs HTTP/2 (the browser app, Socket.IO and every
//! shipped proxy talk HTTP/1.1 to it), and cleartext HTTP/2 (h2c) would bring connections that
//! stay open for good while they answer pings. A connection that opens with the h2c preface is
//! closed without an answer.
//!
//! Each connection also gets its `listener::Connection` (peer address and kill switch) as a
//! request extension, the way axum's `ConnectInfo` does. `stop_accepting` ends the accept
//! loop; the returned future then resolves once every open connection has finished its
//! in-flight requests (hyper's graceful shutdown) — upgraded WebSockets are not waited for,
//! the drain closes them. Each connection is a task of the loop's own `TaskTracker`, which
//! the loop waits for before it returns; when `abandon` is cancelled (the drain's deadline
//! passed), the connections still open are dropped, so nothing outlives the loop.
//!
//! `Serving` is the running server as the drain drives it: a task of the app's `Tasks`, told
//! to stop accepting, then waited for up to the deadline.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::listener::{Connection, GuardedListener};
use crate::shutdown::plan::Deadline;
use crate::shutdown::tasks::Tasks;

/// Largest accepted request head.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The HTTP server running as a task of the app's `Tasks`, for the drain to stop.
pub struct Serving {
    stop_accepting: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl Serving {
    /// Starts serving `router` on `listener` as the task `http_server` of `tasks`; the
    /// connections still open when `tasks` is cancelled are dropped.
    pub fn start(
        listener: GuardedListener,
        router: Router,
        header_read_timeout: Duration,
        tasks: &Tasks,
    ) -> Self {
        let (stop_accepting, stop) = oneshot::channel::<()>();
        let abandon = tasks.token();
        let server = tasks.spawn(
            "http_server",
            serve(
                listener,
                router,
                header_read_timeout,
                async move {
                    let _ = stop.await;
                },
                abandon,
            ),
        );
        Self {
            stop_accepting: Some(stop_accepting),
            server: Some(server),
        }
    }

    /// Resolves if the server stops by itself (its task failed): the drain must still run.
    /// Stays pending once the server was seen to stop.
    pub async fn stopped(&mut self) {
        let Some(server) = self.server.as_mut() else {
            return std::future::pending().await;
        };
        let result = server.await;
        self.server = None;
        tracing::error!(result = ?result, "HTTP server stopped unexpectedly");
    }

    /// Closes the listening socket: new connections are refused from here on.
    pub fn stop_accepting(&mut self) {
        if let Some(stop) = self.stop_accepting.take() {
            let _ = stop.send(());
        }
    }

    /// Waits until open connections finished their in-flight requests, up to `deadline`;
    /// returns whether they did. Past the deadline, the server's task is left to its owner,
    /// which drops the connections still open when it stops background tasks.
    pub async fn finished_by(&mut self, deadline: Deadline) -> bool {
        let Some(server) = self.server.as_mut() else {
            return true;
        };
        match tokio::time::timeout(deadline.remaining(), server).await {
            Ok(_) => {
                self.server = None;
                true
            }
            Err(_) => {
                tracing::warn!(
                    "in-flight HTTP requests did not finish before the shutdown timeout"
                );
                false
            }
        }
    }
}

/// Serves `router` on `listener` until `stop_accepting` resolves, then waits for open
/// connections to finish their in-flight requests, or drops them once `abandon` is cancelled.
pub async fn serve(
    mut listener: GuardedListener,
    router: Router,
    header_read_timeout: Duration,
    stop_accepting: impl Future<Output = ()>,
    abandon: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    // Every connection is a task of this tracker, waited for before returning.
    let connections = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let mut stop_accepting = std::pin::pin!(stop_accepting);
    loop {
        let (io, peer) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = &mut stop_accepting => break,
        };
        let connection = Connection {
            peer,
            kill: io.kill_switch(),
        };
        let service = router.clone().map_request(
            move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo(connection.clone()));
                request
            },
        );
        let conn = builder
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
            .with_upgrades();
        let shutdown = shutdown.clone();
        let abandon = abandon.clone();
        connections.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = shutdown.cancelled() => {
                    // Finish the request in flight, then close instead of keeping alive.
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        result = conn.as_mut() => result,
                        // Past the drain's deadline: drop the connection.
                        () = abandon.cancelled() => return,
                    }
                }
                () = abandon.cancelled() => return,
            };
            if let Err(err) = result {
                tracing::trace!(error = %err, "connection ended with an error");
            }
        });
    }
    // Dropping the listener closes the socket: new connections are refused from here on.
    drop(listener);
    shutdown.cancel();
    connections.close();
    connections.wait().await;
}
