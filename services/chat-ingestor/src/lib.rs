//! chat-ingestor: consumes the chat and moderation topics and writes them to Cassandra.
//!
//! - Batched: records are grouped by Cassandra partition and written with prepared statements,
//!   unlogged batches only within one partition, bounded concurrency ([`writer`]).
//! - At-least-once: an offset is stored only after every record before it in its partition is
//!   durable (the shared consumer of [`tci_common::consumer`]; [`pipeline`] supplies decode and
//!   write); a crash loses nothing, it re-reads.
//! - Idempotent: every primary key contains the message (or event) id, so a re-read or a
//!   duplicate delivery rewrites the same row.
//! - Poison records go to the dead-letter topic; Cassandra or registry outages pause consumption
//!   and retry, never dead-letter.
//! - [`backfill`]: replays a time range of the topics into Cassandra with the same writer,
//!   without touching the live consumer group.
//! - [`optout`]: records of opted-out chatters and channels are never written (live or
//!   backfill), and an opt-out purges what was stored (README "Opting out").

pub mod backfill;
pub mod decode;
pub mod metrics;
pub mod optout;
pub mod pipeline;
pub mod writer;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use chat_store::optout::OptOutStatements;
use futures::FutureExt as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use serde::{Deserialize, Serialize};
use tci_common::{
    admin, cassandra,
    consumer::{Mode, Options, ReadinessCheck},
    kafka,
    registry::AvroCodec,
    CommonConfig, Tasks,
};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    optout::{OptOutGate, Purger, UserChannels},
    pipeline::{ChatDecoder, IngestContext, Pipeline},
    writer::{Writer, WriterSettings},
};

/// Service configuration: the common sections plus `[ingest]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    #[serde(flatten)]
    pub common: CommonConfig,
    pub ingest: IngestConfig,
}

/// `[ingest]`: batching, concurrency, timeouts (`TCI__INGEST__BATCH_SIZE=…`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestConfig {
    /// Consumer group of the live service.
    pub group_id: String,
    /// A batch is flushed when it holds this many records…
    pub batch_size: usize,
    /// …or when its first record has waited this long.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// Batches being written at once (reading stops while all are busy).
    pub max_in_flight_batches: usize,
    /// Cassandra statements/batches in flight at once.
    pub max_in_flight_writes: usize,
    /// Rows per single-partition unlogged batch.
    pub max_rows_per_batch: usize,
    /// How long a revocation may wait for the revoked partitions' records to be written.
    #[serde(with = "humantime_serde")]
    pub rebalance_drain_timeout: Duration,
    /// How long shutdown may wait for the last flushes.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Write retries: first delay…
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// …and cap.
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
    /// Backfill: Kafka record timestamps may differ from sent timestamps by up to this much.
    #[serde(with = "humantime_serde")]
    pub backfill_slack: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            group_id: "chat-ingestor".into(),
            batch_size: 1000,
            linger: Duration::from_millis(50),
            max_in_flight_batches: 4,
            max_in_flight_writes: 64,
            max_rows_per_batch: 50,
            rebalance_drain_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(20),
            retry_base: Duration::from_millis(100),
            retry_cap: Duration::from_secs(5),
            backfill_slack: Duration::from_secs(300),
        }
    }
}

impl IngestConfig {
    pub fn writer_settings(&self) -> WriterSettings {
        WriterSettings {
            max_rows_per_batch: self.max_rows_per_batch,
            max_in_flight: self.max_in_flight_writes,
            retry_base: self.retry_base,
            retry_cap: self.retry_cap,
        }
    }

    pub fn consumer_settings(&self) -> tci_common::consumer::Settings {
        tci_common::consumer::Settings {
            batch_size: self.batch_size.max(1),
            linger: self.linger,
            max_in_flight_batches: self.max_in_flight_batches,
            rebalance_drain_timeout: self.rebalance_drain_timeout,
            shutdown_grace: self.shutdown_grace,
        }
    }
}

/// What the ingestor writes with: the chat writer, the opt-out statements and the
/// `user_channels` index, over one session.
pub struct Store {
    pub session: Arc<scylla::client::session::Session>,
    pub writer: Arc<Writer>,
    pub optouts: Arc<OptOutStatements>,
    pub user_channels: Arc<UserChannels>,
}

/// Connects to Cassandra (retrying until `token` is cancelled) and prepares the writer and the
/// opt-out statements.
pub(crate) async fn connect_store(
    cfg: &Config,
    token: &CancellationToken,
) -> anyhow::Result<Store> {
    let session = Arc::new(cassandra::connect(&cfg.common.cassandra, token).await?);
    let ks = &cfg.common.cassandra.keyspace;
    let writer = Writer::prepare(session.clone(), ks, cfg.ingest.writer_settings())
        .await
        .context("preparing statements (are the migrations applied? `tci migrate`)")?;
    let optouts =
        Arc::new(OptOutStatements::prepare(&session, ks).await.context(
            "preparing the opt-out statements (are the migrations applied? `tci migrate`)",
        )?);
    let writer = Arc::new(writer);
    Ok(Store {
        user_channels: Arc::new(UserChannels::new(
            session.clone(),
            optouts.clone(),
            writer.clone(),
            ks,
        )),
        session,
        writer,
        optouts,
    })
}

