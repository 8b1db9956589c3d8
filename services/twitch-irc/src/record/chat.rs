//! PRIVMSG → [`ChatMessage`].

use std::borrow::Cow;

use tci_schemas::{
    badge_pairs, scan, Badge, Badges, ChatMessage, Emote, EmotePosition, MessageView, PyJson, Room,
    RoomSettings, Tag, User,
};

use super::room::{flag, RoomStates};
use super::RecordError;
use crate::irc::{unescape, Message};

/// The CTCP wrapper of `/me` messages: `\x01ACTION text\x01`.
const ACTION_START: &str = "\u{1}ACTION";

/// Builds the wire record of a PRIVMSG, keeping the exact line in `raw_line`.
///
/// `rooms` supplies the channel's merged ROOMSTATE; before the first ROOMSTATE of a channel the
/// room holds only its name and the room id. `received_at_ms` is when the line was read.
///
/// Real Twitch lines do not always carry every tag, and a message is never dropped for what can
/// be resolved or derived (each case is flagged in `derived`, for a metric):
/// * `room-id` absent or empty: the channel's room id known from its ROOMSTATE, from an earlier
///   line of the channel, or from the live-stream record ([`RoomStates::learn_room_id`]). Only
///   when none is known is the line refused ([`RecordError::MissingTag`]): it cannot be
///   attributed to a channel.
/// * `tmi-sent-ts` absent or empty: the receive time.
/// * `id` absent or empty: [`derived_message_id`] of the room, the sender, the timestamp and the
///   text, so a replay or a second capture of the same line gets the same id.
/// * text without the `:` (`PRIVMSG #c Cheer1`): see [`Message::text`].
///
/// A present but malformed `room-id` or `tmi-sent-ts` is an error naming it; a malformed `bits`
/// or `emotes` degrades to none (the raw line keeps it). Every other tag is optional.
pub fn build_chat_message(
    msg: &Message<'_>,
    rooms: &RoomStates,
    received_at_ms: i64,
    derived: &mut Derived,
) -> Result<ChatMessage, RecordError> {
    let mut raw_tags = Vec::with_capacity(24);
    let line = ChatLine::read(msg, |key, raw| {
        raw_tags.push(Tag {
            key: key.to_owned(),
            value: unescape(raw).into_owned(),
        });
    })?;
    let (room_id_raw, broadcaster_id, sent_timestamp) = room_and_time(
        line.t.room_id,
        line.t.sent,
        || rooms.room_id(line.channel),
        received_at_ms,
        derived,
    )?;
    let ChatLine {
        channel,
        login,
        body,
        t,
    } = line;
    let (text, is_me) = strip_action(body);
    let id = message_id(msg, &t, login, body, room_id_raw, sent_timestamp, derived).into_owned();
    let bits = bits_of(t.bits);
    let emotes = emotes_of(t.emotes);

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
        id,
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
        raw_line: Some(msg.raw().to_owned()),
    })
}

/// A PRIVMSG's channel, sender's login and message text (not yet split from a `/me`).
fn privmsg_parts<'a>(msg: &Message<'a>) -> Result<(&'a str, &'a str, &'a str), RecordError> {
    if msg.command() != "PRIVMSG" {
        return Err(RecordError::WrongCommand {
            expected: "PRIVMSG",
            got: msg.command().to_owned(),
        });
    }
    let channel = msg.channel().ok_or(RecordError::MissingChannel)?;
    let login = msg.nick().ok_or(RecordError::MissingPrefix)?;
    let body = msg.text().ok_or(RecordError::MissingText)?;
    Ok((channel, login, body))
}

/// Appends what a human chat log shows of a stored PRIVMSG line: `#channel login: text`, or
/// `#channel login: /me text` for an action. The same channel, login and text as the record
/// [`build_chat_message`] makes of the line (its `room.name`, `user.name`, `text`, `is_me`),
/// read without the tags.
pub fn write_log_text(line: &str, out: &mut String) -> Result<(), RecordError> {
    let msg = crate::irc::parse(line).map_err(|e| RecordError::Unparsable {
        reason: e.to_string(),
    })?;
    let (channel, login, body) = privmsg_parts(&msg)?;
    let (text, is_me) = strip_action(body);
    push_log_text(out, channel, login, text, is_me);
    Ok(())
}

/// Appends a chat log's text of one message: `#channel login: text`, or
/// `#channel login: /me text` for an action.
pub fn push_log_text(out: &mut String, channel: &str, login: &str, text: &str, is_me: bool) {
    for part in [
        "#",
        channel,
        " ",
        login,
        ": ",
        if is_me { "/me " } else { "" },
        text,
    ] {
        out.push_str(part);
    }
}

