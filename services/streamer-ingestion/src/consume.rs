//! The consumer loop: decode, batch (flush on size or linger), write, and only then store the
//! offsets (at-least-once; the writes are idempotent, so redelivery is harmless).
//!
//! Order of offsets per partition is kept by construction: one loop, and a record that goes to
//! the dead-letter topic first flushes everything received before it. On a rebalance, offsets of
//! partitions no longer assigned cannot be stored; their records are redelivered to the new
//! owner, which writes the same cells with the same timestamps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::{
    consumer::{CommitMode, Consumer, StreamConsumer},
    message::OwnedMessage,
    Message,
};
use tci_common::{kafka::DeadLetter, registry::AvroCodec, retry::Backoff};
use tci_schemas::LiveStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::{Stats, METRICS};
use crate::store::{collapse, StreamerStore};
use crate::timestamps;

/// Batching settings.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    pub batch_size: usize,
    pub linger: Duration,
}

struct Pending {
    rec: LiveStream,
    partition: i32,
    offset: i64,
}

/// Shutdown was requested while a step could not complete (its offsets were not stored).
#[derive(Debug, thiserror::Error)]
#[error("shutdown requested")]
pub struct Stopped;

/// Checks what Avro cannot: a usable key and time.
pub fn validate(r: &LiveStream) -> Result<(), String> {
    if r.broadcaster_id <= 0 {
        return Err(format!(
            "broadcaster_id {} is not a Twitch user id",
            r.broadcaster_id
        ));
    }
    timestamps::last_seen_write_ts(r.observed_at).map_err(|e| e.to_string())?;
    Ok(())
}

/// One consumer group member writing the streamers table.
pub struct Ingestor {
    pub(crate) consumer: Arc<StreamConsumer>,
    pub(crate) codec: AvroCodec,
    pub(crate) dlq: DeadLetter,
    pub(crate) store: Arc<StreamerStore>,
    pub(crate) topic: String,
    pub(crate) settings: BatchSettings,
    pub(crate) stats: Arc<Stats>,
}

