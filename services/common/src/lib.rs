//! Runtime plumbing shared by every service of the Twitch Chat Ingestor, and nothing else:
//! domain logic lives in the service that owns it, wire types in `tci-schemas`.
//!
//! - [`config`]: layered configuration (defaults → optional TOML file → `TCI__…` environment).
//! - [`telemetry`]: `tracing` set-up (JSON off a terminal) and Prometheus metric helpers.
//! - [`runtime`]: the shutdown token tree and named supervised tasks.
//! - [`admin`]: the per-service admin HTTP server (`/healthz`, `/readyz`, `/metrics`).
//! - [`retry`]: capped exponential backoff with jitter.
//! - [`kafka`]: producer/consumer/admin construction, topic definitions, dead-letter publishing.
//! - [`consumer`]: the at-least-once batch consumer every ingestor (and backfill) runs on; the
//!   service supplies decode and write.
//! - [`follow`]: reading a small compacted topic (shared state, e.g. the opt-outs) from its
//!   beginning in every replica, then following it.
//! - [`registry`]: the schema registry (Confluent REST API) and Avro codec in Confluent framing.
//! - [`cassandra`]: session set-up and migrations.
//! - [`time`]: ISO 8601 timestamps given by people (API parameters, backfill ranges).

pub mod admin;
pub mod cassandra;
pub mod config;
pub mod consumer;
pub mod follow;
pub mod kafka;
pub mod registry;
pub mod retry;
pub mod runtime;
pub mod telemetry;
pub mod time;

pub use config::{CassandraConfig, CommonConfig, KafkaConfig, RegistryConfig, TopicNames};
pub use runtime::{Shutdown, Tasks};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
