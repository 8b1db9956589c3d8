//! chat-listener metrics (`tci_chat_listener_*`).

use std::sync::LazyLock;

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};
use tci_common::telemetry as t;

pub struct Metrics {
    pub connections: IntGauge,
    pub joined_channels: IntGauge,
    pub owned_channels: IntGauge,
    pub lines: IntCounterVec,
    pub parse_errors: IntCounterVec,
    pub record_errors: IntCounterVec,
    pub derived_fields: IntCounterVec,
    pub capture_gaps: IntCounter,
    pub join_timeouts: IntCounter,
    pub capture_gap_seconds: prometheus::Counter,
    pub reconnects: IntCounterVec,
    pub published: IntCounterVec,
    pub publish_failed: IntCounterVec,
    pub duplicates: IntCounter,
    pub publish_latency: Histogram,
    pub buffer_fill: IntGauge,
    pub in_flight: IntGauge,
    pub live_records: IntCounter,
    pub live_decode_errors: IntCounter,
    pub live_ignored: IntCounterVec,
    pub optout_dropped: IntCounterVec,
    pub optout_commands: IntCounterVec,
}

pub static M: LazyLock<Metrics> = LazyLock::new(|| {
    Metrics {
    connections: t::gauge(
        "tci_chat_listener_connections",
        "Open chat WebSocket connections.",
    ),
    joined_channels: t::gauge(
        "tci_chat_listener_joined_channels",
        "Channels joined (JOIN confirmed or sent).",
    ),
    owned_channels: t::gauge(
        "tci_chat_listener_owned_channels",
        "Live channels this replica owns.",
    ),
    lines: t::counter_vec(
        "tci_chat_listener_lines_received_total",
        "IRC lines received, by command.",
        &["command"],
    ),
    parse_errors: t::counter_vec(
        "tci_chat_listener_parse_errors_total",
        "Lines that are not IRC, by reason.",
        &["reason"],
    ),
    record_errors: t::counter_vec(
        "tci_chat_listener_record_errors_total",
        "Chat/moderation lines missing what a record needs, by reason.",
        &["reason"],
    ),
    derived_fields: t::counter_vec(
        "tci_chat_listener_derived_fields_total",
        "Records whose line lacked a tag that was then resolved or derived, by field: room-id (from the channel's known id), tmi-sent-ts (receive time), id (hash of room, sender, time and text).",
        &["field"],
    ),
    capture_gaps: t::counter(
        "tci_chat_listener_capture_gaps_total",
        "Times a joined channel was not captured for a while (its connection was down), reported when it is joined again; each is logged with the channel and the window.",
    ),
    join_timeouts: t::counter(
        "tci_chat_listener_join_timeouts_total",
        "JOINs not answered by the channel's ROOMSTATE within irc.join_timeout, and so sent again (Twitch ignores JOINs over its rate limit without an answer).",
    ),
    capture_gap_seconds: t::float_counter(
        "tci_chat_listener_capture_gap_seconds_total",
        "Seconds of chat not captured, summed over channels (Twitch does not replay them).",
    ),
    reconnects: t::counter_vec(
        "tci_chat_listener_reconnects_total",
        "Reconnections, by cause.",
        &["cause"],
    ),
    published: t::counter_vec(
        "tci_chat_listener_published_total",
        "Records acknowledged by Kafka, by kind.",
        &["kind"],
    ),
    publish_failed: t::counter_vec(
        "tci_chat_listener_publish_failed_total",
        "Records Kafka refused or that could not be encoded (dropped), by reason.",
        &["reason"],
    ),
    duplicates: t::counter(
        "tci_chat_listener_duplicates_dropped_total",
        "Duplicate deliveries of one message id dropped.",
    ),
    publish_latency: t::histogram(
        "tci_chat_listener_publish_latency_seconds",
        "From reading a line to Kafka's acknowledgement.",
        t::latency_buckets(),
    ),
    buffer_fill: t::gauge(
        "tci_chat_listener_buffer_records",
        "Records waiting between connections and producer.",
    ),
    in_flight: t::gauge(
        "tci_chat_listener_in_flight_records",
        "Records sent to Kafka and not yet acknowledged.",
    ),
    live_records: t::counter(
        "tci_chat_listener_live_stream_records_total",
        "Live-stream records consumed.",
    ),
    live_ignored: t::counter_vec(
        "tci_chat_listener_live_stream_records_ignored_total",
        "Live-stream records that did not change the live set, by reason (stale, not_assigned_yet, invalid_login).",
        &["reason"],
    ),
    live_decode_errors: t::counter(
        "tci_chat_listener_live_stream_decode_errors_total",
        "Live-stream records that could not be decoded (skipped).",
    ),
    optout_dropped: t::counter_vec(
        "tci_chat_listener_optout_dropped_total",
        "Records not published because their chatter or channel opted out, by kind (chat, moderation).",
        &["kind"],
    ),
    optout_commands: t::counter_vec(
        "tci_chat_listener_optout_commands_total",
        "Opt-out commands typed in chat, by action (optout, optin, ignored: a channel command from someone who is not the broadcaster, or an opt-in of someone not opted out).",
        &["action"],
    ),
}
});

/// Maps a server command to a bounded label.
pub fn command_label(cmd: &str) -> &'static str {
    match cmd {
        "PRIVMSG" => "PRIVMSG",
        "USERNOTICE" => "USERNOTICE",
        "CLEARCHAT" => "CLEARCHAT",
        "CLEARMSG" => "CLEARMSG",
        "ROOMSTATE" => "ROOMSTATE",
        "USERSTATE" => "USERSTATE",
        "GLOBALUSERSTATE" => "GLOBALUSERSTATE",
        "NOTICE" => "NOTICE",
        "PING" => "PING",
        "PONG" => "PONG",
        "JOIN" => "JOIN",
        "PART" => "PART",
        "RECONNECT" => "RECONNECT",
        "CAP" => "CAP",
        "HOSTTARGET" => "HOSTTARGET",
        "WHISPER" => "WHISPER",
        c if c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()) => "numeric",
        _ => "other",
    }
}
