//! roomcast: a horizontally scalable realtime web server.
//!
//! A browser app talks to it over HTTP and Socket.IO; any number of identical instances share
//! sessions, opt-outs and room broadcasts. Start at `app::App` (build → run until stopped),
//! `config::Config` (the environment), and `shutdown` (what SIGTERM does).

pub mod adapter;
pub mod analytics;
pub mod app;
pub mod auth;
pub mod breaker;
pub mod cluster;
pub mod config;
pub mod coordination;
pub mod domain;
pub mod error_code;
pub mod http;
pub mod instance;
pub mod listener;
pub mod metrics;
pub mod operator;
pub mod pipeline;
pub mod presence;
pub mod rate_limit;
pub mod realtime;
pub mod redis;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod web;

pub use app::App;
