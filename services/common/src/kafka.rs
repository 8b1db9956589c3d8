//! Kafka clients built from [`KafkaConfig`], topic definitions (`kafka/topics.toml`) and the
//! dead-letter publisher.
//!
//! Consumers are at-least-once by construction: `enable.auto.offset.store=false`, so an offset
//! is committed (by the periodic auto-commit) only after the service explicitly stored it, which
//! it does only after the write that covers it succeeded.

use std::{collections::BTreeMap, time::Duration};

use rdkafka::{
    admin::{
        AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
        TopicReplication,
    },
    client::{ClientContext, DefaultClientContext},
    config::{ClientConfig, RDKafkaLogLevel},
    consumer::{Consumer, ConsumerContext, StreamConsumer},
    error::KafkaError,
    message::{Header, Message, OwnedHeaders},
    producer::{BaseProducer, FutureProducer, FutureRecord, Producer},
    types::RDKafkaErrorCode,
};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::config::{KafkaConfig, TopicNames};

/// The topic definitions shipped in `kafka/topics.toml`.
pub const TOPICS_TOML: &str = include_str!("../../../kafka/topics.toml");

/// A base client config with the brokers and the operator's extra properties.
pub fn base_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    if let Some(p) = &cfg.sasl_password {
        c.set("sasl.password", p.expose_secret());
    }
    c
}

/// An idempotent producer (`acks=all`, `enable.idempotence=true`), lz4-compressed, with a bounded
/// local queue (`queue.buffering.max.kbytes`): when full, `send` waits (backpressure) up to the
/// caller's queue timeout instead of dropping.
pub fn producer(
    cfg: &KafkaConfig,
    client_id: &str,
    overrides: &[(&str, &str)],
) -> Result<FutureProducer, KafkaError> {
    let mut c = base_config(cfg);
    c.set("client.id", client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.kbytes", "65536")
        .set("queue.buffering.max.messages", "200000")
        .set("message.timeout.ms", "300000");
    for (k, v) in overrides {
        c.set(*k, *v);
    }
    c.create()
}

/// An at-least-once consumer in `group` (see the module docs). Offsets of a new group start at
/// the earliest retained record.
pub fn consumer<C: ConsumerContext + 'static>(
    cfg: &KafkaConfig,
    group: &str,
    client_id: &str,
    context: C,
    overrides: &[(&str, &str)],
) -> Result<StreamConsumer<C>, KafkaError> {
    let mut c = base_config(cfg);
    c.set("group.id", group)
        .set("client.id", client_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "30000")
        .set("max.poll.interval.ms", "300000")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in overrides {
        c.set(*k, *v);
    }
    c.create_with_context(context)
}

/// One topic definition.
#[derive(Debug, Clone, Deserialize)]
pub struct TopicSpec {
    /// Logical name: a field of [`TopicNames`].
    pub key: String,
    pub partitions: i32,
    pub replication_factor: i32,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct TopicsFile {
    topics: Vec<TopicSpec>,
}

/// Parses `kafka/topics.toml`.
pub fn topic_specs() -> anyhow::Result<Vec<TopicSpec>> {
    let f: TopicsFile = toml_from_str(TOPICS_TOML)?;
    Ok(f.topics)
}

fn toml_from_str<T: serde::de::DeserializeOwned>(s: &str) -> anyhow::Result<T> {
    use figment::providers::{Format, Toml};
    figment::Figment::from(Toml::string(s))
        .extract()
        .map_err(|e| anyhow::anyhow!("kafka/topics.toml: {e}"))
}

/// The actual topic name of a logical `key`.
pub fn topic_name<'a>(names: &'a TopicNames, key: &str) -> anyhow::Result<&'a str> {
    Ok(match key {
        "live_streams" => &names.live_streams,
        "chat" => &names.chat,
        "moderation" => &names.moderation,
        "dead_letter" => &names.dead_letter,
        "optouts" => &names.optouts,
        other => anyhow::bail!("kafka/topics.toml: unknown topic key {other:?}"),
    })
}

/// What [`ensure_topics`] did to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicAction {
    Created,
    Updated,
}

/// A client context that keeps librdkafka's last global error besides logging it: a wrong SASL
/// password, a broker certificate the CA file does not vouch for, an unreachable broker. These
/// reach the client only as retried connection failures, so a call that then times out uses
/// this to say why.
#[derive(Debug, Default)]
pub struct ErrorKeeper {
    last: std::sync::Mutex<Option<String>>,
    /// The cluster refused this client for good: a failed SASL login or TLS handshake (retrying
    /// with the same settings cannot help).
    refused: std::sync::atomic::AtomicBool,
}

