//! The read loop: poll, decode, batch, hand batches to flush tasks, pause and resume, shut down.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    message::{BorrowedMessage, Message, OwnedMessage},
    TopicPartitionList,
};
use tokio::{sync::Semaphore, time::Instant};
use tracing::{debug, error, info, warn};

use super::{
    context::{commit, Shared},
    Bounds, Context, Counts, DecodeFailure, Decoder, Mode, Options, ReadinessCheck, Summary,
    Ticket, TopicPartition,
};
use crate::{kafka::DeadLetter, retry::Backoff};

/// What bounded mode knows while it runs.
struct Bounded<R> {
    bounds: Bounds<R>,
    /// Per assigned partition: finished?
    done: HashMap<TopicPartition, bool>,
}

/// The at-least-once batch consumer (see the [module docs](super)).
pub struct BatchConsumer<D: Decoder> {
    shared: Arc<Shared<D::Record>>,
    consumer: Arc<StreamConsumer<Context<D::Record>>>,
    decoder: D,
    dlq: DeadLetter,
    token: tokio_util::sync::CancellationToken,
    readiness: Option<ReadinessCheck>,
    bounded: Option<Bounded<D::Record>>,
    /// Interned topic names (tickets and partition keys share them).
    topics: HashSet<Arc<str>>,
    batch_slots: Arc<Semaphore>,
    decode_retry: VecDeque<(Ticket, OwnedMessage)>,
    decode_backoff: Backoff,
    next_decode_retry: Instant,
    paused: bool,
    last_dlq_warn: Option<Instant>,
    /// Last state written to the readiness check.
    reported: Option<(bool, String)>,
}

impl<D: Decoder> BatchConsumer<D> {
    pub(super) fn new(
        shared: Arc<Shared<D::Record>>,
        consumer: Arc<StreamConsumer<Context<D::Record>>>,
        decoder: D,
        options: Options<D::Record>,
    ) -> Self {
        shared.attach(&consumer);
        let bounded = match options.mode {
            Mode::Live => None,
            Mode::Bounded(bounds) => {
                shared.commits.store(false, Ordering::Relaxed);
                let done = bounds.end.keys().map(|k| (k.clone(), false)).collect();
                Some(Bounded { bounds, done })
            }
        };
        let batch_slots = Arc::new(Semaphore::new(shared.settings.max_in_flight_batches.max(1)));
        Self {
            shared,
            consumer,
            decoder,
            dlq: options.dlq,
            token: options.token,
            readiness: options.readiness,
            bounded,
            topics: HashSet::new(),
            batch_slots,
            decode_retry: VecDeque::new(),
            decode_backoff: Backoff::default_for_dependencies(),
            next_decode_retry: Instant::now(),
            paused: false,
            last_dlq_warn: None,
            reported: None,
        }
    }

    /// The run's counts, live (e.g. for a progress bar).
    pub fn counts(&self) -> Arc<Counts> {
        self.shared.counts.clone()
    }

    /// Runs until the token is cancelled (live) or every partition reached its end (bounded),
    /// then flushes, waits and commits. Returns the run's counts, or the permanent write
    /// failure that stopped it.
    pub async fn run(mut self) -> anyhow::Result<Summary> {
        let settings = self.shared.settings.clone();
        let batch_size = settings.batch_size.max(1);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut linger_at: Option<Instant> = None;
        let consumer = self.consumer.clone();
        loop {
            if self
                .bounded
                .as_ref()
                .is_some_and(|b| b.done.values().all(|d| *d))
            {
                break;
            }
            let stopped = self.shared.fatal().is_some();
            if stopped && self.bounded.is_some() {
                break; // a bounded run cannot finish: report it
            }
            let has_sealed = !stopped && !self.shared.lock().sealed.is_empty();
            tokio::select! {
                biased;
                _ = self.token.cancelled() => break,
                permit = self.batch_slots.clone().acquire_owned(), if has_sealed => {
                    let permit = permit?;
                    let batch = self.shared.lock().sealed.pop_front();
                    if let Some(b) = batch {
                        self.shared.spawn_flush(b, Some(permit));
                    }
                }
                _ = sleep_until_opt(linger_at), if linger_at.is_some() => {
                    linger_at = None;
                    self.seal();
                }
                _ = tick.tick() => {
                    self.on_tick().await;
                    // Records re-decoded after an outage land in the buffer here: a non-empty
                    // buffer always has a linger deadline.
                    if linger_at.is_none() && !self.shared.lock().buffer.is_empty() {
                        linger_at = Some(Instant::now() + settings.linger);
                    }
                }
                msg = consumer.recv(), if (!has_sealed || self.paused) && !stopped => {
                    match msg {
                        Ok(m) => {
                            let was_empty = self.shared.lock().buffer.is_empty();
                            self.on_message(&m).await;
                            let (len, empty) = {
                                let st = self.shared.lock();
                                (st.buffer.len(), st.buffer.is_empty())
                            };
                            if len >= batch_size {
                                self.seal();
                                linger_at = None;
                            } else if was_empty && !empty {
                                linger_at = Some(Instant::now() + settings.linger);
                            }
                        }
                        Err(e) => warn!(error = %e, "Kafka consumer error"),
                    }
                }
            }
        }
        let summary = self.shutdown().await;
        if let Some(e) = self.shared.fatal() {
            anyhow::bail!("{e}");
        }
        Ok(summary)
    }

