//! Following a small compacted topic from its beginning, in every replica: the latest record per
//! key is a piece of shared state (the opt-outs of `tci.optouts.v1`), so each process reads all
//! of it at start and then keeps reading. No consumer group offsets are committed: every start
//! reads the whole (compacted) topic again.
//!
//! [`follow`] sends each decoded record, and [`Followed::CaughtUp`] once every record that was
//! in the topic when it started has been sent, so a service can hold back whatever must not run
//! on a partial state.

use std::{collections::HashMap, sync::Arc, time::Duration};

use rdkafka::{
    consumer::{Consumer, DefaultConsumerContext, StreamConsumer},
    Message, Offset, TopicPartitionList,
};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{config::KafkaConfig, kafka, registry::AvroCodec, retry::Backoff};

/// What [`follow`] hands on, in topic order per partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed<T> {
    /// A decoded record.
    Record(T),
    /// Every record present at start has been sent (sent once).
    CaughtUp,
}

/// Reads `topic` from the beginning of every partition and then follows it, until `token` is
/// cancelled or `tx` is closed. Kafka or the registry being down is waited out with backoff;
/// a record that cannot be decoded at all is logged and skipped (there is nothing else to do
/// with state nobody can read). Partitions added after the start are not read.
pub async fn follow<T: DeserializeOwned + Send + 'static>(
    cfg: &KafkaConfig,
    codec: AvroCodec,
    topic: &str,
    client_id: &str,
    tx: mpsc::Sender<Followed<T>>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let group = format!("{client_id}-follow-{}", crate::now_ms());
    let consumer: Arc<StreamConsumer> = Arc::new(kafka::consumer(
        cfg,
        &group,
        client_id,
        DefaultConsumerContext,
        &[("enable.auto.commit", "false")],
    )?);
    // Partitions and their high watermarks now: reading up to them is "caught up".
    let mut backoff = Backoff::default_for_dependencies();
    let mut remaining: HashMap<i32, i64> = loop {
        let (c, t) = (consumer.clone(), topic.to_string());
        let found = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let md = c.fetch_metadata(Some(&t), Duration::from_secs(5))?;
            let ids: Vec<i32> = md
                .topics()
                .first()
                .map(|t| t.partitions().iter().map(|p| p.id()).collect())
                .unwrap_or_default();
            anyhow::ensure!(
                !ids.is_empty(),
                "topic {t} has no partitions (run `tci setup`)"
            );
            let mut highs = HashMap::new();
            for p in ids {
                let (low, high) = c.fetch_watermarks(&t, p, Duration::from_secs(5))?;
                highs.insert(p, if high > low { high } else { -1 });
            }
            Ok(highs)
        })
        .await?;
        match found {
            Ok(h) => break h,
            Err(e) => {
                let d = backoff.next_delay();
                warn!(topic, error = format!("{e:#}"), retry_in = ?d, "cannot read the partitions of a followed topic; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = token.cancelled() => return Ok(()),
                }
            }
        }
    };
    let mut assign = TopicPartitionList::new();
    for p in remaining.keys() {
        assign.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&assign)?;
    remaining.retain(|_, high| *high > 0);
    let mut caught_up = false;
    if remaining.is_empty() {
        caught_up = true;
        if tx.send(Followed::CaughtUp).await.is_err() {
            return Ok(());
        }
    }
    info!(
        topic,
        partitions = assign.count(),
        "following topic from the beginning"
    );
    loop {
        let m = tokio::select! {
            _ = token.cancelled() => return Ok(()),
            r = tokio::time::timeout(Duration::from_secs(1), consumer.recv()) => r,
        };
        let m = match m {
            Err(_) => {
                // Quiet: whatever the last record of a partition was (compaction may have left
                // gaps), the position tells whether its end was reached.
                if !caught_up {
                    if let Ok(pos) = consumer.position() {
                        for e in pos.elements() {
                            if let Offset::Offset(o) = e.offset() {
                                if remaining.get(&e.partition()).is_some_and(|h| o >= *h) {
                                    remaining.remove(&e.partition());
                                }
                            }
                        }
                    }
                }
                None
            }
            Ok(Err(e)) => {
                warn!(topic, error = %e, "reading a followed topic failed; continuing");
                tokio::time::sleep(Duration::from_millis(200)).await;
                None
            }
            Ok(Ok(m)) => {
                if remaining
                    .get(&m.partition())
                    .is_some_and(|h| m.offset() + 1 >= *h)
                {
                    remaining.remove(&m.partition());
                }
                m.payload().map(<[u8]>::to_vec)
            }
        };
        if let Some(payload) = m {
            let mut backoff = Backoff::default_for_dependencies();
            loop {
                match codec.decode::<T>(Some(&payload)).await {
                    Ok(v) => {
                        if tx.send(Followed::Record(v)).await.is_err() {
                            return Ok(());
                        }
                        break;
                    }
                    Err(e) if e.is_retriable() => {
                        let d = backoff.next_delay();
                        warn!(topic, error = %e, retry_in = ?d, "registry unavailable while decoding a followed record; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(d) => {}
                            _ = token.cancelled() => return Ok(()),
                        }
                    }
                    Err(e) => {
                        warn!(topic, error = %e, "undecodable record in a followed topic; skipped");
                        break;
                    }
                }
            }
        }
        if !caught_up && remaining.is_empty() {
            caught_up = true;
            info!(topic, "followed topic read to its end");
            if tx.send(Followed::CaughtUp).await.is_err() {
                return Ok(());
            }
        }
    }
}
