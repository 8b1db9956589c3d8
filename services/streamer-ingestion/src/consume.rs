//! streamer-ingestion's parts of the shared at-least-once batch consumer
//! ([`tci_common::consumer`]: offsets stored only after the write that covers them, batches on
//! size or linger, pause/resume, dead letters acknowledged before their offset moves, revocation
//! drain, commits): the decoder (Avro + [`validate`]), the sink ([`collapse`] and
//! [`StreamerStore::write`]) and the metrics.
//!
//! A failing store pauses consumption (the consumer keeps polling, so the group membership is
//! kept however long the outage lasts) and the batch is retried with capped backoff; a write
//! Cassandra refuses for good ([`tci_common::cassandra::Failure::Permanent`]) stops ingestion:
//! nothing more is acknowledged, `/readyz` says why and the run ends with the error. The writes
//! are idempotent and order-independent, so redelivery after a crash or rebalance is harmless.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use futures::future::BoxFuture;
use tci_common::{
    cassandra::Failure,
    consumer::{DecodeFailure, Decoder, Observer, Sink, SinkError},
    registry::AvroCodec,
    retry::Backoff,
};
use tci_schemas::LiveStream;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::metrics::{Stats, METRICS};
use crate::store::{collapse, StreamerStore};
use crate::timestamps;

/// A live-stream record Avro accepted but the table cannot take.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(String);

/// Checks what Avro cannot: a usable key and time.
pub fn validate(r: &LiveStream) -> Result<(), Invalid> {
    if r.broadcaster_id <= 0 {
        return Err(Invalid(format!(
            "broadcaster_id {} is not a Twitch user id",
            r.broadcaster_id
        )));
    }
    timestamps::last_seen_write_ts(r.observed_at).map_err(|e| Invalid(e.to_string()))?;
    Ok(())
}

/// Avro through the registry (schemas cached by id), then [`validate`].
pub struct StreamerDecoder {
    codec: AvroCodec,
}

impl StreamerDecoder {
    pub fn new(codec: AvroCodec) -> Self {
        Self { codec }
    }
}

impl Decoder for StreamerDecoder {
    type Record = LiveStream;

    async fn decode(
        &self,
        _topic: &str,
        payload: Option<&[u8]>,
    ) -> Result<LiveStream, DecodeFailure> {
        match self.codec.decode::<LiveStream>(payload).await {
            Ok(r) => validate(&r).map(|()| r).map_err(|e| DecodeFailure::Poison {
                kind: "invalid",
                reason: e.to_string(),
            }),
            Err(e) if e.is_retriable() => Err(DecodeFailure::Retriable {
                kind: e.kind(),
                reason: e.to_string(),
            }),
            Err(e) => Err(DecodeFailure::Poison {
                kind: e.kind(),
                reason: e.to_string(),
            }),
        }
    }
}

/// Collapses a batch by channel and writes it, retrying transient failures.
pub struct StreamerSink {
    store: Arc<StreamerStore>,
    stats: Arc<Stats>,
    /// Writes in their retry loop.
    failing: AtomicUsize,
}

impl StreamerSink {
    pub fn new(store: Arc<StreamerStore>, stats: Arc<Stats>) -> Self {
        Self {
            store,
            stats,
            failing: AtomicUsize::new(0),
        }
    }

    async fn write_batch(
        &self,
        batch: &[LiveStream],
        stop: &CancellationToken,
    ) -> Result<(), SinkError> {
        let collapsed = collapse(batch.iter().cloned());
        let mut backoff = Backoff::default_for_dependencies();
        let mut failing = false;
        let result = loop {
            let res = tokio::select! {
                r = self.store.write(&collapsed) => r,
                _ = stop.cancelled() => break Err(SinkError::Abandoned),
            };
            match res {
                Ok(_) => break Ok(()),
                Err(e) if e.failure() == Failure::Permanent => {
                    error!(error = %e, "Cassandra refused a streamers write and retrying cannot help (schema or query wrong for this cluster); ingestion stops");
                    break Err(SinkError::Fatal(format!(
                        "Cassandra refused a write to streamers and retrying cannot help: {e}"
                    )));
                }
                Err(e) => {
                    if !failing {
                        failing = true;
                        self.failing.fetch_add(1, Ordering::Relaxed);
                    }
                    METRICS.write_retries.inc();
                    Stats::add(&self.stats.write_retries, 1);
                    let d = backoff.next_delay();
                    warn!(error = %e, retry_in = ?d, records = batch.len(), "streamers write failed; consumption paused, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = stop.cancelled() => break Err(SinkError::Abandoned),
                    }
                }
            }
        };
        if failing {
            self.failing.fetch_sub(1, Ordering::Relaxed);
        }
        result?;
        let newest = batch.iter().map(|r| r.observed_at).max().unwrap_or(0);
        METRICS.last_observed_at.set(newest);
        METRICS.batch_size.observe(batch.len() as f64);
        METRICS
            .records
            .with_label_values(&["written"])
            .inc_by(batch.len() as u64);
        Stats::add(&self.stats.records_written, batch.len() as u64);
        Stats::add(&self.stats.batches, 1);
        Ok(())
    }
}

impl Sink<LiveStream> for StreamerSink {
    fn write<'a>(
        &'a self,
        batch: &'a [LiveStream],
        stop: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.write_batch(batch, stop))
    }

    fn degraded(&self) -> bool {
        self.failing.load(Ordering::Relaxed) > 0
    }
}

/// The consumer's events under streamer-ingestion's metric names.
pub struct StreamerMetrics {
    stats: Arc<Stats>,
}

impl StreamerMetrics {
    pub fn new(stats: Arc<Stats>) -> Self {
        Self { stats }
    }
}

impl Observer for StreamerMetrics {
    fn decode_failed(&self, kind: &'static str, _retriable: bool) {
        METRICS.decode_errors.with_label_values(&[kind]).inc();
    }

    fn dead_lettered(&self, _kind: &'static str) {
        METRICS.records.with_label_values(&["dead_lettered"]).inc();
        Stats::add(&self.stats.dead_lettered, 1);
    }

    fn dead_letter_retried(&self) {
        METRICS.dlq_retries.inc();
    }

    fn paused(&self, paused: bool) {
        METRICS.paused.set(i64::from(paused));
        if paused {
            Stats::add(&self.stats.pauses, 1);
        }
    }

    fn committed(&self, ok: bool) {
        METRICS
            .commits
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_refuses_unkeyable_and_untimeable_records() {
        let ok = LiveStream {
            broadcaster_id: 1,
            observed_at: 1_706_408_359_963,
            ..LiveStream::default()
        };
        assert_eq!(validate(&ok), Ok(()));
        assert!(validate(&LiveStream {
            broadcaster_id: 0,
            ..ok.clone()
        })
        .expect_err("bad id")
        .to_string()
        .contains("broadcaster_id"));
        assert!(validate(&LiveStream {
            observed_at: 0,
            ..ok
        })
        .expect_err("bad time")
        .to_string()
        .contains("observed_at"));
    }
}
