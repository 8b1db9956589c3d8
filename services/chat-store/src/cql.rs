//! The text of every statement on the chat tables. Column lists here and the bindings in
//! [`crate::statements`] are the one place that knows the tables' columns besides
//! `schemas/cql`.

/// Which body a reader wants of a stored chat row ([`crate::StoredChatRef::body`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body {
    /// The API's `message` JSON (stored, or rendered from the raw line).
    #[default]
    Message,
    /// The same JSON as the content of a JSON string literal (escaped, without the quotes): what
    /// the API's json and ndjson pages embed, written in one pass.
    EmbeddedMessage,
    /// The exact IRC line (`raw_line`; empty for rows stored before it was kept).
    RawLine,
    /// What a human chat log shows of the message: `#channel login: text` (`login: /me text`
    /// for an action), read from the raw line, or from the stored JSON of a row without one.
    LogText,
}

pub fn insert_chat(ks: &str) -> String {
    format!("INSERT INTO {ks}.chat_messages (broadcaster_id, bucket, sent_ts, message_id, user_id, message, received_at, raw_line, room_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
}

/// The by-user index row of a message (storage v3): its key in a shared partition of the
/// channel's day. The message is read from `chat_messages` ([`select_chat_by_keys`]).
pub fn insert_user_index(ks: &str) -> String {
    format!("INSERT INTO {ks}.user_chat_index (broadcaster_id, day, shard, user_id, sent_ts, message_id) VALUES (?, ?, ?, ?, ?, ?)")
}

/// A day a chatter spoke in a channel (storage v3).
pub fn insert_user_day(ks: &str) -> String {
    format!("INSERT INTO {ks}.user_chat_days (broadcaster_id, period, shard, user_id, day) VALUES (?, ?, ?, ?, ?)")
}

pub fn insert_bucket(ks: &str) -> String {
    format!("INSERT INTO {ks}.chat_buckets (broadcaster_id, bucket) VALUES (?, ?)")
}

pub fn insert_moderation(ks: &str) -> String {
    format!("INSERT INTO {ks}.moderation_events (broadcaster_id, bucket, sent_ts, event_id, kind, target_user_id, target_user_login, target_message_id, ban_duration_seconds, msg_id, text, system_msg, received_at, raw_line) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
}

pub fn insert_deletion(ks: &str) -> String {
    format!("INSERT INTO {ks}.deleted_messages (broadcaster_id, bucket, message_id, reason) VALUES (?, ?, ?, ?)")
}

/// The columns of a chat row as read, in the order of [`crate::StoredChatTuple`].
const CHAT_COLUMNS: &str =
    "sent_ts, message_id, user_id, message, raw_line, room_state, received_at";

/// One channel bucket's chat rows ([`crate::StoredChatTuple`]) in a time range, in API order.
/// Binds `(broadcaster_id, bucket, start_ms, end_ms)`.
pub fn select_chat_page(ks: &str) -> String {
    format!(
        "SELECT {CHAT_COLUMNS} FROM {ks}.chat_messages \
         WHERE broadcaster_id = ? AND bucket = ? AND sent_ts >= ? AND sent_ts <= ?"
    )
}

/// `(sent_ts, message_id)` of one chatter's messages in a channel's day, in time order.
/// Binds `(broadcaster_id, day, shard, user_id, start_ms, end_ms)`.
pub fn select_user_index_page(ks: &str) -> String {
    format!(
        "SELECT sent_ts, message_id FROM {ks}.user_chat_index \
         WHERE broadcaster_id = ? AND day = ? AND shard = ? AND user_id = ? AND sent_ts >= ? AND sent_ts <= ?"
    )
}

/// The given messages of one channel bucket ([`crate::StoredChatTuple`]), in key order: how a page
/// of the by-user index gets its messages. Binds `(broadcaster_id, bucket, keys)` with `keys` a
/// list of `(sent_ts, message_id)`.
pub fn select_chat_by_keys(ks: &str) -> String {
    format!(
        "SELECT {CHAT_COLUMNS} FROM {ks}.chat_messages \
         WHERE broadcaster_id = ? AND bucket = ? AND (sent_ts, message_id) IN ?"
    )
}

/// Non-empty buckets of a channel. Binds `(broadcaster_id, from, to, limit)`.
pub fn select_chat_buckets(ks: &str) -> String {
    format!("SELECT bucket FROM {ks}.chat_buckets WHERE broadcaster_id = ? AND bucket >= ? AND bucket <= ? LIMIT ?")
}

/// Days a chatter spoke in a channel within one 28-day period.
/// Binds `(broadcaster_id, period, shard, user_id, from_day, to_day, limit)`.
pub fn select_user_days(ks: &str) -> String {
    format!(
        "SELECT day FROM {ks}.user_chat_days \
         WHERE broadcaster_id = ? AND period = ? AND shard = ? AND user_id = ? AND day >= ? AND day <= ? LIMIT ?"
    )
}

/// Ids of the messages marked deleted in a channel bucket. Binds `(broadcaster_id, bucket)`.
pub fn select_deleted(ks: &str) -> String {
    format!("SELECT message_id FROM {ks}.deleted_messages WHERE broadcaster_id = ? AND bucket = ?")
}

/// One stored chat row by its full key ([`crate::StoredChatTuple`]).
/// Binds `(broadcaster_id, bucket, sent_ts, message_id)`.
pub fn select_chat_row(ks: &str) -> String {
    format!("SELECT {CHAT_COLUMNS} FROM {ks}.chat_messages WHERE broadcaster_id = ? AND bucket = ? AND sent_ts = ? AND message_id = ?")
}

/// Every chat row (a full scan, for tests and tools): `broadcaster_id` and a
/// [`crate::StoredChatTuple`].
pub fn scan_chat(ks: &str) -> String {
    format!("SELECT broadcaster_id, {CHAT_COLUMNS} FROM {ks}.chat_messages")
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
        ("insert_user_index", insert_user_index(ks)),
        ("insert_user_day", insert_user_day(ks)),
        ("insert_bucket", insert_bucket(ks)),
        ("insert_moderation", insert_moderation(ks)),
        ("insert_deletion", insert_deletion(ks)),
        ("select_chat_page", select_chat_page(ks)),
        ("select_user_index_page", select_user_index_page(ks)),
        ("select_chat_by_keys", select_chat_by_keys(ks)),
        ("select_chat_buckets", select_chat_buckets(ks)),
        ("select_user_days", select_user_days(ks)),
        ("select_deleted", select_deleted(ks)),
        ("select_chat_row", select_chat_row(ks)),
        ("scan_chat", scan_chat(ks)),
        ("delete_chat_bucket", delete_chat_bucket(ks)),
    ]
}
