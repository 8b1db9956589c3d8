//! Wire types of the Twitch Chat Ingestor.
//!
//! The Avro schemas in `schemas/avro/*.avsc` are the contract on Kafka; the structs here mirror
//! them field for field (serde names match the Avro names) so `apache-avro`'s serde support can
//! encode and decode them. `schemas/cql/*.cql` are the Cassandra migrations, embedded here so the
//! project's `tci migrate` command and the tests apply the very same files.
//!
//! [`ChatMessage::to_spec_json`] renders the `message` string served by the API, byte for byte in
//! the format of the original service (Python's `json.dumps`: `", "` and `": "` separators,
//! non-ASCII escaped as `\uXXXX`).

mod json;
mod optout;

use serde::{Deserialize, Serialize};

pub use json::PyJson;
pub use optout::{OptOut, OptOutScope, OptOutSet, OptOutSource, OptOutState};

/// Avro schema of [`ChatMessage`].
pub const CHAT_MESSAGE_AVSC: &str = include_str!("../avro/chat_message.avsc");
/// Avro schema of [`LiveStream`].
pub const LIVE_STREAM_AVSC: &str = include_str!("../avro/live_stream.avsc");
/// Avro schema of [`ModerationEvent`].
pub const MODERATION_EVENT_AVSC: &str = include_str!("../avro/moderation_event.avsc");
/// Avro schema of [`OptOut`].
pub const OPTOUT_AVSC: &str = include_str!("../avro/optout.avsc");

/// The CQL migrations, in the order they must be applied: `(file name, text)`.
/// Each file holds statements separated by `;` and uses `{keyspace}` and `{replication}`
/// placeholders that the migration runner fills from configuration.
pub const CQL_MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_keyspace.cql",
        include_str!("../cql/0001_keyspace.cql"),
    ),
    (
        "0002_chat_messages.cql",
        include_str!("../cql/0002_chat_messages.cql"),
    ),
    (
        "0003_streamers.cql",
        include_str!("../cql/0003_streamers.cql"),
    ),
    (
        "0004_moderation.cql",
        include_str!("../cql/0004_moderation.cql"),
    ),
    (
        "0005_raw_lines.cql",
        include_str!("../cql/0005_raw_lines.cql"),
    ),
    (
        "0006_storage_v2.cql",
        include_str!("../cql/0006_storage_v2.cql"),
    ),
    ("0007_optouts.cql", include_str!("../cql/0007_optouts.cql")),
];

/// A badge or badge-info entry: `name/version` in the IRC tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Badge {
    pub name: String,
    pub version: String,
}

/// An IRCv3 tag with its value unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// An inclusive code-point range of one emote occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmotePosition {
    pub start: i32,
    pub end: i32,
}

/// One emote id and all its occurrences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emote {
    pub id: String,
    pub positions: Vec<EmotePosition>,
}

/// Chat settings of a channel (merged ROOMSTATE).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Room {
    pub name: String,
    pub is_emote_only: bool,
    pub is_subs_only: bool,
    pub is_followers_only: bool,
    pub is_unique_only: bool,
    pub follower_only_delay: i32,
    pub room_id: String,
    pub slow: i32,
}

/// The chatter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct User {
    pub name: String,
    pub badge_info: Option<Vec<Badge>>,
    pub badges: Option<Vec<Badge>>,
    pub color: Option<String>,
    pub display_name: String,
    #[serde(rename = "mod")]
    pub is_mod: bool,
    pub subscriber: bool,
    pub turbo: bool,
    pub id: String,
    pub user_type: Option<String>,
    pub vip: bool,
}

/// One chat message; mirrors `chat_message.avsc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ChatMessage {
    pub broadcaster_id: i64,
    pub id: String,
    pub sent_timestamp: i64,
    pub received_at: i64,
    pub text: String,
    pub is_me: bool,
    pub bits: i32,
    pub reply_parent_msg_id: Option<String>,
    pub reply_parent_user_id: Option<String>,
    pub reply_parent_user_login: Option<String>,
    pub reply_parent_display_name: Option<String>,
    pub reply_parent_msg_body: Option<String>,
    pub reply_thread_parent_msg_id: Option<String>,
    pub reply_thread_parent_user_login: Option<String>,
    pub emotes: Option<Vec<Emote>>,
    pub room: Room,
    pub user: User,
    pub raw_tags: Vec<Tag>,
    /// The exact IRC line Twitch sent (without its line ending); `None` in records written
    /// before the field existed (schema version 1).
    #[serde(default)]
    pub raw_line: Option<String>,
}

/// One live channel seen by a Helix poll; mirrors `live_stream.avsc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LiveStream {
    pub broadcaster_id: i64,
    pub broadcaster_login: String,
    pub broadcaster_name: String,
    pub stream_id: String,
    pub game_id: String,
    pub game_name: String,
    pub title: String,
    pub viewer_count: i64,
    pub language: String,
    pub started_at: i64,
    pub observed_at: i64,
    pub poll_id: String,
}

