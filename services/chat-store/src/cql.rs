//! The text of every statement on the chat tables. Column lists here and the bindings in
//! [`crate::statements`] are the one place that knows the tables' columns besides
//! `schemas/cql`.

/// Which stored body a read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body {
    /// The API's `message` JSON.
    #[default]
    Message,
    /// The exact IRC line (`raw_line`; empty for rows stored before it was kept).
    RawLine,
}

impl Body {
    fn column(self) -> &'static str {
        match self {
            Body::Message => "message",
            Body::RawLine => "raw_line",
        }
    }
}

pub fn insert_chat(ks: &str) -> String {
    format!("INSERT INTO {ks}.chat_messages (broadcaster_id, bucket, sent_ts, message_id, user_id, message, received_at, raw_line) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
}

/// The by-user index row of a message: its key and received_at, not the message again (it is
/// read from `chat_messages`, see [`select_chat_by_keys`]). Rows written before storage v2
/// also carry `message` and `raw_line`.
pub fn insert_user_chat(ks: &str) -> String {
    format!("INSERT INTO {ks}.user_chat_messages (broadcaster_id, user_id, bucket, sent_ts, message_id, received_at) VALUES (?, ?, ?, ?, ?, ?)")
}

pub fn insert_bucket(ks: &str) -> String {
    format!("INSERT INTO {ks}.chat_buckets (broadcaster_id, bucket) VALUES (?, ?)")
}

pub fn insert_user_bucket(ks: &str) -> String {
    format!("INSERT INTO {ks}.user_chat_buckets (broadcaster_id, user_id, bucket) VALUES (?, ?, ?)")
}

pub fn insert_moderation(ks: &str) -> String {
    format!("INSERT INTO {ks}.moderation_events (broadcaster_id, bucket, sent_ts, event_id, kind, target_user_id, target_user_login, target_message_id, ban_duration_seconds, msg_id, text, system_msg, received_at, raw_line) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
}

pub fn insert_deletion(ks: &str) -> String {
    format!("INSERT INTO {ks}.deleted_messages (broadcaster_id, bucket, message_id, reason) VALUES (?, ?, ?, ?)")
}

/// `(sent_ts, message_id, body, user_id)` of one channel bucket in a time range, in API
/// order (the chatter's id, so readers need not parse the body to find it).
/// Binds `(broadcaster_id, bucket, start_ms, end_ms)`.
pub fn select_chat_page(ks: &str, body: Body) -> String {
    let col = body.column();
    format!(
        "SELECT sent_ts, message_id, {col}, user_id FROM {ks}.chat_messages \
         WHERE broadcaster_id = ? AND bucket = ? AND sent_ts >= ? AND sent_ts <= ?"
    )
}

/// `(sent_ts, message_id, body)` of one user's bucket in a channel.
/// Binds `(broadcaster_id, user_id, bucket, start_ms, end_ms)`.
pub fn select_user_page(ks: &str, body: Body) -> String {
    let col = body.column();
    format!(
        "SELECT sent_ts, message_id, {col} FROM {ks}.user_chat_messages \
         WHERE broadcaster_id = ? AND user_id = ? AND bucket = ? AND sent_ts >= ? AND sent_ts <= ?"
    )
}

/// `(sent_ts, message_id, body)` of the given messages of one channel bucket, in key order: how
/// a page of the by-user index gets its messages. Binds `(broadcaster_id, bucket, keys)` with
/// `keys` a list of `(sent_ts, message_id)`.
pub fn select_chat_by_keys(ks: &str, body: Body) -> String {
    let col = body.column();
    format!(
        "SELECT sent_ts, message_id, {col} FROM {ks}.chat_messages \
         WHERE broadcaster_id = ? AND bucket = ? AND (sent_ts, message_id) IN ?"
    )
}

/// Non-empty buckets of a channel. Binds `(broadcaster_id, from, to, limit)`.
pub fn select_chat_buckets(ks: &str) -> String {
    format!("SELECT bucket FROM {ks}.chat_buckets WHERE broadcaster_id = ? AND bucket >= ? AND bucket <= ? LIMIT ?")
}

/// Non-empty buckets of a user in a channel. Binds `(broadcaster_id, user_id, from, to, limit)`.
pub fn select_user_buckets(ks: &str) -> String {
    format!(
        "SELECT bucket FROM {ks}.user_chat_buckets \
         WHERE broadcaster_id = ? AND user_id = ? AND bucket >= ? AND bucket <= ? LIMIT ?"
    )
}

/// Ids of the messages marked deleted in a channel bucket. Binds `(broadcaster_id, bucket)`.
pub fn select_deleted(ks: &str) -> String {
    format!("SELECT message_id FROM {ks}.deleted_messages WHERE broadcaster_id = ? AND bucket = ?")
}

/// One stored chat row by its full key: `(user_id, message)`.
/// Binds `(broadcaster_id, bucket, sent_ts, message_id)`.
pub fn select_chat_row(ks: &str) -> String {
    format!("SELECT user_id, message FROM {ks}.chat_messages WHERE broadcaster_id = ? AND bucket = ? AND sent_ts = ? AND message_id = ?")
}

/// Every chat row (a full scan, for tests and tools): `(message_id, message, raw_line)`.
pub fn scan_chat(ks: &str) -> String {
    format!("SELECT message_id, message, raw_line FROM {ks}.chat_messages")
}

/// Removes one channel bucket of `chat_messages` (tests of backfill).
/// Binds `(broadcaster_id, bucket)`.
pub fn delete_chat_bucket(ks: &str) -> String {
    format!("DELETE FROM {ks}.chat_messages WHERE broadcaster_id = ? AND bucket = ?")
}

/// Every statement above with its name, for the contract test that prepares them all.
pub fn all(ks: &str) -> Vec<(&'static str, String)> {
    vec![
        ("insert_chat", insert_chat(ks)),
        ("insert_user_chat", insert_user_chat(ks)),
        ("insert_bucket", insert_bucket(ks)),
        ("insert_user_bucket", insert_user_bucket(ks)),
        ("insert_moderation", insert_moderation(ks)),
        ("insert_deletion", insert_deletion(ks)),
        ("select_chat_page", select_chat_page(ks, Body::Message)),
        ("select_chat_page_raw", select_chat_page(ks, Body::RawLine)),
        ("select_user_page", select_user_page(ks, Body::Message)),
        ("select_user_page_raw", select_user_page(ks, Body::RawLine)),
        (
            "select_chat_by_keys",
            select_chat_by_keys(ks, Body::Message),
        ),
        (
            "select_chat_by_keys_raw",
            select_chat_by_keys(ks, Body::RawLine),
        ),
        ("select_chat_buckets", select_chat_buckets(ks)),
        ("select_user_buckets", select_user_buckets(ks)),
        ("select_deleted", select_deleted(ks)),
        ("select_chat_row", select_chat_row(ks)),
        ("scan_chat", scan_chat(ks)),
        ("delete_chat_bucket", delete_chat_bucket(ks)),
    ]
}
