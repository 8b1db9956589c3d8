//! Backfill: replay a time range of the chat and moderation topics into Cassandra.
//!
//! For every partition, `offsets_for_times(from - slack)` gives the first offset to read; the
//! partitions are *assigned* (no group subscription) under a group id of their own
//! (`chat-ingestor-backfill-<ms>`, auto-commit off) so the live group's offsets are never
//! touched. A partition is finished at its high watermark as of the start, or at the first
//! record whose Kafka timestamp is past `to + slack`. Records whose sent timestamp lies in
//! `[from, to]` (and of `--broadcaster-id`, when given) are written through the same writer as
//! the live service; the writes are idempotent, so replaying rows that still exist is harmless.

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::Context as _;
use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    Offset, TopicPartitionList,
};
use tci_common::{kafka, registry::AvroCodec};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    connect_writer,
    offsets::TopicPartition,
    pipeline::{Bounds, IngestContext, Pipeline, Shared, Summary},
    Config,
};

/// What to replay.
#[derive(Debug, Clone)]
pub struct BackfillArgs {
    /// Inclusive, ms since the epoch.
    pub from_ms: i64,
    /// Inclusive, ms since the epoch.
    pub to_ms: i64,
    pub broadcaster_id: Option<i64>,
}

/// Parses `--from` / `--to`: the same ISO 8601 forms as the API's `start` / `end`
/// ([`tci_common::time::parse_iso8601_ms`]; no offset means UTC).
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    tci_common::time::parse_iso8601_ms(s).ok_or_else(|| {
        anyhow::anyhow!("{s:?} is not an ISO 8601 timestamp like 2024-01-10T01:01:01.011Z")
    })
}

/// The backfill summary printed at the end.
impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "backfill summary")?;
        writeln!(f, "  read           {}", self.read)?;
        writeln!(f, "  written        {}", self.written)?;
        writeln!(
            f,
            "  skipped        {}  (outside the range or another broadcaster)",
            self.skipped
        )?;
        write!(f, "  dead-lettered  {}", self.dead_lettered)
    }
}

/// Runs a backfill to completion (or until `token` is cancelled) and returns its counts.
pub async fn run(
    cfg: Config,
    args: BackfillArgs,
    token: CancellationToken,
) -> anyhow::Result<Summary> {
    if args.to_ms < args.from_ms {
        anyhow::bail!("--to must not be before --from");
    }
    let topics = cfg.common.topics.clone();
    let codec = AvroCodec::new(&cfg.common.registry)?;
    let writer = connect_writer(&cfg, &token).await?;
    let shared = Shared::new(
        writer,
        cfg.ingest.pipeline_settings(false),
        &topics.chat,
        &topics.moderation,
    );
    let group = format!("chat-ingestor-backfill-{}", tci_common::now_ms());
    let consumer: StreamConsumer<IngestContext> = kafka::consumer(
        &cfg.common.kafka,
        &group,
        "chat-ingestor-backfill",
        IngestContext::new(shared.clone()),
        &[("enable.auto.commit", "false")],
    )?;
    let slack_ms = cfg.ingest.backfill_slack.as_millis() as i64;
    let timeout = Duration::from_secs(30);

    // Partitions, their start (by time) and end (high watermark now).
    let mut query = TopicPartitionList::new();
    let mut highs: HashMap<(String, i32), i64> = HashMap::new();
    for topic in [&topics.chat, &topics.moderation] {
        let md = consumer
            .fetch_metadata(Some(topic), timeout)
            .with_context(|| format!("fetching the partitions of {topic}"))?;
        for t in md.topics() {
            for p in t.partitions() {
                let (_, high) = consumer
                    .fetch_watermarks(topic, p.id(), timeout)
                    .with_context(|| format!("high watermark of {topic}/{}", p.id()))?;
                highs.insert((topic.clone(), p.id()), high);
                query.add_partition_offset(
                    topic,
                    p.id(),
                    Offset::Offset(args.from_ms.saturating_sub(slack_ms)),
                )?;
            }
        }
    }
    let starts = consumer
        .offsets_for_times(query, timeout)
        .context("offsets_for_times")?;
    let mut assign = TopicPartitionList::new();
    let mut end: HashMap<TopicPartition, i64> = HashMap::new();
    let mut total = 0u64;
    for e in starts.elements() {
        let high = highs
            .get(&(e.topic().to_string(), e.partition()))
            .copied()
            .unwrap_or(0);
        let start = match e.offset() {
            Offset::Offset(o) => o,
            _ => high, // no record at or after the time: nothing to read
        };
        if start >= high {
            continue;
        }
        total += (high - start) as u64;
        assign.add_partition_offset(e.topic(), e.partition(), Offset::Offset(start))?;
        end.insert((Arc::from(e.topic()), e.partition()), high);
    }
    info!(group = %group, partitions = end.len(), records = total, from_ms = args.from_ms, to_ms = args.to_ms, "backfill starting");
    if end.is_empty() {
        return Ok(Summary::default());
    }
    consumer
        .assign(&assign)
        .context("assigning the backfill partitions")?;
    let producer = kafka::producer(&cfg.common.kafka, "chat-ingestor-backfill-dlq", &[])?;
    let dlq = kafka::DeadLetter::new(producer, topics.dead_letter.clone(), "chat-ingestor");
    let bounds = Bounds {
        from_ms: args.from_ms,
        to_ms: args.to_ms,
        broadcaster_id: args.broadcaster_id,
        slack_ms,
        end,
        total,
    };
    let pipeline = Pipeline::new(
        shared,
        Arc::new(consumer),
        codec,
        dlq,
        token,
        None,
        Some(bounds),
    );
    pipeline.run().await
}
