//! Per-channel chat settings, merged from ROOMSTATE lines.

use std::collections::HashMap;

use tci_schemas::Room;

use super::RecordError;
use crate::irc::Message;

/// The merged ROOMSTATE of every channel seen so far, keyed by channel login (without `#`).
///
/// Twitch sends the full state once after JOIN and then only the settings that changed, so
/// every update is merged into what is known.
#[derive(Debug, Clone, Default)]
pub struct RoomStates {
    rooms: HashMap<String, Room>,
    /// Room ids learned from any line of a channel or from its live-stream record, for lines
    /// that come with an empty or no `room-id` tag.
    ids: HashMap<String, String>,
}

impl RoomStates {
    /// No channel known yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state of `channel` (login without `#`), if a ROOMSTATE was seen for it.
    pub fn get(&self, channel: &str) -> Option<&Room> {
        self.rooms.get(channel)
    }

    /// Forgets a channel (after PART, or when it goes offline).
    pub fn remove(&mut self, channel: &str) -> Option<Room> {
        self.ids.remove(channel);
        self.rooms.remove(channel)
    }

    /// Remembers the room id of `channel` (from a line's `room-id` tag or from the channel's
    /// live-stream record). Empty ids are ignored; a ROOMSTATE's id takes precedence.
    pub fn learn_room_id(&mut self, channel: &str, room_id: &str) {
        if room_id.is_empty() || self.ids.get(channel).is_some_and(|known| known == room_id) {
            return;
        }
        self.ids.insert(channel.to_owned(), room_id.to_owned());
    }

    /// The room id of `channel`: its ROOMSTATE's, else the last one learned.
    pub fn room_id(&self, channel: &str) -> Option<&str> {
        self.rooms
            .get(channel)
            .map(|r| r.room_id.as_str())
            .filter(|r| !r.is_empty())
            .or_else(|| self.ids.get(channel).map(String::as_str))
    }

    /// Number of channels with a known state.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Whether no channel state is known.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// Merges a ROOMSTATE line into the channel's state and returns the merged state.
    ///
    /// The tags are validated before anything is changed: on error the state stays as it was.
    pub fn apply(&mut self, msg: &Message<'_>) -> Result<&Room, RecordError> {
        if msg.command() != "ROOMSTATE" {
            return Err(RecordError::WrongCommand {
                expected: "ROOMSTATE",
                got: msg.command().to_owned(),
            });
        }
        let channel = msg.channel().ok_or(RecordError::MissingChannel)?;
        let mut room = self.rooms.get(channel).cloned().unwrap_or_else(|| Room {
            name: channel.to_owned(),
            ..Room::default()
        });
        for (key, value) in msg.tags() {
            match key {
                "emote-only" => room.is_emote_only = flag(value),
                "subs-only" => room.is_subs_only = flag(value),
                "r9k" => room.is_unique_only = flag(value),
                "slow" => room.slow = int_tag("slow", value)?,
                "followers-only" => {
                    let minutes = int_tag("followers-only", value)?;
                    room.is_followers_only = minutes >= 0;
                    room.follower_only_delay = minutes.max(0);
                }
                "room-id" if !value.is_empty() => room.room_id = value.to_owned(),
                _ => {}
            }
        }
        let slot = self.rooms.entry(channel.to_owned()).or_default();
        *slot = room;
        Ok(slot)
    }
}

/// A Twitch boolean tag: `1` is true, anything else false.
pub(crate) fn flag(value: &str) -> bool {
    value == "1"
}

