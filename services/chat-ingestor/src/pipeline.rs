//! The consume → decode → batch → write → store-offset loop, shared by the live service and the
//! backfill.
//!
//! - One task reads the consumer, decodes (schemas cached by id), registers every record in the
//!   [`Tracker`] and appends it to the open batch. A batch is sealed at `batch_size` records or
//!   after `linger`, and handed to a flush task (at most `max_in_flight_batches` at once: a
//!   semaphore; while none is free the loop stops reading — bounded memory).
//! - A flush task writes its batch ([`Writer`]), then completes its tickets and stores the new
//!   contiguous watermark of each partition (`enable.auto.offset.store=false`; the periodic
//!   auto-commit commits what was stored). A record's offset is therefore stored only once it and
//!   every record before it in its partition are durable.
//! - Cassandra failing (any write in its retry loop) or the registry unavailable: the assigned
//!   partitions are paused, the loop keeps polling (group membership, rebalances) without
//!   buffering more, and resumes once writes succeed again.
//! - Poison records go to the dead-letter topic; once Kafka acknowledged them their offset counts
//!   as done.
//! - Rebalance (revocation): the consumer context flushes what is buffered, waits (bounded by
//!   `rebalance_drain_timeout`) for the revoked partitions' records to be durable, commits
//!   synchronously and forgets those partitions.
//! - Shutdown: stop reading, flush, wait for the flushes (bounded by `shutdown_grace`, then the
//!   retries are abandoned without storing), commit synchronously.

use std::{
    collections::{HashMap, VecDeque},
    io::IsTerminal,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak,
    },
    time::Duration,
};

use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::{KafkaError, KafkaResult},
    message::{BorrowedMessage, Message, OwnedMessage},
    types::RDKafkaErrorCode,
    ClientContext, Offset, Statistics, TopicPartitionList,
};
use tci_common::{admin::Readiness, kafka::DeadLetter, registry::AvroCodec, retry::Backoff};
use tokio::{
    runtime::{Handle, RuntimeFlavor},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::{
    decode::{decode, Record, Source},
    metrics::METRICS,
    offsets::{Ticket, TopicPartition, Tracker},
    writer::{plan, WriteError, Writer},
};

/// Pipeline settings (from [`crate::IngestConfig`]).
#[derive(Debug, Clone)]
pub struct Settings {
    pub batch_size: usize,
    pub linger: Duration,
    pub max_in_flight_batches: usize,
    pub max_rows_per_batch: usize,
    pub rebalance_drain_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Live mode records the end-to-end lag and commits; backfill does neither.
    pub live: bool,
}

/// Counts of one run (the backfill summary).
#[derive(Debug, Default)]
pub struct Counts {
    pub read: AtomicU64,
    pub written: AtomicU64,
    pub skipped: AtomicU64,
    pub dead_lettered: AtomicU64,
}

/// A snapshot of [`Counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub read: u64,
    pub written: u64,
    pub skipped: u64,
    pub dead_lettered: u64,
}

impl Counts {
    pub fn snapshot(&self) -> Summary {
        Summary {
            read: self.read.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
        }
    }
}

type Item = (Ticket, Record);

#[derive(Default)]
struct State {
    tracker: Tracker,
    buffer: Vec<Item>,
    sealed: VecDeque<Vec<Item>>,
}

/// State shared by the read loop, the flush tasks and the consumer context.
pub struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    consumer: OnceLock<Weak<StreamConsumer<IngestContext>>>,
    writer: Arc<Writer>,
    settings: Settings,
    /// Cancelled when flushes must give up (shutdown grace exhausted).
    hard_stop: CancellationToken,
    closing: AtomicBool,
    /// Set when a write failed permanently: nothing more is written or read.
    fatal: Mutex<Option<String>>,
    handle: Handle,
    pub counts: Counts,
    chat_topic: Arc<str>,
    moderation_topic: Arc<str>,
}

