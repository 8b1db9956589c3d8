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

pub mod json;
mod optout;
pub mod scan;

use serde::{Deserialize, Serialize};

pub use json::{escape_json_content, Fixed, PyJson};
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
    (
        "0008_storage_v3.cql",
        include_str!("../cql/0008_storage_v3.cql"),
    ),
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
        self.view().write_spec_json(j);
    }

    /// The message's fields, borrowed: what [`MessageView::write_spec_json`] renders.
    pub fn view(&self) -> MessageView<'_> {
        let (r, u) = (&self.room, &self.user);
        MessageView {
            text: &self.text,
            is_me: self.is_me,
            bits: self.bits,
            sent_timestamp: self.sent_timestamp,
            reply_parent_msg_id: self.reply_parent_msg_id.as_deref(),
            reply_parent_user_id: self.reply_parent_user_id.as_deref(),
            reply_parent_user_login: self.reply_parent_user_login.as_deref(),
            reply_parent_display_name: self.reply_parent_display_name.as_deref(),
            reply_parent_msg_body: self.reply_parent_msg_body.as_deref(),
            reply_thread_parent_msg_id: self.reply_thread_parent_msg_id.as_deref(),
            reply_thread_parent_user_login: self.reply_thread_parent_user_login.as_deref(),
            emotes: self.emotes.as_deref(),
            id: &self.id,
            room_name: &r.name,
            room_id: &r.room_id,
            settings: RoomSettings::of(r),
            user_name: &u.name,
            badge_info: u.badge_info.as_deref().map(Badges::List),
            badges: u.badges.as_deref().map(Badges::List),
            color: u.color.as_deref(),
            display_name: &u.display_name,
            is_mod: u.is_mod,
            subscriber: u.subscriber,
            turbo: u.turbo,
            user_id: &u.id,
            user_type: u.user_type.as_deref(),
            vip: u.vip,
        }
    }

    /// The chatter's numeric id, when the user-id tag is a number.
    pub fn user_id(&self) -> Option<i64> {
        self.user.id.parse().ok()
    }
}

/// A chat message's fields, borrowed, in the order of the `message` JSON: what
/// [`ChatMessage::view`] lends, and what `tci-irc` fills straight from a stored IRC line (no
/// record in between) to render pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageView<'a> {
    pub text: &'a str,
    pub is_me: bool,
    pub bits: i32,
    pub sent_timestamp: i64,
    pub reply_parent_msg_id: Option<&'a str>,
    pub reply_parent_user_id: Option<&'a str>,
    pub reply_parent_user_login: Option<&'a str>,
    pub reply_parent_display_name: Option<&'a str>,
    pub reply_parent_msg_body: Option<&'a str>,
    pub reply_thread_parent_msg_id: Option<&'a str>,
    pub reply_thread_parent_user_login: Option<&'a str>,
    pub emotes: Option<&'a [Emote]>,
    pub id: &'a str,
    pub room_name: &'a str,
    pub room_id: &'a str,
    pub settings: RoomSettings,
    pub user_name: &'a str,
    pub badge_info: Option<Badges<'a>>,
    pub badges: Option<Badges<'a>>,
    pub color: Option<&'a str>,
    pub display_name: &'a str,
    pub is_mod: bool,
    pub subscriber: bool,
    pub turbo: bool,
    pub user_id: &'a str,
    pub user_type: Option<&'a str>,
    pub vip: bool,
}

