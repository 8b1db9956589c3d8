//! # streamer-listener
//!
//! Every `poll.interval` (120 s: one walk of all of Twitch takes over a minute, see docs/operations.md) it walks Helix `GET /helix/streams?type=live&first=100` through
//! all pages with an app access token (client credentials), filters and de-duplicates the
//! streams, and publishes one Avro [`tci_schemas::LiveStream`] per live channel to the
//! live-streams topic (key = broadcaster id), all stamped with the poll's start time and id.
//!
//! The one rule that matters downstream: **a poll is published whole or not at all.** A page
//! that still fails after its retries fails the poll; nothing is sent, so consumers keep the
//! last good state instead of seeing every channel "go offline".
//!
//! ```text
//!  ┌──────────┐ token  ┌────────────┐ pages ┌──────────┐ records ┌───────────────┐
//!  │ id.twitch├───────►│ HelixClient├──────►│ poll.rs  ├────────►│ Publisher     ├─► Kafka
//!  └──────────┘        │ rate limit │       │ filter,  │         │ (Avro, idemp.)│
//!                      │ retries    │       │ de-dup   │         └───────────────┘
//!                      └────────────┘       └──────────┘
//! ```

pub mod config;
pub mod filter;
pub mod helix;
pub mod metrics;
pub mod poll;
pub mod publish;

use std::{net::SocketAddr, sync::Arc, time::Duration, time::Instant};

use anyhow::Context;
use rdkafka::producer::Producer;
use tci_common::{admin, kafka, now_ms, registry::AvroCodec, Tasks};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use config::Config;
pub use metrics::{PollReport, Stats};

use filter::LocalFilter;
use helix::{auth::TokenSource, HelixClient};
use metrics::METRICS;
use publish::Publisher;

/// The listener: the poller, the publisher and the admin server.
pub struct App {
    cfg: Config,
    token: CancellationToken,
    poller: Arc<Poller>,
    readiness: admin::Readiness,
    admin_addr: SocketAddr,
    admin: futures::future::BoxFuture<'static, anyhow::Result<()>>,
}

/// Walks and publishes; one poll at a time.
pub struct Poller {
    helix: HelixClient,
    filter: LocalFilter,
    publisher: Publisher,
    max_pages: u32,
    stats: Arc<Stats>,
    readiness: admin::Readiness,
}

impl Poller {
    /// Runs one poll: walk, then publish everything or nothing. Updates metrics, stats and the
    /// `twitch` readiness, and returns the report.
    pub async fn poll_once(&self, cancel: &CancellationToken) -> PollReport {
        let start = Instant::now();
        let observed_at = now_ms();
        let poll_id = poll::new_poll_id(observed_at);
        let mut report = PollReport {
            poll_id: poll_id.clone(),
            observed_at,
            ..PollReport::default()
        };
        let walk = poll::walk(
            &self.helix,
            &self.filter,
            self.max_pages,
            &self.stats,
            cancel,
        )
        .await;
        let outcome = match walk {
            Err(e) => {
                fill(&mut report, &e.partial);
                let kind = e.source.kind();
                METRICS.errors.with_label_values(&[kind]).inc();
                self.readiness
                    .set("twitch", false, format!("last poll failed: {e}"));
                if matches!(e.source, helix::HelixError::Cancelled) {
                    "cancelled"
                } else {
                    error!(poll_id, page = e.page, pages_done = e.partial.pages, error = %e.source, kind,
                        "poll failed; publishing nothing for it (consumers keep the last good state)");
                    "failed"
                }
            }
            Ok(w) => {
                fill(&mut report, &w);
                let records = poll::to_records(&w.streams, observed_at, &poll_id);
                match self.publisher.publish(&records, &poll_id, cancel).await {
                    Ok(n) => {
                        report.ok = true;
                        report.published = n;
                        METRICS.streams_published.inc_by(n as u64);
                        METRICS.last_poll_streams.set(n as i64);
                        self.stats
                            .streams_published
                            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                        self.readiness.set(
                            "twitch",
                            true,
                            format!("last poll {poll_id}: {n} streams"),
                        );
                        self.readiness
                            .set("registry", true, "LiveStream schema registered");
                        if w.capped {
                            "capped"
                        } else {
                            "ok"
                        }
                    }
                    Err(e) => {
                        METRICS.errors.with_label_values(&[e.kind()]).inc();
                        if matches!(e, publish::PublishError::Register { .. }) {
                            self.readiness.set("registry", false, e.to_string());
                        }
                        if matches!(e, publish::PublishError::Cancelled) {
                            "cancelled"
                        } else {
                            error!(poll_id, error = %e, kind = e.kind(), "publishing the poll failed");
                            "failed"
                        }
                    }
                }
            }
        };
        report.total = start.elapsed();
        METRICS.polls.with_label_values(&[outcome]).inc();
        METRICS
            .poll_duration_seconds
            .observe(report.total.as_secs_f64());
        if report.ok {
            Stats::inc(&self.stats.polls_ok);
            info!(
                poll_id,
                outcome,
                pages = report.pages,
                streams = report.published,
                duplicates = report.duplicates,
                filtered = report.filtered,
                rate_limit_waits = report.rate_limit_waits,
                rate_limited_429 = report.rate_limited_429,
                retries = report.retries,
                walk_ms = report.walk.as_millis() as u64,
                total_ms = report.total.as_millis() as u64,
                "poll published"
            );
        } else if outcome != "cancelled" {
            Stats::inc(&self.stats.polls_failed);
        }
        self.stats.set_last(report.clone());
        report
    }