/// What a PRIVMSG line says, borrowed from it: the builder's and the renderer's common start.
struct ChatLine<'a> {
    channel: &'a str,
    login: &'a str,
    body: &'a str,
    t: Known<'a>,
}

impl<'a> ChatLine<'a> {
    /// Checks the command and reads channel, sender, text and the known tags in one pass over
    /// the tags, handing every tag to `each` as well.
    fn read(
        msg: &Message<'a>,
        mut each: impl FnMut(&'a str, &'a str),
    ) -> Result<Self, RecordError> {
        let (channel, login, body) = privmsg_parts(msg)?;
        let mut t = Known::default();
        for (key, raw) in msg.tags() {
            // By length first: one comparison of the key, not one per arm.
            match (key.len(), key) {
                (2, "id") => t.id = Some(raw),
                (3, "mod") => t.is_mod = flag(raw),
                (3, "vip") => t.vip = true,
                (4, "bits") => t.bits = Some(raw),
                (5, "color") => t.color = Some(raw),
                (5, "turbo") => t.turbo = flag(raw),
                (6, "badges") => t.badges = Some(raw),
                (6, "emotes") => t.emotes = Some(raw),
                (7, "room-id") => t.room_id = Some(raw),
                (7, "user-id") => t.user_id = Some(raw),
                (9, "user-type") => t.user_type = Some(raw),
                (10, "badge-info") => t.badge_info = Some(raw),
                (10, "subscriber") => t.subscriber = flag(raw),
                (11, "tmi-sent-ts") => t.sent = Some(raw),
                (12, "display-name") => t.display_name = Some(raw),
                (19, "reply-parent-msg-id") => t.reply_parent_msg_id = Some(raw),
                (20, "reply-parent-user-id") => t.reply_parent_user_id = Some(raw),
                (21, "reply-parent-msg-body") => t.reply_parent_msg_body = Some(raw),
                (23, "reply-parent-user-login") => t.reply_parent_user_login = Some(raw),
                (25, "reply-parent-display-name") => t.reply_parent_display_name = Some(raw),
                (26, "reply-thread-parent-msg-id") => t.reply_thread_parent_msg_id = Some(raw),
                (30, "reply-thread-parent-user-login") => {
                    t.reply_thread_parent_user_login = Some(raw)
                }
                _ => {}
            }
            each(key, raw);
        }
        Ok(Self {
            channel,
            login,
            body,
            t,
        })
    }
}

/// The message's id: the `id` tag, else [`derived_message_id`] (flagged in `derived`).
fn message_id<'a>(
    msg: &Message<'a>,
    t: &Known<'a>,
    login: &str,
    body: &str,
    room_id_raw: &str,
    sent_timestamp: i64,
    derived: &mut Derived,
) -> Cow<'a, str> {
    match t.id.filter(|i| !i.is_empty()) {
        Some(i) => unescape(i),
        None => {
            derived.id = true;
            let sender = t.user_id.filter(|u| !u.is_empty()).unwrap_or(login);
            Cow::Owned(if derived.sent_timestamp {
                // Nothing in the line tells two sends apart but the line itself.
                derived_message_id(&[room_id_raw, sender, msg.raw()])
            } else {
                derived_message_id(&[room_id_raw, sender, &sent_timestamp.to_string(), body])
            })
        }
    }
}

/// `bits` and `emotes` are metadata: a malformed value must not cost the archive the message.
/// It degrades to "none" here and stays, verbatim, in the raw line.
fn bits_of(raw: Option<&str>) -> i32 {
    match raw {
        None | Some("") => 0,
        Some(b) => b.parse::<i32>().ok().filter(|b| *b >= 0).unwrap_or(0),
    }
}

/// See [`bits_of`].
fn emotes_of(raw: Option<&str>) -> Option<Vec<Emote>> {
    match raw {
        None | Some("") => None,
        Some(e) => parse_emotes(e).ok().filter(|v| !v.is_empty()),
    }
}

