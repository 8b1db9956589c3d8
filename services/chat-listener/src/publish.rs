//! Publishes chat messages and moderation events to Kafka: Avro with the registry, key =
//! broadcaster id, idempotent producer. Twitch's occasional duplicate deliveries (same message
//! id twice) are dropped here, and so are the records of opted-out chatters and channels; an
//! opt-out command is published to the opt-out topic instead of the chat topic
//! ([`crate::optout`]).
//!
//! Nothing is dropped for lack of room: the producer's local queue is bounded and messages never
//! time out in it (`message.timeout.ms=0`); when it is full this task waits, its input channel
//! fills, and the connections stop reading their sockets. What Kafka refuses outright or what
//! cannot be encoded is counted (`tci_chat_listener_publish_failed_total`) and logged.

use std::{
    collections::{HashSet, VecDeque},
    sync::LazyLock,
    time::Duration,
};

use futures::{stream::FuturesUnordered, StreamExt};
use rdkafka::{
    error::KafkaError,
    producer::{FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
};
use tci_common::{registry::AvroCodec, telemetry::LogLimiter, TopicNames};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::{
    config::PublishConfig,
    metrics::M,
    optout::{excludes_event, Commands, Decision, SharedOptOuts},
    pool::{OutRecord, Outgoing},
};

static LOG: LazyLock<LogLimiter> = LazyLock::new(|| LogLimiter::new(Duration::from_secs(10)));

/// Remembers the last `cap` ids.
#[derive(Debug)]
pub struct Dedupe {
    seen: HashSet<String>,
    order: VecDeque<String>,
    cap: usize,
}

impl Dedupe {
    pub fn new(cap: usize) -> Self {
        Self {
            seen: HashSet::with_capacity(cap.min(1 << 20)),
            order: VecDeque::with_capacity(cap.min(1 << 20)),
            cap: cap.max(1),
        }
    }

    /// True when `id` was remembered within the window.
    pub fn seen(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    /// Remembers `id` (evicting the oldest beyond the window).
    pub fn remember(&mut self, id: &str) {
        if self.seen.contains(id) {
            return;
        }
        if self.order.len() == self.cap {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(id.to_string());
        self.order.push_back(id.to_string());
    }

    /// True the first time `id` is seen (within the window); remembers it.
    pub fn first_time(&mut self, id: &str) -> bool {
        let first = !self.seen(id);
        self.remember(id);
        first
    }
}

type Delivery = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (Result<(), KafkaError>, std::time::Instant, &'static str)>
            + Send,
    >,
>;

/// Runs until every sender of `rx` is gone and everything in flight is acknowledged.
pub async fn run(
    cfg: PublishConfig,
    topics: TopicNames,
    producer: FutureProducer,
    codec: AvroCodec,
    mut rx: mpsc::Receiver<Outgoing>,
    optouts: SharedOptOuts,
    commands: Commands,
) -> anyhow::Result<()> {
    let mut dedupe = Dedupe::new(cfg.dedupe_window);
    let mut in_flight: FuturesUnordered<Delivery> = FuturesUnordered::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        M.buffer_fill
            .set((rx.max_capacity() - rx.capacity()) as i64);
        M.in_flight.set(in_flight.len() as i64);
        tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => settle(done),
            rec = rx.recv(), if open && in_flight.len() < cfg.max_in_flight => {
                let Some(rec) = rec else {
                    open = false;
                    info!(in_flight = in_flight.len(), "publisher draining");
                    continue;
                };
                // Opt-outs first: an opted-out chatter's or channel's records are not
                // published, and an opt-out command is published as an opt-out event instead.
                let decision = {
                    let set = optouts.read().unwrap_or_else(|e| e.into_inner());
                    match &rec.record {
                        OutRecord::Chat(m) => commands.decide(m, &set),
                        OutRecord::Moderation(e) if excludes_event(e, &set) => Decision::Drop,
                        OutRecord::Moderation(_) => Decision::Publish,
                    }
                };
                let event = match decision {
                    Decision::Publish => None,
                    Decision::Drop => {
                        let kind = match &rec.record { OutRecord::Chat(_) => "chat", OutRecord::Moderation(_) => "moderation" };
                        M.optout_dropped.with_label_values(&[kind]).inc();
                        continue;
                    }
                    Decision::Event(e) => {
                        // Applied here at once: the sender's next message is held back even
                        // before the event comes back through the topic.
                        optouts.write().unwrap_or_else(|e| e.into_inner()).apply(&e);
                        info!(scope = e.scope.as_str(), id = e.id, opted_out = e.opted_out, "opt-out command in chat");
                        Some(e)
                    }
                };
                let (topic, key, id, kind) = match (&event, &rec.record) {
                    (Some(e), OutRecord::Chat(m)) => (&topics.optouts, e.key(), m.id.as_str(), "optout"),
                    (_, OutRecord::Chat(m)) => (&topics.chat, m.broadcaster_id.to_string(), m.id.as_str(), "chat"),
                    (_, OutRecord::Moderation(e)) => (&topics.moderation, e.broadcaster_id.to_string(), e.event_id.as_str(), "moderation"),
                };
                if dedupe.seen(id) {
                    M.duplicates.inc();
                    continue;
                }
                let bytes = match (&event, &rec.record) {
                    (Some(e), _) => codec.encode(topic, e).await,
                    (_, OutRecord::Chat(m)) => codec.encode(topic, &**m).await,
                    (_, OutRecord::Moderation(e)) => codec.encode(topic, &**e).await,
                };
                let bytes = match bytes {
                    Ok(b) => b,
                    Err(e) => {
                        M.publish_failed.with_label_values(&["encode"]).inc();
                        if let Some(n) = LOG.allow("encode") {
                            warn!(error = %e, message_id = id, suppressed = n, "cannot encode a record; dropped");
                        }
                        continue;
                    }
                };
                loop {
                    match producer.send_result(FutureRecord::to(topic).key(&key).payload(&bytes)) {
                        Ok(fut) => {
                            // Remembered only once the producer accepted it, so a record that
                            // failed does not make Twitch's redelivery look like a duplicate.
                            dedupe.remember(id);
                            let read_at = rec.read_at;
                            in_flight.push(Box::pin(async move {
                                let r = match fut.await {
                                    Ok(Ok(_)) => Ok(()),
                                    Ok(Err((e, _))) => Err(e),
                                    // The producer dropped the delivery (it is shutting down).
                                    Err(_) => Err(KafkaError::Canceled),
                                };
                                (r, read_at, kind)
                            }));
                            break;
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                            // Backpressure: wait for an acknowledgement (or a moment) and retry.
                            match in_flight.next().await {
                                Some(done) => settle(done),
                                None => tokio::time::sleep(Duration::from_millis(10)).await,
                            }
                        }
                        Err((e, _)) => {
                            M.publish_failed.with_label_values(&["kafka"]).inc();
                            if let Some(n) = LOG.allow("send") {
                                warn!(error = %e, message_id = id, suppressed = n, "Kafka refused a record; dropped");
                            }
                            break;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn settle((res, read_at, kind): (Result<(), KafkaError>, std::time::Instant, &'static str)) {
    match res {
        Ok(()) => {
            M.published.with_label_values(&[kind]).inc();
            M.publish_latency.observe(read_at.elapsed().as_secs_f64());
        }
        Err(e) => {
            M.publish_failed.with_label_values(&["kafka"]).inc();
            if let Some(n) = LOG.allow("delivery") {
                warn!(error = %e, kind, suppressed = n, "Kafka did not accept a record; dropped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_drops_repeats_within_the_window_only() {
        let mut d = Dedupe::new(2);
        assert!(d.first_time("a"));
        assert!(!d.first_time("a"));
        assert!(d.first_time("b"));
        assert!(d.first_time("c"), "evicts a");
        assert!(d.first_time("a"), "a fell out of the window");
        assert!(!d.first_time("c"));
    }
}
