//! Layered configuration: built-in defaults, then an optional TOML file (`--config FILE` or
//! `TCI_CONFIG`), then environment variables `TCI__SECTION__KEY` (double underscore between
//! levels, e.g. `TCI__KAFKA__BROKERS=10.0.0.1:9092`). Durations are human (`"250ms"`, `"5m"`).
//! Secrets use [`secrecy::SecretString`] and never print. There is no global config: each
//! service loads its own struct once in `main` and passes it down.

use std::{collections::BTreeMap, path::Path, time::Duration};

use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use secrecy::SecretString;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// A configuration that cannot be loaded: which source was wrong and why. Every service's `main`
/// reports it the same way (`Error: configuration: ...`, exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("configuration ({sources}): {error}")]
pub struct ConfigError {
    sources: String,
    error: Box<figment::Error>,
}

/// Loads a service's configuration `T` from its defaults, an optional file (`file`, else
/// `$TCI_CONFIG`) and the environment (`TCI__SECTION__KEY`).
pub fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut fig = Figment::from(Serialized::defaults(T::default()));
    let file = file
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("TCI_CONFIG").map(Into::into));
    let sources = match &file {
        Some(p) => format!("defaults, file {}, TCI__* variables", p.display()),
        None => "defaults, TCI__* variables; no file".to_string(),
    };
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError {
                sources,
                error: Box::new(figment::Error::from(format!(
                    "config file {} does not exist",
                    path.display()
                ))),
            });
        }
        fig = fig.merge(Toml::file(path));
    }
    fig.merge(Env::prefixed("TCI__").split("__").lowercase(true))
        .extract()
        .map_err(|e| ConfigError {
            sources,
            error: Box::new(e),
        })
}

/// The sections every service shares. Services embed it with `#[serde(flatten)]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CommonConfig {
    pub log: LogConfig,
    pub admin: AdminConfig,
    pub kafka: KafkaConfig,
    pub registry: RegistryConfig,
    pub cassandra: CassandraConfig,
    pub topics: TopicNames,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `auto` (JSON unless stderr is a terminal), `json` or `text`.
    pub format: String,
    /// An `EnvFilter` directive, e.g. `info,chat_ingestor=debug`. `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "auto".into(),
            filter: "info".into(),
        }
    }
}

/// The admin HTTP server (`/healthz`, `/readyz`, `/metrics`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminConfig {
    /// Listen address; port 0 picks a free port.
    pub addr: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:0".into(),
        }
    }
}

/// Kafka client settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Extra librdkafka properties applied to every client (e.g. `security.protocol`).
    pub properties: BTreeMap<String, String>,
    /// SASL password, if any (kept out of logs).
    #[serde(skip_serializing)]
    pub sasl_password: Option<SecretString>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            properties: BTreeMap::new(),
            sasl_password: None,
        }
    }
}

/// Schema registry (Confluent REST API).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryConfig {
    /// Base URL of the Confluent-compatible API (Apicurio: `.../apis/ccompat/v7`).
    pub url: String,
    /// Timeout of one registry call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8081/apis/ccompat/v7".into(),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Cassandra / ScyllaDB.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CassandraConfig {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// CQL replication map used when the keyspace is created.
    pub replication: String,
    /// Per-request timeout.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Consistency for reads and writes: `one`, `local_quorum`, `quorum`.
    pub consistency: String,
    pub username: Option<String>,
    #[serde(skip_serializing)]
    pub password: Option<SecretString>,
}

impl Default for CassandraConfig {
    fn default() -> Self {
        Self {
            nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "tci".into(),
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            request_timeout: Duration::from_secs(5),
            consistency: "local_quorum".into(),
            username: None,
            password: None,
        }
    }
}

/// Kafka topic names (logical name → actual name), so tests and tenants can use their own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TopicNames {
    pub live_streams: String,
    pub chat: String,
    pub moderation: String,
    pub dead_letter: String,
    /// Opt-outs (compacted; the latest record per person or channel is the state).
    pub optouts: String,
}

impl Default for TopicNames {
    fn default() -> Self {
        Self {
            live_streams: "twitch.live-streams.v1".into(),
            chat: "twitch.chat-messages.v1".into(),
            moderation: "twitch.moderation-events.v1".into(),
            dead_letter: "tci.dead-letter.v1".into(),
            optouts: "tci.optouts.v1".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in defaults point at the local stack, whose ports are defined once, in
    /// dev/stack/ports.env.
    #[test]
    fn defaults_match_the_local_stack_ports() {
        let env = include_str!("../../../dev/stack/ports.env");
        let port = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} missing from dev/stack/ports.env"))
                .trim()
                .to_string()
        };
        assert_eq!(
            KafkaConfig::default().brokers,
            format!("127.0.0.1:{}", port("KAFKA_PORT"))
        );
        assert_eq!(
            CassandraConfig::default().nodes,
            vec![format!("127.0.0.1:{}", port("CASSANDRA_PORT"))]
        );
        assert!(RegistryConfig::default()
            .url
            .starts_with(&format!("http://127.0.0.1:{}/", port("REGISTRY_PORT"))));
    }

    #[derive(Debug, Serialize, Deserialize, Default)]
    #[serde(default)]
    struct Svc {
        #[serde(flatten)]
        common: CommonConfig,
        #[serde(with = "humantime_serde")]
        linger: Duration,
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API
    fn layers_apply_in_order_and_durations_are_human() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "svc.toml",
                "linger = \"250ms\"\n[kafka]\nbrokers = \"file:9092\"\n",
            )?;
            jail.set_env("TCI__KAFKA__BROKERS", "env:9092");
            jail.set_env("TCI__CASSANDRA__REQUEST_TIMEOUT", "2s");
            let cfg: Svc = load(Some(Path::new("svc.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(cfg.linger, Duration::from_millis(250));
            assert_eq!(cfg.common.kafka.brokers, "env:9092");
            assert_eq!(cfg.common.cassandra.request_timeout, Duration::from_secs(2));
            assert_eq!(cfg.common.topics.chat, "twitch.chat-messages.v1");
            Ok(())
        });
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let err = load::<Svc>(Some(Path::new("/nonexistent/tci.toml"))).expect_err("must fail");
        assert!(err.to_string().contains("/nonexistent/tci.toml"), "{err}");
    }

    #[test]
    fn secrets_do_not_print() {
        let cfg = CassandraConfig {
            password: Some(SecretString::from("hunter2")),
            ..Default::default()
        };
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }
}
