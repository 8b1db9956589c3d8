//! chat-listener: joins the chats of live channels and publishes what is said.
//!
//! * [`irc`], [`record`]: the `tci-irc` crate's parser and record builders, re-exported.
//! * [`channels`]: which channels this replica owns (live-streams consumer group, TTL).
//! * [`pool`]: the IRC-over-WebSocket connections (login, JOIN rate limit, keep-alive, reconnect).
//! * [`publish`]: Avro to Kafka with backpressure and duplicate suppression.
//! * [`optout`]: the opt-out commands and the set of opted-out chatters and channels.
//! * [`app`]: wiring, the admin server and shutdown.
//! * [`bin_parse`]: the `chat-listener parse` operator tool (IRC lines in, JSON lines out).

pub mod app;
pub mod bin_parse;
pub mod channels;
pub mod config;
pub mod metrics;
pub mod optout;
pub mod pool;
pub mod publish;

pub use tci_irc::{irc, record};

pub use app::App;
pub use config::Config;
