//! roomcast's integration tests, gathered into one test binary (each file directly under
//! `tests/` would be another binary to link against the whole dependency tree).

mod harness;

mod admin;
mod analytics;
mod auth;
mod cluster;
mod deploy;
mod event_limits;
mod faults;
mod health;
mod hostile;
mod http_errors;
mod identity;
mod process;
mod recovery;
mod redis_cluster;
mod toolkit_breakers;
mod toolkit_jobs;
mod toolkit_registry;
mod toolkit_runtime;
mod toolkit_streams;