/// The live service.
pub struct App {
    pipeline: Pipeline,
    /// Follows the opt-out topic: the filter's set, the `optouts` rows, the purges.
    optouts: futures::future::BoxFuture<'static, anyhow::Result<()>>,
    admin_addr: SocketAddr,
    admin: futures::future::BoxFuture<'static, anyhow::Result<()>>,
    /// `/readyz` watches: Kafka and the registry (the pipeline itself reports Cassandra, from
    /// the outcome of its writes).
    readiness: admin::Readiness,
    consumer: Arc<StreamConsumer<IngestContext>>,
    registry: tci_common::registry::RegistryAdmin,
    token: CancellationToken,
    grace: Duration,
}

impl App {
    /// Connects to Cassandra, the registry and Kafka, subscribes the group, binds the admin
    /// server.
    pub async fn build(cfg: Config, token: CancellationToken) -> anyhow::Result<Self> {
        // Every metric is registered before /metrics can be scraped, not at its first use.
        std::sync::LazyLock::force(&crate::metrics::METRICS);
        let readiness = admin::Readiness::new(&["kafka", "cassandra", "registry"]);
        let codec = AvroCodec::new(&cfg.common.registry)?;
        std::sync::LazyLock::force(&crate::optout::METRICS);
        let store = connect_store(&cfg, &token).await?;
        readiness.set("cassandra", true, "connected");
        let registry = tci_common::registry::RegistryAdmin::new(&cfg.common.registry)?;
        let topics = &cfg.common.topics;
        let (gate, ready) = OptOutGate::new();
        let optouts = optout::follow(
            cfg.common.kafka.clone(),
            codec.clone(),
            topics.optouts.clone(),
            gate.clone(),
            ready,
            Some(Purger {
                session: store.session.clone(),
                st: store.optouts.clone(),
            }),
            token.clone(),
        )
        .boxed();
        let builder = pipeline::builder(
            cfg.ingest.consumer_settings(),
            &store,
            cfg.ingest.max_rows_per_batch,
            topics,
            true,
            gate,
        );
        let producer = kafka::producer(&cfg.common.kafka, "chat-ingestor-dlq", &[])?;
        let dlq = kafka::DeadLetter::new(producer, topics.dead_letter.clone(), "chat-ingestor");
        let consumer: StreamConsumer<IngestContext> = kafka::consumer(
            &cfg.common.kafka,
            &cfg.ingest.group_id,
            "chat-ingestor",
            builder.context(),
            &[("statistics.interval.ms", "5000")],
        )?;
        consumer
            .subscribe(&[&topics.chat, &topics.moderation])
            .with_context(|| format!("subscribing to {} and {}", topics.chat, topics.moderation))?;
        let consumer = Arc::new(consumer);
        let (admin_addr, admin) =
            admin::serve(&cfg.common.admin.addr, readiness.clone(), token.clone()).await?;
        info!(%admin_addr, group = %cfg.ingest.group_id, chat = %topics.chat, moderation = %topics.moderation, "chat-ingestor ready");
        // The consumer is the only writer of the "cassandra" check (from the outcome of its
        // writes); "kafka" and "registry" are the watchers'.
        let pipeline = builder.build(
            consumer.clone(),
            ChatDecoder::new(codec, topics),
            Options {
                dlq,
                mode: Mode::Live,
                token: token.clone(),
                readiness: Some(ReadinessCheck {
                    readiness: readiness.clone(),
                    name: "cassandra",
                }),
            },
        );
        Ok(Self {
            pipeline,
            optouts,
            admin_addr,
            admin,
            readiness,
            consumer,
            registry,
            token,
            grace: cfg.ingest.shutdown_grace + Duration::from_secs(10),
        })
    }

    /// The bound admin address (`/healthz`, `/readyz`, `/metrics`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Runs until the token is cancelled, then flushes, commits and returns.
    pub async fn run(self) -> anyhow::Result<()> {
        let mut tasks = Tasks::new(self.token.clone());
        tasks.spawn("admin", self.admin);
        tasks.spawn("optouts", self.optouts);
        let every = Duration::from_secs(5);
        let consumer = self.consumer;
        tasks.spawn(
            "watch-kafka",
            admin::watch(
                self.readiness.clone(),
                "kafka",
                every,
                self.token.clone(),
                move || kafka::probe(consumer.clone()),
            ),
        );
        let registry = self.registry;
        tasks.spawn(
            "watch-registry",
            admin::watch(
                self.readiness,
                "registry",
                every,
                self.token.clone(),
                move || {
                    let r = registry.clone();
                    async move { r.probe().await }
                },
            ),
        );
        let pipeline = self.pipeline;
        tasks.spawn("ingest", async move { pipeline.run().await.map(drop) });
        tasks.join(self.grace).await
    }
}
