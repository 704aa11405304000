//! The operator view: a live picture of the whole cluster for the people who run it, and the
//! two actions they need from it — drain one chosen instance, disconnect one user everywhere.
//!
//! Where socket.io's admin UI shows one server at a time, this view is cluster-wide by
//! construction: every instance writes its vitals into its registry entry on each heartbeat
//! (`status`), and whichever instance an operator's browser is connected to reads the registry
//! and pushes the whole picture to it (`live_view`), so the page never polls and never needs
//! to reach instances one by one. Commands for one instance of many (a drain) travel over
//! Redis Pub/Sub (`commands`), so they reach an instance the load balancer would never route
//! the operator to. Everything here is behind `ADMIN_TOKEN`.

pub mod commands;
pub mod live_view;
pub mod status;
