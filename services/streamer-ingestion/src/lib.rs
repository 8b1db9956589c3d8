//! # streamer-ingestion
//!
//! Consumer group `streamer-ingestion` on the live-streams topic. Every [`tci_schemas::LiveStream`]
//! record upserts the `streamers` row of its channel, in batches (flushed on size or linger), and
//! the offsets are stored only after the write (at-least-once), on the shared batch consumer of
//! [`tci_common::consumer`] ([`consume`] supplies decode and write). While Cassandra fails,
//! consumption is paused (the group membership is kept) and the batch retried; a write Cassandra
//! refuses for good stops ingestion and `/readyz` says so. The writes are idempotent and
//! order-independent thanks to write timestamps (see [`timestamps`]): `first_seen` is the
//! earliest observation ever and never moves; `last_seen_live` is the latest and never goes back,
//! even when old records are replayed. Records that do not decode go to the dead-letter topic
//! with the reason; consumption goes on.
//!
//! ```text
//!  live-streams ──► tci_common::consumer (batch) ──► consume.rs (collapse) ──► store.rs
//!                      │ consume.rs: decode         (2 prepared UPDATEs per channel) │ then
//!                      ▼ undecodable                                                 ▼
//!                 dead-letter topic                                store offsets → auto-commit
//! ```

pub mod consume;
pub mod metrics;
pub mod store;
pub mod timestamps;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use serde::{Deserialize, Serialize};
use tci_common::{
    admin, cassandra,
    consumer::{self, BatchConsumer, Mode, Options, ReadinessCheck},
    kafka,
    registry::AvroCodec,
    registry::RegistryAdmin,
    CommonConfig, Tasks,
};
use tci_schemas::LiveStream;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use metrics::Stats;

/// Configuration: the shared sections plus `[ingest]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    #[serde(flatten)]
    pub common: CommonConfig,
    pub ingest: IngestConfig,
}

/// Batching and the consumer group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestConfig {
    pub group_id: String,
    /// Flush when this many records are pending…
    pub batch_size: usize,
    /// …or this long after the first pending record arrived.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// Channels written to Cassandra at once.
    pub write_concurrency: usize,
    /// Time allowed to flush and commit after shutdown was requested.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long a revocation may wait for the revoked partitions' records to be written.
    #[serde(with = "humantime_serde")]
    pub rebalance_drain_timeout: Duration,
    /// The group consumer's `session.timeout.ms`.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// The group consumer's `max.poll.interval.ms` (consumption pauses instead of blocking the
    /// poll during an outage, so an outage longer than this does not cost the membership).
    #[serde(with = "humantime_serde")]
    pub max_poll_interval: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            group_id: "streamer-ingestion".into(),
            batch_size: 1000,
            linger: Duration::from_millis(500),
            write_concurrency: 64,
            shutdown_grace: Duration::from_secs(20),
            rebalance_drain_timeout: Duration::from_secs(10),
            session_timeout: Duration::from_secs(30),
            max_poll_interval: Duration::from_secs(300),
        }
    }
}

/// The Kafka consumer context of streamer-ingestion.
pub type IngestContext = consumer::Context<LiveStream>;

/// The service.
pub struct App {
    ingestor: BatchConsumer<consume::StreamerDecoder>,
    consumer: Arc<StreamConsumer<IngestContext>>,
    store: Arc<store::StreamerStore>,
    stats: Arc<Stats>,
    token: CancellationToken,
    readiness: admin::Readiness,
    registry: RegistryAdmin,
    admin_addr: SocketAddr,
    admin: futures::future::BoxFuture<'static, anyhow::Result<()>>,
    grace: Duration,
}