impl ErrorKeeper {
    /// The last error's text, if any.
    pub fn last(&self) -> Option<String> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// Whether the cluster refused the client's login or TLS handshake (see [`Self::error`]).
    pub fn refused(&self) -> bool {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Forgets the last error (the client reached the cluster since).
    pub fn clear(&self) {
        self.refused
            .store(false, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
    }

    fn keep(&self, text: &str) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some(text.to_owned());
        }
    }
}

impl ClientContext for ErrorKeeper {
    /// librdkafka's log lines, logged as [`DefaultClientContext`] logs them; a connection
    /// failure (facility `FAIL`: refused, TLS handshake, SASL login) is also kept. Log lines
    /// and errors both arrive only when the client is polled.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        DefaultClientContext.log(level, fac, message);
        if fac == "FAIL" {
            self.keep(message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            // It follows the cause (a FAIL line) and would hide it.
            Some(RDKafkaErrorCode::AllBrokersDown) => {}
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL) => {
                self.refused
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                self.keep(reason);
            }
            _ => self.keep(reason),
        }
        DefaultClientContext.error(error, reason);
    }
}

/// A client context with an [`ErrorKeeper`]: [`probe`] names the last connection failure.
pub trait KeepsErrors {
    fn errors(&self) -> &ErrorKeeper;
}

impl KeepsErrors for ErrorKeeper {
    fn errors(&self) -> &ErrorKeeper {
        self
    }
}

/// A consumer that needs nothing but the kept errors (no rebalance work).
impl ConsumerContext for ErrorKeeper {}

/// Only for its [`ClientContext`] part: the connection check of [`connected_admin`] sends nothing.
impl rdkafka::producer::ProducerContext for ErrorKeeper {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// How long an admin call waits for the cluster's metadata before giving up (a refused login or
/// TLS handshake ends the wait at once).
const ADMIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// An admin client, once a client with the same settings has read the cluster's metadata; else
/// an error that names the brokers and why: librdkafka's last complaint (SASL authentication
/// failed, certificate verify failed, connection refused) rather than a bare timeout. The check
/// uses a producer because an admin client never serves librdkafka's log queue, where those
/// complaints arrive.
async fn connected_admin(cfg: &KafkaConfig) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    let probe: BaseProducer<ErrorKeeper> =
        base_config(cfg).create_with_context(ErrorKeeper::default())?;
    let (md, why) = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + ADMIN_CONNECT_TIMEOUT;
        loop {
            let md = probe
                .client()
                .fetch_metadata(None, Duration::from_secs(1))
                .map(|_| ());
            if md.is_ok() {
                return (md, None);
            }
            // Serve the error events and log lines queued meanwhile; stop early when the
            // cluster refused the login or the handshake.
            probe.poll(Duration::from_millis(100));
            let keeper = probe.context();
            if keeper.refused() || std::time::Instant::now() >= deadline {
                return (md, keeper.last());
            }
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("metadata task failed: {e}"))?;
    if let Err(e) = md {
        anyhow::bail!(
            "cannot reach Kafka at {} (security.protocol {}): {}",
            cfg.brokers,
            cfg.properties
                .get("security.protocol")
                .map_or("PLAINTEXT", String::as_str),
            why.unwrap_or_else(|| e.to_string())
        );
    }
    Ok(base_config(cfg).create()?)
}

/// Creates missing topics, raises partition counts that are too low, and applies the configs of
/// existing ones. Idempotent. `replication_factor` overrides the file's (clusters).
pub async fn ensure_topics(
    cfg: &KafkaConfig,
    names: &TopicNames,
    specs: &[TopicSpec],
    replication_factor: Option<i32>,
    partitions_override: Option<i32>,
) -> anyhow::Result<Vec<(String, TopicAction)>> {
    let admin = connected_admin(cfg).await?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut out = Vec::new();
    for spec in specs {
        let name = topic_name(names, &spec.key)?.to_string();
        let rf = replication_factor.unwrap_or(spec.replication_factor);
        let partitions = partitions_override.unwrap_or(spec.partitions);
        let mut config = spec.config.clone();
        if rf >= 3 {
            config.insert("min.insync.replicas".into(), "2".into());
        }
        let mut nt = NewTopic::new(&name, partitions, TopicReplication::Fixed(rf));
        for (k, v) in &config {
            nt = nt.set(k, v);
        }
        let res = admin.create_topics([&nt], &opts).await?;
        match res.into_iter().next() {
            Some(Ok(_)) => out.push((name, TopicAction::Created)),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {
                let md = admin
                    .inner()
                    .fetch_metadata(Some(&name), Duration::from_secs(10))?;
                let have = md
                    .topics()
                    .first()
                    .map(|t| t.partitions().len() as i32)
                    .unwrap_or(0);
                if have < partitions {
                    let np = NewPartitions::new(&name, partitions as usize);
                    for r in admin.create_partitions([&np], &opts).await? {
                        r.map_err(|(t, e)| anyhow::anyhow!("raising partitions of {t}: {e}"))?;
                    }
                }
                let mut ac = AlterConfig::new(ResourceSpecifier::Topic(&name));
                for (k, v) in &config {
                    ac = ac.set(k, v);
                }
                for r in admin.alter_configs([&ac], &opts).await? {
                    r.map_err(|(_, e)| anyhow::anyhow!("setting configs of {name}: {e}"))?;
                }
                out.push((name, TopicAction::Updated));
            }
            Some(Err((t, e))) => anyhow::bail!("creating topic {t}: {e}"),
            None => anyhow::bail!("creating topic {name}: no answer from the broker"),
        }
    }
    Ok(out)
}