impl MessageView<'_> {
    /// Writes the `message` object into `j`, in the original service's exact format and key
    /// order.
    pub fn write_spec_json(&self, j: &mut PyJson) {
        j.fixed(|w| self.write(w), |w| self.write(w));
    }

    fn write<const E: bool>(&self, w: &mut Fixed<'_, E>) {
        w.raw("{");
        key!(w, first "text");
        w.string(self.text);
        key!(w, "is_me");
        w.bool(self.is_me);
        key!(w, "bits");
        w.int(i64::from(self.bits));
        key!(w, "sent_timestamp");
        w.int(self.sent_timestamp);
        let reply = [
            self.reply_parent_msg_id,
            self.reply_parent_user_id,
            self.reply_parent_user_login,
            self.reply_parent_display_name,
            self.reply_parent_msg_body,
            self.reply_thread_parent_msg_id,
            self.reply_thread_parent_user_login,
        ];
        if reply.iter().all(Option::is_none) {
            // Most messages are no reply: the seven keys and nulls in one copy.
            w.lit(
                ", \"reply_parent_msg_id\": null, \"reply_parent_user_id\": null, \"reply_parent_user_login\": null, \"reply_parent_display_name\": null, \"reply_parent_msg_body\": null, \"reply_thread_parent_msg_id\": null, \"reply_thread_parent_user_login\": null",
                ", \\\"reply_parent_msg_id\\\": null, \\\"reply_parent_user_id\\\": null, \\\"reply_parent_user_login\\\": null, \\\"reply_parent_display_name\\\": null, \\\"reply_parent_msg_body\\\": null, \\\"reply_thread_parent_msg_id\\\": null, \\\"reply_thread_parent_user_login\\\": null",
            );
        } else {
            key!(w, "reply_parent_msg_id");
            w.opt_string(reply[0]);
            key!(w, "reply_parent_user_id");
            w.opt_string(reply[1]);
            key!(w, "reply_parent_user_login");
            w.opt_string(reply[2]);
            key!(w, "reply_parent_display_name");
            w.opt_string(reply[3]);
            key!(w, "reply_parent_msg_body");
            w.opt_string(reply[4]);
            key!(w, "reply_thread_parent_msg_id");
            w.opt_string(reply[5]);
            key!(w, "reply_thread_parent_user_login");
            w.opt_string(reply[6]);
        }
        key!(w, "emotes");
        match self.emotes {
            None => w.raw("null"),
            Some(emotes) => {
                w.raw("{");
                for (i, e) in emotes.iter().enumerate() {
                    if i > 0 {
                        w.raw(", ");
                    }
                    w.string(&e.id);
                    w.raw(": [");
                    for (k, p) in e.positions.iter().enumerate() {
                        if k > 0 {
                            w.raw(", ");
                        }
                        w.raw("{");
                        key!(w, first "start_position");
                        w.int_string(i64::from(p.start));
                        key!(w, "end_position");
                        w.int_string(i64::from(p.end));
                        w.raw("}");
                    }
                    w.raw("]");
                }
                w.raw("}");
            }
        }
        key!(w, "id");
        w.string(self.id);
        key!(w, "room");
        w.raw("{");
        let r = self.settings;
        key!(w, first "name");
        w.string(self.room_name);
        key!(w, "is_emote_only");
        w.bool(r.is_emote_only);
        key!(w, "is_subs_only");
        w.bool(r.is_subs_only);
        key!(w, "is_followers_only");
        w.bool(r.is_followers_only);
        key!(w, "is_unique_only");
        w.bool(r.is_unique_only);
        key!(w, "follower_only_delay");
        w.int(i64::from(r.follower_only_delay));
        key!(w, "room_id");
        w.string(self.room_id);
        key!(w, "slow");
        w.int(i64::from(r.slow));
        w.raw("}");
        key!(w, "user");
        w.raw("{");
        key!(w, first "name");
        w.string(self.user_name);
        key!(w, "badge_info");
        write_badges(w, self.badge_info);
        key!(w, "badges");
        write_badges(w, self.badges);
        key!(w, "color");
        w.opt_string(self.color);
        key!(w, "display_name");
        w.string(self.display_name);
        key!(w, "mod");
        w.bool(self.is_mod);
        key!(w, "subscriber");
        w.bool(self.subscriber);
        key!(w, "turbo");
        w.bool(self.turbo);
        key!(w, "id");
        w.string(self.user_id);
        key!(w, "user_type");
        w.opt_string(self.user_type);
        key!(w, "vip");
        w.bool(self.vip);
        w.raw("}}");
    }
}

/// A room's chat settings without its name and id: what storage keeps next to a raw line to
/// render the message's `room` (the line itself names the channel and carries its id).
/// Stored as text in ROOMSTATE's own tag syntax, readable in cqlsh:
/// `emote-only=0;followers-only=-1;r9k=0;slow=0;subs-only=0` (`followers-only=-1`: off), and
/// `;room-id=<id>` after it only when the room's id is not the message's broadcaster id (a
/// ROOMSTATE that disagreed with the line's `room-id`; seen in real captures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoomSettings {
    pub is_emote_only: bool,
    pub is_subs_only: bool,
    pub is_followers_only: bool,
    pub is_unique_only: bool,
    pub follower_only_delay: i32,
    pub slow: i32,
}

