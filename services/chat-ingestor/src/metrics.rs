//! The ingestor's Prometheus metrics, registered once per process.

use std::sync::LazyLock;

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use tci_common::telemetry::{
    counter, counter_vec, gauge, gauge_vec, histogram, latency_buckets, size_buckets,
};

/// Every metric of the service. Labels are bounded: `topic` is `chat` or `moderation`,
/// `reason` a [`tci_common::registry::DecodeError::kind`], `partition` a partition number.
pub struct Metrics {
    pub consumed: IntCounterVec,
    pub written: IntCounterVec,
    pub dead_lettered: IntCounterVec,
    pub skipped: IntCounter,
    pub batch_size: Histogram,
    pub write_latency: Histogram,
    pub end_to_end_lag: Histogram,
    pub consumer_lag: IntGaugeVec,
    pub write_retries: IntCounter,
    pub write_failures: IntCounterVec,
    pub decode_retries: IntCounter,
    pub paused: IntGauge,
    pub in_flight_records: IntGauge,
    pub commits: IntCounterVec,
    pub kept_json: IntCounter,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    Metrics {
    consumed: counter_vec(
        "tci_chat_ingestor_records_consumed_total",
        "Records read from Kafka.",
        &["topic"],
    ),
    written: counter_vec(
        "tci_chat_ingestor_records_written_total",
        "Records durably written to Cassandra.",
        &["topic"],
    ),
    dead_lettered: counter_vec(
        "tci_chat_ingestor_records_dead_lettered_total",
        "Undecodable records sent to the dead-letter topic, by reason.",
        &["reason"],
    ),
    skipped: counter(
        "tci_chat_ingestor_records_skipped_total",
        "Backfill: records outside the requested time range or of another broadcaster.",
    ),
    batch_size: histogram(
        "tci_chat_ingestor_batch_size_records",
        "Records per flush.",
        size_buckets(),
    ),
    write_latency: histogram(
        "tci_chat_ingestor_write_latency_seconds",
        "Latency of one successful Cassandra statement or single-partition batch.",
        latency_buckets(),
    ),
    end_to_end_lag: histogram(
        "tci_chat_ingestor_end_to_end_lag_seconds",
        "From a chat message's sent timestamp to its row being written (live mode only).",
        vec![
            0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
        ],
    ),
    consumer_lag: gauge_vec(
        "tci_chat_ingestor_consumer_lag_records",
        "Records between the committed position and the high watermark, per partition.",
        &["topic", "partition"],
    ),
    write_retries: counter(
        "tci_chat_ingestor_write_retries_total",
        "Cassandra writes retried after an error or timeout.",
    ),
    write_failures: counter_vec(
        "tci_chat_ingestor_write_failures_total",
        "Cassandra writes refused for a reason retrying cannot fix (missing table or column, invalid query, auth), by table; ingestion stops and /readyz names the table and statement.",
        &["table"],
    ),
    decode_retries: counter(
        "tci_chat_ingestor_decode_retries_total",
        "Decodes retried because the schema registry was unavailable.",
    ),
    paused: gauge(
        "tci_chat_ingestor_paused",
        "1 while consumption is paused because Cassandra or the registry is unavailable.",
    ),
    in_flight_records: gauge(
        "tci_chat_ingestor_in_flight_records",
        "Records read from Kafka and not yet durable.",
    ),
    commits: counter_vec(
        "tci_chat_ingestor_offset_commits_total",
        "Offset commits, by result (ok, error).",
        &["result"],
    ),
    kept_json: counter(
        "tci_chat_ingestor_rows_kept_as_json_total",
        "Chat rows stored with their message JSON because their raw line does not render it byte for byte (or they have no raw line: records of Avro schema version 1). Rising on live traffic means the record builder and the renderer disagree: a bug worth a look (the data is safe, it only costs disk).",
    ),
}
});
