//! Ordered group commit: one sequencer per active room stores its messages in batches and
//! publishes them in seq order.
//!
//! A `message` event used to hold a room lock across its INSERT and its publish, so a room
//! carried at most one message per (store + publish) round trip. Now the handler validates the
//! message, checks the rate limit and hands it to its room's sequencer while it still holds
//! the socket's `Turn`, then lets the socket's next event run and waits for its receipt:
//!
//! - **Per-socket order** is enqueue order: a socket enqueues its next message only after the
//!   previous one is in the queue, and a sequencer stores its queue in order.
//! - **Gap-free seq**: a batch takes a consecutive run of ids and of the room's seqs in one
//!   statement (PostgreSQL) or one transaction (SQLite), all or nothing
//!   (`Database::append_messages`). A failed batch takes no seq and is answered with error
//!   acks; nothing of it is broadcast.
//! - **Persisted before broadcast, publish in seq order**: batch k+1 may be stored while batch
//!   k is being published, but it is published only after batch k, one message after the
//!   other, so this instance's publishes of a room follow its seqs (across instances the
//!   client orders by seq, see `recovery`).
//! - **Ack after store**: a message's ack is sent once it has been stored and published.
//!
//! Only rooms with traffic have a sequencer: one that finds its queue empty for
//! `IDLE_LINGER` retires. Enqueueing and retiring both happen under the registry's lock and
//! a sequencer retires only with an empty queue and nothing in flight, so a message is never
//! left in a retired queue and two sequencers of one room never run at once. At shutdown,
//! `flush` stops new messages and waits until every queued one is stored and published.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::ack::AckError;
use super::broadcast::in_room;
use crate::domain::RoomName;
use crate::error_code::ErrorCode;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::storage::messages::{ChatMessage, NewMessage};

/// Most messages stored in one statement; a longer queue is taken in several batches.
pub const MAX_BATCH: usize = 256;
/// Messages accepted but not yet answered, on this instance, over all rooms. A handler waits
/// for room in the queue (holding its socket's turn), so a database that falls behind slows
/// senders down instead of growing memory.
pub const MAX_PENDING: usize = 16_384;
/// How long a sequencer with an empty queue waits for more before it retires.
pub const IDLE_LINGER: Duration = Duration::from_secs(2);

/// What the sender's ack reports about its stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// Cluster-wide id.
    pub id: i64,
    /// Milliseconds since the Unix epoch when it was stored.
    pub ts: i64,
    /// Place in its room.
    pub seq: i64,
}

/// The answer a sender waits for.
pub type Outcome = Result<Receipt, AckError>;

/// A message waiting in its room's queue.
struct Pending {
    message: NewMessage,
    waiter: Waiter,
}

/// Who is told about a message's fate.
struct Waiter {
    received: Instant,
    reply: oneshot::Sender<Outcome>,
    _slot: OwnedSemaphorePermit,
}

/// A live sequencer as the registry knows it.
struct Entry {
    queue: mpsc::UnboundedSender<Pending>,
    generation: u64,
}

/// The sequencers of this instance, one per room with traffic.
#[derive(Clone)]
pub struct RoomSequencers(Arc<Registry>);

struct Registry {
    rooms: Mutex<HashMap<RoomName, Entry>>,
    /// Number of live sequencers, for `flush`.
    live: watch::Sender<usize>,
    generations: AtomicU64,
    slots: Arc<Semaphore>,
    closing: CancellationToken,
}

impl Default for RoomSequencers {
    fn default() -> Self {
        Self(Arc::new(Registry {
            rooms: Mutex::default(),
            live: watch::channel(0).0,
            generations: AtomicU64::new(0),
            slots: Arc::new(Semaphore::new(MAX_PENDING)),
            closing: CancellationToken::new(),
        }))
    }
}

impl std::fmt::Debug for RoomSequencers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomSequencers")
            .field("live", &self.live())
            .finish_non_exhaustive()
    }
}

impl RoomSequencers {
    /// Number of rooms with a running sequencer.
    pub fn live(&self) -> usize {
        *self.0.live.borrow()
    }