impl Shared {
    pub fn new(
        writer: Arc<Writer>,
        settings: Settings,
        chat_topic: &str,
        moderation_topic: &str,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            consumer: OnceLock::new(),
            writer,
            settings,
            hard_stop: CancellationToken::new(),
            closing: AtomicBool::new(false),
            fatal: Mutex::new(None),
            handle: Handle::current(),
            counts: Counts::default(),
            chat_topic: Arc::from(chat_topic),
            moderation_topic: Arc::from(moderation_topic),
        })
    }

    /// The permanent write failure that stopped ingestion, if any.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn consumer(&self) -> Option<Arc<StreamConsumer<IngestContext>>> {
        self.consumer.get().and_then(Weak::upgrade)
    }

    fn source_of(&self, topic: &str) -> Option<(Source, Arc<str>)> {
        if topic == &*self.chat_topic {
            Some((Source::Chat, self.chat_topic.clone()))
        } else if topic == &*self.moderation_topic {
            Some((Source::Moderation, self.moderation_topic.clone()))
        } else {
            None
        }
    }

    /// Marks records durable and stores the partitions' new watermarks. The store happens under
    /// the lock so two flushes can never store a partition's watermarks out of order.
    fn complete(&self, tickets: &[&Ticket]) {
        let mut st = self.lock();
        let advanced = st.tracker.complete_all(tickets.iter().copied());
        METRICS
            .in_flight_records
            .set(st.tracker.outstanding_total() as i64);
        if !advanced.is_empty() {
            if let Some(c) = self.consumer() {
                let mut tpl = TopicPartitionList::new();
                for ((t, p), o) in &advanced {
                    if let Err(e) = tpl.add_partition_offset(t, *p, Offset::Offset(*o)) {
                        warn!(error = %e, topic = %t, partition = p, "cannot build the offset list");
                    }
                }
                if let Err(e) = c.store_offsets(&tpl) {
                    // Happens for a partition revoked meanwhile; its new owner re-reads.
                    debug!(error = %e, "storing offsets failed");
                }
            }
        }
        drop(st);
        self.cv.notify_all();
    }

    fn spawn_flush(self: &Arc<Self>, batch: Vec<Item>, permit: Option<OwnedSemaphorePermit>) {
        if batch.is_empty() {
            return;
        }
        let shared = self.clone();
        self.handle.spawn(async move {
            let _permit = permit;
            METRICS.batch_size.observe(batch.len() as f64);
            let p = plan(
                batch.iter().map(|(_, r)| r),
                shared.settings.max_rows_per_batch,
            );
            match shared.writer.write(&p, &shared.hard_stop).await {
                Ok(()) => {}
                Err(WriteError::Abandoned) => {
                    // Abandoned at shutdown: nothing stored, the records will be read again.
                    shared.cv.notify_all();
                    return;
                }
                Err(e) => {
                    // Not acknowledged: the records stay uncommitted for when it is fixed.
                    shared
                        .fatal
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert_with(|| e.to_string());
                    shared.cv.notify_all();
                    return;
                }
            }
            if shared.settings.live {
                let now = tci_common::now_ms();
                for (_, r) in &batch {
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
            shared
                .counts
                .written
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let tickets: Vec<&Ticket> = batch.iter().map(|(t, _)| t).collect();
            shared.complete(&tickets);
        });
    }

    /// Revocation: flush what is buffered, wait for the revoked partitions to drain (bounded),
    /// commit, forget them.
    fn on_revoke(self: &Arc<Self>, c: &BaseConsumer<IngestContext>, tpl: &TopicPartitionList) {
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let lost = c.assignment_lost();
        let multi = Handle::try_current()
            .map(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
            .unwrap_or(false);
        let mut drained = false;
        if !lost && multi && !self.closing.load(Ordering::Relaxed) {
            let batches: Vec<Vec<Item>> = {
                let mut st = self.lock();
                let mut v: Vec<Vec<Item>> = st.sealed.drain(..).collect();
                v.push(std::mem::take(&mut st.buffer));
                v
            };
            for b in batches {
                self.spawn_flush(b, None);
            }
            let deadline = std::time::Instant::now() + self.settings.rebalance_drain_timeout;
            tokio::task::block_in_place(|| {
                let mut st = self.lock();
                loop {
                    let left: usize = parts
                        .iter()
                        .map(|(t, p)| st.tracker.outstanding(t, *p))
                        .sum();
                    let now = std::time::Instant::now();
                    if left == 0 || now >= deadline {
                        drained = left == 0;
                        break;
                    }
                    st = self
                        .cv
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            });
            if self.settings.live {
                commit(c);
            }
        }
        let mut st = self.lock();
        for (t, p) in &parts {
            st.tracker.revoke(t, *p);
        }
        METRICS
            .in_flight_records
            .set(st.tracker.outstanding_total() as i64);
        drop(st);
        info!(
            partitions = parts.len(),
            lost, drained, "partitions revoked"
        );
    }
}

fn commit<C: Consumer<IngestContext>>(c: &C) {
    match c.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => METRICS.commits.with_label_values(&["ok"]).inc(),
        // "No offset stored" (nothing new since the last commit) is the common, harmless case.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            METRICS.commits.with_label_values(&["error"]).inc();
            warn!(error = %e, "synchronous offset commit failed; the next owner re-reads from the last committed offset (rows are idempotent)");
        }
    }
}

/// The consumer context: drains on revocation, counts commits, exports per-partition lag.
pub struct IngestContext {
    shared: Arc<Shared>,
}

impl IngestContext {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl ClientContext for IngestContext {
    fn stats(&self, stats: Statistics) {
        for (name, topic) in &stats.topics {
            let Some((source, _)) = self.shared.source_of(name) else {
                continue;
            };
            for (p, part) in &topic.partitions {
                if *p < 0 || part.consumer_lag < 0 {
                    continue;
                }
                METRICS
                    .consumer_lag
                    .with_label_values(&[source.label(), &p.to_string()])
                    .set(part.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => self.shared.on_revoke(c, tpl),
            Rebalance::Assign(tpl) => info!(partitions = tpl.count(), "partitions assigned"),
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) => METRICS.commits.with_label_values(&["ok"]).inc(),
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => {}
            Err(e) => {
                METRICS.commits.with_label_values(&["error"]).inc();
                warn!(error = %e, "offset commit failed");
            }
        }
    }
}

/// Where a backfill stops, per partition.
#[derive(Debug, Clone)]
pub struct Bounds {
    pub from_ms: i64,
    pub to_ms: i64,
    pub broadcaster_id: Option<i64>,
    /// Kafka timestamps may run ahead of sent timestamps by this much.
    pub slack_ms: i64,
    /// High watermark at start, per partition: reading stops there.
    pub end: HashMap<TopicPartition, i64>,
    /// Records to read in total (progress bar).
    pub total: u64,
}

/// The read loop.
pub struct Pipeline {
    pub shared: Arc<Shared>,
    consumer: Arc<StreamConsumer<IngestContext>>,
    codec: AvroCodec,
    dlq: DeadLetter,
    token: CancellationToken,
    readiness: Option<Readiness>,
    bounds: Option<Bounds>,
    done: HashMap<TopicPartition, bool>,
    flushes: Arc<Semaphore>,
    decode_retry: VecDeque<(Ticket, Source, OwnedMessage)>,
    decode_backoff: Backoff,
    next_decode_retry: Instant,
    paused: bool,
    last_dlq_warn: Option<Instant>,
}

impl Pipeline {
    pub fn new(
        shared: Arc<Shared>,
        consumer: Arc<StreamConsumer<IngestContext>>,
        codec: AvroCodec,
        dlq: DeadLetter,
        token: CancellationToken,
        readiness: Option<Readiness>,
        bounds: Option<Bounds>,
    ) -> Self {
        let _ = shared.consumer.set(Arc::downgrade(&consumer));
        let flushes = Arc::new(Semaphore::new(shared.settings.max_in_flight_batches.max(1)));
        let done = bounds
            .as_ref()
            .map(|b| b.end.keys().map(|k| (k.clone(), false)).collect())
            .unwrap_or_default();
        Self {
            shared,
            consumer,
            codec,
            dlq,
            token,
            readiness,
            bounds,
            done,
            flushes,
            decode_retry: VecDeque::new(),
            decode_backoff: Backoff::default_for_dependencies(),
            next_decode_retry: Instant::now(),
            paused: false,
            last_dlq_warn: None,
        }
    }

    /// Runs until the token is cancelled (live) or every partition reached its end (backfill),
    /// then flushes, waits and commits. Returns the run's counts.
    pub async fn run(mut self) -> anyhow::Result<Summary> {
        let settings = self.shared.settings.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut linger_at: Option<Instant> = None;
        let progress = self.bounds.as_ref().map(|b| Progress::new(b.total));
        let consumer = self.consumer.clone();
        loop {
            if self.bounds.is_some() && self.done.values().all(|d| *d) {
                break;
            }
            let stopped = self.shared.fatal().is_some();
            if stopped && self.bounds.is_some() {
                break; // a backfill cannot finish: report it
            }
            let has_sealed = !stopped && !self.shared.lock().sealed.is_empty();
            tokio::select! {
                biased;
                _ = self.token.cancelled() => break,
                permit = self.flushes.clone().acquire_owned(), if has_sealed => {
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
                    // Records re-decoded after a registry outage land in the buffer here: a
                    // non-empty buffer always has a linger deadline.
                    if linger_at.is_none() && !self.shared.lock().buffer.is_empty() {
                        linger_at = Some(Instant::now() + settings.linger);
                    }
                    if let Some(p) = &progress {
                        p.update(&self.shared.counts);
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
                            if len >= settings.batch_size {
                                self.seal();
                                linger_at = None;
                            } else if was_empty && !empty {
                                linger_at = Some(Instant::now() + settings.linger);
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "Kafka consumer error");
                        }
                    }
                }
            }
        }
        let summary = self.shutdown().await;
        if let Some(p) = progress {
            p.finish(&self.shared.counts);
        }
        if let Some(e) = self.shared.fatal() {
            anyhow::bail!("{e}");
        }
        summary
    }

    fn seal(&self) {
        let mut st = self.shared.lock();
        if !st.buffer.is_empty() {
            let b = std::mem::take(&mut st.buffer);
            st.sealed.push_back(b);
        }
    }

    async fn on_message(&mut self, m: &BorrowedMessage<'_>) {
        let Some((source, topic)) = self.shared.source_of(m.topic()) else {
            warn!(topic = m.topic(), "record of an unexpected topic ignored");
            return;
        };
        let key: TopicPartition = (topic.clone(), m.partition());
        let ticket = self
            .shared
            .lock()
            .tracker
            .begin(&topic, m.partition(), m.offset());
        if let Some(b) = &self.bounds {
            if self.done.get(&key).copied().unwrap_or(true) {
                self.shared.complete(&[&ticket]);
                return;
            }
            let end = b.end.get(&key).copied().unwrap_or(0);
            let ts = m.timestamp().to_millis().unwrap_or(0);
            if m.offset() >= end || ts > b.to_ms.saturating_add(b.slack_ms) {
                self.mark_done(&key);
                self.shared.complete(&[&ticket]);
                return;
            }
            if m.offset() + 1 >= end {
                self.mark_done(&key);
            }
        }
        METRICS.consumed.with_label_values(&[source.label()]).inc();
        self.shared.counts.read.fetch_add(1, Ordering::Relaxed);
        match decode(&self.codec, source, m.payload()).await {
            Ok(rec) => self.accept(ticket, rec),
            Err(e) if e.is_retriable() => {
                METRICS.decode_retries.inc();
                if self.decode_retry.is_empty() {
                    warn!(error = %e, "schema registry unavailable; pausing consumption and retrying the decode");
                    self.next_decode_retry = Instant::now() + self.decode_backoff.next_delay();
                }
                self.decode_retry.push_back((ticket, source, m.detach()));
                self.pause();
            }
            Err(e) => {
                let reason = format!("{}: {e}", e.kind());
                if self.dead_letter(m, e.kind(), &reason).await {
                    self.shared.complete(&[&ticket]);
                }
            }
        }
    }

    fn accept(&self, ticket: Ticket, rec: Record) {
        if let Some(b) = &self.bounds {
            let ts = rec.sent_timestamp();
            let other = b
                .broadcaster_id
                .is_some_and(|id| id != rec.broadcaster_id());
            if ts < b.from_ms || ts > b.to_ms || other {
                METRICS.skipped.inc();
                self.shared.counts.skipped.fetch_add(1, Ordering::Relaxed);
                self.shared.complete(&[&ticket]);
                return;
            }
        }
        self.shared.lock().buffer.push((ticket, rec));
    }

    fn mark_done(&mut self, key: &TopicPartition) {
        if let Some(d) = self.done.get_mut(key) {
            if !*d {
                *d = true;
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&key.0, key.1);
                if let Err(e) = self.consumer.pause(&tpl) {
                    debug!(error = %e, "pausing a finished partition");
                }
                debug!(topic = %key.0, partition = key.1, "partition reached the end of the backfill range");
            }
        }
    }

    /// Sends a poison record to the dead-letter topic; retries (the only failure is Kafka
    /// itself being unavailable) until acknowledged or shutdown. Returns true once Kafka has
    /// the record; false on shutdown, when the caller must NOT complete its offset (the record
    /// is read again by the next owner).
    #[must_use]
    async fn dead_letter<M: Message>(&mut self, m: &M, kind: &'static str, reason: &str) -> bool {
        let mut backoff = Backoff::default_for_dependencies();
        loop {
            match self.dlq.send(m, reason).await {
                Ok(()) => break,
                Err(e) => {
                    let delay = backoff.next_delay();
                    warn!(error = %e, retry_in = ?delay, "dead-letter publish failed; retrying");
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
        METRICS.dead_lettered.with_label_values(&[kind]).inc();
        self.shared
            .counts
            .dead_lettered
            .fetch_add(1, Ordering::Relaxed);
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
        // Retry decodes held back by a registry outage.
        if !self.decode_retry.is_empty() && Instant::now() >= self.next_decode_retry {
            while let Some((ticket, source, m)) = self.decode_retry.pop_front() {
                match decode(&self.codec, source, m.payload()).await {
                    Ok(rec) => self.accept(ticket, rec),
                    Err(e) if e.is_retriable() => {
                        METRICS.decode_retries.inc();
                        self.decode_retry.push_front((ticket, source, m));
                        self.next_decode_retry = Instant::now() + self.decode_backoff.next_delay();
                        break;
                    }
                    Err(e) => {
                        let reason = format!("{}: {e}", e.kind());
                        if self.dead_letter(&m, e.kind(), &reason).await {
                            self.shared.complete(&[&ticket]);
                        }
                    }
                }
            }
            if self.decode_retry.is_empty() {
                info!("schema registry available again");
                self.decode_backoff.reset();
            }
        }
        let degraded = self.shared.writer.health.degraded();
        let fatal = self.shared.fatal();
        if let Some(r) = &self.readiness {
            match &fatal {
                Some(e) => r.set(
                    "cassandra",
                    false,
                    format!("ingestion stopped: {e}; fix the schema or query, then restart"),
                ),
                None => r.set(
                    "cassandra",
                    !degraded,
                    if degraded {
                        "writes failing; retrying"
                    } else {
                        "writes succeed"
                    },
                ),
            }
            r.set(
                "registry",
                self.decode_retry.is_empty(),
                if self.decode_retry.is_empty() {
                    "ok"
                } else {
                    "unavailable"
                },
            );
        }
        if degraded || fatal.is_some() || !self.decode_retry.is_empty() {
            self.pause();
        } else if self.paused {
            self.resume();
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
            warn!("Cassandra or the schema registry is unavailable: consumption paused");
            METRICS.paused.set(1);
        }
        self.paused = true;
    }

    fn resume(&mut self) {
        let Ok(a) = self.consumer.assignment() else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for e in a.elements() {
            let key: TopicPartition = (Arc::from(e.topic()), e.partition());
            if !self.done.get(&key).copied().unwrap_or(false) {
                tpl.add_partition(e.topic(), e.partition());
            }
        }
        if let Err(e) = self.consumer.resume(&tpl) {
            warn!(error = %e, "cannot resume the assigned partitions");
            return;
        }
        info!("dependencies available again: consumption resumed");
        METRICS.paused.set(0);
        self.paused = false;
    }

    async fn shutdown(&mut self) -> anyhow::Result<Summary> {
        let grace = self.shared.settings.shutdown_grace;
        let deadline = Instant::now() + grace;
        self.seal();
        let max = self.shared.settings.max_in_flight_batches.max(1) as u32;
        // Spawn every sealed batch (waiting for permits), then wait for every permit back.
        loop {
            let batch = self.shared.lock().sealed.pop_front();
            let Some(b) = batch else { break };
            match tokio::time::timeout_at(deadline, self.flushes.clone().acquire_owned()).await {
                Ok(Ok(p)) => self.shared.spawn_flush(b, Some(p)),
                _ => {
                    self.shared.lock().sealed.push_front(b);
                    break;
                }
            }
        }
        let drained = tokio::time::timeout_at(deadline, self.flushes.acquire_many(max))
            .await
            .is_ok();
        if !drained {
            error!(?grace, "flushes did not finish within the shutdown grace; abandoning them (their records will be re-read)");
            self.shared.hard_stop.cancel();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), self.flushes.acquire_many(max)).await;
        }
        let left = self.shared.lock().tracker.outstanding_total();
        if self.shared.settings.live {
            commit(&*self.consumer);
            info!(outstanding = left, "flushed and committed; stopping");
        }
        self.shared.closing.store(true, Ordering::Relaxed);
        Ok(self.shared.counts.snapshot())
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Backfill progress: a bar with rate and ETA on a terminal, a log line every 5 s otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_log: Mutex<std::time::Instant>,
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
            last_log: Mutex::new(std::time::Instant::now()),
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
