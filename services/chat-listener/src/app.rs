//! The chat-listener service: live-set consumer → connection pool → publisher.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use rdkafka::consumer::{Consumer, StreamConsumer};
use tci_common::{
    admin::{self, Readiness},
    kafka::{self, ErrorKeeper},
    registry::AvroCodec,
    retry::Backoff,
    Tasks,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    channels,
    config::Config,
    optout::{self, SharedOptOuts},
    pool, publish,
};

/// A built chat-listener, ready to run.
pub struct App {
    cfg: Config,
    token: CancellationToken,
    readiness: Readiness,
    admin_addr: SocketAddr,
    admin: futures::future::BoxFuture<'static, anyhow::Result<()>>,
    consumer: Arc<StreamConsumer<ErrorKeeper>>,
    producer: rdkafka::producer::FutureProducer,
    codec: AvroCodec,
    owned: Arc<std::sync::atomic::AtomicUsize>,
}

impl App {
    /// Creates the clients and binds the admin server. Dependencies that are down do not fail
    /// the build: the tasks retry them and `/readyz` says which is missing.
    pub async fn build(cfg: Config, token: CancellationToken) -> anyhow::Result<Self> {
        // Every metric is registered before /metrics can be scraped, not at its first use.
        std::sync::LazyLock::force(&crate::metrics::M);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let readiness = Readiness::new(&["kafka", "registry"]);
        let (admin_addr, admin) =
            admin::serve(&cfg.common.admin.addr, readiness.clone(), token.clone()).await?;
        let session_timeout = cfg.channels.session_timeout.as_millis().to_string();
        // The live set is soft state rebuilt from the topic (see `channels`): no commits.
        let mut overrides = vec![
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "latest"),
            ("session.timeout.ms", session_timeout.as_str()),
            ("heartbeat.interval.ms", "1000"),
        ];
        if let Some(id) = cfg
            .channels
            .instance_id
            .as_deref()
            .filter(|i| !i.is_empty())
        {
            overrides.push(("group.instance.id", id));
        }
        let consumer: StreamConsumer<ErrorKeeper> = kafka::consumer(
            &cfg.common.kafka,
            &cfg.channels.group_id,
            "chat-listener",
            ErrorKeeper::default(),
            &overrides,
        )?;
        consumer.subscribe(&[&cfg.common.topics.live_streams])?;
        let producer = kafka::producer(
            &cfg.common.kafka,
            "chat-listener",
            // Never time a message out while Kafka is down: the bounded queue backpressures.
            &[("message.timeout.ms", "0")],
        )?;
        let codec = AvroCodec::new(&cfg.common.registry)?;
        Ok(Self {
            cfg,
            token,
            readiness,
            admin_addr,
            admin,
            consumer: Arc::new(consumer),
            producer,
            codec,
            owned: Arc::default(),
        })
    }

    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// How many channels this replica owns right now (shared counter, for tests and status).
    pub fn owned_channels(&self) -> Arc<std::sync::atomic::AtomicUsize> {
        self.owned.clone()
    }

    /// Runs until the token is cancelled (then parts, drains the publisher and flushes).
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            cfg,
            token,
            readiness,
            admin_addr,
            admin,
            consumer,
            producer,
            codec,
            owned,
        } = self;
        info!(%admin_addr, irc = %cfg.irc.url, topic = %cfg.common.topics.chat, "chat-listener starting");
        let mut tasks = Tasks::new(token.clone());
        tasks.spawn("admin", admin);

        let (pool_tx, pool_rx) = mpsc::channel(4096);
        let (out_tx, out_rx) = mpsc::channel(cfg.publish.queue.max(1));

        // Registers the schemas (retrying while the registry is down), then publishes.
        let (pc, topics, prod, cod, rd) = (
            cfg.publish.clone(),
            cfg.common.topics.clone(),
            producer.clone(),
            codec.clone(),
            readiness.clone(),
        );
        let pub_token = token.clone();
        let optouts = SharedOptOuts::default();
        let (ready_tx, mut optouts_ready) = tokio::sync::watch::channel(false);
        let pub_optouts = optouts.clone();
        let commands = optout::Commands::new(&cfg.optout);
        tasks.spawn(
            "optouts",
            optout::follow(
                cfg.common.kafka.clone(),
                codec.clone(),
                cfg.common.topics.optouts.clone(),
                optouts,
                ready_tx,
                token.clone(),
            ),
        );
        tasks.spawn("publisher", async move {
            let mut backoff = Backoff::default_for_dependencies();
            for (topic, avsc) in [(&topics.chat, tci_schemas::CHAT_MESSAGE_AVSC), (&topics.moderation, tci_schemas::MODERATION_EVENT_AVSC), (&topics.optouts, tci_schemas::OPTOUT_AVSC)] {
                loop {
                    match cod.register_value_schema(topic, avsc).await {
                        Ok(id) => {
                            info!(topic = %topic, schema_id = id, "value schema registered");
                            break;
                        }
                        Err(e) => {
                            rd.set("registry", false, e.to_string());
                            let d = backoff.next_delay();
                            warn!(error = %e, retry_in = ?d, "schema registry unavailable; retrying");
                            tokio::select! {
                                _ = tokio::time::sleep(d) => {}
                                _ = pub_token.cancelled() => return Ok(()),
                            }
                        }
                    }
                }
            }
            rd.set("registry", true, "schemas registered");
            // Nothing is published before the opt-out topic was read to its end: until then
            // the buffer fills and the connections wait (backpressure), nothing is lost.
            tokio::select! {
                r = optouts_ready.wait_for(|r| *r) => { r?; }
                _ = pub_token.cancelled() => return Ok(()),
            }
            info!("opt-out set loaded; publishing");
            publish::run(pc, topics, prod, cod, out_rx, pub_optouts, commands).await
        });

        tasks.spawn(
            "pool",
            pool::run(cfg.irc.clone(), pool_rx, out_tx, token.clone()),
        );
        tasks.spawn(
            "live-set",
            channels::run(
                cfg.channels.clone(),
                cfg.common.topics.live_streams.clone(),
                consumer.clone(),
                codec.clone(),
                pool_tx,
                owned,
                token.clone(),
            ),
        );

        let probe_consumer = consumer.clone();
        tasks.spawn(
            "watch-kafka",
            admin::watch(
                readiness.clone(),
                "kafka",
                Duration::from_secs(5),
                token.clone(),
                move || kafka::probe(probe_consumer.clone()),
            ),
        );

        let res = tasks.join(Duration::from_secs(30)).await;
        // Whatever is still queued in librdkafka gets its chance before we exit.
        let flushed = tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            producer.flush(Duration::from_secs(10))
        })
        .await;
        if let Ok(Err(e)) = flushed {
            warn!(error = %e, "producer flush at shutdown did not complete");
        }
        res
    }
}