impl RoomSettings {
    /// The settings of `room`.
    pub fn of(room: &Room) -> Self {
        Self {
            is_emote_only: room.is_emote_only,
            is_subs_only: room.is_subs_only,
            is_followers_only: room.is_followers_only,
            is_unique_only: room.is_unique_only,
            follower_only_delay: room.follower_only_delay,
            slow: room.slow,
        }
    }

    /// The stored text of `room` for a message of `broadcaster_id`. `None` when the room has no
    /// text form (followers-only off with a delay, a negative slow, a room id with `;`): storage
    /// then keeps the rendered JSON instead.
    pub fn encode(room: &Room, broadcaster_id: i64) -> Option<String> {
        let s = Self::of(room);
        let followers = match (s.is_followers_only, s.follower_only_delay) {
            (true, d) if d >= 0 => d,
            (false, 0) => -1,
            _ => return None,
        };
        if s.slow < 0 || room.room_id.contains(';') {
            return None;
        }
        let mut text = format!(
            "emote-only={};followers-only={followers};r9k={};slow={};subs-only={}",
            u8::from(s.is_emote_only),
            u8::from(s.is_unique_only),
            s.slow,
            u8::from(s.is_subs_only),
        );
        if room.room_id != itoa::Buffer::new().format(broadcaster_id) {
            text.push_str(";room-id=");
            text.push_str(&room.room_id);
        }
        Some(text)
    }

    /// Reads [`Self::encode`]'s text: the settings and the room id when one is given. `None`
    /// when the text is not exactly that form.
    pub fn decode(text: &str) -> Option<(Self, Option<&str>)> {
        let mut it = scan::split(text, b';');
        let mut next = |key: &str| -> Option<i32> {
            let (k, v) = scan::split_once(it.next()?, b'=')?;
            if k != key || v.is_empty() || (v.len() > 1 && v.starts_with('0')) {
                return None;
            }
            v.parse().ok()
        };
        let flag = |v: i32| match v {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        };
        let emote = flag(next("emote-only")?)?;
        let followers = next("followers-only")?;
        let r9k = flag(next("r9k")?)?;
        let slow = next("slow")?;
        let subs = flag(next("subs-only")?)?;
        let room_id = match it.next() {
            None => None,
            Some(kv) => Some(kv.strip_prefix("room-id=")?),
        };
        if it.next().is_some() || followers < -1 || slow < 0 {
            return None;
        }
        let settings = Self {
            is_emote_only: emote,
            is_subs_only: subs,
            is_followers_only: followers >= 0,
            is_unique_only: r9k,
            follower_only_delay: followers.max(0),
            slow,
        };
        Some((settings, room_id))
    }
}

/// A badge list as a [`MessageView`] lends it: parsed, or the (unescaped) tag value itself,
/// read with [`badge_pairs`] as it is written (no list built per message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Badges<'a> {
    List(&'a [Badge]),
    Tag(&'a str),
}

/// The `name/version` pairs of a `badges` / `badge-info` value (unescaped), in tag order: empty
/// entries skipped, a badge without `/` gets an empty version.
pub fn badge_pairs(value: &str) -> impl Iterator<Item = (&str, &str)> {
    scan::split(value, b',')
        .filter(|b| !b.is_empty())
        .map(|b| scan::split_once(b, b'/').unwrap_or((b, "")))
}

fn write_badges<const E: bool>(w: &mut Fixed<'_, E>, badges: Option<Badges<'_>>) {
    fn object<'a, const E: bool>(
        w: &mut Fixed<'_, E>,
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
    ) {
        w.raw("{");
        for (i, (name, version)) in pairs.enumerate() {
            if i > 0 {
                w.raw(", ");
            }
            w.string(name);
            w.raw(": ");
            w.string(version);
        }
        w.raw("}");
    }
    match badges {
        None => w.raw("null"),
        Some(Badges::List(b)) => object(w, b.iter().map(|b| (b.name.as_str(), b.version.as_str()))),
        Some(Badges::Tag(value)) => object(w, badge_pairs(value)),
    }
}

#[cfg(test)]
mod tests;
