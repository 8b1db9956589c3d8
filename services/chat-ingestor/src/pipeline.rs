//! chat-ingestor's parts of the shared at-least-once batch consumer
//! ([`tci_common::consumer`]: offsets, batches, pause/resume, dead letters, revocation drain,
//! commits): the decoder ([`crate::decode`]), the sink (the opt-out filter of
//! [`crate::optout`], the write [`plan`] and [`Writer`]) and the metrics. The live service and the backfill run the same consumer, in different modes.

use std::sync::Arc;

use futures::future::BoxFuture;
use tci_common::{
    consumer::{self, DecodeFailure, Observer, Sink, SinkError},
    registry::AvroCodec,
    TopicNames,
};
use tokio_util::sync::CancellationToken;

use crate::{
    decode::{decode, Record, RecordError, Source},
    metrics::METRICS,
    optout::{count_dropped, excludes, sent_after_optout, OptOutGate, UserChannels, OPTIN_GRACE},
    writer::{plan, WriteError, Writer},
    Store,
};

/// The Kafka consumer context of chat-ingestor.
pub type IngestContext = consumer::Context<Record>;

/// The consumer chat-ingestor runs (live and backfill).
pub type Pipeline = consumer::BatchConsumer<ChatDecoder>;

fn source_of(topics: &(String, String), topic: &str) -> Option<Source> {
    if topic == topics.0 {
        Some(Source::Chat)
    } else if topic == topics.1 {
        Some(Source::Moderation)
    } else {
        None
    }
}

/// Avro through the registry, plus the checks the writer relies on ([`decode`]).
pub struct ChatDecoder {
    codec: AvroCodec,
    /// Chat and moderation topic names.
    topics: (String, String),
}

impl ChatDecoder {
    pub fn new(codec: AvroCodec, topics: &TopicNames) -> Self {
        Self {
            codec,
            topics: (topics.chat.clone(), topics.moderation.clone()),
        }
    }
}

impl consumer::Decoder for ChatDecoder {
    type Record = Record;

    async fn decode(&self, topic: &str, payload: Option<&[u8]>) -> Result<Record, DecodeFailure> {
        let Some(source) = source_of(&self.topics, topic) else {
            return Err(DecodeFailure::Poison {
                kind: "unexpected_topic",
                reason: format!("record of topic {topic}, which chat-ingestor does not read"),
            });
        };
        decode(&self.codec, source, payload)
            .await
            .map_err(|e: RecordError| {
                let kind = e.kind();
                let reason = e.to_string();
                if e.is_retriable() {
                    DecodeFailure::Retriable { kind, reason }
                } else {
                    DecodeFailure::Poison { kind, reason }
                }
            })
    }
}

/// Filters a batch by the opt-outs, indexes its (user, channel) pairs, plans it and writes it
/// ([`Writer::write`]), with the write metrics.
pub struct ChatSink {
    writer: Arc<Writer>,
    max_rows_per_batch: usize,
    /// Live mode records the end-to-end lag; a backfill does not.
    live: bool,
    optouts: Arc<OptOutGate>,
    user_channels: Arc<UserChannels>,
}

impl ChatSink {
    pub fn new(
        writer: Arc<Writer>,
        max_rows_per_batch: usize,
        live: bool,
        optouts: Arc<OptOutGate>,
        user_channels: Arc<UserChannels>,
    ) -> Self {
        Self {
            writer,
            max_rows_per_batch,
            live,
            optouts,
            user_channels,
        }
    }