/// Renders the API's `message` JSON of a stored PRIVMSG line into `j`: byte for byte what
/// [`build_chat_message`] followed by [`ChatMessage::to_spec_json`] gives for the line when the
/// channel's room was `room_state` ([`RoomSettings::encode`]'s text), the channel's id
/// `broadcaster_id` (used when the line has no `room-id`) and the line was read at
/// `received_at_ms`, without building the record.
///
/// The room's name is the line's channel; its id is the one `room_state` names, else the line's.
/// chat-ingestor stores a line without its JSON only after checking that it renders the record's
/// JSON exactly, so a record this cannot reproduce keeps its JSON.
pub fn render_message_json(
    line: &str,
    broadcaster_id: i64,
    received_at_ms: i64,
    room_state: &str,
    j: &mut PyJson,
) -> Result<(), RecordError> {
    let (settings, stored_room_id) =
        RoomSettings::decode(room_state).ok_or_else(|| RecordError::InvalidTag {
            tag: "room_state",
            value: room_state.to_owned(),
            expected: "emote-only=N;followers-only=N;r9k=N;slow=N;subs-only=N[;room-id=ID]",
        })?;
    let msg = crate::irc::parse(line).map_err(|e| RecordError::Unparsable {
        reason: e.to_string(),
    })?;
    let ChatLine {
        channel,
        login,
        body,
        t,
    } = ChatLine::read(&msg, |_, _| {})?;
    let mut derived = Derived::default();
    // The line's room id, else the channel's, as the builder resolved it.
    let mut known = itoa::Buffer::new();
    let (room_id_raw, _, sent_timestamp) = room_and_time(
        t.room_id,
        t.sent,
        || Some(known.format(broadcaster_id)),
        received_at_ms,
        &mut derived,
    )?;
    let (text, is_me) = strip_action(body);
    let id = message_id(
        &msg,
        &t,
        login,
        body,
        room_id_raw,
        sent_timestamp,
        &mut derived,
    );
    let emotes = emotes_of(t.emotes);
    let badge_info = badge_tag(t.badge_info);
    let badges = badge_tag(t.badges);
    let reply = [
        non_empty_cow(t.reply_parent_msg_id),
        non_empty_cow(t.reply_parent_user_id),
        non_empty_cow(t.reply_parent_user_login),
        non_empty_cow(t.reply_parent_display_name),
        non_empty_cow(t.reply_parent_msg_body),
        non_empty_cow(t.reply_thread_parent_msg_id),
        non_empty_cow(t.reply_thread_parent_user_login),
    ];
    let display_name = t.display_name.map(unescape).unwrap_or_default();
    let user_id = t.user_id.map(unescape).unwrap_or_default();
    let color = non_empty_cow(t.color);
    let user_type = non_empty_cow(t.user_type);
    MessageView {
        text,
        is_me,
        bits: bits_of(t.bits),
        sent_timestamp,
        reply_parent_msg_id: reply[0].as_deref(),
        reply_parent_user_id: reply[1].as_deref(),
        reply_parent_user_login: reply[2].as_deref(),
        reply_parent_display_name: reply[3].as_deref(),
        reply_parent_msg_body: reply[4].as_deref(),
        reply_thread_parent_msg_id: reply[5].as_deref(),
        reply_thread_parent_user_login: reply[6].as_deref(),
        emotes: emotes.as_deref(),
        id: &id,
        room_name: channel,
        room_id: stored_room_id.unwrap_or(room_id_raw),
        settings,
        user_name: login,
        badge_info: badge_info.as_deref().map(Badges::Tag),
        badges: badges.as_deref().map(Badges::Tag),
        color: color.as_deref(),
        display_name: &display_name,
        is_mod: t.is_mod,
        subscriber: t.subscriber,
        turbo: t.turbo,
        user_id: &user_id,
        user_type: user_type.as_deref(),
        vip: t.vip,
    }
    .write_spec_json(j);
    Ok(())
}

/// The channel's room id (the `room-id` tag, else `known_room_id`: the channel's known id for
/// the builders, the stored row's for the renderer), that id as a number, and the send time
/// (`tmi-sent-ts`, else `received_at_ms`), flagging in `derived` what the line lacked. Shared by
/// the chat and moderation builders and by [`render_message_json`]. Fails only when no id is
/// known at all, or a present tag is not an integer.
pub(crate) fn room_and_time<'a>(
    room_tag: Option<&'a str>,
    sent_tag: Option<&str>,
    known_room_id: impl FnOnce() -> Option<&'a str>,
    received_at_ms: i64,
    derived: &mut Derived,
) -> Result<(&'a str, i64, i64), RecordError> {
    let room_id = match room_tag.filter(|r| !r.is_empty()) {
        Some(r) => r,
        None => {
            derived.room_id = true;
            known_room_id().ok_or(RecordError::MissingTag { tag: "room-id" })?
        }
    };
    let broadcaster_id = parse_i64("room-id", room_id)?;
    let sent_timestamp = match sent_tag.filter(|s| !s.is_empty()) {
        Some(s) => parse_i64("tmi-sent-ts", s)?,
        None => {
            derived.sent_timestamp = true;
            received_at_ms
        }
    };
    Ok((room_id, broadcaster_id, sent_timestamp))
}

