//! roomcast's integration tests, gathered into one test binary (each file directly under
//! `tests/` would be another binary to link against the whole dependency tree).

mod harness;

mod admin;
mod analytics;
mod analytics_stream;
mod auth;
mod circuit_breakers;
mod cluster;
mod cluster_jobs;
mod configuration;
mod deploy;
mod event_limits;
mod faults;
mod hardening;
mod health;
mod hostile;
mod http_errors;
mod identity;
mod instance_registry;
mod layering;
mod operator;
mod password_pool;
mod process;
mod recovery;
mod redis_cluster;
mod runtime_stats;
mod sequencer;
mod shutdown;
