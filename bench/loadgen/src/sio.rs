//! One Socket.IO v5 client connection over an Engine.IO v4 WebSocket, spoken by hand:
//! open packet `0{…}`, namespace CONNECT `40`, pings `2` answered with `3`, events
//! `42[…]`, acks requested as `42<id>[…]` and answered as `43<id>[…]`.
//!
//! Bench messages carry `b|<step>|<sender>|<seq>|<send µs>` as their text, so every receiver
//! can compute the end-to-end latency and spot duplicates without any coordination.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// WebSocket settings of every bench connection. tungstenite's default 128 KiB read buffer is
/// zero-filled before every read: with thousands of sockets that memset was half of the load
/// generator's CPU, so it reads in 4 KiB steps (as the servers do).
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096)
}

/// Bound for the handshake, the CONNECT answer and the join ack.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a connection task is told to do.
pub enum Cmd {
    /// Emit a bench `message` into `room` (with an ack request).
    Send {
        room: Arc<str>,
        step: u32,
        sender: u32,
        seq: u32,
    },
}

/// What one connection saw during the current ramp step; the coordinator swaps it out at the
/// end of every step (one uncontended mutex per connection).
#[derive(Default)]
pub struct RecvStats {
    pub step: u32,
    pub latencies_us: Vec<u32>,
    pub seen: HashSet<u64>,
    pub duplicates: u64,
    pub late: u64,
    pub acks_ok: u64,
    pub acks_err: u64,
    /// Send-to-ack time of this connection's own messages (the server's store + broadcast).
    pub ack_latencies_us: Vec<u32>,
    pub last_error: Option<String>,
}

/// Shared clock: send timestamps are microseconds since this instant, in one process.
pub type Clock = Instant;

/// An established, authenticated Socket.IO connection.
pub struct Session {
    ws: Ws,
    next_ack: u64,
}

/// How a running connection ended.
#[derive(Debug)]
pub enum Ended {
    /// The loadgen asked it to close (its command channel was dropped).
    Local,
    /// The server closed the transport or sent a Socket.IO disconnect.
    Remote,
}

impl Session {
    /// Opens the WebSocket transport with the session cookie and connects to namespace `/`.
    pub async fn open(base: &str, cookie: &str) -> Result<Self, String> {
        tokio::time::timeout(SETUP_TIMEOUT, Self::open_inner(base, cookie))
            .await
            .map_err(|_| "socket setup timed out".to_owned())?
    }

