//! Parsed IRC lines → the wire types of `tci-schemas`.
//!
//! * [`build_chat_message`]: PRIVMSG → [`ChatMessage`].
//! * [`build_moderation_event`]: CLEARCHAT / CLEARMSG / USERNOTICE → [`ModerationEvent`].
//! * [`RoomStates`]: merged ROOMSTATE per channel, the `room` of every chat message.
//! * [`process`]: all of the above behind one call, for the connection loop.
//!
//! Everything here is pure: no I/O, no clock (the receive time is passed in).

mod chat;
mod moderation;
mod room;

pub use chat::{
    build_chat_message, derived_message_id, parse_badges, parse_emotes, push_log_text,
    render_message_json, strip_action, write_log_text, Derived,
};
pub use moderation::{build_moderation_event, line_digest};
pub use room::RoomStates;

use tci_schemas::{ChatMessage, ModerationEvent, Room};

use crate::irc::Message;

/// Why a parsed line could not be turned into a record. Every variant is permanent: the same
/// line always fails the same way, so retrying is pointless (count it and move on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The builder was handed a line of another command.
    #[error("expected {expected}, got {got}")]
    WrongCommand {
        /// What the builder handles.
        expected: &'static str,
        /// The line's command.
        got: String,
    },
    /// A required tag is absent or empty.
    #[error("missing tag {tag}")]
    MissingTag {
        /// The tag's name.
        tag: &'static str,
    },
    /// A tag's value does not have the expected form.
    #[error("invalid tag {tag}={value:?}: expected {expected}")]
    InvalidTag {
        /// The tag's name.
        tag: &'static str,
        /// The raw value.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// No `#channel` parameter.
    #[error("missing #channel parameter")]
    MissingChannel,
    /// A PRIVMSG without a `nick!user@host` prefix (the sender's login).
    #[error("missing prefix (sender login)")]
    MissingPrefix,
    /// A PRIVMSG without trailing text.
    #[error("missing message text")]
    MissingText,
    /// A stored line that is not an IRC message at all.
    #[error("not an IRC line: {reason}")]
    Unparsable {
        /// The parser's error.
        reason: String,
    },
}

impl RecordError {
    /// A short, bounded label for metrics (`missing_tag`, `invalid_tag`, ...).
    pub fn label(&self) -> &'static str {
        match self {
            Self::WrongCommand { .. } => "wrong_command",
            Self::MissingTag { .. } => "missing_tag",
            Self::InvalidTag { .. } => "invalid_tag",
            Self::MissingChannel => "missing_channel",
            Self::MissingPrefix => "missing_prefix",
            Self::MissingText => "missing_text",
            Self::Unparsable { .. } => "unparsable",
        }
    }
}

/// What one line amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A chat message (PRIVMSG).
    Chat(Box<ChatMessage>),
    /// A CLEARCHAT, CLEARMSG or USERNOTICE.
    Moderation(Box<ModerationEvent>),
    /// A ROOMSTATE, already merged into the [`RoomStates`]; the merged state.
    RoomState(Room),
    /// Anything else (PING, JOIN, NOTICE, numerics, ...): nothing to publish.
    Other,
}

/// Turns one parsed line into a [`Record`], updating `rooms` on ROOMSTATE and learning the
/// channel's room id from any line that carries one. `derived` is set for what the line lacked
/// (see [`build_chat_message`]); the caller resets it.
pub fn process(
    msg: &Message<'_>,
    rooms: &mut RoomStates,
    received_at_ms: i64,
    derived: &mut Derived,
) -> Result<Record, RecordError> {
    Ok(match msg.command() {
        "PRIVMSG" => {
            let m = build_chat_message(msg, rooms, received_at_ms, derived)?;
            // Learned from the record, whose room id the builder already parsed: no second
            // pass over the tags on the hot path.
            if !derived.room_id {
                rooms.learn_room_id(&m.room.name, &m.room.room_id);
            }
            Record::Chat(Box::new(m))
        }
        "CLEARCHAT" | "CLEARMSG" | "USERNOTICE" => {
            let e = build_moderation_event(msg, rooms, received_at_ms, derived)?;
            if !derived.room_id {
                rooms.learn_room_id(&e.channel, &e.broadcaster_id.to_string());
            }
            Record::Moderation(Box::new(e))
        }
        "ROOMSTATE" => Record::RoomState(rooms.apply(msg)?.clone()),
        _ => Record::Other,
    })
}

#[cfg(test)]
mod tests;
