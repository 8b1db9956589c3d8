//! State shared by the read loop, the flush tasks and the Kafka consumer's context (which runs
//! the revocation drain inside the poll).

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak,
    },
};

use rdkafka::{
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::{KafkaError, KafkaResult},
    types::RDKafkaErrorCode,
    ClientContext, Offset, Statistics, TopicPartitionList,
};
use tokio::{
    runtime::{Handle, RuntimeFlavor},
    sync::OwnedSemaphorePermit,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};

use super::{Counts, Observer, Settings, Sink, SinkError, Ticket, Tracker};
use crate::kafka::{ErrorKeeper, KeepsErrors};

/// Records of one batch, in read order, and their tickets.
pub(super) struct Batch<R> {
    pub tickets: Vec<Ticket>,
    pub records: Vec<R>,
}

impl<R> Default for Batch<R> {
    fn default() -> Self {
        Self {
            tickets: Vec::new(),
            records: Vec::new(),
        }
    }
}

impl<R> Batch<R> {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

pub(super) struct State<R> {
    pub tracker: Tracker,
    pub buffer: Batch<R>,
    pub sealed: VecDeque<Batch<R>>,
}

pub(super) struct Shared<R: Send + Sync + 'static> {
    state: Mutex<State<R>>,
    cv: Condvar,
    consumer: OnceLock<Weak<StreamConsumer<Context<R>>>>,
    pub sink: Arc<dyn Sink<R>>,
    pub observer: Arc<dyn Observer>,
    pub settings: Settings,
    /// Cancelled when flushes must give up (shutdown grace exhausted).
    pub hard_stop: CancellationToken,
    /// Every flush task, those of a revocation included: shutdown waits for all of them.
    pub flushes: TaskTracker,
    /// Set once shutdown has flushed: a revocation while closing only forgets.
    pub closing: AtomicBool,
    /// False in bounded mode: nothing is committed.
    pub commits: AtomicBool,
    /// Set when a write failed permanently: nothing more is written or read.
    fatal: Mutex<Option<String>>,
    handle: Handle,
    pub counts: Arc<Counts>,
}

