//! The raw WebSocket ceiling: an echo server with no protocol on top, and a closed-loop
//! driver measuring how many messages per second go through it on loopback.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::args::Args;
use crate::stats::{self, ProcWindow, round2};

/// Serves WebSocket echo on `--port` until killed; prints `listening` on stderr when bound.
pub async fn serve(args: &Args) -> Result<Value, String> {
    let port: u16 = args.number("port", 0)?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|err| format!("bind: {err}"))?;
    let addr = listener.local_addr().map_err(|err| err.to_string())?;
    eprintln!("echo-server listening addr={addr}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let Ok(ws) =
                tokio_tungstenite::accept_async_with_config(stream, Some(crate::sio::ws_config()))
                    .await
            else {
                return;
            };
            let (mut sink, mut source) = ws.split();
            while let Some(Ok(message)) = source.next().await {
                if message.is_text() || message.is_binary() {
                    if sink.send(message).await.is_err() {
                        return;
                    }
                } else if message.is_close() {
                    return;
                }
            }
        });
    }
}

/// Drives the echo server at `--targets` (first one) with `--connections` closed loops for
/// `--secs` seconds; reports echoed messages per second and latency.
pub async fn drive(args: &Args) -> Result<Value, String> {
    let target = args.targets()?[0].clone();
    let connections: usize = args.number("connections", 200)?;
    let secs: f64 = args.number("secs", 5.0)?;
    let pids: Vec<u32> = args.list("pids")?;
    let url = format!("ws://{}/", crate::http::authority(&target));
    let mut sockets = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(
            url.as_str(),
            Some(crate::sio::ws_config()),
            true,
        )
        .await
        .map_err(|err| format!("connect {url}: {err}"))?;
        sockets.push(ws);
    }
    let window = ProcWindow::start(&pids);
    let start = Instant::now();
    let duration = Duration::from_secs_f64(secs);
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let text = "b|0|0|0|0 the quick brown fox jumps over the lazy dog";
                while start.elapsed() < duration {
                    let sent = Instant::now();
                    if ws.send(Message::text(text)).await.is_err() {
                        break;
                    }
                    match ws.next().await {
                        Some(Ok(_)) => latencies
                            .push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32),
                        _ => break,
                    }
                }
                let _ = ws.close(None).await;
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.append(&mut task.await.map_err(|err| format!("echo task: {err}"))?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let echoed = latencies.len();
    Ok(json!({
        "connections": connections,
        "secs": round2(elapsed),
        "echoed": echoed,
        "messages_per_sec": round2(echoed as f64 / elapsed),
        "latency": stats::latency_summary(&mut latencies),
        "resources": window.finish(),
    }))
}