    /// Stops accepting messages and resolves once every accepted one has been stored and
    /// published (or failed) and every sequencer has retired. Part of the drain: it must run
    /// before the Socket.IO server closes, so that the flushed messages are still delivered.
    pub fn flush(&self) -> impl Future<Output = ()> + Send + 'static {
        let registry = self.0.clone();
        async move {
            registry.closing.cancel();
            let mut live = registry.live.subscribe();
            let pending = *live.borrow();
            if pending > 0 {
                tracing::info!(rooms = pending, "flushing queued messages");
            }
            // The sender lives in `registry`, so this only ends when the count reaches 0.
            let _ = live.wait_for(|n| *n == 0).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomName, Entry>> {
        self.0.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Queues `message` for `room` and returns where its outcome will arrive. Returns once the
/// message is in the queue, so the caller may let the socket's next event go; call it in the
/// socket's order.
pub async fn submit<A: Adapter>(
    app: &AppState,
    sequencers: &RoomSequencers,
    io: &SocketIo<A>,
    room: RoomName,
    message: NewMessage,
    received: Instant,
) -> Result<oneshot::Receiver<Outcome>, AckError> {
    let shutting_down = || {
        AckError::new(
            ErrorCode::Unavailable,
            "the server is shutting down, try again",
        )
    };
    let slot = sequencers
        .0
        .slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| shutting_down())?;
    let (reply, outcome) = oneshot::channel();
    let pending = Pending {
        message,
        waiter: Waiter {
            received,
            reply,
            _slot: slot,
        },
    };
    let mut rooms = sequencers.lock();
    if sequencers.0.closing.is_cancelled() {
        return Err(shutting_down());
    }
    let pending = match rooms.get(&room) {
        // Fails only if the sequencer died without retiring (a panic); start a new one.
        Some(entry) => match entry.queue.send(pending) {
            Ok(()) => return Ok(outcome),
            Err(mpsc::error::SendError(pending)) => pending,
        },
        None => pending,
    };
    let (queue, receiver) = mpsc::unbounded_channel();
    let generation = sequencers.0.generations.fetch_add(1, Ordering::Relaxed);
    // Cannot fail: `receiver` is alive.
    let _ = queue.send(pending);
    if rooms
        .insert(room.clone(), Entry { queue, generation })
        .is_none()
    {
        sequencers.0.live.send_modify(|n| *n += 1);
    }
    drop(rooms);
    let span = tracing::info_span!("room_sequencer", room = %room);
    app.tasks.spawn(
        "room_sequencer",
        Sequencer {
            app: app.clone(),
            sequencers: sequencers.clone(),
            io: io.clone(),
            room,
            generation,
        }
        .run(receiver)
        .instrument(span),
    );
    Ok(outcome)
}

/// The task that owns one room's queue.
struct Sequencer<A: Adapter> {
    app: AppState,
    sequencers: RoomSequencers,
    io: SocketIo<A>,
    room: RoomName,
    generation: u64,
}

impl<A: Adapter> Sequencer<A> {
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Pending>) {
        let _registration = Registration {
            sequencers: self.sequencers.clone(),
            room: self.room.clone(),
            generation: self.generation,
        };
        let closing = self.sequencers.0.closing.clone();
        let mut publishing: Option<JoinHandle<()>> = None;
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(pending) => batch.push(pending),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                // Idle: finish the publish in flight before lingering or retiring, so that a
                // successor sequencer can never publish ahead of it.
                if let Some(previous) = publishing.take() {
                    let _ = previous.await;
                    continue;
                }
                let next = tokio::select! {
                    next = queue.recv() => next,
                    () = tokio::time::sleep(IDLE_LINGER) => None,
                    () = closing.cancelled() => None,
                };
                match next {
                    Some(pending) => batch.push(pending),
                    None if self.retire(&queue) => return,
                    None => {}
                }
                continue;
            }
            let (messages, waiters): (Vec<NewMessage>, Vec<Waiter>) = batch
                .drain(..)
                .map(|pending| (pending.message, pending.waiter))
                .unzip();
            let stored = self
                .app
                .db
                .append_messages(&self.room, &messages, self.app.config.instance_id.as_str())
                .await;
            match stored {
                Ok(stored) => {
                    if let Some(previous) = publishing.take() {
                        let _ = previous.await;
                    }
                    // Awaited before the next publish and before retiring.
                    publishing = Some(
                        self.app.tasks.spawn(
                            "room_publish",
                            publish(self.io.clone(), self.app.clone(), stored, waiters)
                                .in_current_span(),
                        ),
                    );
                }
                Err(err) => {
                    self.app.metrics.database_errors.inc();
                    let error = AckError::from(err);
                    for waiter in waiters {
                        let _ = waiter.reply.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    /// Removes this sequencer from the registry if its queue is still empty; under the lock
    /// that `submit` holds, so no message can slip in between.
    fn retire(&self, queue: &mpsc::UnboundedReceiver<Pending>) -> bool {
        let mut rooms = self.sequencers.lock();
        if !queue.is_empty() {
            return false;
        }
        if rooms
            .get(&self.room)
            .is_some_and(|entry| entry.generation == self.generation)
        {
            rooms.remove(&self.room);
            self.sequencers.0.live.send_modify(|n| *n -= 1);
        }
        true
    }
}

/// Takes a sequencer out of the registry even if it ends by panicking, so that `flush` is not
/// left waiting for it and the room gets a new one.
struct Registration {
    sequencers: RoomSequencers,
    room: RoomName,
    generation: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut rooms = self.sequencers.lock();
        if rooms
            .get(&self.room)
            .is_some_and(|entry| entry.generation == self.generation)
        {
            rooms.remove(&self.room);
            self.sequencers.0.live.send_modify(|n| *n -= 1);
        }
    }
}

/// Broadcasts a stored batch in seq order, answering each sender after its message went out.
/// Each message is serialised once, straight from `ChatMessage` into the Socket.IO packet;
/// the adapter sends that packet to the other instances in one publish.
async fn publish<A: Adapter>(
    io: SocketIo<A>,
    app: AppState,
    stored: Vec<ChatMessage>,
    waiters: Vec<Waiter>,
) {
    for (message, waiter) in stored.into_iter().zip(waiters) {
        let delivered = match in_room(&io, message.room.clone()) {
            Ok(room) => room
                .emit("message", &message)
                .await
                .map_err(|e| e.to_string()),
            Err(closed) => Err(closed.to_string()),
        };
        match delivered {
            Ok(()) => Metrics::event(&app.metrics.events_out, "message"),
            // Stored but not delivered live: history and recovery still have it, so the ack
            // stays positive.
            Err(err) => {
                tracing::warn!(id = message.id, error = %err, "message broadcast failed");
            }
        }
        app.metrics
            .broadcast_latency
            .observe(waiter.received.elapsed().as_secs_f64());
        let _ = waiter.reply.send(Ok(Receipt {
            id: message.id,
            ts: message.ts,
            seq: message.seq,
        }));
    }
}
