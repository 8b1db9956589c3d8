//! Opt-out in chat-listener: the chat commands, and the set of opted-out chatters and channels
//! that decides what is not published.
//!
//! The identity is the sender's `user-id` tag: Twitch authenticated the sender, so a message
//! whose login or display name claims someone else acts for its real sender only. The channel
//! form counts only from the broadcaster (`user-id` = `room-id`).
//!
//! The set is the compacted topic `tci.optouts.v1`, read from its beginning at start and then
//! followed ([`follow`]), so a restart keeps it and every replica and capture lane agrees; a
//! command seen here is applied locally at once as well, so the sender's very next message is
//! already held back.

use std::sync::{Arc, RwLock};

use tci_common::{follow::Followed, registry::AvroCodec, KafkaConfig};
use tci_schemas::{ChatMessage, ModerationEvent, OptOut, OptOutScope, OptOutSet, OptOutSource};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{config::OptOutConfig, metrics::M};

/// The set shared by the follower and the publisher.
pub type SharedOptOuts = Arc<RwLock<OptOutSet>>;

/// What to do with a chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Publish it.
    Publish,
    /// Do not publish it (an opted-out chatter or channel, or an opt-out command that changes
    /// nothing).
    Drop,
    /// An opt-out command: publish this event instead of the message.
    Event(OptOut),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Out(OptOutScope),
    In(OptOutScope),
}

/// The commands, normalised once.
#[derive(Debug, Clone)]
pub struct Commands {
    optout: String,
    optin: String,
}

