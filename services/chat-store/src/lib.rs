//! The chat tables of the archive, owned in one place.
//!
//! Every service that touches `chat_messages`, `chat_buckets`, `user_chat_index`,
//! `user_chat_days`, `moderation_events` or `deleted_messages` (or the by-user tables of rows
//! stored before storage v3, `user_chat_messages` and `user_chat_buckets`) goes through this
//! crate:
//!
//! * [`bucket`]: the partition arithmetic (5-minute chat buckets, by-user days, periods and
//!   shards) and the deletion rule (which buckets a
//!   CLEARMSG marks, so that the reader finds the mark in the bucket of the message it deletes);
//! * [`plan`]: decoded records → the rows of one flush, grouped into single-partition batches
//!   (pure, unit-tested);
//! * [`cql`]: the text of every statement, in one module, so a schema change is one diff;
//! * [`statements`]: the prepared statements for writes ([`WriteStatements`], with the binding of
//!   each row to its statement) and for reads ([`ReadStatements`]).
//!
//! chat-ingestor keeps retries and concurrency; chat-api keeps the bucket walk and its cursors.
//! The schema itself is `schemas/cql` (migrations); `integration-tests/tests/chat_store.rs`
//! prepares every statement here against a migrated keyspace, so the two cannot drift apart.
//!
//! What a stored message looks like to readers:
//! * Since storage v3 a chat row keeps the exact IRC line and the room's settings; its `message`
//!   JSON is rendered from them on read ([`StoredChatRef::message_json`]). The writer keeps the
//!   JSON only for a record the line does not render exactly (and for records without a line).
//! * CLEARMSG (a moderator deleted one message) marks it in `deleted_messages`; the API leaves
//!   it out when asked (`hide_deleted=true`). The archive keeps the message itself.
//! * CLEARCHAT (a ban, a timeout, or "clear chat") is stored as a moderation event only: it does
//!   not mark the user's earlier messages, which stay visible with `hide_deleted=true` too (an
//!   archive records what was said; the event says who was banned when).

pub mod bucket;
pub mod cql;
pub mod optout;
pub mod plan;
pub mod statements;
pub mod stored;

pub use bucket::{
    bucket_of, day_of, deletion_buckets, period_of, user_shard, BUCKET_MS, DAY_MS,
    DELETABLE_FOR_MS, PERIOD_MS, USER_SHARDS,
};
pub use plan::{plan, ChatRow, DeletionRow, ModerationRow, Plan, Record};
pub use statements::{ReadStatements, Write, WriteStatements};
pub use stored::{BodyError, ScanChatTuple, StoredChatRef, StoredChatRefTuple, StoredChatTuple};

/// Table names (the keyspace is configuration).
pub mod table {
    pub const CHAT_MESSAGES: &str = "chat_messages";
    pub const CHAT_BUCKETS: &str = "chat_buckets";
    pub const USER_CHAT_MESSAGES: &str = "user_chat_messages";
    pub const USER_CHAT_BUCKETS: &str = "user_chat_buckets";
    pub const MODERATION_EVENTS: &str = "moderation_events";
    pub const DELETED_MESSAGES: &str = "deleted_messages";
    pub const USER_CHAT_INDEX: &str = "user_chat_index";
    pub const USER_CHAT_DAYS: &str = "user_chat_days";
    /// Every chat table, in the order a reader of storage figures expects.
    pub const ALL: [&str; 8] = [
        CHAT_MESSAGES,
        CHAT_BUCKETS,
        USER_CHAT_INDEX,
        USER_CHAT_DAYS,
        USER_CHAT_MESSAGES,
        USER_CHAT_BUCKETS,
        MODERATION_EVENTS,
        DELETED_MESSAGES,
    ];
}