/// Kind of a [`ModerationEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModerationKind {
    #[serde(rename = "CLEARCHAT")]
    ClearChat,
    #[serde(rename = "CLEARMSG")]
    ClearMsg,
    #[serde(rename = "USERNOTICE")]
    UserNotice,
}

impl ModerationKind {
    /// The IRC command name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClearChat => "CLEARCHAT",
            Self::ClearMsg => "CLEARMSG",
            Self::UserNotice => "USERNOTICE",
        }
    }
}

/// A tag of a moderation event (distinct Avro name from [`Tag`], same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModTag {
    pub key: String,
    pub value: String,
}

/// CLEARCHAT / CLEARMSG / USERNOTICE; mirrors `moderation_event.avsc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModerationEvent {
    pub broadcaster_id: i64,
    pub kind: ModerationKind,
    pub event_id: String,
    pub sent_timestamp: i64,
    pub channel: String,
    pub target_user_id: Option<String>,
    pub target_user_login: Option<String>,
    pub target_message_id: Option<String>,
    pub ban_duration_seconds: Option<i32>,
    pub msg_id: Option<String>,
    pub text: Option<String>,
    pub system_msg: Option<String>,
    pub raw_tags: Vec<ModTag>,
    /// When chat-listener read the line, ms since the epoch; `None` before schema version 2.
    #[serde(default)]
    pub received_at: Option<i64>,
    /// The exact IRC line Twitch sent; `None` before schema version 2.
    #[serde(default)]
    pub raw_line: Option<String>,
}

impl ChatMessage {
    /// The `message` JSON string of the API, in the original service's exact format and key
    /// order (see the crate docs).
    pub fn to_spec_json(&self) -> String {
        let mut j = PyJson::with_capacity(512 + self.text.len() * 2);
        self.write_spec_json(&mut j);
        j.finish()
    }

    /// Writes the `message` object into `j` (used by [`Self::to_spec_json`] and by callers that
    /// embed the object in a larger document).
    pub fn write_spec_json(&self, j: &mut PyJson) {
        j.begin_object();
        j.key("text").string(&self.text);
        j.key("is_me").bool(self.is_me);
        j.key("bits").int(i64::from(self.bits));
        j.key("sent_timestamp").int(self.sent_timestamp);
        j.key("reply_parent_msg_id")
            .opt_string(self.reply_parent_msg_id.as_deref());
        j.key("reply_parent_user_id")
            .opt_string(self.reply_parent_user_id.as_deref());
        j.key("reply_parent_user_login")
            .opt_string(self.reply_parent_user_login.as_deref());
        j.key("reply_parent_display_name")
            .opt_string(self.reply_parent_display_name.as_deref());
        j.key("reply_parent_msg_body")
            .opt_string(self.reply_parent_msg_body.as_deref());
        j.key("reply_thread_parent_msg_id")
            .opt_string(self.reply_thread_parent_msg_id.as_deref());
        j.key("reply_thread_parent_user_login")
            .opt_string(self.reply_thread_parent_user_login.as_deref());
        j.key("emotes");
        match &self.emotes {
            None => j.null(),
            Some(emotes) => {
                j.begin_object();
                for e in emotes {
                    j.key(&e.id).begin_array();
                    for p in &e.positions {
                        j.begin_object();
                        j.key("start_position").string(&p.start.to_string());
                        j.key("end_position").string(&p.end.to_string());
                        j.end_object();
                    }
                    j.end_array();
                }
                j.end_object();
            }
        }
        j.key("id").string(&self.id);
        j.key("room").begin_object();
        let r = &self.room;
        j.key("name").string(&r.name);
        j.key("is_emote_only").bool(r.is_emote_only);
        j.key("is_subs_only").bool(r.is_subs_only);
        j.key("is_followers_only").bool(r.is_followers_only);
        j.key("is_unique_only").bool(r.is_unique_only);
        j.key("follower_only_delay")
            .int(i64::from(r.follower_only_delay));
        j.key("room_id").string(&r.room_id);
        j.key("slow").int(i64::from(r.slow));
        j.end_object();
        j.key("user").begin_object();
        let u = &self.user;
        j.key("name").string(&u.name);
        j.key("badge_info");
        write_badges(j, u.badge_info.as_deref());
        j.key("badges");
        write_badges(j, u.badges.as_deref());
        j.key("color").opt_string(u.color.as_deref());
        j.key("display_name").string(&u.display_name);
        j.key("mod").bool(u.is_mod);
        j.key("subscriber").bool(u.subscriber);
        j.key("turbo").bool(u.turbo);
        j.key("id").string(&u.id);
        j.key("user_type").opt_string(u.user_type.as_deref());
        j.key("vip").bool(u.vip);
        j.end_object();
        j.end_object();
    }

    /// The chatter's numeric id, when the user-id tag is a number.
    pub fn user_id(&self) -> Option<i64> {
        self.user.id.parse().ok()
    }
}

fn write_badges(j: &mut PyJson, badges: Option<&[Badge]>) {
    match badges {
        None => j.null(),
        Some(b) => {
            j.begin_object();
            for badge in b {
                j.key(&badge.name).string(&badge.version);
            }
            j.end_object();
        }
    }
}

#[cfg(test)]
mod tests;