    fn seal(&self) {
        let mut st = self.shared.lock();
        if !st.buffer.is_empty() {
            let b = std::mem::take(&mut st.buffer);
            st.sealed.push_back(b);
        }
    }

    fn intern(&mut self, topic: &str) -> Arc<str> {
        if let Some(t) = self.topics.get(topic) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(topic);
        self.topics.insert(t.clone());
        t
    }

    async fn on_message(&mut self, m: &BorrowedMessage<'_>) {
        let topic = self.intern(m.topic());
        let ticket = self
            .shared
            .lock()
            .tracker
            .begin(&topic, m.partition(), m.offset());
        if let Some(b) = &self.bounded {
            let key: TopicPartition = (topic.clone(), m.partition());
            if b.done.get(&key).copied().unwrap_or(true) {
                self.shared.complete(&[ticket]);
                return;
            }
            let end = b.bounds.end.get(&key).copied().unwrap_or(0);
            let ts = m.timestamp().to_millis().unwrap_or(0);
            if m.offset() >= end || ts > b.bounds.until_timestamp_ms {
                self.mark_done(&key);
                self.shared.complete(&[ticket]);
                return;
            }
            if m.offset() + 1 >= end {
                self.mark_done(&key);
            }
        }
        self.shared.observer.consumed(&topic);
        Counts::add(&self.shared.counts.read, 1);
        match self.decoder.decode(&topic, m.payload()).await {
            Ok(rec) => self.accept(ticket, rec),
            Err(e) if e.is_retriable() => {
                self.shared.observer.decode_failed(e.kind(), true);
                if self.decode_retry.is_empty() {
                    warn!(error = %e, "decode needs a dependency that is unavailable (schema registry); pausing consumption and retrying the decode");
                    self.next_decode_retry = Instant::now() + self.decode_backoff.next_delay();
                }
                self.decode_retry.push_back((ticket, m.detach()));
                self.pause();
            }
            Err(e) => {
                self.shared.observer.decode_failed(e.kind(), false);
                if self.dead_letter(m, &e).await {
                    self.shared.complete(&[ticket]);
                }
            }
        }
    }

    fn accept(&self, ticket: Ticket, rec: D::Record) {
        if let Some(b) = &self.bounded {
            if !(b.bounds.keep)(&rec) {
                self.shared.observer.skipped();
                Counts::add(&self.shared.counts.skipped, 1);
                self.shared.complete(&[ticket]);
                return;
            }
        }
        let mut st = self.shared.lock();
        st.buffer.tickets.push(ticket);
        st.buffer.records.push(rec);
    }

