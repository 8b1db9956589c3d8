//! Prometheus metrics (process-wide, registered once) and per-instance [`Stats`] (what one
//! [`crate::App`] did; tests and the readiness check read them).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    LazyLock, Mutex,
};
use std::time::Duration;

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};
use tci_common::telemetry;

pub(crate) struct Metrics {
    /// outcome: ok, capped, failed, cancelled.
    pub polls: IntCounterVec,
    pub pages: IntCounter,
    pub streams_seen: IntCounter,
    pub streams_published: IntCounter,
    pub duplicates: IntCounter,
    /// reason: min_viewers, denied, not_allowed.
    pub filtered: IntCounterVec,
    /// reason: initial, expiring, expired, unauthorized (Helix answered 401 with the last one).
    pub token_refreshes: IntCounterVec,
    pub rate_limit_waits: IntCounter,
    pub rate_limit_wait_seconds: Histogram,
    /// reason: rate_limited, server_error, transport, malformed, unauthorized.
    pub retries: IntCounterVec,
    /// kind: see `HelixError::kind`, `PublishError::kind`, bad_stream.
    pub errors: IntCounterVec,
    pub poll_duration_seconds: Histogram,
    pub last_poll_streams: IntGauge,
}

pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    polls: telemetry::counter_vec(
        "tci_streamer_listener_polls_total",
        "Helix polls, by outcome.",
        &["outcome"],
    ),
    pages: telemetry::counter(
        "tci_streamer_listener_pages_total",
        "Helix streams pages fetched successfully.",
    ),
    streams_seen: telemetry::counter(
        "tci_streamer_listener_streams_seen_total",
        "Stream entries read from Helix pages.",
    ),
    streams_published: telemetry::counter(
        "tci_streamer_listener_streams_published_total",
        "LiveStream records acknowledged by Kafka.",
    ),
    duplicates: telemetry::counter(
        "tci_streamer_listener_duplicate_streams_total",
        "Streams seen twice in one walk (shifted between pages) and de-duplicated.",
    ),
    filtered: telemetry::counter_vec(
        "tci_streamer_listener_streams_filtered_total",
        "Streams dropped by the local filters, by reason.",
        &["reason"],
    ),
    token_refreshes: telemetry::counter_vec(
        "tci_streamer_listener_token_refreshes_total",
        "App access tokens obtained, by reason.",
        &["reason"],
    ),
    rate_limit_waits: telemetry::counter(
        "tci_streamer_listener_rate_limit_waits_total",
        "Waits for the Helix rate-limit bucket (Remaining 0 or a 429).",
    ),
    rate_limit_wait_seconds: telemetry::histogram(
        "tci_streamer_listener_rate_limit_wait_seconds",
        "Length of each rate-limit wait.",
        vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0],
    ),
    retries: telemetry::counter_vec(
        "tci_streamer_listener_helix_retries_total",
        "Helix requests retried, by reason.",
        &["reason"],
    ),
    errors: telemetry::counter_vec(
        "tci_streamer_listener_errors_total",
        "Errors, by kind.",
        &["kind"],
    ),
    poll_duration_seconds: telemetry::histogram(
        "tci_streamer_listener_poll_duration_seconds",
        "Duration of one poll: walk plus publish.",
        vec![
            0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
        ],
    ),
    last_poll_streams: telemetry::gauge(
        "tci_streamer_listener_last_poll_streams",
        "Streams published by the last complete poll.",
    ),
});

/// What one listener instance did (the global metrics aggregate every instance of a process).
#[derive(Debug, Default)]
pub struct Stats {
    pub polls_ok: AtomicU64,
    pub polls_failed: AtomicU64,
    pub pages: AtomicU64,
    pub streams_published: AtomicU64,
    pub token_refreshes: AtomicU64,
    pub unauthorized: AtomicU64,
    pub rate_limit_waits: AtomicU64,
    pub rate_limited_429: AtomicU64,
    pub retries: AtomicU64,
    last: Mutex<Option<PollReport>>,
}

impl Stats {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub(crate) fn set_last(&self, r: PollReport) {
        if let Ok(mut g) = self.last.lock() {
            *g = Some(r);
        }
    }

    /// The report of the last poll that ended (successfully or not).
    pub fn last(&self) -> Option<PollReport> {
        self.last.lock().ok().and_then(|g| g.clone())
    }
}

/// One poll, summarised (also logged at info level).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PollReport {
    pub poll_id: String,
    /// Poll start, ms since the epoch (the records' `observed_at`).
    pub observed_at: i64,
    pub ok: bool,
    pub pages: u32,
    /// Entries read from the pages.
    pub seen: usize,
    pub duplicates: usize,
    pub filtered: usize,
    /// Records published (0 unless `ok`).
    pub published: usize,
    pub rate_limit_waits: u32,
    pub rate_limit_waited: Duration,
    pub rate_limited_429: u32,
    pub retries: u32,
    pub walk: Duration,
    pub total: Duration,
    /// The walk stopped at `poll.max_pages` with more pages left.
    pub capped: bool,
}
