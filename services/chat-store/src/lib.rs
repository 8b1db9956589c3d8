//! The chat tables of the archive, owned in one place.
//!
//! Every service that touches `chat_messages`, `chat_buckets`, `user_chat_messages`,
//! `user_chat_buckets`, `moderation_events` or `deleted_messages` goes through this crate:
//!
//! * [`bucket`]: the 5-minute partition arithmetic and the deletion rule (which buckets a
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

pub use bucket::{bucket_of, deletion_buckets, BUCKET_MS, DELETABLE_FOR_MS};
pub use plan::{plan, ChatRow, DeletionRow, ModerationRow, Plan, Record};
pub use statements::{ReadStatements, Write, WriteStatements};

/// Table names (the keyspace is configuration).
pub mod table {
    pub const CHAT_MESSAGES: &str = "chat_messages";
    pub const CHAT_BUCKETS: &str = "chat_buckets";
    pub const USER_CHAT_MESSAGES: &str = "user_chat_messages";
    pub const USER_CHAT_BUCKETS: &str = "user_chat_buckets";
    pub const MODERATION_EVENTS: &str = "moderation_events";
    pub const DELETED_MESSAGES: &str = "deleted_messages";
    /// Every chat table, in the order a reader of storage figures expects.
    pub const ALL: [&str; 6] = [
        CHAT_MESSAGES,
        CHAT_BUCKETS,
        USER_CHAT_MESSAGES,
        USER_CHAT_BUCKETS,
        MODERATION_EVENTS,
        DELETED_MESSAGES,
    ];
}
