//! The analytics pipeline of cluster mode: events go onto a Redis Stream and one consumer
//! group, with a consumer on every instance, stores each of them once in the database.
//! In embedded mode there is no pipeline; `analytics` stores events directly.

pub mod analytics_stream;
