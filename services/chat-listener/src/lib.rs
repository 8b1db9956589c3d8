//! chat-listener: joins the chats of live channels and publishes what is said.
//!
//! The pure, I/O-free core lives here so the binary, the tests and the benchmarks share it:
//!
//! * [`irc`]: zero-copy IRCv3 line parsing (tags, prefix, command, params, trailing).
//! * [`record`]: parsed lines → the `tci-schemas` wire types (chat messages, moderation events,
//!   merged room state).
//! * [`bin_parse`]: the `chat-listener parse` operator tool (IRC lines in, JSON lines out).

pub mod bin_parse;
pub mod irc;
pub mod record;
