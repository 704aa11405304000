//! Instances working together without stepping on each other, through Redis.
//!
//! - `registry`: instance heartbeats (who is alive, with what load), the source of the
//!   cluster-wide connection count and the operator view, and the reaping of dead instances.
//! - `lock`: token-owned locks that only their holder can renew or release.
//! - `jobs`: periodic work that runs on one instance at a time under those locks (history
//!   retention, stale-presence cleanup); in embedded mode they run without a lock.
//!
//! Every key starts with `roomcast:`.

pub mod jobs;
pub mod lock;
pub mod registry;
