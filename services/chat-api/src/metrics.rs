//! The chat API's metrics, registered once per process.

use std::sync::LazyLock;

use prometheus::{HistogramVec, IntCounter, IntCounterVec};
use tci_common::telemetry;

/// Every metric of the chat API.
pub struct Metrics {
    /// `tci_chat_api_http_requests_total{route,status}`; `route` is a route template.
    pub requests: IntCounterVec,
    /// `tci_chat_api_http_request_duration_seconds{route}`.
    pub duration: HistogramVec,
    /// `tci_chat_api_bad_requests_total{code}`: refused requests by error code.
    pub bad_requests: IntCounterVec,
    /// `tci_chat_api_cassandra_query_duration_seconds{table}`.
    pub cassandra_seconds: HistogramVec,
    /// `tci_chat_api_cassandra_errors_total{table}`.
    pub cassandra_errors: IntCounterVec,
    /// `tci_chat_api_page_queries{route}`: message-page queries per call.
    pub page_queries: HistogramVec,
    /// `tci_chat_api_optout_filtered_total`: stored rows of opted-out chatters left out of pages.
    pub optout_filtered: IntCounter,
    /// `tci_chat_api_render_failures_total`: stored rows served with an empty `message` (json,
    /// ndjson) or left out of a text log (`X-Unreadable-Messages`).
    pub render_failures: IntCounter,
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    Metrics {
    requests: telemetry::counter_vec(
        "tci_chat_api_http_requests_total",
        "HTTP requests by route template and status code",
        &["route", "status"],
    ),
    duration: telemetry::histogram_vec(
        "tci_chat_api_http_request_duration_seconds",
        "HTTP request duration by route template",
        &["route"],
        telemetry::latency_buckets(),
    ),
    bad_requests: telemetry::counter_vec(
        "tci_chat_api_bad_requests_total",
        "Requests refused with a 4xx, by error code",
        &["code"],
    ),
    cassandra_seconds: telemetry::histogram_vec(
        "tci_chat_api_cassandra_query_duration_seconds",
        "Duration of one Cassandra page query, by table",
        &["table"],
        telemetry::latency_buckets(),
    ),
    cassandra_errors: telemetry::counter_vec(
        "tci_chat_api_cassandra_errors_total",
        "Failed Cassandra queries, by table",
        &["table"],
    ),
    page_queries: telemetry::histogram_vec(
        "tci_chat_api_page_queries",
        "Message-page queries issued by one API call",
        &["route"],
        vec![1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 32.0, 64.0],
    ),
    render_failures: telemetry::counter(
        "tci_chat_api_render_failures_total",
        "Stored chat rows served with an empty message (json, ndjson) or left out of a text log, because they have neither a message JSON nor a raw line that renders (written by something other than chat-ingestor); each is logged with its message id.",
    ),
    optout_filtered: telemetry::counter(
        "tci_chat_api_optout_filtered_total",
        "Stored rows of opted-out chatters or channels left out of pages (rows a purge has not deleted yet)",
    ),
}
});

/// The bounded route label of a request path.
pub fn route_label(path: &str) -> &'static str {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["v1.0", "streamers"] => "/v1.0/streamers",
        ["v1.0", _, "chat"] => "/v1.0/{broadcaster_id}/chat",
        ["v1.0", _, "users", _, "chat"] => "/v1.0/{broadcaster_id}/users/{user_id}/chat",
        ["openapi.json"] => "/openapi.json",
        // The log viewer: its page and its two assets.
        [""] => "/",
        ["ui", _] => "/ui/{file}",
        ["healthz"] => "/healthz",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_are_bounded() {
        assert_eq!(
            route_label("/v1.0/24538518/chat"),
            "/v1.0/{broadcaster_id}/chat"
        );
        assert_eq!(
            route_label("/v1.0/1/users/2/chat"),
            "/v1.0/{broadcaster_id}/users/{user_id}/chat"
        );
        assert_eq!(route_label("/v1.0/streamers"), "/v1.0/streamers");
        assert_eq!(route_label("/"), "/");
        assert_eq!(route_label("/ui/viewer.js"), "/ui/{file}");
        assert_eq!(route_label("/anything/else/at/all"), "other");
    }
}