/// An `i32` tag value, or an error naming the tag.
pub(crate) fn int_tag(tag: &'static str, value: &str) -> Result<i32, RecordError> {
    value.parse().map_err(|_| RecordError::InvalidTag {
        tag,
        value: value.to_owned(),
        expected: "a 32-bit integer",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irc::parse;

    fn apply(rooms: &mut RoomStates, line: &str) -> Room {
        rooms.apply(&parse(line).unwrap()).unwrap().clone()
    }

    #[test]
    fn full_state_then_partial_updates_merge() {
        let mut rooms = RoomStates::new();
        let r = apply(
            &mut rooms,
            "@emote-only=0;followers-only=-1;r9k=0;room-id=12826;slow=0;subs-only=0 :tmi.twitch.tv ROOMSTATE #twitch",
        );
        assert_eq!(
            r,
            Room {
                name: "twitch".into(),
                room_id: "12826".into(),
                ..Room::default()
            }
        );

        let r = apply(
            &mut rooms,
            "@emote-only=1;room-id=12826 :tmi.twitch.tv ROOMSTATE #twitch",
        );
        assert!(r.is_emote_only);

        let r = apply(
            &mut rooms,
            "@followers-only=10;room-id=12826 :tmi.twitch.tv ROOMSTATE #twitch",
        );
        assert!(r.is_emote_only, "earlier update kept");
        assert!(r.is_followers_only);
        assert_eq!(r.follower_only_delay, 10);

        let r = apply(
            &mut rooms,
            "@slow=30;r9k=1;subs-only=1 :tmi.twitch.tv ROOMSTATE #twitch",
        );
        assert_eq!((r.slow, r.is_unique_only, r.is_subs_only), (30, true, true));
        assert_eq!(r.room_id, "12826", "room-id kept when the update lacks it");

        let r = apply(
            &mut rooms,
            "@followers-only=-1 :tmi.twitch.tv ROOMSTATE #twitch",
        );
        assert!(!r.is_followers_only);
        assert_eq!(r.follower_only_delay, 0);

        let r = apply(
            &mut rooms,
            "@followers-only=0 :tmi.twitch.tv ROOMSTATE #twitch",
        );
        assert!(
            r.is_followers_only,
            "0 minutes is on: any follower may chat"
        );
        assert_eq!(r.follower_only_delay, 0);

        assert_eq!(rooms.len(), 1);
        assert_eq!(rooms.get("twitch"), Some(&r));
        assert_eq!(rooms.get("other"), None);
    }

    #[test]
    fn channels_are_independent() {
        let mut rooms = RoomStates::new();
        apply(&mut rooms, "@slow=5;room-id=1 :tmi.twitch.tv ROOMSTATE #a");
        apply(&mut rooms, "@slow=9;room-id=2 :tmi.twitch.tv ROOMSTATE #b");
        assert_eq!(rooms.get("a").map(|r| r.slow), Some(5));
        assert_eq!(rooms.get("b").map(|r| r.slow), Some(9));
        assert!(rooms.remove("a").is_some());
        assert_eq!(rooms.get("a"), None);
    }

    #[test]
    fn bad_value_is_an_error_and_changes_nothing() {
        let mut rooms = RoomStates::new();
        apply(
            &mut rooms,
            "@emote-only=0;slow=3;room-id=1 :tmi.twitch.tv ROOMSTATE #a",
        );
        let err = rooms
            .apply(&parse("@emote-only=1;slow=fast :tmi.twitch.tv ROOMSTATE #a").unwrap())
            .unwrap_err();
        assert_eq!(
            err,
            RecordError::InvalidTag {
                tag: "slow",
                value: "fast".into(),
                expected: "a 32-bit integer"
            }
        );
        let r = rooms.get("a").unwrap();
        assert!(!r.is_emote_only);
        assert_eq!(r.slow, 3);
    }

    #[test]
    fn wrong_command_and_missing_channel() {
        let mut rooms = RoomStates::new();
        assert!(matches!(
            rooms.apply(&parse("PING :x").unwrap()),
            Err(RecordError::WrongCommand {
                expected: "ROOMSTATE",
                ..
            })
        ));
        assert_eq!(
            rooms.apply(&parse("@slow=1 :tmi.twitch.tv ROOMSTATE").unwrap()),
            Err(RecordError::MissingChannel)
        );
    }
}
