//! The TCP listener: connection limits, and a kill switch on every connection.
//!
//! Two jobs that need to sit below HTTP:
//!
//! - **Admission.** At most `MAX_CONNECTIONS` connections are open at once, and one client
//!   address may open at most `CONNECTION_RATE_PER_IP` per second (burst
//!   `CONNECTION_BURST_PER_IP`). A refused connection gets a complete HTTP response
//!   (`503` or `429` with a JSON body and `X-Instance-Id`) and is closed, so clients and load
//!   balancers see a clear answer instead of a reset.
//! - **Closing one client's transport.** The drain must close sockets in batches, and close
//!   their *transport* (a Socket.IO `disconnect` would tell the official client not to
//!   reconnect). socketioxide only closes all transports at once, so every accepted
//!   connection carries a `KillSwitch`; for a WebSocket socket the drain finds the
//!   connection its upgrade arrived on (see `SessionConnections`) and trips it. Reads and
//!   writes then fail, hyper drops the connection, the client sees the transport close and
//!   reconnects. Long-polling connections are never cut (a proxy may carry other clients'
//!   requests on them); those sessions get the Engine.IO close packet instead.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::shutdown::tasks::Tasks;

/// Admission limits of the listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at most.
    pub max_connections: usize,
    /// New connections per second per client address.
    pub rate_per_ip: u32,
    /// Burst of new connections per client address.
    pub burst_per_ip: u32,
}

/// Trips one connection: its pending and future reads and writes fail.
#[derive(Debug, Default)]
pub struct KillSwitch {
    tripped: AtomicBool,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl KillSwitch {
    /// Closes the connection from the server side.
    pub fn trip(&self) {
        self.tripped.store(true, Ordering::SeqCst);
        self.reader.wake();
        self.writer.wake();
    }

    fn is_tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }
}

/// What handlers learn about the connection a request came on (axum `ConnectInfo`).
#[derive(Debug, Clone)]
pub struct Connection {
    /// The peer address.
    pub peer: SocketAddr,
    /// The connection's kill switch.
    pub kill: Arc<KillSwitch>,
}

/// Counts open connections; the count drops when a `TrackedStream` is dropped.
#[derive(Debug)]
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An accepted connection.
#[derive(Debug)]
pub struct TrackedStream {
    inner: TcpStream,
    kill: Arc<KillSwitch>,
    _open: OpenGuard,
}

fn killed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection closed by the drain",
    )
}

