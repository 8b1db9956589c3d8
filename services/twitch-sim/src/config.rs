//! [`SimConfig`]: every knob of the simulator, with defaults suited to tests.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Configuration of a simulator instance.
///
/// `Default` binds both servers to `127.0.0.1:0` (the OS picks free ports; read them back
/// from [`crate::Sim::irc_addr`] / [`crate::Sim::helix_addr`]) and keeps traffic modest.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address of the IRC-over-WebSocket server.
    pub irc_addr: SocketAddr,
    /// Address of the Helix (and `/sim/*` admin) HTTP server.
    pub helix_addr: SocketAddr,
    /// Seed of the world model (channel ids, names, viewer counts, churn choices).
    pub seed: u64,
    /// Number of live channels (kept constant across churn). Up to ~100k.
    pub channels: usize,
    /// Aggregate chat lines per second across all joined live channels (each generated
    /// line counts once however many connections receive it).
    pub rate: f64,
    /// Generator tick: lines are produced in batches once per tick.
    pub tick: Duration,
    /// Fraction of live channels replaced by new ones every `churn_interval` (0 disables).
    pub churn: f64,
    /// Period of churn steps.
    pub churn_interval: Duration,
    /// Probability that a PRIVMSG is delivered twice (same `id`).
    pub duplicate_probability: f64,
    /// Replay these raw IRC lines (one per line) instead of generating traffic.
    pub replay: Option<PathBuf>,
    /// How often the server sends `PING :tmi.twitch.tv` to each client.
    pub ping_interval: Duration,
    /// A client that does not answer a server PING within this time is dropped.
    pub pong_timeout: Duration,
    /// Time between `RECONNECT` and the server closing the socket.
    pub reconnect_grace: Duration,
    /// Outbound frames queued per connection; a slower client loses frames (logged).
    pub client_queue: usize,
    /// Maximum IRC lines per outbound WebSocket frame.
    pub max_lines_per_frame: usize,
    /// The one Helix application's client id.
    pub client_id: String,
    /// The one Helix application's client secret.
    pub client_secret: String,
    /// Lifetime of app access tokens.
    pub token_lifetime: Duration,
    /// Helix rate-limit bucket size (points) per client id.
    pub ratelimit_bucket: u32,
    /// Time for an empty bucket to refill completely.
    pub ratelimit_refill: Duration,
    /// Keep every sent PRIVMSG id (needed for distinct counts and `?ids=true`).
    pub record_ids: bool,
    /// Chat goes on in every live channel whether or not anyone listens, as on Twitch: traffic
    /// is generated for all live channels, and lines of a channel no connection has joined are
    /// lost (Twitch does not replay them). Off by default: traffic only for joined channels.
    pub chat_while_unjoined: bool,
    /// JOIN attempts allowed per `join_window` per login, as Twitch limits them (20 for a
    /// normal account, 2,000 for a verified bot); attempts over it are ignored without an
    /// answer. 0 (the default) means unlimited.
    pub joins_per_window: u32,
    /// The window of `joins_per_window` (Twitch: 10 s).
    pub join_window: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Self {
            irc_addr: local,
            helix_addr: local,
            seed: 42,
            channels: 1000,
            rate: 100.0,
            tick: Duration::from_millis(50),
            churn: 0.0,
            churn_interval: Duration::from_secs(60),
            duplicate_probability: 0.001,
            replay: None,
            ping_interval: Duration::from_secs(60),
            pong_timeout: Duration::from_secs(10),
            reconnect_grace: Duration::from_millis(500),
            client_queue: 4096,
            max_lines_per_frame: 64,
            client_id: "sim-client-id".into(),
            client_secret: "sim-client-secret".into(),
            token_lifetime: Duration::from_secs(5_011_271),
            ratelimit_bucket: 800,
            ratelimit_refill: Duration::from_secs(60),
            record_ids: true,
            chat_while_unjoined: false,
            joins_per_window: 0,
            join_window: Duration::from_secs(10),
        }
    }
}

impl SimConfig {
    /// Checks values that would otherwise make a task spin or divide by zero.
    pub fn validate(&self) -> Result<(), crate::SimError> {
        let bad = |m: &str| Err(crate::SimError::Config(m.to_string()));
        if self.tick.is_zero() {
            return bad("tick must be > 0");
        }
        if !(0.0..=1.0).contains(&self.churn) {
            return bad("churn must be within 0..=1");
        }
        if self.churn > 0.0 && self.churn_interval.is_zero() {
            return bad("churn_interval must be > 0");
        }
        if !(0.0..=1.0).contains(&self.duplicate_probability) {
            return bad("duplicate_probability must be within 0..=1");
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            return bad("rate must be a finite number >= 0");
        }
        if self.ping_interval.is_zero() || self.ratelimit_refill.is_zero() {
            return bad("ping_interval and ratelimit_refill must be > 0");
        }
        if self.joins_per_window > 0 && self.join_window.is_zero() {
            return bad("join_window must be > 0 when joins_per_window is set");
        }
        if self.client_queue == 0 || self.max_lines_per_frame == 0 || self.ratelimit_bucket == 0 {
            return bad("client_queue, max_lines_per_frame and ratelimit_bucket must be > 0");
        }
        Ok(())
    }
}
