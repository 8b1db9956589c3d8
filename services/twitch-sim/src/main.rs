//! `twitch-sim` binary: parses flags into a [`SimConfig`] and runs the library.
#![recursion_limit = "256"] // warp's nested filter types need it in release builds

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use twitch_sim::{Sim, SimConfig};

/// A local stand-in for Twitch chat (IRC over WebSocket) and Helix.
#[derive(Debug, Parser)]
#[command(name = "twitch-sim", version, about)]
struct Args {
    /// IRC WebSocket listen address.
    #[arg(long, env = "TWITCH_SIM_IRC_ADDR", default_value = "127.0.0.1:8765")]
    irc_addr: SocketAddr,
    /// Helix/admin HTTP listen address.
    #[arg(long, env = "TWITCH_SIM_HELIX_ADDR", default_value = "127.0.0.1:8766")]
    helix_addr: SocketAddr,
    /// Live channels.
    #[arg(long, default_value_t = 1000)]
    channels: usize,
    /// Aggregate chat lines per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Fraction of channels replaced every churn interval.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Churn period (e.g. "60s").
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    churn_interval: Duration,
    /// Probability that a PRIVMSG is delivered twice.
    #[arg(long, default_value_t = 0.001)]
    duplicate_probability: f64,
    /// Replay raw IRC lines from this file instead of generating.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// World seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Generator tick.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "50ms")]
    tick: Duration,
    /// Server PING period.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    ping_interval: Duration,
    /// Drop clients that don't PONG within this time.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pong_timeout: Duration,
    /// Helix client id.
    #[arg(long, default_value = "sim-client-id")]
    client_id: String,
    /// Helix client secret.
    #[arg(long, default_value = "sim-client-secret")]
    client_secret: String,
    /// Helix app token lifetime.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "58days")]
    token_lifetime: Duration,
    /// Helix rate-limit bucket size.
    #[arg(long, default_value_t = 800)]
    ratelimit_bucket: u32,
    /// Time to refill an empty bucket.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    ratelimit_refill: Duration,
    /// JOIN attempts allowed per --join-window per login (Twitch: 20 for a normal account,
    /// 2000 for a verified bot); attempts over it are ignored without an answer, as Twitch
    /// does. 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    joins_per_window: u32,
    /// The window of --joins-per-window (Twitch: 10s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    join_window: Duration,
    /// Do not keep the id of every PRIVMSG (the ledger and `/sim/sent?ids=true`): memory stays
    /// flat during long high-rate runs (benchmarks); counts become approximate.
    #[arg(long)]
    no_record_ids: bool,
    /// Chat in every live channel whether or not anyone joined it, as on Twitch.
    #[arg(long)]
    chat_while_unjoined: bool,
}

impl From<Args> for SimConfig {
    fn from(a: Args) -> Self {
        SimConfig {
            irc_addr: a.irc_addr,
            helix_addr: a.helix_addr,
            seed: a.seed,
            channels: a.channels,
            rate: a.rate,
            tick: a.tick,
            churn: a.churn,
            churn_interval: a.churn_interval,
            duplicate_probability: a.duplicate_probability,
            replay: a.replay,
            ping_interval: a.ping_interval,
            pong_timeout: a.pong_timeout,
            client_id: a.client_id,
            client_secret: a.client_secret,
            token_lifetime: a.token_lifetime,
            ratelimit_bucket: a.ratelimit_bucket,
            ratelimit_refill: a.ratelimit_refill,
            joins_per_window: a.joins_per_window,
            join_window: a.join_window,
            record_ids: !a.no_record_ids,
            chat_while_unjoined: a.chat_while_unjoined,
            ..SimConfig::default()
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let shutdown = CancellationToken::new();
    let sim = Sim::start_with_shutdown(Args::parse().into(), shutdown.clone())
        .await
        .context("starting twitch-sim")?;
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown signal received");
        on_signal.cancel();
        anyhow::Ok(())
    });
    sim.run_until_stopped()
        .await
        .context("twitch-sim stopped with an error")
}
