//! PRIVMSG → [`ChatMessage`].

use tci_schemas::{Badge, ChatMessage, Emote, EmotePosition, Room, Tag, User};

use super::room::{flag, RoomStates};
use super::RecordError;
use crate::irc::{unescape, Message};

/// The CTCP wrapper of `/me` messages: `\x01ACTION text\x01`.
const ACTION_START: &str = "\u{1}ACTION";

/// Builds the wire record of a PRIVMSG.
///
/// `rooms` supplies the channel's merged ROOMSTATE; before the first ROOMSTATE of a channel the
/// room holds only its name and the `room-id` tag. `received_at_ms` is when the line was read.
///
/// Required tags are `id`, `room-id` (an integer) and `tmi-sent-ts` (an integer); a missing or
/// malformed one is an error naming it, as is a `bits` or `emotes` tag that does not parse.
/// Every other tag is optional.
pub fn build_chat_message(
    msg: &Message<'_>,
    rooms: &RoomStates,
    received_at_ms: i64,
) -> Result<ChatMessage, RecordError> {
    if msg.command() != "PRIVMSG" {
        return Err(RecordError::WrongCommand {
            expected: "PRIVMSG",
            got: msg.command().to_owned(),
        });
    }
    let channel = msg.channel().ok_or(RecordError::MissingChannel)?;
    let login = msg.nick().ok_or(RecordError::MissingPrefix)?;
    let body = msg.trailing().ok_or(RecordError::MissingText)?;

    // One pass over the tags: remember the raw values we need, unescape every value once for
    // raw_tags.
    let mut t = Known::default();
    let mut raw_tags = Vec::with_capacity(24);
    for (key, raw) in msg.tags() {
        let value = unescape(raw);
        match key {
            "id" => t.id = Some(raw),
            "room-id" => t.room_id = Some(raw),
            "tmi-sent-ts" => t.sent = Some(raw),
            "bits" => t.bits = Some(raw),
            "emotes" => t.emotes = Some(raw),
            "badge-info" => t.badge_info = Some(raw),
            "badges" => t.badges = Some(raw),
            "color" => t.color = Some(raw),
            "display-name" => t.display_name = Some(raw),
            "mod" => t.is_mod = flag(raw),
            "subscriber" => t.subscriber = flag(raw),
            "turbo" => t.turbo = flag(raw),
            "user-id" => t.user_id = Some(raw),
            "user-type" => t.user_type = Some(raw),
            "vip" => t.vip = true,
            "reply-parent-msg-id" => t.reply_parent_msg_id = Some(raw),
            "reply-parent-user-id" => t.reply_parent_user_id = Some(raw),
            "reply-parent-user-login" => t.reply_parent_user_login = Some(raw),
            "reply-parent-display-name" => t.reply_parent_display_name = Some(raw),
            "reply-parent-msg-body" => t.reply_parent_msg_body = Some(raw),
            "reply-thread-parent-msg-id" => t.reply_thread_parent_msg_id = Some(raw),
            "reply-thread-parent-user-login" => t.reply_thread_parent_user_login = Some(raw),
            _ => {}
        }
        raw_tags.push(Tag {
            key: key.to_owned(),
            value: value.into_owned(),
        });
    }

    let id = required("id", t.id)?;
    let room_id_raw = required("room-id", t.room_id)?;
    let broadcaster_id = parse_i64("room-id", room_id_raw)?;
    let sent_timestamp = parse_i64("tmi-sent-ts", required("tmi-sent-ts", t.sent)?)?;
    // `bits` and `emotes` are metadata: a malformed value must not cost the archive the message.
    // It degrades to "none" here and stays, verbatim, in `raw_tags`.
    let bits = match t.bits {
        None | Some("") => 0,
        Some(b) => b.parse::<i32>().ok().filter(|b| *b >= 0).unwrap_or(0),
    };
    let emotes = match t.emotes {
        None | Some("") => None,
        Some(e) => parse_emotes(e).ok().filter(|v| !v.is_empty()),
    };
    let (text, is_me) = strip_action(body);

    let room = match rooms.get(channel) {
        Some(r) if r.room_id.is_empty() => Room {
            room_id: room_id_raw.to_owned(),
            ..r.clone()
        },
        Some(r) => r.clone(),
        None => Room {
            name: channel.to_owned(),
            room_id: room_id_raw.to_owned(),
            ..Room::default()
        },
    };

    let user = User {
        name: login.to_owned(),
        badge_info: t.badge_info.and_then(parse_badges),
        badges: t.badges.and_then(parse_badges),
        color: non_empty(t.color),
        display_name: t
            .display_name
            .map(|d| unescape(d).into_owned())
            .unwrap_or_default(),
        is_mod: t.is_mod,
        subscriber: t.subscriber,
        turbo: t.turbo,
        id: t
            .user_id
            .map(|u| unescape(u).into_owned())
            .unwrap_or_default(),
        user_type: non_empty(t.user_type),
        vip: t.vip,
    };

    Ok(ChatMessage {
        broadcaster_id,
        id: unescape(id).into_owned(),
        sent_timestamp,
        received_at: received_at_ms,
        text: text.to_owned(),
        is_me,
        bits,
        reply_parent_msg_id: non_empty(t.reply_parent_msg_id),
        reply_parent_user_id: non_empty(t.reply_parent_user_id),
        reply_parent_user_login: non_empty(t.reply_parent_user_login),
        reply_parent_display_name: non_empty(t.reply_parent_display_name),
        reply_parent_msg_body: non_empty(t.reply_parent_msg_body),
        reply_thread_parent_msg_id: non_empty(t.reply_thread_parent_msg_id),
        reply_thread_parent_user_login: non_empty(t.reply_thread_parent_user_login),
        emotes,
        room,
        user,
        raw_tags,
    })
}

