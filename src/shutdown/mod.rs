//! What happens on SIGTERM: the graceful drain, in one place.
//!
//! The sequence (SPEC, "Graceful shutdown") is `sequence::drain`, one function whose lines are
//! the steps:
//!
//! 1. **Refuse new sessions.** `DrainState` flips to draining: `/health/ready` answers 503 at
//!    once, and new Engine.IO sessions and Socket.IO handshakes are refused (503 /
//!    `unavailable`), so load balancers and reconnecting clients go elsewhere.
//! 2. **Tell and close the sockets** (`close_sockets`). Every socket gets `server:draining
//!    {reconnect_after_ms}`; after a short notice the transports are closed (not a Socket.IO
//!    `disconnect`, which would tell the official client not to reconnect), so clients
//!    reconnect by themselves, through the load balancer, to another instance. Then the room
//!    sequencers flush: every message accepted is stored and broadcast. Socket work may use at
//!    most half of `SHUTDOWN_TIMEOUT_SECS`.
//! 3. **Close the Socket.IO server**, whether step 2 finished in time or not, so no socket or
//!    emit outlives the drain.
//! 4. **Stop accepting connections.** (The listener keeps accepting until step 2 is done only
//!    because long-polling clients open a new connection for each poll and could otherwise
//!    never receive the notice; every new session is already refused in step 1.)
//! 5. **Finish in-flight HTTP** requests, up to the deadline.
//! 6. **Stop background tasks** (`tasks`): every task the server spawned is owned by one
//!    `Tasks`; its token is cancelled and the tasks are joined, up to the deadline, naming the
//!    ones still running then.
//! 7. **Close Redis** (leave the registry, tell operators), then 8. **close the database**
//!    pool (its in-flight writes finish first): every message acked before the signal is
//!    stored.
//! 9. **Report.** The process exits 0, logging what it drained, within
//!    `SHUTDOWN_TIMEOUT_SECS`; whatever still runs at the deadline is abandoned with a warning.
//!
//! A second signal during the drain exits at once (see `main.rs`). An operator's drain from the
//! admin API (`DrainState::request`, see `operator`) starts the same sequence as a signal.
//!
//! The parts lower layers use (`state`, `plan`, `tasks`) import nothing above them; the
//! sequence (`sequence`, `close_sockets`) sits at the top with the app, since it drives every
//! part of it.

pub mod close_sockets;
pub mod plan;
pub mod sequence;
pub mod state;
pub mod tasks;
