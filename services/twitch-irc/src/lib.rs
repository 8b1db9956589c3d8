//! Twitch IRC lines, shared by what captures them and what serves them back.
//!
//! * [`irc`]: zero-copy IRCv3 line parsing (tags, prefix, command, params, trailing).
//! * [`record`]: parsed lines → the `tci-schemas` wire types (chat messages, moderation events,
//!   merged room state), and [`record::render_message_json`]: the API's `message` JSON written
//!   straight from a stored line and its room state.
//!
//! chat-listener builds records with it; chat-ingestor checks that a stored line renders to the
//! record's JSON before it stores the line alone; chat-api renders pages from stored lines.
//! Everything here is pure: no I/O, no clock.

pub mod irc;
pub mod record;
