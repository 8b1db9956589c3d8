//! Opt-outs: the wire record of `tci.optouts.v1` ([`OptOut`]) and what it means for a message
//! ([`OptOutSet::excludes`]), the one rule chat-listener, chat-ingestor (live and backfill) and
//! chat-api all apply.
//!
//! The rule, per key (`user:<id>` or `channel:<id>`), from the latest record:
//! * opted out: every message of that chatter (in every channel) or of that channel is excluded;
//! * opted back in at `at`: messages sent before `at` stay excluded (they were purged, and a
//!   replay of Kafka must not bring them back); later ones are kept;
//! * no record: kept.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Whose opt-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OptOutScope {
    /// A chatter, in every channel.
    #[serde(rename = "USER")]
    User,
    /// A channel: all of its chat.
    #[serde(rename = "CHANNEL")]
    Channel,
}

impl OptOutScope {
    /// `user` / `channel`: the Kafka key prefix and the `optouts.scope` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Channel => "channel",
        }
    }

    /// The inverse of [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "channel" => Some(Self::Channel),
            _ => None,
        }
    }
}

/// Where an opt-out came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OptOutSource {
    /// Typed in chat (the sender's user-id tag is the identity: Twitch authenticated it).
    #[serde(rename = "CHAT")]
    Chat,
    /// `tci optout add|remove`.
    #[serde(rename = "OPERATOR")]
    Operator,
}

impl OptOutSource {
    /// `chat` / `operator` (the `optouts.source` column).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Operator => "operator",
        }
    }
}

/// One record of the opt-out topic; mirrors `optout.avsc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptOut {
    pub scope: OptOutScope,
    pub id: i64,
    pub login: Option<String>,
    pub opted_out: bool,
    /// ms since the epoch; see the module docs.
    pub at: i64,
    pub source: OptOutSource,
}

impl OptOut {
    /// The Kafka key: `user:<id>` / `channel:<id>`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.scope.as_str(), self.id)
    }
}

/// The state of one key: opted out, or opted back in at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptOutState {
    pub opted_out: bool,
    pub at: i64,
}

impl OptOutState {
    fn excludes(self, sent_ms: i64) -> bool {
        self.opted_out || sent_ms < self.at
    }
}

/// The latest state of every key seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptOutSet {
    users: HashMap<i64, OptOutState>,
    channels: HashMap<i64, OptOutState>,
}

