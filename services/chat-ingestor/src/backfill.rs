//! Backfill: replay a time range of the chat and moderation topics into Cassandra.
//!
//! For every partition, `offsets_for_times(from - slack)` gives the first offset to read; the
//! partitions are *assigned* (no group subscription) under a group id of their own
//! (`chat-ingestor-backfill-<ms>`, auto-commit off) so the live group's offsets are never
//! touched. A partition is finished at its high watermark as of the start, or at the first
//! record whose Kafka timestamp is past `to + slack`. Records whose sent timestamp lies in
//! `[from, to]` (and of `--broadcaster-id`, when given) are written through the same writer as
//! the live service; the writes are idempotent, so replaying rows that still exist is harmless.
//! Records of opted-out chatters and channels are dropped exactly as in the live service.

use std::{
    collections::HashMap,
    io::IsTerminal,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    Offset, TopicPartitionList,
};
use tci_common::{
    consumer::{Bounds, Counts, Mode, Options, TopicPartition},
    kafka,
    registry::AvroCodec,
};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    connect_store,
    decode::Record,
    optout::{self, OptOutGate},
    pipeline::{self, ChatDecoder, IngestContext},
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

/// Counts of a backfill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub read: u64,
    pub written: u64,
    pub skipped: u64,
    pub dead_lettered: u64,
}

impl From<tci_common::consumer::Summary> for Summary {
    fn from(s: tci_common::consumer::Summary) -> Self {
        Self {
            read: s.read,
            written: s.written,
            skipped: s.skipped,
            dead_lettered: s.dead_lettered,
        }
    }
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
    let store = connect_store(&cfg, &token).await?;
    // The same opt-out filter as the live service: the whole opt-out topic is read before the
    // first write, so a replay never brings an opted-out person's or channel's chat back.
    let (gate, ready) = OptOutGate::new();
    let follow_token = token.child_token();
    let follower = tokio::spawn(optout::follow(
        cfg.common.kafka.clone(),
        codec.clone(),
        topics.optouts.clone(),
        gate.clone(),
        ready,
        None,
        follow_token.clone(),
    ));
    let _stop_follower = follow_token.drop_guard();
    let builder = pipeline::builder(
        cfg.ingest.consumer_settings(),
        &store,
        cfg.ingest.max_rows_per_batch,
        &topics,
        false,
        gate,
    );
    let group = format!("chat-ingestor-backfill-{}", tci_common::now_ms());
    let consumer: StreamConsumer<IngestContext> = kafka::consumer(
        &cfg.common.kafka,
        &group,
        "chat-ingestor-backfill",
        builder.context(),
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
    let (from_ms, to_ms, broadcaster_id) = (args.from_ms, args.to_ms, args.broadcaster_id);
    let bounds = Bounds {
        end,
        // Kafka timestamps may run ahead of sent timestamps by the slack.
        until_timestamp_ms: to_ms.saturating_add(slack_ms),
        keep: Box::new(move |r: &Record| {
            let ts = r.sent_timestamp();
            ts >= from_ms && ts <= to_ms && broadcaster_id.is_none_or(|id| id == r.broadcaster_id())
        }),
    };
    let pipeline = builder.build(
        Arc::new(consumer),
        ChatDecoder::new(codec, &topics),
        Options {
            dlq,
            mode: Mode::Bounded(bounds),
            token,
            readiness: None,
        },
    );
    let progress = Progress::new(total);
    let counts = pipeline.counts();
    let ticking = {
        let counts = counts.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                progress.update(&counts);
            }
        })
    };
    let result = pipeline.run().await;
    ticking.abort();
    follower.abort();
    progress.finish(&counts);
    result.map(Summary::from)
}

/// Backfill progress: a bar with rate and ETA on a terminal, a log line every 5 s otherwise.
#[derive(Clone)]
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_log: Arc<Mutex<std::time::Instant>>,
    total: u64,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} records ({per_sec}, ETA {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            b.set_style(style);
            b
        });
        Self {
            bar,
            last_log: Arc::new(Mutex::new(std::time::Instant::now())),
            total,
        }
    }

    fn update(&self, c: &Counts) {
        let s = c.snapshot();
        match &self.bar {
            Some(b) => b.set_position(s.read),
            None => {
                let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= Duration::from_secs(5) {
                    *last = std::time::Instant::now();
                    info!(
                        read = s.read,
                        total = self.total,
                        written = s.written,
                        skipped = s.skipped,
                        dead_lettered = s.dead_lettered,
                        "backfill progress"
                    );
                }
            }
        }
    }

    fn finish(&self, c: &Counts) {
        if let Some(b) = &self.bar {
            b.set_position(c.snapshot().read);
            b.finish();
        }
    }
}
