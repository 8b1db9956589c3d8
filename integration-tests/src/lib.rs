//! Shared helpers of the integration tests. Every test runs against the real Kafka, Cassandra and
//! schema registry started by `dev/stack.sh` (`make test` starts them), and gets its own topic
//! names, consumer groups and keyspace from [`TestEnv::new`], so tests never see each other's
//! data and can run in parallel.
//!
//! Endpoints come from the usual configuration layers (`TCI__KAFKA__BROKERS`, …), defaulting to
//! the local stack.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::Context;
use rdkafka::{
    consumer::{BaseConsumer, Consumer, StreamConsumer},
    Message, Offset, TopicPartitionList,
};
use scylla::client::session::Session;
use tci_common::{cassandra, config, kafka, CommonConfig};

/// A unique suffix: process id, time and randomness.
pub fn unique(prefix: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{:04x}",
        std::process::id(),
        t % 100_000_000,
        rand::random::<u16>()
    )
}

/// One test's private slice of the stack: its topics and keyspace are deleted when it is
/// dropped, also when the test fails (the drop runs while a panic unwinds), so runs leave
/// nothing behind in the local stack.
pub struct TestEnv {
    /// Configuration pointing at this test's topics and keyspace.
    pub cfg: CommonConfig,
    /// A unique id for group names etc.
    pub id: String,
}

impl TestEnv {
    /// Fresh topic names and keyspace for a test called `name`. Does not create anything yet.
    pub fn new(name: &str) -> Self {
        let id = unique(name);
        let mut cfg: CommonConfig = config::load(None).unwrap_or_default();
        cfg.topics.live_streams = format!("it.{id}.live-streams");
        cfg.topics.chat = format!("it.{id}.chat");
        cfg.topics.moderation = format!("it.{id}.moderation");
        cfg.topics.dead_letter = format!("it.{id}.dlq");
        cfg.topics.optouts = format!("it.{id}.optouts");
        cfg.cassandra.keyspace = format!("it_{}", id.to_ascii_lowercase());
        cfg.cassandra.consistency = "one".into();
        Self { cfg, id }
    }

    /// A consumer group name unique to this test.
    pub fn group(&self, role: &str) -> String {
        format!("it.{}.{role}", self.id)
    }

    /// Creates this test's topics (`partitions` each), failing with a clear message when Kafka
    /// is not running.
    pub async fn create_topics(&self, partitions: i32) -> anyhow::Result<()> {
        let specs = kafka::topic_specs()?;
        tokio::time::timeout(
            Duration::from_secs(60),
            kafka::ensure_topics(
                &self.cfg.kafka,
                &self.cfg.topics,
                &specs,
                Some(1),
                Some(partitions),
            ),
        )
        .await
        .with_context(|| {
            format!(
                "Kafka at {} did not answer: is the stack up? (make test starts it)",
                self.cfg.kafka.brokers
            )
        })?
        .with_context(|| format!("creating topics on Kafka at {}", self.cfg.kafka.brokers))?;
        Ok(())
    }

    /// Connects to Cassandra and applies the migrations into this test's keyspace.
    pub async fn migrate(&self) -> anyhow::Result<Session> {
        let session = cassandra::connect_once(&self.cfg.cassandra)
            .await
            .context("is the stack up? (make test starts it)")?;
        cassandra::migrate(&session, &self.cfg.cassandra).await?;
        Ok(session)
    }