    fn mark_done(&mut self, key: &TopicPartition) {
        let Some(b) = &mut self.bounded else { return };
        if let Some(d) = b.done.get_mut(key) {
            if !*d {
                *d = true;
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&key.0, key.1);
                if let Err(e) = self.consumer.pause(&tpl) {
                    debug!(error = %e, "pausing a finished partition");
                }
                debug!(topic = %key.0, partition = key.1, "partition reached the end of its range");
            }
        }
    }

    /// Sends a poison record to the dead-letter topic; retries (the only failure is Kafka
    /// itself being unavailable) until acknowledged or shutdown. Returns true once Kafka has
    /// the record; false on shutdown, when the caller must NOT complete its offset (the record
    /// is read again by the next owner).
    #[must_use]
    async fn dead_letter<M: Message>(&mut self, m: &M, e: &DecodeFailure) -> bool {
        let reason = e.to_string();
        let mut backoff = Backoff::default_for_dependencies();
        loop {
            match self.dlq.send(m, &reason).await {
                Ok(()) => break,
                Err(err) => {
                    self.shared.observer.dead_letter_retried();
                    let delay = backoff.next_delay();
                    warn!(error = %err, retry_in = ?delay, topic = self.dlq.topic(), "dead-letter publish failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {},
                        _ = self.token.cancelled() => {
                            warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(),
                                "shutdown before a poison record reached the dead-letter topic; its offset is not committed");
                            return false;
                        }
                    }
                }
            }
        }
        self.shared.observer.dead_lettered(e.kind());
        Counts::add(&self.shared.counts.dead_lettered, 1);
        let now = Instant::now();
        if self
            .last_dlq_warn
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(5))
        {
            self.last_dlq_warn = Some(now);
            warn!(
                reason,
                topic = m.topic(),
                partition = m.partition(),
                offset = m.offset(),
                dlq = self.dlq.topic(),
                "undecodable record dead-lettered (logged at most every 5 s)"
            );
        }
        true
    }

    async fn on_tick(&mut self) {
        // Retry decodes held back by an outage, in read order.
        if !self.decode_retry.is_empty() && Instant::now() >= self.next_decode_retry {
            while let Some((ticket, m)) = self.decode_retry.pop_front() {
                match self.decoder.decode(m.topic(), m.payload()).await {
                    Ok(rec) => self.accept(ticket, rec),
                    Err(e) if e.is_retriable() => {
                        self.shared.observer.decode_failed(e.kind(), true);
                        self.decode_retry.push_front((ticket, m));
                        self.next_decode_retry = Instant::now() + self.decode_backoff.next_delay();
                        break;
                    }
                    Err(e) => {
                        self.shared.observer.decode_failed(e.kind(), false);
                        if self.dead_letter(&m, &e).await {
                            self.shared.complete(&[ticket]);
                        }
                    }
                }
            }
            if self.decode_retry.is_empty() {
                info!("decodes succeed again");
                self.decode_backoff.reset();
            }
        }
        let degraded = self.shared.sink.degraded();
        let fatal = self.shared.fatal();
        self.report(degraded, fatal.as_deref());
        if degraded || fatal.is_some() || !self.decode_retry.is_empty() {
            self.pause();
        } else if self.paused {
            self.resume();
        }
    }

    /// The writes' state on the consumer's own readiness check (its only writer), on change.
    fn report(&mut self, degraded: bool, fatal: Option<&str>) {
        let Some(check) = &self.readiness else {
            return;
        };
        let now = match fatal {
            Some(e) => (
                false,
                format!("ingestion stopped: {e}; fix the schema or query, then restart"),
            ),
            None if degraded => (false, "writes failing; retrying".to_string()),
            None => (true, "writes succeed".to_string()),
        };
        if self.reported.as_ref() != Some(&now) {
            check.readiness.set(check.name, now.0, now.1.clone());
            self.reported = Some(now);
        }
    }

    fn pause(&mut self) {
        match self.consumer.assignment() {
            Ok(a) if a.count() > 0 => {
                if let Err(e) = self.consumer.pause(&a) {
                    warn!(error = %e, "cannot pause the assigned partitions");
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "cannot read the assignment");
                return;
            }
        }
        if !self.paused {
            warn!(
                "writes or decodes are failing: consumption paused (the group membership is kept)"
            );
            self.shared.observer.paused(true);
        }
        self.paused = true;
    }

    fn resume(&mut self) {
        let Ok(a) = self.consumer.assignment() else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for e in a.elements() {
            let finished = self.bounded.as_ref().is_some_and(|b| {
                b.done
                    .get(&(Arc::from(e.topic()), e.partition()))
                    .copied()
                    .unwrap_or(false)
            });
            if !finished {
                tpl.add_partition(e.topic(), e.partition());
            }
        }
        if let Err(e) = self.consumer.resume(&tpl) {
            warn!(error = %e, "cannot resume the assigned partitions");
            return;
        }
        info!("dependencies available again: consumption resumed");
        self.shared.observer.paused(false);
        self.paused = false;
    }

    async fn shutdown(&mut self) -> Summary {
        let grace = self.shared.settings.shutdown_grace;
        let deadline = Instant::now() + grace;
        self.seal();
        // Spawn every sealed batch (waiting for slots), then wait for every flush, those of a
        // revocation included.
        loop {
            let batch = self.shared.lock().sealed.pop_front();
            let Some(b) = batch else { break };
            match tokio::time::timeout_at(deadline, self.batch_slots.clone().acquire_owned()).await
            {
                Ok(Ok(p)) => self.shared.spawn_flush(b, Some(p)),
                _ => {
                    self.shared.lock().sealed.push_front(b);
                    break;
                }
            }
        }
        self.shared.flushes.close();
        let drained = tokio::time::timeout_at(deadline, self.shared.flushes.wait())
            .await
            .is_ok();
        if !drained {
            error!(?grace, "flushes did not finish within the shutdown grace; abandoning them (their records will be re-read)");
            self.shared.hard_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.shared.flushes.wait()).await;
        }
        self.shared.notify();
        let left = self.shared.lock().tracker.outstanding_total();
        if self.shared.commits.load(Ordering::Relaxed) {
            let c = self.consumer.clone();
            // A synchronous commit blocks: off the async threads.
            let _ = tokio::task::spawn_blocking(move || commit(&*c)).await;
            info!(outstanding = left, "flushed and committed; stopping");
        }
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared.counts.snapshot()
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