impl OptOutSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a record (the latest one wins, as in the compacted topic). An opt-in of a key
    /// that is not opted out changes nothing: it must not hide anyone's earlier chat.
    /// Returns whether the state changed.
    pub fn apply(&mut self, e: &OptOut) -> bool {
        let map = match e.scope {
            OptOutScope::User => &mut self.users,
            OptOutScope::Channel => &mut self.channels,
        };
        let new = OptOutState {
            opted_out: e.opted_out,
            at: e.at,
        };
        match map.get(&e.id) {
            Some(old) if *old == new => false,
            Some(old) if !old.opted_out && !e.opted_out => false,
            None if !e.opted_out => false,
            _ => {
                map.insert(e.id, new);
                true
            }
        }
    }

    /// Sets the state of a key as stored (a reader of the `optouts` table, which holds the
    /// latest state per key, not the records that led to it).
    pub fn set_state(&mut self, scope: OptOutScope, id: i64, state: OptOutState) {
        match scope {
            OptOutScope::User => self.users.insert(id, state),
            OptOutScope::Channel => self.channels.insert(id, state),
        };
    }

    /// The state of a key, if any record of it was applied.
    pub fn state(&self, scope: OptOutScope, id: i64) -> Option<OptOutState> {
        match scope {
            OptOutScope::User => self.users.get(&id).copied(),
            OptOutScope::Channel => self.channels.get(&id).copied(),
        }
    }

    /// True while `id` is opted out.
    pub fn is_opted_out(&self, scope: OptOutScope, id: i64) -> bool {
        self.state(scope, id).is_some_and(|s| s.opted_out)
    }

    /// True when a message of `user_id` (if known) in `broadcaster_id` sent at `sent_ms` must
    /// not be kept, published or served.
    pub fn excludes(&self, broadcaster_id: i64, user_id: Option<i64>, sent_ms: i64) -> bool {
        self.channels
            .get(&broadcaster_id)
            .is_some_and(|s| s.excludes(sent_ms))
            || user_id
                .and_then(|u| self.users.get(&u))
                .is_some_and(|s| s.excludes(sent_ms))
    }

    /// When `excludes` is true because of an opt-out in force (not a past one before an opt-in):
    /// the `at` of that opt-out. A message sent after it can only come from a capture that did
    /// not know yet, or after an opt-in not seen yet; see chat-ingestor's grace.
    pub fn opted_out_at(&self, broadcaster_id: i64, user_id: Option<i64>) -> Option<i64> {
        let channel = self
            .channels
            .get(&broadcaster_id)
            .filter(|s| s.opted_out)
            .map(|s| s.at);
        let user = user_id
            .and_then(|u| self.users.get(&u))
            .filter(|s| s.opted_out)
            .map(|s| s.at);
        channel.max(user)
    }

    /// True when no user has a state (then rows need not be looked at one by one).
    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// Every key with its state, for listings.
    pub fn iter(&self) -> impl Iterator<Item = (OptOutScope, i64, OptOutState)> + '_ {
        self.users
            .iter()
            .map(|(id, s)| (OptOutScope::User, *id, *s))
            .chain(
                self.channels
                    .iter()
                    .map(|(id, s)| (OptOutScope::Channel, *id, *s)),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(scope: OptOutScope, id: i64, opted_out: bool, at: i64) -> OptOut {
        OptOut {
            scope,
            id,
            login: None,
            opted_out,
            at,
            source: OptOutSource::Chat,
        }
    }

    #[test]
    fn opted_out_users_and_channels_are_excluded_everywhere() {
        let mut s = OptOutSet::new();
        assert!(!s.excludes(1, Some(2), 100));
        assert!(s.apply(&ev(OptOutScope::User, 2, true, 50)));
        assert!(s.excludes(1, Some(2), 10), "before the opt-out too");
        assert!(s.excludes(9, Some(2), 1_000), "in every channel");
        assert!(!s.excludes(1, Some(3), 100), "others untouched");
        assert!(!s.excludes(1, None, 100));
        s.apply(&ev(OptOutScope::Channel, 1, true, 50));
        assert!(s.excludes(1, Some(3), 100));
        assert!(s.excludes(1, None, 100));
        assert!(!s.excludes(4, Some(3), 100));
    }

    #[test]
    fn opting_back_in_keeps_only_later_messages() {
        let mut s = OptOutSet::new();
        s.apply(&ev(OptOutScope::User, 2, true, 50));
        assert!(s.apply(&ev(OptOutScope::User, 2, false, 80)));
        assert!(s.excludes(1, Some(2), 10), "purged history stays out");
        assert!(s.excludes(1, Some(2), 79));
        assert!(!s.excludes(1, Some(2), 80));
        assert!(!s.is_opted_out(OptOutScope::User, 2));
    }

    #[test]
    fn an_opt_in_without_an_opt_out_changes_nothing() {
        let mut s = OptOutSet::new();
        assert!(!s.apply(&ev(OptOutScope::User, 2, false, 80)));
        assert!(!s.excludes(1, Some(2), 10));
        s.apply(&ev(OptOutScope::User, 2, true, 90));
        s.apply(&ev(OptOutScope::User, 2, false, 100));
        assert!(
            !s.apply(&ev(OptOutScope::User, 2, false, 200)),
            "second opt-in"
        );
        assert!(!s.excludes(1, Some(2), 150));
    }

    #[test]
    fn keys() {
        assert_eq!(ev(OptOutScope::User, 7, true, 0).key(), "user:7");
        assert_eq!(ev(OptOutScope::Channel, 7, true, 0).key(), "channel:7");
    }
}
