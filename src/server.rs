//! The HTTP server loop: hyper with roomcast's connection policy.
//!
//! `axum::serve` does not expose hyper's per-connection settings, and two of them are part of
//! surviving hostile clients:
//!
//! - `HEADER_READ_TIMEOUT_SECS`: a client must finish sending a request head within this
//!   time (default 10 s) of starting it (slowloris: dribbling header bytes to hold
//!   connections open forever);
//! - `MAX_HEADER_BYTES`: request heads above 32 KiB are refused (`431`) instead of buffered.
//!
//! Each connection also gets its `listener::Connection` (peer address and kill switch) as a
//! request extension, the way axum's `ConnectInfo` does. `stop_accepting` ends the accept
//! loop; the returned future then resolves once every open connection has finished its
//! in-flight requests (hyper's graceful shutdown) — upgraded WebSockets are not waited for,
//! the drain closes them.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

use crate::listener::{Connection, GuardedListener};

/// Largest accepted request head.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Serves `router` on `listener` until `stop_accepting` resolves, then waits for open
/// connections to finish their in-flight requests.
pub async fn serve(
    mut listener: GuardedListener,
    router: Router,
    header_read_timeout: Duration,
    stop_accepting: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    let graceful = GracefulShutdown::new();
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
            .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::trace!(error = %err, "connection ended with an error");
            }
        });
    }
    // Dropping the listener closes the socket: new connections are refused from here on.
    drop(listener);
    graceful.shutdown().await;
}
