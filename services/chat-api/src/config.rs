//! Configuration of the chat API: the shared sections plus `[http]`, `[query]`, `[cursor]` and
//! `[streamers]`. See `chat-api.sample.toml` for a commented example.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tci_common::CommonConfig;

/// The key cursors are signed with when `cursor.secret` is not configured. Development only: a
/// warning is logged at start-up when it is used. It is a fixed value (not a random key per
/// process) so several local replicas accept each other's cursors.
pub const DEV_CURSOR_SECRET: &str = "tci-chat-api-development-cursor-key-do-not-use-in-production";

/// Everything the chat API reads from configuration.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    #[serde(flatten)]
    pub common: CommonConfig,
    pub http: HttpConfig,
    pub query: QueryConfig,
    pub cursor: CursorConfig,
    pub streamers: StreamersConfig,
}

/// The public HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Listen address of the API (`TCI__HTTP__ADDR`); port 0 picks a free port.
    pub addr: String,
    /// How long in-flight requests get to finish after shutdown starts.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: "0.0.0.0:5000".into(),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Limits of one API call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryConfig {
    /// Timeout of one Cassandra query; a query that takes longer answers 503.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most message-page queries one call issues. When reached before the page is full, the call
    /// returns what it has and a cursor at the next position, so every call does bounded work.
    pub max_queries_per_request: u32,
    /// How many bucket-index rows one `chat_buckets` read fetches.
    pub bucket_index_batch: u32,
    /// How often the readiness probe checks Cassandra.
    #[serde(with = "humantime_serde")]
    pub readiness_interval: Duration,
    /// How often the opt-outs (`optouts` table) are read again: an opt-out reaches every
    /// route within this (README "Opting out").
    #[serde(with = "humantime_serde")]
    pub optout_refresh: Duration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            max_queries_per_request: 32,
            bucket_index_batch: 64,
            readiness_interval: Duration::from_secs(5),
            optout_refresh: Duration::from_secs(2),
        }
    }
}

/// Cursor signing.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CursorConfig {
    /// HMAC-SHA256 key of the cursors (`TCI__CURSOR__SECRET`). Every replica must share it.
    /// When unset, [`DEV_CURSOR_SECRET`] is used and a warning is logged.
    #[serde(skip_serializing)]
    pub secret: Option<SecretString>,
}

/// The streamer list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamersConfig {
    /// A streamer is `live` when it was last seen live at most this long ago.
    #[serde(with = "humantime_serde")]
    pub live_window: Duration,
}

impl Default for StreamersConfig {
    fn default() -> Self {
        Self {
            live_window: Duration::from_secs(180),
        }
    }
}