/// What a builder had to resolve or derive because the line lacked it (one metric each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Derived {
    /// The `id` tag was absent or empty: the id is [`derived_message_id`] (or, for moderation
    /// events, [`line_digest`](super::line_digest)).
    pub id: bool,
    /// The `tmi-sent-ts` tag was absent or empty: the receive time stands in.
    pub sent_timestamp: bool,
    /// The `room-id` tag was absent or empty: the channel's known room id stands in.
    pub room_id: bool,
}

impl Derived {
    /// The labels of the fields that were derived, for the metric.
    pub fn labels(self) -> impl Iterator<Item = &'static str> {
        [
            (self.id, "id"),
            (self.sent_timestamp, "tmi-sent-ts"),
            (self.room_id, "room-id"),
        ]
        .into_iter()
        .filter_map(|(set, label)| set.then_some(label))
    }
}

/// The id of a message that came without one: `tci-` and the 64-bit FNV-1a hash of `parts`
/// (each followed by a NUL byte) as 16 hex digits. Deterministic, so replays and duplicate
/// captures of the same message merge into one row; the `tci-` prefix never collides with
/// Twitch's UUIDs.
pub fn derived_message_id(parts: &[&str]) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = parts
        .iter()
        .flat_map(|p| p.bytes().chain(std::iter::once(0)))
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("tci-{hash:016x}")
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

/// An `i64` tag value, or an error naming the tag.
pub(crate) fn parse_i64(tag: &'static str, raw: &str) -> Result<i64, RecordError> {
    raw.parse().map_err(|_| RecordError::InvalidTag {
        tag,
        value: raw.to_owned(),
        expected: "a 64-bit integer",
    })
}

/// The unescaped value, borrowed when it has no escapes; `None` when absent or empty.
/// A `badges` / `badge-info` value itself, unescaped, when it holds a badge: what
/// [`parse_badges`] makes a list of, without making it.
fn badge_tag(raw: Option<&str>) -> Option<Cow<'_, str>> {
    non_empty_cow(raw).filter(|v| badge_pairs(v).next().is_some())
}

fn non_empty_cow(raw: Option<&str>) -> Option<Cow<'_, str>> {
    raw.filter(|v| !v.is_empty()).map(unescape)
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
    let badges: Vec<Badge> = badge_pairs(&value)
        .map(|(name, version)| Badge {
            name: name.to_owned(),
            version: version.to_owned(),
        })
        .collect();
    (!badges.is_empty()).then_some(badges)
}

/// Parses an `emotes` value (`id:start-end,start-end/id2:start-end`), keeping tag order; an id
/// listed more than once gets all its ranges, in tag order, under its first appearance.
/// Positions are inclusive code-point indexes into the message text. Emote ids may contain `/`
/// and `:` (`emotesv2_…`); the ranges are what follows the last `:` of each group.
pub fn parse_emotes(raw: &str) -> Result<Vec<Emote>, RecordError> {
    let invalid = || RecordError::InvalidTag {
        tag: "emotes",
        value: raw.to_owned(),
        expected: "id:start-end,start-end/id:start-end",
    };
    let mut emotes = Vec::new();
    for part in emote_groups(raw) {
        let (id, ranges) = scan::rsplit_once(part, b':').ok_or_else(invalid)?;
        if id.is_empty() {
            return Err(invalid());
        }
        let positions = scan::split(ranges, b',')
            .map(|r| {
                let (s, e) = scan::split_once(r, b'-')?;
                let start: i32 = s.parse().ok()?;
                let end: i32 = e.parse().ok()?;
                (0 <= start && start <= end).then_some(EmotePosition { start, end })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(invalid)?;
        // The same id may be listed twice (`25:1-5/25:9-13`): every range belongs to it.
        match emotes.iter_mut().find(|e: &&mut Emote| e.id == id) {
            Some(e) => e.positions.extend(positions),
            None => emotes.push(Emote {
                id: id.to_owned(),
                positions,
            }),
        }
    }
    Ok(emotes)
}

/// Splits an `emotes` value into its `id:ranges` groups. Groups are separated by `/`, but an id
/// may contain `/` too (`80481_/3:7-14`), so a piece without `:` belongs to the next piece.
fn emote_groups(raw: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut pieces = memchr::memchr_iter(b'/', raw.as_bytes()).chain([raw.len()]);
    std::iter::from_fn(move || loop {
        let end = pieces.next()?;
        let group = &raw[start..end];
        if scan::find(group, b':').is_some() || end == raw.len() {
            start = end + 1;
            if group.is_empty() {
                continue;
            }
            return Some(group);
        }
        if group.is_empty() {
            start = end + 1;
        }
    })
}
