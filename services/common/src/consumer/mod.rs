//! The at-least-once batch consumer every ingestor runs on (and chat-ingestor's backfill): read →
//! decode → batch → write → store the offset. Services supply the two parts that are theirs, a
//! [`Decoder`] (payload → record) and a [`Sink`] (batch → store), plus an [`Observer`] that maps
//! the consumer's events onto the service's own metric names.
//!
//! - One task reads the Kafka consumer, decodes, registers every record in the [`Tracker`] and
//!   appends it to the open batch. A batch is sealed at `batch_size` records or `linger` after its
//!   first record, and handed to a flush task (at most `max_in_flight_batches` at once; while none
//!   is free the loop stops reading: bounded memory).
//! - A flush task writes its batch ([`Sink::write`]), then completes its tickets and stores the
//!   new contiguous watermark of each partition (`enable.auto.offset.store=false`; the periodic
//!   auto-commit commits what was stored). A record's offset is therefore stored only once it and
//!   every record before it in its partition are durable.
//! - The sink retrying ([`Sink::degraded`]) or a decode waiting for a dependency
//!   ([`DecodeFailure::Retriable`]): the assigned partitions are paused; the loop keeps polling
//!   (group membership and rebalances go on, `max.poll.interval.ms` is never exceeded) without
//!   buffering more, and resumes once writes succeed and the held decodes went through.
//! - Poison records ([`DecodeFailure::Poison`]) go to the dead-letter topic; only once Kafka
//!   acknowledged them does their offset count as done.
//! - A permanent write failure ([`SinkError::Fatal`]): nothing more is read, written or
//!   acknowledged; readiness says why and [`BatchConsumer::run`] returns the error.
//! - Revocation: the consumer [`Context`] flushes what is buffered, waits (at most
//!   `rebalance_drain_timeout`) for the revoked partitions' records to be durable, commits
//!   synchronously and forgets those partitions.
//! - Shutdown: stop reading, flush, wait for every flush (those of a revocation included; at most
//!   `shutdown_grace`, then the writes are abandoned without storing), commit synchronously.
//!
//! [`Mode::Bounded`] is the backfill: assigned partitions, read up to per-partition end offsets
//! (or a Kafka timestamp), a filter on the decoded records, and no commits.

mod context;
pub mod offsets;
mod run;

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

pub use context::Context;
pub use offsets::{Ticket, TopicPartition, Tracker};
pub use run::BatchConsumer;

use crate::{admin::Readiness, kafka::DeadLetter};

/// Batching, concurrency and timeouts.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A batch is sealed when it holds this many records…
    pub batch_size: usize,
    /// …or this long after its first record arrived.
    pub linger: Duration,
    /// Batches being written at once (reading stops while all are busy).
    pub max_in_flight_batches: usize,
    /// How long a revocation may wait for the revoked partitions' records to be written.
    pub rebalance_drain_timeout: Duration,
    /// How long shutdown may wait for the last flushes before abandoning them.
    pub shutdown_grace: Duration,
}

/// Why a record did not decode.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DecodeFailure {
    /// A dependency of decoding is unavailable (the schema registry): the record is held,
    /// consumption paused, and the decode retried with backoff. Never dead-lettered.
    #[error("{kind}: {reason}")]
    Retriable { kind: &'static str, reason: String },
    /// The record can never be decoded: it goes to the dead-letter topic with this reason.
    #[error("{kind}: {reason}")]
    Poison { kind: &'static str, reason: String },
}

impl DecodeFailure {
    /// A stable short name (metric label, dead-letter reason prefix).
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeFailure::Retriable { kind, .. } | DecodeFailure::Poison { kind, .. } => kind,
        }
    }

    pub fn is_retriable(&self) -> bool {
        matches!(self, DecodeFailure::Retriable { .. })
    }
}

/// Turns a Kafka payload into a record.
pub trait Decoder: Send + Sync + 'static {
    type Record: Send + Sync + 'static;

    /// Decodes one value read from `topic`.
    fn decode<'a>(
        &'a self,
        topic: &'a str,
        payload: Option<&'a [u8]>,
    ) -> impl Future<Output = Result<Self::Record, DecodeFailure>> + Send + 'a;
}

/// Why a batch was not written; either way none of it is acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// The consumer is stopping (the `stop` token was cancelled): the records are read again
    /// by the next owner.
    #[error("write abandoned: shutting down")]
    Abandoned,
    /// The store refused the write for a reason retrying cannot fix. Consumption stops, nothing
    /// more is acknowledged, readiness reports it and [`BatchConsumer::run`] returns it.
    #[error("{0}")]
    Fatal(String),
}

