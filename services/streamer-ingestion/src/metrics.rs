//! Prometheus metrics (process-wide, registered once) and per-instance [`Stats`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};
use tci_common::telemetry;

pub(crate) struct Metrics {
    pub records: IntCounterVec,
    pub decode_errors: IntCounterVec,
    pub rows_written: IntCounter,
    pub batch_size: Histogram,
    pub write_seconds: Histogram,
    pub write_retries: IntCounter,
    pub dlq_retries: IntCounter,
    pub last_observed_at: IntGauge,
    pub paused: IntGauge,
    pub commits: IntCounterVec,
}

pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    records: telemetry::counter_vec(
        "tci_streamer_ingestion_records_total",
        "LiveStream records consumed, by outcome (written, dead_lettered).",
        &["outcome"],
    ),
    decode_errors: telemetry::counter_vec(
        "tci_streamer_ingestion_decode_errors_total",
        "Records that did not decode, by kind (retriable registry outages included).",
        &["kind"],
    ),
    rows_written: telemetry::counter(
        "tci_streamer_ingestion_rows_written_total",
        "Channels upserted into the streamers table (after collapsing a batch).",
    ),
    batch_size: telemetry::histogram(
        "tci_streamer_ingestion_batch_size_records",
        "Records per flushed batch.",
        telemetry::size_buckets(),
    ),
    write_seconds: telemetry::histogram(
        "tci_streamer_ingestion_write_seconds",
        "Time to write one batch to Cassandra.",
        telemetry::latency_buckets(),
    ),
    write_retries: telemetry::counter(
        "tci_streamer_ingestion_write_retries_total",
        "Batch writes retried after a Cassandra error.",
    ),
    dlq_retries: telemetry::counter(
        "tci_streamer_ingestion_dead_letter_retries_total",
        "Dead-letter sends retried after a Kafka error.",
    ),
    last_observed_at: telemetry::gauge(
        "tci_streamer_ingestion_last_observed_at_ms",
        "observed_at of the newest record written (ms since the epoch).",
    ),
    paused: telemetry::gauge(
        "tci_streamer_ingestion_paused",
        "1 while consumption is paused because Cassandra writes or the registry are failing.",
    ),
    commits: telemetry::counter_vec(
        "tci_streamer_ingestion_offset_commits_total",
        "Offset commits, by result (ok, error).",
        &["result"],
    ),
});

/// What one ingestion instance did.
#[derive(Debug, Default)]
pub struct Stats {
    pub records_written: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub batches: AtomicU64,
    pub write_retries: AtomicU64,
    /// Times consumption was paused (store or registry failing).
    pub pauses: AtomicU64,
}

impl Stats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}