impl Ingestor {
    /// Consumes until `token` is cancelled, then flushes what it holds, stores its offsets and
    /// commits synchronously.
    pub async fn run(&self, token: CancellationToken) -> anyhow::Result<()> {
        let mut batch: Vec<Pending> = Vec::with_capacity(self.settings.batch_size);
        let mut deadline: Option<Instant> = None;
        let mut kafka_errors = 0u64;
        loop {
            let linger = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = token.cancelled() => break,
                _ = linger => {
                    if self.flush(&mut batch, &token).await.is_err() { break; }
                    deadline = None;
                }
                m = self.consumer.recv() => match m {
                    Err(e) => {
                        kafka_errors += 1;
                        if kafka_errors.is_power_of_two() {
                            warn!(error = %e, count = kafka_errors, "Kafka consumer error");
                        }
                    }
                    Ok(m) => {
                        let m = m.detach();
                        if self.handle(m, &mut batch, &token).await.is_err() { break; }
                        if batch.len() >= self.settings.batch_size {
                            if self.flush(&mut batch, &token).await.is_err() { break; }
                            deadline = None;
                        } else if !batch.is_empty() && deadline.is_none() {
                            deadline = Some(Instant::now() + self.settings.linger);
                        }
                    }
                }
            }
        }
        // Shutdown: write what we hold (a few attempts), then commit what was stored.
        let _ = self.flush(&mut batch, &token).await;
        let c = self.consumer.clone();
        let _ =
            tokio::task::spawn_blocking(move || match c.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => info!("offsets committed"),
                Err(e) => debug!(error = %e, "final commit (nothing to commit is fine)"),
            })
            .await;
        Ok(())
    }

    async fn handle(
        &self,
        m: OwnedMessage,
        batch: &mut Vec<Pending>,
        token: &CancellationToken,
    ) -> Result<(), Stopped> {
        let mut backoff = Backoff::default_for_dependencies();
        let decoded = loop {
            match self.codec.decode::<LiveStream>(m.payload()).await {
                Ok(r) => {
                    break validate(&r)
                        .map(|()| r)
                        .map_err(|reason| ("invalid", reason))
                }
                Err(e) if e.is_retriable() => {
                    METRICS.decode_errors.with_label_values(&[e.kind()]).inc();
                    let d = backoff.next_delay();
                    warn!(error = %e, retry_in = ?d, "schema registry unavailable; retrying the decode");
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {},
                        _ = token.cancelled() => return Err(Stopped),
                    }
                }
                Err(e) => break Err((e.kind(), e.to_string())),
            }
        };
        match decoded {
            Ok(rec) => {
                batch.push(Pending {
                    rec,
                    partition: m.partition(),
                    offset: m.offset(),
                });
                Ok(())
            }
            Err((kind, reason)) => {
                METRICS.decode_errors.with_label_values(&[kind]).inc();
                warn!(kind, %reason, partition = m.partition(), offset = m.offset(), "undecodable LiveStream record; dead-lettering it");
                // Everything before it first, so offsets are stored in order.
                self.flush(batch, token).await?;
                self.dead_letter(&m, &format!("{kind}: {reason}"), token)
                    .await?;
                if let Err(e) = self
                    .consumer
                    .store_offset(&self.topic, m.partition(), m.offset())
                {
                    debug!(error = %e, "storing the offset of a dead-lettered record (partition revoked?)");
                }
                METRICS.records.with_label_values(&["dead_lettered"]).inc();
                Stats::add(&self.stats.dead_lettered, 1);
                Ok(())
            }
        }
    }

    async fn dead_letter(
        &self,
        m: &OwnedMessage,
        reason: &str,
        token: &CancellationToken,
    ) -> Result<(), Stopped> {
        let mut backoff = Backoff::default_for_dependencies();
        loop {
            match self.dlq.send(m, reason).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    METRICS.dlq_retries.inc();
                    let d = backoff.next_delay();
                    warn!(error = %e, retry_in = ?d, topic = self.dlq.topic(), "dead-letter send failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {},
                        _ = token.cancelled() => return Err(Stopped),
                    }
                }
            }
        }
    }

    /// Writes the batch (retrying until it succeeds; after shutdown was requested, three more
    /// attempts), then stores the highest offset per partition.
    async fn flush(
        &self,
        batch: &mut Vec<Pending>,
        token: &CancellationToken,
    ) -> Result<(), Stopped> {
        if batch.is_empty() {
            return Ok(());
        }
        let collapsed = collapse(batch.iter().map(|p| p.rec.clone()));
        let mut backoff = Backoff::default_for_dependencies();
        let mut attempts_after_stop = 0;
        loop {
            match self.store.write(&collapsed).await {
                Ok(_) => break,
                Err(e) => {
                    METRICS.write_retries.inc();
                    Stats::add(&self.stats.write_retries, 1);
                    if token.is_cancelled() {
                        attempts_after_stop += 1;
                        if attempts_after_stop >= 3 {
                            warn!(error = %e, records = batch.len(), "giving up the batch at shutdown; it will be redelivered");
                            return Err(Stopped);
                        }
                        // Shutting down: short pauses only, so the final commit fits the grace.
                        backoff =
                            Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
                    }
                    let d = backoff.next_delay();
                    warn!(error = %e, retry_in = ?d, records = batch.len(), "streamers write failed; retrying");
                    if token.is_cancelled() {
                        tokio::time::sleep(d).await;
                    } else {
                        // Cancellable: a shutdown during a long backoff goes to the final attempts at once.
                        tokio::select! {
                            _ = tokio::time::sleep(d) => {}
                            _ = token.cancelled() => {}
                        }
                    }
                }
            }
        }
        let mut max: BTreeMap<i32, i64> = BTreeMap::new();
        for p in batch.iter() {
            let e = max.entry(p.partition).or_insert(p.offset);
            *e = (*e).max(p.offset);
        }
        for (partition, offset) in max {
            if let Err(e) = self.consumer.store_offset(&self.topic, partition, offset) {
                debug!(error = %e, partition, "cannot store the offset (partition revoked?); records will be redelivered");
            }
        }
        let newest = batch.iter().map(|p| p.rec.observed_at).max().unwrap_or(0);
        METRICS.last_observed_at.set(newest);
        METRICS.batch_size.observe(batch.len() as f64);
        METRICS
            .records
            .with_label_values(&["written"])
            .inc_by(batch.len() as u64);
        Stats::add(&self.stats.records_written, batch.len() as u64);
        Stats::add(&self.stats.batches, 1);
        batch.clear();
        Ok(())
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
        .contains("broadcaster_id"));
        assert!(validate(&LiveStream {
            observed_at: 0,
            ..ok
        })
        .expect_err("bad time")
        .contains("observed_at"));
    }
}