    async fn write_batch(
        &self,
        batch: &[Record],
        stop: &CancellationToken,
    ) -> Result<(), SinkError> {
        METRICS.batch_size.observe(batch.len() as f64);
        // Nothing is written before the opt-out set is complete, and the set cannot change
        // until this batch is written (see crate::optout).
        if !self.optouts.wait_ready(stop).await {
            return Err(SinkError::Abandoned);
        }
        let deadline = tokio::time::Instant::now() + OPTIN_GRACE;
        let set = loop {
            let set = self.optouts.read().await;
            let wait = batch.iter().any(|r| sent_after_optout(&set, r));
            if !wait || tokio::time::Instant::now() >= deadline {
                break set;
            }
            // Rare: let the follower apply what it is reading (it needs the write lock).
            drop(set);
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                _ = stop.cancelled() => return Err(SinkError::Abandoned),
            }
        };
        let dropped: Vec<&Record> = batch.iter().filter(|r| excludes(&set, r)).collect();
        count_dropped(&dropped);
        let kept = || batch.iter().filter(|r| !excludes(&set, r));
        match self.user_channels.index(kept(), &set, stop).await {
            Ok(()) => {}
            Err(WriteError::Abandoned) => return Err(SinkError::Abandoned),
            Err(e @ WriteError::Permanent { .. }) => return Err(SinkError::Fatal(e.to_string())),
        }
        let p = plan(kept(), self.max_rows_per_batch);
        match self.writer.write(&p, stop).await {
            Ok(()) => {}
            Err(WriteError::Abandoned) => return Err(SinkError::Abandoned),
            // Logged and counted (tci_chat_ingestor_write_failures_total) by the writer.
            Err(e @ WriteError::Permanent { .. }) => return Err(SinkError::Fatal(e.to_string())),
        }
        if self.live {
            let now = tci_common::now_ms();
            for r in kept() {
                if let Record::Chat(m) = r {
                    METRICS
                        .end_to_end_lag
                        .observe(now.saturating_sub(m.sent_timestamp).max(0) as f64 / 1000.0);
                }
            }
        }
        METRICS
            .written
            .with_label_values(&["chat"])
            .inc_by(p.chat_count as u64);
        METRICS
            .written
            .with_label_values(&["moderation"])
            .inc_by(p.moderation_count as u64);
        METRICS.kept_json.inc_by(p.kept_json as u64);
        Ok(())
    }
}

impl Sink<Record> for ChatSink {
    fn write<'a>(
        &'a self,
        batch: &'a [Record],
        stop: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.write_batch(batch, stop))
    }

    fn degraded(&self) -> bool {
        self.writer.health.degraded()
    }
}

/// The consumer's events under chat-ingestor's metric names.
pub struct ChatMetrics {
    topics: (String, String),
}

impl ChatMetrics {
    pub fn new(topics: &TopicNames) -> Self {
        Self {
            topics: (topics.chat.clone(), topics.moderation.clone()),
        }
    }

    fn label(&self, topic: &str) -> Option<&'static str> {
        source_of(&self.topics, topic).map(Source::label)
    }
}

impl Observer for ChatMetrics {
    fn consumed(&self, topic: &str) {
        if let Some(l) = self.label(topic) {
            METRICS.consumed.with_label_values(&[l]).inc();
        }
    }

    fn decode_failed(&self, _kind: &'static str, retriable: bool) {
        if retriable {
            METRICS.decode_retries.inc();
        }
    }

    fn dead_lettered(&self, kind: &'static str) {
        METRICS.dead_lettered.with_label_values(&[kind]).inc();
    }

    fn dead_letter_retried(&self) {}

    fn skipped(&self) {
        METRICS.skipped.inc();
    }

    fn paused(&self, paused: bool) {
        METRICS.paused.set(i64::from(paused));
    }

    fn in_flight(&self, records: usize) {
        METRICS.in_flight_records.set(records as i64);
    }

    fn committed(&self, ok: bool) {
        METRICS
            .commits
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    fn lag(&self, topic: &str, partition: i32, lag: i64) {
        if let Some(l) = self.label(topic) {
            METRICS
                .consumer_lag
                .with_label_values(&[l, &partition.to_string()])
                .set(lag);
        }
    }
}

/// The first step of chat-ingestor's consumer: give [`consumer::Builder::context`] to the Kafka
/// consumer, then build.
pub fn builder(
    settings: consumer::Settings,
    store: &Store,
    max_rows_per_batch: usize,
    topics: &TopicNames,
    live: bool,
    optouts: Arc<OptOutGate>,
) -> consumer::Builder<Record> {
    consumer::Builder::new(
        settings,
        Arc::new(ChatSink::new(
            store.writer.clone(),
            max_rows_per_batch,
            live,
            optouts,
            store.user_channels.clone(),
        )),
        Arc::new(ChatMetrics::new(topics)),
    )
}
