//! chat-listener configuration (see `config/tci.sample.toml`).

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tci_common::CommonConfig;

/// Everything chat-listener reads from configuration.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    #[serde(flatten)]
    pub common: CommonConfig,
    pub irc: IrcConfig,
    pub channels: ChannelsConfig,
    pub publish: PublishConfig,
    pub optout: OptOutConfig,
}

/// The chat connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IrcConfig {
    /// IRC-over-WebSocket endpoint (`wss://` uses rustls with the web PKI roots).
    pub url: String,
    /// Login; anonymous `justinfanNNNNN` when absent.
    pub nick: Option<String>,
    /// `oauth:…` token for a logged-in connection; anonymous when absent.
    #[serde(skip_serializing)]
    pub token: Option<SecretString>,
    /// Channels per WebSocket connection.
    pub channels_per_connection: usize,
    /// JOINs allowed per `join_window` across the whole process (Twitch: 20 per 10 s).
    pub joins_per_window: u32,
    #[serde(with = "humantime_serde")]
    pub join_window: Duration,
    /// A JOIN not answered by the channel's ROOMSTATE within this is sent again: Twitch ignores
    /// JOINs over its rate limit without a word.
    #[serde(with = "humantime_serde")]
    pub join_timeout: Duration,
    /// How often we PING the server when it is quiet.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// A connection whose PONG does not come within this is dropped and reconnected.
    #[serde(with = "humantime_serde")]
    pub pong_timeout: Duration,
    /// Reconnect backoff: first delay and cap (full jitter in between).
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
}

impl Default for IrcConfig {
    fn default() -> Self {
        Self {
            url: "wss://irc-ws.chat.twitch.tv:443".into(),
            nick: None,
            token: None,
            channels_per_connection: 90,
            joins_per_window: 20,
            join_window: Duration::from_secs(10),
            join_timeout: Duration::from_secs(15),
            ping_interval: Duration::from_secs(60),
            pong_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(30),
        }
    }
}

/// Which channels to be in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelsConfig {
    /// Consumer group on the live-streams topic; replicas in one group split the channels.
    pub group_id: String,
    /// A channel not seen live for this long is parted (the original used 5 minutes; 10 survive
    /// one failed poll at the 120 s poll interval that all of Twitch needs, see docs/operations.md).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How often expiry and ownership are checked.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// How long the group waits for a replica that stopped answering before its channels go
    /// to the others (Kafka's `session.timeout.ms`). Short, because while it waits those
    /// channels are not captured and Twitch does not replay them.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// A stable name for this replica in the group (Kafka static membership,
    /// `group.instance.id`): a replica restarted under the same name (a crashed container in
    /// the same pod; the Helm chart uses the pod name) gets its channels back at once instead
    /// of after `session_timeout`. Must differ between replicas; unset by default.
    pub instance_id: Option<String>,
    /// Channels of live-streams partitions this replica loses stay joined this long: a Kafka
    /// outage that times the group session out then costs no chat (the same partitions come
    /// back), and a real handover to another replica overlaps instead of leaving a hole (the
    /// copies merge by message id). 0 parts at once.
    #[serde(with = "humantime_serde")]
    pub handover_grace: Duration,
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        Self {
            group_id: "chat-listener".into(),
            ttl: Duration::from_secs(600),
            check_interval: Duration::from_secs(1),
            session_timeout: Duration::from_secs(10),
            instance_id: None,
            handover_grace: Duration::from_secs(60),
        }
    }
}

/// Publishing to Kafka.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishConfig {
    /// Records buffered between the connections and the producer. When full, connections stop
    /// reading their sockets (backpressure) instead of dropping.
    pub queue: usize,
    /// Records handed to the producer and not yet acknowledged.
    pub max_in_flight: usize,
    /// How many recent message ids are remembered to drop Twitch's duplicate deliveries.
    pub dedupe_window: usize,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            queue: 10_000,
            max_in_flight: 20_000,
            dedupe_window: 200_000,
        }
    }
}

/// The chat commands of opt-out (README "Opting out"). Matched against the whole message,
/// ignoring case and repeated spaces; `<command> channel` is the broadcaster's form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OptOutConfig {
    pub command: String,
    pub optin_command: String,
}

impl Default for OptOutConfig {
    fn default() -> Self {
        Self {
            command: "!archive optout".into(),
            optin_command: "!archive optin".into(),
        }
    }
}
