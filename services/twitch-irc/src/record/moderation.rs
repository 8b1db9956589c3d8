//! CLEARCHAT / CLEARMSG / USERNOTICE → [`ModerationEvent`].

use tci_schemas::{ModTag, ModerationEvent, ModerationKind};

use super::chat::{non_empty, room_and_time, Derived};
use super::room::{int_tag, RoomStates};
use super::RecordError;
use crate::irc::{unescape, Message};

/// Builds the wire record of a CLEARCHAT, CLEARMSG or USERNOTICE line.
///
/// The channel id is the `room-id` tag or, when that is empty or absent (Twitch's own CLEARMSG
/// example has `room-id=`), the channel's known room id ([`RoomStates::room_id`]); a line of a
/// channel whose id is not known at all is refused. A missing `tmi-sent-ts` becomes the
/// receive time. `event_id` is the `id` tag when present, else [`line_digest`] of the raw line,
/// so a duplicate delivery of the same line gets the same id. What was resolved or derived is
/// flagged in `derived`. The exact line and the receive time are kept (`raw_line`,
/// `received_at`).
///
/// * CLEARCHAT: `target_user_id` = `target-user-id`, `target_user_login` = trailing login,
///   `ban_duration_seconds` = `ban-duration` (`None` for a permanent ban). A full clear has no
///   target at all.
/// * CLEARMSG: `target_message_id` = `target-msg-id`, `target_user_login` = `login`, `text` =
///   the deleted message.
/// * USERNOTICE: `msg_id`, `system_msg` (unescaped), `target_user_login` = `login`,
///   `target_user_id` = `user-id`, `text` = the user's message.
pub fn build_moderation_event(
    msg: &Message<'_>,
    rooms: &RoomStates,
    received_at_ms: i64,
    derived: &mut Derived,
) -> Result<ModerationEvent, RecordError> {
    let kind = match msg.command() {
        "CLEARCHAT" => ModerationKind::ClearChat,
        "CLEARMSG" => ModerationKind::ClearMsg,
        "USERNOTICE" => ModerationKind::UserNotice,
        other => {
            return Err(RecordError::WrongCommand {
                expected: "CLEARCHAT, CLEARMSG or USERNOTICE",
                got: other.to_owned(),
            })
        }
    };
    let channel = msg.channel().ok_or(RecordError::MissingChannel)?;

    let (mut id, mut room_id, mut sent) = (None, None, None);
    let (mut target_user_id, mut login, mut target_msg_id, mut ban_duration) =
        (None, None, None, None);
    let (mut user_id, mut msg_id, mut system_msg) = (None, None, None);
    let mut raw_tags = Vec::with_capacity(16);
    for (key, raw) in msg.tags() {
        match key {
            "id" => id = Some(raw),
            "room-id" => room_id = Some(raw),
            "tmi-sent-ts" => sent = Some(raw),
            "target-user-id" => target_user_id = Some(raw),
            "login" => login = Some(raw),
            "target-msg-id" => target_msg_id = Some(raw),
            "ban-duration" => ban_duration = Some(raw),
            "user-id" => user_id = Some(raw),
            "msg-id" => msg_id = Some(raw),
            "system-msg" => system_msg = Some(raw),
            _ => {}
        }
        raw_tags.push(ModTag {
            key: key.to_owned(),
            value: unescape(raw).into_owned(),
        });
    }

    let (_, broadcaster_id, sent_timestamp) = room_and_time(
        room_id,
        sent,
        || rooms.room_id(channel),
        received_at_ms,
        derived,
    )?;
    let event_id = non_empty(id).unwrap_or_else(|| {
        // CLEARCHAT and CLEARMSG never carry an id; only a USERNOTICE without one is unusual.
        derived.id |= kind == ModerationKind::UserNotice;
        line_digest(msg.raw())
    });
    let trailing = msg.text().filter(|t| !t.is_empty()).map(str::to_owned);

    let mut event = ModerationEvent {
        broadcaster_id,
        kind,
        event_id,
        sent_timestamp,
        channel: channel.to_owned(),
        target_user_id: None,
        target_user_login: None,
        target_message_id: None,
        ban_duration_seconds: None,
        msg_id: None,
        text: None,
        system_msg: None,
        raw_tags,
        received_at: Some(received_at_ms),
        raw_line: Some(msg.raw().to_owned()),
    };
    match kind {
        ModerationKind::ClearChat => {
            event.target_user_id = non_empty(target_user_id);
            event.target_user_login = trailing;
            event.ban_duration_seconds = match ban_duration {
                None | Some("") => None,
                Some(d) => Some(int_tag("ban-duration", d)?),
            };
        }
        ModerationKind::ClearMsg => {
            event.target_message_id = non_empty(target_msg_id);
            event.target_user_login = non_empty(login);
            event.text = trailing;
        }
        ModerationKind::UserNotice => {
            event.msg_id = non_empty(msg_id);
            event.system_msg = non_empty(system_msg);
            event.target_user_login = non_empty(login);
            event.target_user_id = non_empty(user_id);
            event.text = trailing;
        }
    }
    Ok(event)
}

/// A stable id for a line without an `id` tag: its 64-bit FNV-1a hash as 16 hex digits.
pub fn line_digest(line: &str) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = line
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("{hash:016x}")
}