/// Raw values of the tags a chat message is built from.
#[derive(Default)]
struct Known<'a> {
    id: Option<&'a str>,
    room_id: Option<&'a str>,
    sent: Option<&'a str>,
    bits: Option<&'a str>,
    emotes: Option<&'a str>,
    badge_info: Option<&'a str>,
    badges: Option<&'a str>,
    color: Option<&'a str>,
    display_name: Option<&'a str>,
    is_mod: bool,
    subscriber: bool,
    turbo: bool,
    user_id: Option<&'a str>,
    user_type: Option<&'a str>,
    vip: bool,
    reply_parent_msg_id: Option<&'a str>,
    reply_parent_user_id: Option<&'a str>,
    reply_parent_user_login: Option<&'a str>,
    reply_parent_display_name: Option<&'a str>,
    reply_parent_msg_body: Option<&'a str>,
    reply_thread_parent_msg_id: Option<&'a str>,
    reply_thread_parent_user_login: Option<&'a str>,
}

/// The tag's raw value, or [`RecordError::MissingTag`]. An empty value counts as missing.
pub(crate) fn required<'a>(
    tag: &'static str,
    raw: Option<&'a str>,
) -> Result<&'a str, RecordError> {
    raw.filter(|v| !v.is_empty())
        .ok_or(RecordError::MissingTag { tag })
}

/// An `i64` tag value, or an error naming the tag.
pub(crate) fn parse_i64(tag: &'static str, raw: &str) -> Result<i64, RecordError> {
    raw.parse().map_err(|_| RecordError::InvalidTag {
        tag,
        value: raw.to_owned(),
        expected: "a 64-bit integer",
    })
}

/// The unescaped value, `None` when the tag is absent or empty.
pub(crate) fn non_empty(raw: Option<&str>) -> Option<String> {
    raw.filter(|v| !v.is_empty())
        .map(|v| unescape(v).into_owned())
}

/// Splits `/me` messages: `\x01ACTION waves\x01` → (`waves`, true). A missing closing `\x01`
/// is tolerated. Any other text is returned as is.
pub fn strip_action(body: &str) -> (&str, bool) {
    let Some(rest) = body.strip_prefix(ACTION_START) else {
        return (body, false);
    };
    let rest = if let Some(r) = rest.strip_prefix(' ') {
        r
    } else if rest.is_empty() || rest.starts_with('\u{1}') {
        rest
    } else {
        // `\x01ACTIONS...`: some other CTCP command, not an action.
        return (body, false);
    };
    (rest.strip_suffix('\u{1}').unwrap_or(rest), true)
}

/// Parses a `badges` / `badge-info` value (`name/version,name/version`), in tag order.
/// `None` when empty. A badge without `/` gets an empty version.
pub fn parse_badges(raw: &str) -> Option<Vec<Badge>> {
    if raw.is_empty() {
        return None;
    }
    let value = unescape(raw);
    let badges: Vec<Badge> = value
        .split(',')
        .filter(|b| !b.is_empty())
        .map(|b| {
            let (name, version) = b.split_once('/').unwrap_or((b, ""));
            Badge {
                name: name.to_owned(),
                version: version.to_owned(),
            }
        })
        .collect();
    (!badges.is_empty()).then_some(badges)
}

/// Parses an `emotes` value (`id:start-end,start-end/id2:start-end`), keeping tag order.
/// Positions are inclusive code-point indexes into the message text.
pub fn parse_emotes(raw: &str) -> Result<Vec<Emote>, RecordError> {
    let invalid = || RecordError::InvalidTag {
        tag: "emotes",
        value: raw.to_owned(),
        expected: "id:start-end,start-end/id:start-end",
    };
    let mut emotes = Vec::new();
    for part in raw.split('/').filter(|p| !p.is_empty()) {
        let (id, ranges) = part.rsplit_once(':').ok_or_else(invalid)?;
        if id.is_empty() {
            return Err(invalid());
        }
        let positions = ranges
            .split(',')
            .map(|r| {
                let (s, e) = r.split_once('-')?;
                let start: i32 = s.parse().ok()?;
                let end: i32 = e.parse().ok()?;
                (0 <= start && start <= end).then_some(EmotePosition { start, end })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(invalid)?;
        emotes.push(Emote {
            id: id.to_owned(),
            positions,
        });
    }
    Ok(emotes)
}