impl<R: Send + Sync + 'static> Shared<R> {
    pub fn new(
        settings: Settings,
        sink: Arc<dyn Sink<R>>,
        observer: Arc<dyn Observer>,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                tracker: Tracker::new(),
                buffer: Batch::default(),
                sealed: VecDeque::new(),
            }),
            cv: Condvar::new(),
            consumer: OnceLock::new(),
            sink,
            observer,
            settings,
            hard_stop: CancellationToken::new(),
            flushes: TaskTracker::new(),
            closing: AtomicBool::new(false),
            commits: AtomicBool::new(true),
            fatal: Mutex::new(None),
            handle: Handle::current(),
            counts: Arc::default(),
        })
    }

    pub fn attach(&self, consumer: &Arc<StreamConsumer<Context<R>>>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    /// The permanent write failure that stopped consumption, if any.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn lock(&self) -> MutexGuard<'_, State<R>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn consumer(&self) -> Option<Arc<StreamConsumer<Context<R>>>> {
        self.consumer.get().and_then(Weak::upgrade)
    }

    /// Marks records durable (written, dead-lettered or skipped) and stores the partitions' new
    /// watermarks. The store happens under the lock so two flushes can never store a
    /// partition's watermarks out of order.
    pub fn complete(&self, tickets: &[Ticket]) {
        let mut st = self.lock();
        let advanced = st.tracker.complete_all(tickets);
        self.observer.in_flight(st.tracker.outstanding_total());
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

    /// Writes `batch` in a task of its own, then completes it. `permit` is the read loop's
    /// in-flight slot (none for the flushes of a revocation, which are few: the open batch and
    /// at most the sealed ones).
    pub fn spawn_flush(self: &Arc<Self>, batch: Batch<R>, permit: Option<OwnedSemaphorePermit>) {
        if batch.is_empty() {
            return;
        }
        let shared = self.clone();
        self.flushes.spawn_on(
            async move {
                let _permit = permit;
                let result = shared.sink.write(&batch.records, &shared.hard_stop).await;
                match result {
                    Ok(()) => {
                        Counts::add(&shared.counts.written, batch.len() as u64);
                        shared.complete(&batch.tickets);
                    }
                    // Abandoned at shutdown: nothing stored, the records will be read again.
                    Err(SinkError::Abandoned) => shared.cv.notify_all(),
                    // Not acknowledged: the records stay uncommitted for when it is fixed.
                    Err(SinkError::Fatal(e)) => {
                        shared
                            .fatal
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(e);
                        shared.cv.notify_all();
                    }
                }
            },
            &self.handle,
        );
    }

    /// Revocation: flush what is buffered, wait for the revoked partitions to drain (bounded),
    /// commit, forget them.
    fn on_revoke(self: &Arc<Self>, c: &BaseConsumer<Context<R>>, tpl: &TopicPartitionList) {
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let lost = c.assignment_lost();
        // Waiting blocks this thread: only possible on a multi-threaded runtime.
        let multi = Handle::try_current()
            .map(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
            .unwrap_or(false);
        let mut drained = false;
        if !lost && multi && !self.closing.load(Ordering::Relaxed) {
            let batches: Vec<Batch<R>> = {
                let mut st = self.lock();
                let mut v: Vec<Batch<R>> = st.sealed.drain(..).collect();
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
                    if left == 0 || now >= deadline || self.fatal().is_some() {
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
            if self.commits.load(Ordering::Relaxed) {
                commit(c);
            }
        }
        let mut st = self.lock();
        for (t, p) in &parts {
            st.tracker.revoke(t, *p);
        }
        self.observer.in_flight(st.tracker.outstanding_total());
        drop(st);
        info!(
            partitions = parts.len(),
            lost, drained, "partitions revoked"
        );
    }
}

impl<R: Send + Sync + 'static> Shared<R> {
    pub fn notify(&self) {
        self.cv.notify_all();
    }
}

/// A synchronous commit of what was stored. Its outcome is counted once, by
/// [`Context::commit_callback`] (librdkafka reports synchronous commits there too).
pub(super) fn commit<C: ConsumerContext, K: Consumer<C>>(c: &K) {
    match c.commit_consumer_state(CommitMode::Sync) {
        // "No offset stored" (nothing new since the last commit) is the common, harmless case.
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            warn!(error = %e, "synchronous offset commit failed; the next owner re-reads from the last committed offset (writes are idempotent)");
        }
    }
}

/// The Kafka consumer's context: drains on revocation, counts commits, reports lag, and keeps
/// the last connection failure for `/readyz` ([`ErrorKeeper`]).
pub struct Context<R: Send + Sync + 'static> {
    shared: Arc<Shared<R>>,
    errors: ErrorKeeper,
}

impl<R: Send + Sync + 'static> Context<R> {
    pub(super) fn new(shared: Arc<Shared<R>>) -> Self {
        Self {
            shared,
            errors: ErrorKeeper::default(),
        }
    }
}

impl<R: Send + Sync + 'static> KeepsErrors for Context<R> {
    fn errors(&self) -> &ErrorKeeper {
        &self.errors
    }
}

impl<R: Send + Sync + 'static> ClientContext for Context<R> {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.errors.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.error(error, reason);
    }

    fn stats(&self, stats: Statistics) {
        for (name, topic) in &stats.topics {
            for (p, part) in &topic.partitions {
                if *p < 0 || part.consumer_lag < 0 {
                    continue;
                }
                self.shared.observer.lag(name, *p, part.consumer_lag);
            }
        }
    }
}

impl<R: Send + Sync + 'static> ConsumerContext for Context<R> {
    fn pre_rebalance(&self, c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => self.shared.on_revoke(c, tpl),
            Rebalance::Assign(tpl) => info!(partitions = tpl.count(), "partitions assigned"),
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.shared.observer.committed(true),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                self.shared.observer.committed(false);
                warn!(error = %e, "offset commit failed");
            }
        }
    }
}