impl TrackedStream {
    /// This connection's kill switch.
    pub fn kill_switch(&self) -> Arc<KillSwitch> {
        self.kill.clone()
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.kill.reader.register(cx.waker());
        if self.kill.is_tripped() {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.kill.writer.register(cx.waker());
        if self.kill.is_tripped() {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The listener roomcast serves on.
pub struct GuardedListener {
    inner: TcpListener,
    limits: ConnectionLimits,
    open: Arc<AtomicUsize>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    refusal_headers: String,
    /// Owner of the refusal writes, so none outlives the drain.
    tasks: Tasks,
}

impl GuardedListener {
    /// Wraps a bound listener; refusals are written by tasks of `tasks`.
    pub fn new(
        inner: TcpListener,
        limits: ConnectionLimits,
        instance_id: &str,
        tasks: &Tasks,
    ) -> Self {
        let rate = NonZeroU32::new(limits.rate_per_ip).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.burst_per_ip).unwrap_or(rate);
        Self {
            inner,
            limits,
            open: Arc::default(),
            per_ip: DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            refusal_headers: format!(
                "Content-Type: application/json\r\nX-Instance-Id: {instance_id}\r\nConnection: close\r\n"
            ),
            tasks: tasks.clone(),
        }
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> Arc<AtomicUsize> {
        self.open.clone()
    }

    /// Writes a complete refusal and closes, off the accept loop.
    fn refuse(
        &self,
        mut stream: TcpStream,
        status: &'static str,
        code: &'static str,
        message: &'static str,
    ) {
        let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
        let response = format!(
            "HTTP/1.1 {status}\r\n{}Retry-After: 1\r\nContent-Length: {}\r\n\r\n{body}",
            self.refusal_headers,
            body.len()
        );
        self.tasks
            .spawn_until_cancelled("connection_refusal", async move {
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    stream.write_all(response.as_bytes()),
                )
                .await;
                let _ = stream.shutdown().await;
            });
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = TrackedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            if self.per_ip.len() > 100_000 {
                self.per_ip.retain_recent();
            }
            if self.per_ip.check_key(&peer.ip()).is_err() {
                tracing::debug!(peer = %peer.ip(), "connection rate limit");
                self.refuse(
                    stream,
                    "429 Too Many Requests",
                    "rate_limited",
                    "too many new connections from this address",
                );
                continue;
            }
            if self.open.fetch_add(1, Ordering::AcqRel) >= self.limits.max_connections {
                self.open.fetch_sub(1, Ordering::AcqRel);
                tracing::warn!(
                    max = self.limits.max_connections,
                    "connection limit reached; refusing"
                );
                self.refuse(
                    stream,
                    "503 Service Unavailable",
                    "unavailable",
                    "this instance is at its connection limit",
                );
                continue;
            }
            let _ = stream.set_nodelay(true);
            let tracked = TrackedStream {
                inner: stream,
                kill: Arc::default(),
                _open: OpenGuard(self.open.clone()),
            };
            return (tracked, peer);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The WebSocket connections of each Engine.IO session, so the drain can close exactly the
/// transport of one socket, and the long-polling sessions the drain is closing.
///
/// Bounded by live connections: only upgrades Engine.IO accepted are recorded (see
/// `http::middleware::track_engine_sessions`), an entry holds its connections weakly, and
/// entries whose connections have all closed are swept whenever the map has doubled since the
/// last sweep. Entries are also dropped when the session's socket is closed; a session that
/// never reached the namespace (refused handshake, unknown sid) is swept once its connection
/// is gone.
#[derive(Debug)]
pub struct SessionConnections {
    sessions: Mutex<Sessions>,
    closing: Mutex<HashSet<String>>,
}

/// The recorded sessions and the size at which the next sweep runs.
#[derive(Debug)]
struct Sessions {
    by_sid: HashMap<String, Vec<std::sync::Weak<KillSwitch>>>,
    sweep_at: usize,
}

/// Entries kept before the first sweep of dead ones.
const SWEEP_FLOOR: usize = 1024;

impl Default for SessionConnections {
    fn default() -> Self {
        Self {
            sessions: Mutex::new(Sessions {
                by_sid: HashMap::new(),
                sweep_at: SWEEP_FLOOR,
            }),
            closing: Mutex::default(),
        }
    }
}

impl SessionConnections {
    /// Records that session `sid` sent a request on `connection`.
    pub fn record(&self, sid: &str, connection: &Connection) {
        let mut guard = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let sessions = &mut *guard;
        if sessions.by_sid.len() >= sessions.sweep_at {
            sessions
                .by_sid
                .retain(|_, entry| entry.iter().any(|weak| weak.strong_count() > 0));
            sessions.sweep_at = (sessions.by_sid.len() * 2).max(SWEEP_FLOOR);
        }
        let entry = sessions.by_sid.entry(sid.to_owned()).or_default();
        entry.retain(|weak| weak.strong_count() > 0);
        if !entry.iter().any(|weak| {
            weak.upgrade()
                .is_some_and(|k| Arc::ptr_eq(&k, &connection.kill))
        }) {
            entry.push(Arc::downgrade(&connection.kill));
        }
    }

    /// Trips every live connection of session `sid` and forgets it; returns how many.
    pub fn close(&self, sid: &str) -> usize {
        let entry = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_sid
            .remove(sid)
            .unwrap_or_default();
        let mut closed = 0;
        let mut seen = HashSet::new();
        for kill in entry.iter().filter_map(std::sync::Weak::upgrade) {
            if seen.insert(Arc::as_ptr(&kill)) {
                kill.trip();
                closed += 1;
            }
        }
        closed
    }

    /// Marks a long-polling session as closing: its next poll gets the close packet.
    pub fn mark_closing(&self, sid: &str) {
        self.closing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sid.to_owned());
    }

    /// Sessions recorded right now (live or not yet swept), for tests and diagnostics.
    pub fn recorded(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_sid
            .len()
    }

    /// Whether the drain is closing this long-polling session.
    pub fn is_closing(&self, sid: &str) -> bool {
        self.closing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(sid)
    }

    /// Forgets a session (its socket closed normally).
    pub fn forget(&self, sid: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_sid
            .remove(sid);
        self.closing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_tripped_connection_fails_its_pending_read() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut guarded = GuardedListener::new(
            listener,
            ConnectionLimits {
                max_connections: 10,
                rate_per_ip: 100,
                burst_per_ip: 100,
            },
            "t",
            &Tasks::default(),
        );
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (mut stream, _) = axum::serve::Listener::accept(&mut guarded).await;
        let kill = stream.kill.clone();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            stream.read(&mut buf).await
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        kill.trip();
        let result = tokio::time::timeout(std::time::Duration::from_secs(1), reader)
            .await
            .expect("the pending read ends")
            .expect("task");
        assert!(result.is_err(), "a tripped connection must fail reads");
    }

    #[test]
    fn sessions_whose_connections_closed_are_swept() {
        let connections = SessionConnections::default();
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let live = Connection {
            peer,
            kill: Arc::default(),
        };
        connections.record("live", &live);
        for i in 0..10 * SWEEP_FLOOR {
            let gone = Connection {
                peer,
                kill: Arc::default(),
            };
            connections.record(&format!("gone-{i}"), &gone);
        }
        assert!(
            connections.recorded() <= 2 * SWEEP_FLOOR,
            "{} entries kept for closed connections",
            connections.recorded()
        );
        assert_eq!(
            connections.close("live"),
            1,
            "a live session survives sweeps"
        );
    }

    #[tokio::test]
    async fn connections_over_the_limit_get_a_503_and_the_count_recovers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut guarded = GuardedListener::new(
            listener,
            ConnectionLimits {
                max_connections: 1,
                rate_per_ip: 100,
                burst_per_ip: 100,
            },
            "inst",
            &Tasks::default(),
        );
        let open = guarded.open_connections();
        let _first = TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = axum::serve::Listener::accept(&mut guarded).await;
        let mut second = TcpStream::connect(addr).await.expect("connect");
        let accept_next = tokio::spawn(async move {
            let _ = axum::serve::Listener::accept(&mut guarded).await;
        });
        let mut response = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            second.read_to_string(&mut response),
        )
        .await
        .expect("refusal in time")
        .expect("read");
        assert!(response.starts_with("HTTP/1.1 503"), "{response}");
        assert!(response.contains("X-Instance-Id: inst"), "{response}");
        assert_eq!(open.load(Ordering::SeqCst), 1);
        drop(accepted);
        assert_eq!(
            open.load(Ordering::SeqCst),
            0,
            "closing a connection frees its slot"
        );
        accept_next.abort();
    }
}