/// Writes batches. Idempotent writes are the sink's business: a batch may be written again
/// after a crash or a rebalance.
pub trait Sink<R>: Send + Sync + 'static {
    /// Writes `batch` durably, retrying transient failures itself until it succeeds or `stop`
    /// is cancelled ([`SinkError::Abandoned`]).
    fn write<'a>(
        &'a self,
        batch: &'a [R],
        stop: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<(), SinkError>>;

    /// True while writes are failing and being retried: consumption pauses.
    fn degraded(&self) -> bool;
}

/// The consumer's events, for the service to count under its own metric names. Every method
/// defaults to nothing.
pub trait Observer: Send + Sync + 'static {
    /// A record was read from `topic` (and is within the bounds).
    fn consumed(&self, _topic: &str) {}
    /// A decode failed (`retriable`: it is held and retried; else it is dead-lettered).
    fn decode_failed(&self, _kind: &'static str, _retriable: bool) {}
    /// A poison record reached the dead-letter topic.
    fn dead_lettered(&self, _kind: &'static str) {}
    /// A dead-letter send failed and is retried.
    fn dead_letter_retried(&self) {}
    /// Bounded mode: a record left out by the filter.
    fn skipped(&self) {}
    /// Consumption paused (true) or resumed (false).
    fn paused(&self, _paused: bool) {}
    /// Records read and not yet durable.
    fn in_flight(&self, _records: usize) {}
    /// An offset commit finished (`ok`; "nothing to commit" is not reported).
    fn committed(&self, _ok: bool) {}
    /// Consumer lag of a partition, from librdkafka's statistics (when the service enables
    /// `statistics.interval.ms`).
    fn lag(&self, _topic: &str, _partition: i32, _lag: i64) {}
}

/// An observer that observes nothing.
pub struct NoMetrics;

impl Observer for NoMetrics {}

/// Live (a group member: commits) or bounded (a replay: stops at the ends, commits nothing).
pub enum Mode<R> {
    Live,
    Bounded(Bounds<R>),
}

/// Where a bounded run stops, per partition, and which records it keeps.
pub struct Bounds<R> {
    /// Offset at which each assigned partition is finished (its high watermark at start).
    pub end: HashMap<TopicPartition, i64>,
    /// A partition is also finished at its first record with a Kafka timestamp past this.
    pub until_timestamp_ms: i64,
    /// Records for which this is false are skipped (completed without being written).
    pub keep: Box<dyn Fn(&R) -> bool + Send + Sync>,
}

/// Counts of one run.
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

    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// A `/readyz` check the consumer owns (its only writer): the state of the writes.
#[derive(Clone)]
pub struct ReadinessCheck {
    pub readiness: Readiness,
    pub name: &'static str,
}

/// The parts of a [`BatchConsumer`] besides the Kafka consumer and the decoder.
pub struct Options<R> {
    pub dlq: DeadLetter,
    pub mode: Mode<R>,
    /// Cancelled to stop: flush, commit, return.
    pub token: CancellationToken,
    pub readiness: Option<ReadinessCheck>,
}

/// First step: the state the Kafka consumer's [`Context`] shares with the read loop. Build the
/// Kafka consumer with [`Builder::context`], then [`Builder::build`] the [`BatchConsumer`].
pub struct Builder<R: Send + Sync + 'static> {
    shared: Arc<context::Shared<R>>,
}

impl<R: Send + Sync + 'static> Builder<R> {
    /// Must be called inside a Tokio runtime (flushes are spawned on it).
    pub fn new(settings: Settings, sink: Arc<dyn Sink<R>>, observer: Arc<dyn Observer>) -> Self {
        Self {
            shared: context::Shared::new(settings, sink, observer),
        }
    }

    /// The context to create the Kafka consumer with.
    pub fn context(&self) -> Context<R> {
        Context::new(self.shared.clone())
    }

    /// The read loop over `kafka` (subscribed, or assigned for [`Mode::Bounded`]).
    pub fn build<D: Decoder<Record = R>>(
        self,
        kafka: Arc<rdkafka::consumer::StreamConsumer<Context<R>>>,
        decoder: D,
        options: Options<R>,
    ) -> BatchConsumer<D> {
        BatchConsumer::new(self.shared, kafka, decoder, options)
    }
}