    /// Committed offsets of `group` on every partition of `topic` (`Offset::Invalid` where
    /// it committed nothing).
    pub fn committed(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> anyhow::Result<BTreeMap<i32, Offset>> {
        committed_offsets(&self.cfg.kafka, group, topic, partitions)
    }

    /// High watermarks of every partition of `topic`; an empty partition (nothing to commit)
    /// is `Offset::Invalid`, as a committed-offsets query reports it.
    pub fn high_watermarks(
        &self,
        topic: &str,
        partitions: i32,
    ) -> anyhow::Result<BTreeMap<i32, Offset>> {
        high_watermarks(&self.cfg.kafka, topic, partitions)
    }

    /// Ok when `group` has committed all of `topic` (its committed offsets are the high
    /// watermarks); an error showing both otherwise.
    pub fn committed_all(&self, group: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
        let committed = self.committed(group, topic, partitions)?;
        let high = self.high_watermarks(topic, partitions)?;
        anyhow::ensure!(
            committed == high,
            "group {group} has not committed all of {topic}: committed {committed:?}, high watermarks {high:?}"
        );
        Ok(())
    }

    /// Waits until `group` has committed all of `topic`, in two checks 2 s apart with the
    /// same high watermarks; fails after `timeout` naming what is left. Transient errors of a
    /// check are retried. A producer stalled for longer than the 2 s is not seen: the caller
    /// first makes sure its producers have drained.
    pub async fn wait_committed_all(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut caught_up_at: Option<BTreeMap<i32, Offset>> = None;
        let mut last = String::from("no check finished");
        loop {
            let (k, g, t) = (self.cfg.kafka.clone(), group.to_owned(), topic.to_owned());
            let check = tokio::task::spawn_blocking(move || {
                Ok::<_, anyhow::Error>((
                    committed_offsets(&k, &g, &t, partitions)?,
                    high_watermarks(&k, &t, partitions)?,
                ))
            })
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
            match check {
                Ok((committed, high)) if committed == high => {
                    if caught_up_at.as_ref() == Some(&high) {
                        return Ok(());
                    }
                    caught_up_at = Some(high);
                }
                Ok((committed, high)) => {
                    caught_up_at = None;
                    last = format!("committed {committed:?}, high watermarks {high:?}");
                }
                Err(e) => {
                    caught_up_at = None;
                    last = format!("check failed: {e:#}");
                }
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "group {group} did not commit all of {topic} within {timeout:?}: {last}"
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Drops this test's keyspace (best effort).
    pub async fn drop_keyspace(&self, session: &Session) {
        let _ = session
            .query_unpaged(
                format!("DROP KEYSPACE IF EXISTS {}", self.cfg.cassandra.keyspace),
                (),
            )
            .await;
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let cfg = self.cfg.clone();
        // Drop runs inside the test's runtime, which cannot block on its own futures: clean up
        // on a thread with a runtime of its own, bounded in time.
        let cleaned = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let t = &cfg.topics;
                let topics = [
                    &t.live_streams,
                    &t.chat,
                    &t.moderation,
                    &t.dead_letter,
                    &t.optouts,
                ];
                let topics: Vec<&str> = topics.iter().map(|s| s.as_str()).collect();
                let kafka = tokio::time::timeout(
                    Duration::from_secs(30),
                    kafka::delete_topics(&cfg.kafka, &topics),
                );
                let keyspace = async {
                    let session = cassandra::connect_once(&cfg.cassandra).await?;
                    session
                        .query_unpaged(
                            format!("DROP KEYSPACE IF EXISTS {}", cfg.cassandra.keyspace),
                            (),
                        )
                        .await?;
                    anyhow::Ok(())
                };
                let keyspace = tokio::time::timeout(Duration::from_secs(60), keyspace);
                let (k, c) = tokio::join!(kafka, keyspace);
                k.map_err(|_| anyhow::anyhow!("deleting topics timed out"))??;
                c.map_err(|_| anyhow::anyhow!("dropping the keyspace timed out"))??;
                anyhow::Ok(())
            })
        })
        .join();
        match cleaned {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("[{}] cleanup left something behind: {e:#}", self.id),
            Err(_) => eprintln!("[{}] cleanup thread panicked", self.id),
        }
    }
}

/// The local stack's folder (`TCI_STACK_DIR`, else `<repo>/.stack`, as `dev/stack.sh` has it).
pub fn stack_dir() -> PathBuf {
    std::env::var_os("TCI_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.stack"))
}

