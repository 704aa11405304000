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
//! the drain closes them.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;
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
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    // Every connection task holds a sender; when the last one is dropped, `recv` answers
    // `None`: that is how the shutdown learns that all connections are done.
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);
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
        let open = open_tx.clone();
        tokio::spawn(async move {
            let _open = open;
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = shutdown.cancelled() => {
                    // Finish the request in flight, then close instead of keeping alive.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(err) = result {
                tracing::trace!(error = %err, "connection ended with an error");
            }
        });
    }
    // Dropping the listener closes the socket: new connections are refused from here on.
    drop(listener);
    shutdown.cancel();
    drop(open_tx);
    let _ = open_rx.recv().await;
}