    /// The per-instance counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }
}

fn fill(r: &mut PollReport, w: &poll::Walk) {
    r.pages = w.pages;
    r.seen = w.seen;
    r.duplicates = w.duplicates;
    r.filtered = w.filtered;
    r.rate_limit_waits = w.rate_limit_waits;
    r.rate_limit_waited = w.rate_limit_waited;
    r.rate_limited_429 = w.rate_limited_429;
    r.retries = w.retries;
    r.walk = w.elapsed;
    r.capped = w.capped;
}

impl App {
    /// Validates the configuration, builds the HTTP and Kafka clients, binds the admin server.
    /// Nothing is contacted yet (Twitch, Kafka and the registry may be down at start-up).
    pub async fn build(cfg: Config, token: CancellationToken) -> anyhow::Result<Self> {
        // Every metric is registered before /metrics can be scraped, not at its first use.
        std::sync::LazyLock::force(&crate::metrics::METRICS);
        cfg.validate().context("invalid configuration")?;
        // Register the metrics now, so /metrics lists them before the first poll.
        std::sync::LazyLock::force(&METRICS);
        let stats = Arc::new(Stats::default());
        let readiness = admin::Readiness::new(&["twitch", "kafka", "registry"]);
        let http = reqwest::Client::builder()
            .timeout(cfg.twitch.request_timeout)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("tci-streamer-listener/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        let secret = cfg
            .twitch
            .client_secret
            .clone()
            .ok_or(config::ConfigError::MissingClientSecret)?;
        let tokens = TokenSource::new(
            http.clone(),
            &cfg.twitch.auth_url,
            cfg.twitch.client_id.clone(),
            secret,
            cfg.twitch.token_refresh_margin,
            stats.clone(),
        );
        let helix = HelixClient::new(
            http,
            &cfg.twitch.helix_url,
            cfg.twitch.client_id.clone(),
            tokens,
            cfg.poll.clone(),
            &cfg.filters,
            stats.clone(),
        );
        let producer = kafka::producer(&cfg.common.kafka, "streamer-listener", &[])
            .context("creating the Kafka producer")?;
        let codec = AvroCodec::new(&cfg.common.registry)?;
        let publisher = Publisher::new(
            producer,
            codec,
            cfg.common.topics.live_streams.clone(),
            cfg.poll.publish_concurrency,
        );
        let poller = Arc::new(Poller {
            helix,
            filter: LocalFilter::new(&cfg.filters),
            publisher,
            max_pages: cfg.poll.max_pages,
            stats,
            readiness: readiness.clone(),
        });
        let (admin_addr, admin) =
            admin::serve(&cfg.common.admin.addr, readiness.clone(), token.clone()).await?;
        info!(
            admin = %admin_addr,
            helix = %cfg.twitch.helix_url,
            auth = %cfg.twitch.auth_url,
            topic = %cfg.common.topics.live_streams,
            interval = ?cfg.poll.interval,
            "streamer-listener built"
        );
        Ok(Self {
            cfg,
            token,
            poller,
            readiness,
            admin_addr,
            admin,
        })
    }

    /// The bound admin address (`/healthz`, `/readyz`, `/metrics`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The per-instance counters (tests, reports).
    pub fn stats(&self) -> Arc<Stats> {
        self.poller.stats()
    }

    /// The poller, to run single polls (examples, tests).
    pub fn poller(&self) -> Arc<Poller> {
        self.poller.clone()
    }

    /// Runs until the token is cancelled: polls every interval (the first at once), checks Kafka
    /// for readiness, serves admin. A poll in flight when shutdown starts is abandoned unless it
    /// is already sending; the producer is flushed before returning.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            cfg,
            token,
            poller,
            readiness,
            admin_addr: _,
            admin,
        } = self;
        let mut tasks = Tasks::new(token.clone());
        tasks.spawn("admin", admin);

        let (p, t) = (poller.clone(), token.clone());
        let interval = cfg.poll.interval;
        tasks.spawn("poll", async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = t.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                p.poll_once(&t).await;
            }
            p.publisher.flush(Duration::from_secs(10)).await;
            Ok(())
        });

        let (p, t, r) = (poller.clone(), token.clone(), readiness.clone());
        tasks.spawn("kafka-health", async move {
            loop {
                let prod = p.publisher.producer().clone();
                let topic = p.publisher.topic().to_string();
                let ok = tokio::task::spawn_blocking(move || {
                    prod.client()
                        .fetch_metadata(Some(&topic), Duration::from_secs(3))
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
                match ok {
                    Ok(_) => r.set("kafka", true, "metadata fetched"),
                    Err(e) => {
                        warn!(error = %e, "Kafka metadata fetch failed");
                        r.set("kafka", false, e);
                    }
                }
                if !p.publisher.is_registered() {
                    match p.publisher.ensure_registered(&t).await {
                        Ok(_) => r.set("registry", true, "LiveStream schema registered"),
                        Err(e) => r.set("registry", false, e.to_string()),
                    }
                }
                tokio::select! {
                    _ = t.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
            }
        });
        tasks.join(Duration::from_secs(30)).await
    }
}