/// `kafka` pointed at the local stack's second listener: SASL_SSL with SCRAM-SHA-512, whose
/// certificate, CA file and SCRAM user `dev/stack.sh` makes under `<stack>/run/kafka-tls/`.
/// The same properties an operator sets for a managed cluster (`kafka.properties` and the
/// `TCI__KAFKA__SASL_PASSWORD` secret).
pub fn sasl_ssl(kafka: &config::KafkaConfig) -> anyhow::Result<config::KafkaConfig> {
    let tls = stack_dir().join("run/kafka-tls");
    let env = std::fs::read_to_string(tls.join("sasl.env")).with_context(|| {
        format!(
            "{}: no SCRAM user of the local stack; restart it (dev/stack.sh stop && dev/stack.sh start)",
            tls.display()
        )
    })?;
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
            .with_context(|| format!("{name} missing from {}", tls.join("sasl.env").display()))
    };
    let port = include_str!("../../dev/stack/ports.env")
        .lines()
        .find_map(|l| l.strip_prefix("KAFKA_SASL_SSL_PORT="))
        .context("KAFKA_SASL_SSL_PORT missing from dev/stack/ports.env")?;
    let mut k = kafka.clone();
    k.brokers = format!("127.0.0.1:{}", port.trim());
    for (key, value) in [
        ("security.protocol", "SASL_SSL".to_owned()),
        ("sasl.mechanism", "SCRAM-SHA-512".to_owned()),
        ("sasl.username", var("KAFKA_SASL_USER")?),
        ("ssl.ca.location", tls.join("ca.pem").display().to_string()),
    ] {
        k.properties.insert(key.to_owned(), value);
    }
    k.sasl_password = Some(var("KAFKA_SASL_PASSWORD")?.into());
    Ok(k)
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl ReadRecord {
    /// The value of header `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Reads records of `topic` from the beginning until `expected` were seen or `timeout` passed.
pub async fn read_records(
    cfg: &CommonConfig,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<ReadRecord>> {
    use rdkafka::message::Headers;
    let group = unique("reader");
    let consumer: StreamConsumer = kafka::consumer(
        &cfg.kafka,
        &group,
        "it-reader",
        rdkafka::consumer::DefaultConsumerContext,
        &[("enable.auto.commit", "false")],
    )?;
    consumer.subscribe(&[topic])?;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < expected {
        let m = match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(m) => m.with_context(|| format!("reading {topic}"))?,
            Err(_) => break,
        };
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        out.push(ReadRecord {
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    Ok(out)
}

/// Like [`read_records`], as (key, payload) pairs.
pub async fn read_topic(
    cfg: &CommonConfig,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<(Option<Vec<u8>>, Vec<u8>)>> {
    Ok(read_records(cfg, topic, expected, timeout)
        .await?
        .into_iter()
        .map(|r| (r.key, r.payload))
        .collect())
}

/// Reads every record currently in `topic` (up to the high watermarks of its partitions at the
/// time of the call); returns (key, payload) pairs.
pub async fn read_all(
    cfg: &CommonConfig,
    topic: &str,
) -> anyhow::Result<Vec<(Option<Vec<u8>>, Vec<u8>)>> {
    let probe: rdkafka::consumer::BaseConsumer = kafka::base_config(&cfg.kafka).create()?;
    let md = probe.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = md
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    let mut total = 0usize;
    for p in &partitions {
        let (lo, hi) = probe.fetch_watermarks(topic, *p, Duration::from_secs(10))?;
        total += (hi - lo).max(0) as usize;
    }
    let got = read_topic(cfg, topic, total, Duration::from_secs(60)).await?;
    anyhow::ensure!(
        got.len() >= total,
        "read {} of {total} records of {topic}",
        got.len()
    );
    Ok(got)
}

fn committed_offsets(
    kafka: &config::KafkaConfig,
    group: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<BTreeMap<i32, Offset>> {
    let mut c = kafka::base_config(kafka);
    c.set("group.id", group);
    let consumer: BaseConsumer = c.create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(got
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect())
}

fn high_watermarks(
    kafka: &config::KafkaConfig,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<BTreeMap<i32, Offset>> {
    let consumer: BaseConsumer = kafka::base_config(kafka).create()?;
    (0..partitions)
        .map(|p| {
            let high = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))?
                .1;
            Ok((
                p,
                if high == 0 {
                    Offset::Invalid
                } else {
                    Offset::Offset(high)
                },
            ))
        })
        .collect()
}

/// Polls `check` every 200 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