impl App {
    /// Connects to Cassandra (retrying until it answers or `token` is cancelled), prepares the
    /// statements (the migrations must have been applied: `tci migrate`), subscribes the group
    /// and binds the admin server.
    pub async fn build(cfg: Config, token: CancellationToken) -> anyhow::Result<Self> {
        // Every metric is registered before /metrics can be scraped, not at its first use.
        std::sync::LazyLock::force(&crate::metrics::METRICS);
        if cfg.ingest.batch_size == 0 || cfg.ingest.write_concurrency == 0 {
            anyhow::bail!("ingest.batch_size and ingest.write_concurrency must be > 0");
        }
        std::sync::LazyLock::force(&metrics::METRICS);
        let readiness = admin::Readiness::new(&["kafka", "cassandra", "registry"]);
        let session = cassandra::connect(&cfg.common.cassandra, &token).await?;
        readiness.set("cassandra", true, "connected");
        let store = store::StreamerStore::new(
            session,
            &cfg.common.cassandra.keyspace,
            cfg.ingest.write_concurrency,
        )
        .await
        .context("is the keyspace migrated? (tci migrate)")?;
        let codec = AvroCodec::new(&cfg.common.registry)?;
        let registry = RegistryAdmin::new(&cfg.common.registry)?;
        let topics = &cfg.common.topics;
        let producer = kafka::producer(&cfg.common.kafka, "streamer-ingestion-dlq", &[])?;
        let dlq =
            kafka::DeadLetter::new(producer, topics.dead_letter.clone(), "streamer-ingestion");
        let store = Arc::new(store);
        let stats = Arc::new(Stats::default());
        let builder = consumer::Builder::new(
            consumer::Settings {
                batch_size: cfg.ingest.batch_size,
                linger: cfg.ingest.linger,
                // One batch at a time, as before (the writes are order-independent, so more
                // would be safe; the store bounds the channels written at once).
                max_in_flight_batches: 1,
                rebalance_drain_timeout: cfg.ingest.rebalance_drain_timeout,
                shutdown_grace: cfg.ingest.shutdown_grace,
            },
            Arc::new(consume::StreamerSink::new(store.clone(), stats.clone())),
            Arc::new(consume::StreamerMetrics::new(stats.clone())),
        );
        let session_ms = cfg.ingest.session_timeout.as_millis().to_string();
        let poll_ms = cfg.ingest.max_poll_interval.as_millis().to_string();
        let consumer: StreamConsumer<IngestContext> = kafka::consumer(
            &cfg.common.kafka,
            &cfg.ingest.group_id,
            "streamer-ingestion",
            builder.context(),
            &[
                ("session.timeout.ms", &session_ms),
                ("max.poll.interval.ms", &poll_ms),
            ],
        )?;
        consumer
            .subscribe(&[&topics.live_streams])
            .with_context(|| format!("subscribing to {}", topics.live_streams))?;
        let (admin_addr, admin) =
            admin::serve(&cfg.common.admin.addr, readiness.clone(), token.clone()).await?;
        info!(%admin_addr, group = %cfg.ingest.group_id, topic = %topics.live_streams, "streamer-ingestion built");
        let consumer = Arc::new(consumer);
        // The consumer is the only writer of the "ingest" check (the outcome of its writes);
        // "cassandra", "kafka" and "registry" are the watchers'.
        readiness.set("ingest", true, "writes succeed");
        let ingestor = builder.build(
            consumer.clone(),
            consume::StreamerDecoder::new(codec),
            Options {
                dlq,
                mode: Mode::Live,
                token: token.clone(),
                readiness: Some(ReadinessCheck {
                    readiness: readiness.clone(),
                    name: "ingest",
                }),
            },
        );
        Ok(Self {
            ingestor,
            consumer,
            store,
            stats,
            token,
            readiness,
            registry,
            admin_addr,
            admin,
            // The consumer's own grace for its last flushes, then time to commit and close.
            grace: cfg.ingest.shutdown_grace + Duration::from_secs(10),
        })
    }

    /// The bound admin address (`/healthz`, `/readyz`, `/metrics`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Per-instance counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Runs until the token is cancelled, then flushes, commits and returns.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            ingestor,
            consumer,
            store,
            stats: _,
            token,
            readiness,
            registry,
            admin_addr: _,
            admin,
            grace,
        } = self;
        let mut tasks = Tasks::new(token.clone());
        tasks.spawn("admin", admin);
        tasks.spawn("ingest", async move { ingestor.run().await.map(drop) });
        let every = Duration::from_secs(10);
        tasks.spawn(
            "watch-cassandra",
            admin::watch(
                readiness.clone(),
                "cassandra",
                every,
                token.clone(),
                move || {
                    let store = store.clone();
                    async move {
                        if cassandra::reachable(store.session()).await {
                            Ok("answered".to_string())
                        } else {
                            Err(anyhow::anyhow!("no answer"))
                        }
                    }
                },
            ),
        );
        tasks.spawn(
            "watch-kafka",
            admin::watch(
                readiness.clone(),
                "kafka",
                every,
                token.clone(),
                move || kafka::probe(consumer.clone()),
            ),
        );
        tasks.spawn(
            "watch-registry",
            admin::watch(readiness, "registry", every, token.clone(), move || {
                let r = registry.clone();
                async move { r.probe().await }
            }),
        );
        tasks.join(grace).await
    }
}
