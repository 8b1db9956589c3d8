//! Publishing one complete poll: every record is encoded first (so an encoding problem publishes
//! nothing), then sent with bounded concurrency on the idempotent producer. Key: broadcaster id
//! as decimal text. Headers `tci.poll.id` and `tci.poll.size` let consumers tell a complete poll
//! (size records with that id) from a poll whose publication was interrupted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
};
use tci_common::{registry::AvroCodec, retry::Backoff};
use tci_schemas::{LiveStream, LIVE_STREAM_AVSC};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Header with the poll id.
pub const POLL_ID_HEADER: &str = "tci.poll.id";
/// Header with the number of records of the poll.
pub const POLL_SIZE_HEADER: &str = "tci.poll.size";

/// Why a poll could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("registering the LiveStream schema for {topic}: {source}")]
    Register {
        topic: String,
        source: tci_common::registry::EncodeError,
    },
    #[error("encoding broadcaster {broadcaster_id}: {source}")]
    Encode {
        broadcaster_id: i64,
        source: tci_common::registry::EncodeError,
    },
    #[error("Kafka refused a record after {sent} of {total} were acknowledged: {source}")]
    Send {
        sent: usize,
        total: usize,
        source: rdkafka::error::KafkaError,
    },
    #[error("shutdown requested before the poll was published")]
    Cancelled,
}

impl PublishError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Register { .. } => "registry",
            Self::Encode { .. } => "encode",
            Self::Send { .. } => "kafka",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Encodes and sends polls to the live-streams topic.
pub struct Publisher {
    producer: FutureProducer,
    codec: AvroCodec,
    topic: String,
    registered: AtomicBool,
    concurrency: usize,
}

impl Publisher {
    pub fn new(
        producer: FutureProducer,
        codec: AvroCodec,
        topic: String,
        concurrency: usize,
    ) -> Self {
        Self {
            producer,
            codec,
            topic,
            registered: AtomicBool::new(false),
            concurrency,
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Registers the value schema (once; retried with backoff while the registry is unreachable).
    pub async fn ensure_registered(&self, cancel: &CancellationToken) -> Result<u32, PublishError> {
        let mut backoff = Backoff::default_for_dependencies();
        loop {
            match self
                .codec
                .register_value_schema(&self.topic, LIVE_STREAM_AVSC)
                .await
            {
                Ok(id) => {
                    if !self.registered.swap(true, Ordering::AcqRel) {
                        info!(topic = %self.topic, schema_id = id, "LiveStream schema registered");
                    }
                    return Ok(id);
                }
                Err(e) if e.retriable && backoff.attempts() < 5 => {
                    let d = backoff.next_delay();
                    warn!(error = %e, retry_in = ?d, "schema registry unavailable; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {},
                        _ = cancel.cancelled() => return Err(PublishError::Cancelled),
                    }
                }
                Err(e) => {
                    return Err(PublishError::Register {
                        topic: self.topic.clone(),
                        source: e,
                    })
                }
            }
        }
    }

    /// Whether the schema was registered at least once.
    pub fn is_registered(&self) -> bool {
        self.registered.load(Ordering::Acquire)
    }

    /// Publishes all `records` of poll `poll_id`; returns how many Kafka acknowledged (all of
    /// them on success). Cancellation is honoured only before the first record is sent: once
    /// sending started, the poll is sent whole.
    pub async fn publish(
        &self,
        records: &[LiveStream],
        poll_id: &str,
        cancel: &CancellationToken,
    ) -> Result<usize, PublishError> {
        if !self.is_registered() {
            self.ensure_registered(cancel).await?;
        }
        let mut encoded = Vec::with_capacity(records.len());
        for r in records {
            let bytes =
                self.codec
                    .encode(&self.topic, r)
                    .await
                    .map_err(|e| PublishError::Encode {
                        broadcaster_id: r.broadcaster_id,
                        source: e,
                    })?;
            encoded.push((r.broadcaster_id.to_string(), bytes));
        }
        if cancel.is_cancelled() {
            return Err(PublishError::Cancelled);
        }
        let total = encoded.len();
        let size = total.to_string();
        let acked = std::sync::atomic::AtomicUsize::new(0);
        let mut first_error = None;
        // Sent in chunks of `concurrency`, each chunk awaited whole: bounded in-flight records
        // without borrowing closures across awaits.
        for chunk in encoded.chunks(self.concurrency) {
            let sends: Vec<_> = chunk
                .iter()
                .map(|(key, payload)| self.send_one(key, payload, poll_id, &size))
                .collect();
            for r in futures::future::join_all(sends).await {
                match r {
                    Ok(()) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            if first_error.is_some() {
                break;
            }
        }
        let sent = acked.load(Ordering::Relaxed);
        if let Some(source) = first_error {
            return Err(PublishError::Send {
                sent,
                total,
                source,
            });
        }
        Ok(sent)
    }

    fn send_one<'a>(
        &'a self,
        key: &'a str,
        payload: &'a [u8],
        poll_id: &'a str,
        size: &'a str,
    ) -> impl std::future::Future<Output = Result<(), rdkafka::error::KafkaError>> + Send + 'a {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: POLL_ID_HEADER,
                value: Some(poll_id),
            })
            .insert(Header {
                key: POLL_SIZE_HEADER,
                value: Some(size),
            });
        let rec = FutureRecord::to(&self.topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        let send = self.producer.send(rec, Duration::from_secs(60));
        async move { send.await.map(drop).map_err(|(e, _)| e) }
    }

    /// Waits (blocking thread) until everything queued was delivered, at most `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let p = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = p.flush(timeout) {
                warn!(error = %e, "producer flush did not complete");
            }
        })
        .await;
    }
}
