//! The `/admin` Socket.IO namespace: a live picture of the cluster, pushed to operators.
//!
//! A browser connects with `auth: {token: ADMIN_TOKEN}`; anything else gets `connect_error`
//! `unauthorized` (also when no token is configured). While at least one operator is
//! connected to an instance, that instance pushes `ops:snapshot` to its own operators every
//! `PUSH_INTERVAL` (and once at connect): every live instance of the registry with its vitals,
//! this instance's own row fresh, and the busiest rooms with their cluster-wide members.
//! Nothing is computed while nobody watches. The same document is `GET /api/admin/overview`.

use std::time::Duration;

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, State, TryData};
use tokio::time::MissedTickBehavior;

use super::status;
use crate::coordination::registry::{InstanceEntry, Vitals};
use crate::realtime::broadcast::{Realtime, SocketIoBroadcast};
use crate::realtime::connect::ConnectRefused;
use crate::redis::RedisError;
use crate::state::AppState;
use crate::storage::now_millis;

/// The operators' namespace.
pub const NAMESPACE: &str = "/admin";
/// The event that carries a snapshot.
pub const SNAPSHOT_EVENT: &str = "ops:snapshot";
/// How often a watched instance pushes a snapshot.
pub const PUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Rooms listed in a snapshot, busiest first.
pub const BUSIEST_ROOMS: usize = 10;

/// Registers the `/admin` namespace; like `realtime::register_namespace`, remote adapters
/// require the caller to await the result.
pub fn register_namespace<A>(io: &socketioxide::SocketIo<A>) -> A::InitRes
where
    A: Adapter + socketioxide_core::adapter::DefinedAdapter,
{
    use socketioxide::handler::ConnectHandler;
    io.ns(NAMESPACE, on_connect::<A>.with(authenticate::<A>))
}

/// Connect middleware of `/admin`: only a caller presenting `ADMIN_TOKEN` gets in.
pub async fn authenticate<A: Adapter>(
    State(app): State<AppState>,
    TryData(auth): TryData<Value>,
) -> Result<(), ConnectRefused> {
    if app.drain.is_draining() {
        return Err(ConnectRefused::Unavailable);
    }
    let presented = auth
        .ok()
        .and_then(|auth| auth.get("token").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    match &app.config.admin_token {
        Some(expected) if crate::auth::token::matches(expected, &presented) => Ok(()),
        _ => Err(ConnectRefused::Unauthorized),
    }
}

/// Connect handler of `/admin`: the first snapshot at once, so the page fills without waiting
/// for the next push.
pub async fn on_connect<A: Adapter>(
    socket: SocketRef<A>,
    io: socketioxide::SocketIo<A>,
    State(app): State<AppState>,
) {
    let realtime: Realtime = std::sync::Arc::new(SocketIoBroadcast(io));
    match snapshot(&app, &realtime).await {
        Ok(snapshot) => {
            if let Err(err) = socket.emit(SNAPSHOT_EVENT, &snapshot) {
                tracing::debug!(error = %err, "first operator snapshot not delivered");
            }
        }
        Err(err) => tracing::warn!(error = %err, "operator snapshot failed"),
    }
}

/// Pushes a snapshot to this instance's operators every `PUSH_INTERVAL` while any is
/// connected, and at once when the cluster announces a change (see `commands::Command::Refresh`).
/// Runs until its owner (the app) stops it after the socket drain.
pub async fn push(app: AppState, realtime: Realtime) {
    let mut tick = tokio::time::interval(PUSH_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = app.operator.refresh.notified() => {}
        }
        if realtime.local_sockets_of(NAMESPACE) == 0 {
            continue;
        }
        match snapshot(&app, &realtime).await {
            Ok(snapshot) => {
                realtime
                    .emit_local(NAMESPACE, SNAPSHOT_EVENT, snapshot)
                    .await
            }
            Err(err) => tracing::debug!(error = %err, "operator snapshot failed"),
        }
    }
}

/// The cluster as this instance sees it now.
pub async fn snapshot(app: &AppState, realtime: &Realtime) -> Result<Value, RedisError> {
    let now = now_millis();
    let me = app.config.instance_id.as_str();
    let mine = InstanceEntry {
        address: app.advertised_address.get().cloned().unwrap_or_default(),
        sockets: realtime.local_sockets() as u64,
        updated_at: now,
        started_at: i64::try_from(app.started_at.unix_timestamp_nanos() / 1_000_000)
            .unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        vitals: status::vitals(app),
    };
    let mut instances = vec![row(me, &mine, now)];
    if let Some(cluster) = &app.cluster {
        for (id, entry) in cluster.registry.live().await? {
            if id != me {
                instances.push(row(&id, &entry, now));
            }
        }
    }
    instances.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let cluster_sockets: u64 = instances.iter().filter_map(|i| i["sockets"].as_u64()).sum();
    let mut rooms = app.presence.rooms().await?;
    rooms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rooms.truncate(BUSIEST_ROOMS);
    let rooms: Vec<Value> = rooms
        .into_iter()
        .map(|(name, members)| json!({"name": name, "members": members}))
        .collect();
    Ok(json!({
        "at": now,
        "served_by": me,
        "instances": instances,
        "cluster_sockets": cluster_sockets,
        "rooms": rooms,
    }))
}

/// One instance's row of the snapshot.
fn row(id: &str, entry: &InstanceEntry, now: i64) -> Value {
    let Vitals {
        ready,
        draining,
        events_per_sec,
        messages_per_sec,
        breakers,
    } = &entry.vitals;
    json!({
        "id": id,
        "address": entry.address,
        "version": entry.version,
        "started_at": entry.started_at,
        "uptime_secs": (now - entry.started_at).max(0) / 1000,
        "ready": ready,
        "draining": draining,
        "sockets": entry.sockets,
        "events_per_sec": events_per_sec,
        "messages_per_sec": messages_per_sec,
        "breakers": breakers,
        "last_heartbeat_ms": (now - entry.updated_at).max(0),
    })
}