fn normalise(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

impl Commands {
    pub fn new(cfg: &OptOutConfig) -> Self {
        Self {
            optout: normalise(&cfg.command),
            optin: normalise(&cfg.optin_command),
        }
    }

    fn parse(&self, text: &str) -> Option<Command> {
        // Cheap reject first: the hot path sees every message.
        let t = text.trim_start();
        let starts = |cmd: &str| {
            let first = cmd.split(' ').next().unwrap_or_default();
            t.get(..first.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(first))
        };
        if !starts(&self.optout) && !starts(&self.optin) {
            return None;
        }
        let t = normalise(text);
        let channel = |cmd: &str| t.strip_prefix(cmd).map(|rest| rest == " channel");
        if t == self.optout {
            Some(Command::Out(OptOutScope::User))
        } else if t == self.optin {
            Some(Command::In(OptOutScope::User))
        } else if channel(&self.optout) == Some(true) {
            Some(Command::Out(OptOutScope::Channel))
        } else if channel(&self.optin) == Some(true) {
            Some(Command::In(OptOutScope::Channel))
        } else {
            None
        }
    }

    /// Decides about one chat message given the current set (pure).
    pub fn decide(&self, m: &ChatMessage, set: &OptOutSet) -> Decision {
        let user_id = m.user_id();
        let excluded = set.excludes(m.broadcaster_id, user_id, m.sent_timestamp);
        let Some(cmd) = self.parse(&m.text) else {
            return if excluded {
                Decision::Drop
            } else {
                Decision::Publish
            };
        };
        let (scope, opted_out) = match cmd {
            Command::Out(s) => (s, true),
            Command::In(s) => (s, false),
        };
        let Some(sender) = user_id else {
            // Nobody to attribute it to: not acted on, and a command is not chat.
            M.optout_commands.with_label_values(&["ignored"]).inc();
            return Decision::Drop;
        };
        let (id, login) = match scope {
            OptOutScope::User => (sender, m.user.name.clone()),
            OptOutScope::Channel if sender == m.broadcaster_id => {
                (m.broadcaster_id, m.room.name.clone())
            }
            // The channel form from anyone but the broadcaster is ordinary chat.
            OptOutScope::Channel => {
                M.optout_commands.with_label_values(&["ignored"]).inc();
                return if excluded {
                    Decision::Drop
                } else {
                    Decision::Publish
                };
            }
        };
        if !opted_out && !set.is_opted_out(scope, id) {
            // An opt-in of someone who is not opted out would hide their earlier chat.
            M.optout_commands.with_label_values(&["ignored"]).inc();
            return Decision::Drop;
        }
        if opted_out && set.is_opted_out(scope, id) {
            return Decision::Drop;
        }
        M.optout_commands
            .with_label_values(&[if opted_out { "optout" } else { "optin" }])
            .inc();
        Decision::Event(OptOut {
            scope,
            id,
            login: Some(login),
            opted_out,
            // Twitch's clock, the same as the messages it is compared with; both capture
            // lanes publish the same record.
            at: m.sent_timestamp,
            source: OptOutSource::Chat,
        })
    }
}

/// True when a moderation event concerns an opted-out channel or chatter (bans, deletions and
/// USERNOTICEs name the user and may carry their text).
pub fn excludes_event(e: &ModerationEvent, set: &OptOutSet) -> bool {
    let user = e.target_user_id.as_deref().and_then(|u| u.parse().ok());
    set.excludes(e.broadcaster_id, user, e.sent_timestamp)
}

/// Follows the opt-out topic into `set`; `ready` turns true once the topic was read to its end.
pub async fn follow(
    kafka: KafkaConfig,
    codec: AvroCodec,
    topic: String,
    set: SharedOptOuts,
    ready: watch::Sender<bool>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel(256);
    let reader = tci_common::follow::follow::<OptOut>(
        &kafka,
        codec,
        &topic,
        "chat-listener-optouts",
        tx,
        token.clone(),
    );
    let apply = async {
        while let Some(f) = rx.recv().await {
            match f {
                Followed::Record(e) => {
                    let changed = set.write().unwrap_or_else(|e| e.into_inner()).apply(&e);
                    if changed {
                        info!(
                            scope = e.scope.as_str(),
                            id = e.id,
                            opted_out = e.opted_out,
                            "opt-out state"
                        );
                    }
                }
                Followed::CaughtUp => {
                    let _ = ready.send(true);
                }
            }
        }
    };
    let (r, ()) = tokio::join!(reader, apply);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use tci_schemas::{Room, User};

    fn msg(room: i64, user: &str, text: &str) -> ChatMessage {
        ChatMessage {
            broadcaster_id: room,
            id: "m".into(),
            sent_timestamp: 1_000,
            text: text.into(),
            room: Room {
                name: "chan".into(),
                room_id: room.to_string(),
                ..Room::default()
            },
            user: User {
                name: "alice".into(),
                display_name: "Alice".into(),
                id: user.into(),
                ..User::default()
            },
            ..ChatMessage::default()
        }
    }

    fn cmds() -> Commands {
        Commands::new(&OptOutConfig::default())
    }

    #[test]
    fn the_command_opts_its_sender_out_by_user_id() {
        let set = OptOutSet::new();
        let d = cmds().decide(&msg(1, "42", "  !Archive   OPTOUT "), &set);
        let Decision::Event(e) = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            (e.scope, e.id, e.opted_out, e.at),
            (OptOutScope::User, 42, true, 1_000)
        );
        assert_eq!(e.login.as_deref(), Some("alice"));
        assert_eq!(
            cmds().decide(&msg(1, "42", "hello"), &set),
            Decision::Publish
        );
        assert_eq!(
            cmds().decide(&msg(1, "42", "!archive optout please"), &set),
            Decision::Publish,
            "only the exact command"
        );
    }

    #[test]
    fn opted_out_chatters_are_dropped_and_the_command_is_never_published() {
        let mut set = OptOutSet::new();
        let Decision::Event(e) = cmds().decide(&msg(1, "42", "!archive optout"), &set) else {
            panic!()
        };
        set.apply(&e);
        assert_eq!(cmds().decide(&msg(1, "42", "hi"), &set), Decision::Drop);
        assert_eq!(cmds().decide(&msg(2, "42", "hi"), &set), Decision::Drop);
        assert_eq!(
            cmds().decide(&msg(1, "42", "!archive optout"), &set),
            Decision::Drop
        );
        assert_eq!(cmds().decide(&msg(1, "43", "hi"), &set), Decision::Publish);
        let mut later = msg(1, "42", "!archive optin");
        later.sent_timestamp = 2_000;
        let Decision::Event(e) = cmds().decide(&later, &set) else {
            panic!()
        };
        assert!(!e.opted_out);
        set.apply(&e);
        let mut after = msg(1, "42", "back");
        after.sent_timestamp = 2_001;
        assert_eq!(cmds().decide(&after, &set), Decision::Publish);
    }

    #[test]
    fn the_channel_form_counts_only_from_the_broadcaster() {
        let set = OptOutSet::new();
        assert_eq!(
            cmds().decide(&msg(1, "42", "!archive optout channel"), &set),
            Decision::Publish
        );
        let Decision::Event(e) = cmds().decide(&msg(7, "7", "!archive optout channel"), &set)
        else {
            panic!()
        };
        assert_eq!((e.scope, e.id), (OptOutScope::Channel, 7));
        assert_eq!(e.login.as_deref(), Some("chan"));
    }

    #[test]
    fn an_opt_in_of_someone_not_opted_out_is_dropped_without_an_event() {
        let set = OptOutSet::new();
        assert_eq!(
            cmds().decide(&msg(1, "42", "!archive optin"), &set),
            Decision::Drop
        );
    }
}