    async fn open_inner(base: &str, cookie: &str) -> Result<Self, String> {
        let url = format!(
            "ws://{}/socket.io/?EIO=4&transport=websocket",
            crate::http::authority(base)
        );
        let mut request = url
            .into_client_request()
            .map_err(|err| format!("request: {err}"))?;
        let cookie = HeaderValue::from_str(cookie).map_err(|err| format!("cookie: {err}"))?;
        request.headers_mut().insert("cookie", cookie);
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(ws_config()), true)
                .await
                .map_err(|err| format!("websocket: {err}"))?;
        let mut session = Self { ws, next_ack: 1 };
        let open = session.next_text().await?;
        if !open.starts_with('0') {
            return Err(format!(
                "expected the Engine.IO open packet, got {open:.80}"
            ));
        }
        session.send("40".to_owned()).await?;
        loop {
            let packet = session.next_text().await?;
            if packet.starts_with("40") {
                return Ok(session);
            }
            if packet.starts_with("44") {
                return Err(format!("connect_error {packet:.120}"));
            }
            if packet == "2" {
                session.send("3".to_owned()).await?;
            }
        }
    }

    /// Joins `room` and waits for a successful ack.
    pub async fn join(&mut self, room: &str) -> Result<(), String> {
        tokio::time::timeout(SETUP_TIMEOUT, self.join_inner(room))
            .await
            .map_err(|_| format!("join {room} timed out"))?
    }

    async fn join_inner(&mut self, room: &str) -> Result<(), String> {
        let id = self.next_ack;
        self.next_ack += 1;
        let payload = serde_json::json!(["join", { "room": room }]);
        self.send(format!("42{id}{payload}")).await?;
        let prefix = format!("43{id}[");
        loop {
            let packet = self.next_text().await?;
            if packet.starts_with(&prefix) {
                return if packet.contains("\"ok\":true") {
                    Ok(())
                } else {
                    Err(format!("join {room}: {packet:.200}"))
                };
            }
            if packet == "2" {
                self.send("3".to_owned()).await?;
            }
        }
    }

    async fn send(&mut self, text: String) -> Result<(), String> {
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|err| format!("send: {err}"))
    }

    async fn next_text(&mut self) -> Result<String, String> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
                Some(Ok(Message::Close(_))) | None => return Err("closed by the server".into()),
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(format!("read: {err}")),
            }
        }
    }

    /// Serves the connection until the server closes it or `commands` is dropped: answers
    /// pings, sends bench messages and records every bench message received.
    pub async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Cmd>,
        stats: Arc<Mutex<RecvStats>>,
        clock: Clock,
    ) -> Ended {
        // Ack id → send time, for the send-to-ack latency.
        let mut pending: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(Cmd::Send { room, step, sender, seq }) = command else {
                        let _ = self.ws.close(None).await;
                        return Ended::Local;
                    };
                    let id = self.next_ack;
                    self.next_ack += 1;
                    let sent_us = clock.elapsed().as_micros() as u64;
                    let text = format!("b|{step}|{sender}|{seq}|{sent_us}");
                    pending.insert(id, sent_us);
                    let payload = serde_json::json!(["message", { "room": &*room, "text": text }]);
                    if self.send(format!("42{id}{payload}")).await.is_err() {
                        return Ended::Remote;
                    }
                }
                frame = self.ws.next() => {
                    let text = match frame {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ended::Remote,
                        Some(Ok(_)) => continue,
                    };
                    let text = text.as_str();
                    if text == "2" {
                        if self.send("3".to_owned()).await.is_err() {
                            return Ended::Remote;
                        }
                    } else if text.starts_with("41") || text.starts_with('1') {
                        return Ended::Remote;
                    } else if text.starts_with("42[\"message\"") {
                        record_message(text, &stats, clock);
                    } else if let Some(rest) = text.strip_prefix("43") {
                        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                        let sent_us = rest[..digits].parse::<u64>().ok().and_then(|id| pending.remove(&id));
                        record_ack(text, sent_us, &stats, clock);
                    }
                }
            }
        }
    }
}

fn record_message(packet: &str, stats: &Mutex<RecvStats>, clock: Clock) {
    let now_us = clock.elapsed().as_micros() as u64;
    let Some(start) = packet.find("\"text\":\"b|") else {
        return;
    };
    let rest = &packet[start + 10..];
    let Some(end) = rest.find('"') else {
        return;
    };
    let mut fields = rest[..end].split('|').map(|field| field.parse::<u64>());
    let (Some(Ok(step)), Some(Ok(sender)), Some(Ok(seq)), Some(Ok(sent_us))) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return;
    };
    let Ok(mut stats) = stats.lock() else {
        return;
    };
    if step != u64::from(stats.step) {
        stats.late += 1;
        return;
    }
    if !stats.seen.insert((sender << 32) | seq) {
        stats.duplicates += 1;
        return;
    }
    let latency = now_us.saturating_sub(sent_us).min(u64::from(u32::MAX)) as u32;
    stats.latencies_us.push(latency);
}

fn record_ack(packet: &str, sent_us: Option<u64>, stats: &Mutex<RecvStats>, clock: Clock) {
    let now_us = clock.elapsed().as_micros() as u64;
    let Ok(mut stats) = stats.lock() else {
        return;
    };
    if let Some(sent_us) = sent_us {
        let latency = now_us.saturating_sub(sent_us).min(u64::from(u32::MAX)) as u32;
        stats.ack_latencies_us.push(latency);
    }
    if packet.contains("\"ok\":true") {
        stats.acks_ok += 1;
    } else {
        stats.acks_err += 1;
        stats.last_error = Some(packet.chars().take(200).collect());
    }
}