/// Deletes `topics`; a topic that does not exist is not an error. For tests and benchmarks that
/// clean up after themselves.
pub async fn delete_topics(cfg: &KafkaConfig, topics: &[&str]) -> anyhow::Result<()> {
    let admin = connected_admin(cfg).await?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.delete_topics(topics, &opts).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((t, e)) => anyhow::bail!("deleting topic {t}: {e}"),
        }
    }
    Ok(())
}

/// Header names on dead-lettered records.
pub mod dlq_headers {
    pub const REASON: &str = "tci.dlq.reason";
    pub const SERVICE: &str = "tci.dlq.service";
    pub const TOPIC: &str = "tci.dlq.source.topic";
    pub const PARTITION: &str = "tci.dlq.source.partition";
    pub const OFFSET: &str = "tci.dlq.source.offset";
}

/// Publishes undecodable records to the dead-letter topic with the original key and bytes and
/// the reason in headers. `send` returns only once Kafka acknowledged the record, so the caller
/// may then store the poison record's offset.
#[derive(Clone)]
pub struct DeadLetter {
    producer: FutureProducer,
    topic: String,
    service: &'static str,
}

impl DeadLetter {
    pub fn new(producer: FutureProducer, topic: impl Into<String>, service: &'static str) -> Self {
        Self {
            producer,
            topic: topic.into(),
            service,
        }
    }

    /// The dead-letter topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends `msg` to the dead-letter topic with `reason`.
    pub async fn send<M: Message>(&self, msg: &M, reason: &str) -> Result<(), KafkaError> {
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: dlq_headers::REASON,
                value: Some(reason),
            })
            .insert(Header {
                key: dlq_headers::SERVICE,
                value: Some(self.service),
            })
            .insert(Header {
                key: dlq_headers::TOPIC,
                value: Some(msg.topic()),
            })
            .insert(Header {
                key: dlq_headers::PARTITION,
                value: Some(&partition),
            })
            .insert(Header {
                key: dlq_headers::OFFSET,
                value: Some(&offset),
            });
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers);
        if let Some(k) = msg.key() {
            rec = rec.key(k);
        }
        if let Some(p) = msg.payload() {
            rec = rec.payload(p);
        }
        self.producer
            .send(rec, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}

/// A `/readyz` check for [`crate::admin::watch`]: fetches cluster metadata through `consumer`
/// off the async threads (librdkafka's call blocks).
/// A failure names the consumer's last connection failure (a refused login, a certificate not
/// trusted), which librdkafka reports only in its log.
pub async fn probe<C: ConsumerContext + KeepsErrors + 'static>(
    consumer: std::sync::Arc<StreamConsumer<C>>,
) -> anyhow::Result<String> {
    let c = consumer.clone();
    let md = tokio::task::spawn_blocking(move || c.fetch_metadata(None, Duration::from_secs(3)))
        .await
        .map_err(|e| anyhow::anyhow!("probe task failed: {e}"))?;
    let errors = consumer.context().errors();
    match md {
        Ok(md) => {
            errors.clear();
            Ok(format!("{} broker(s)", md.brokers().len()))
        }
        Err(e) => Err(match errors.last() {
            Some(why) => {
                anyhow::anyhow!("metadata fetch failed: {e}; last connection failure: {why}")
            }
            None => anyhow::anyhow!("metadata fetch failed: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_file_parses_and_names_resolve() {
        let specs = topic_specs().expect("topics.toml parses");
        let names = TopicNames::default();
        let keys: Vec<_> = specs.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "live_streams",
                "chat",
                "moderation",
                "dead_letter",
                "optouts"
            ]
        );
        for s in &specs {
            topic_name(&names, &s.key).expect("known key");
            assert!(s.partitions > 0 && s.replication_factor > 0);
        }
        let chat = specs.iter().find(|s| s.key == "chat").expect("chat");
        assert_eq!(
            chat.config.get("retention.ms").map(String::as_str),
            Some("604800000")
        );
    }
}
