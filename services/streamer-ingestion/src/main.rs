//! The `streamer-ingestion` binary: configuration, telemetry, signals; the rest is the library.

use std::path::PathBuf;

use clap::Parser;
use tci_common::{config, telemetry, Shutdown};

/// Upserts the streamers table from the live-streams topic.
#[derive(Debug, Parser)]
#[command(name = "streamer-ingestion", version, about)]
struct Cli {
    /// Optional TOML config file (also TCI_CONFIG); environment `TCI__…` overrides it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg: streamer_ingestion::Config = config::load(cli.config.as_deref())?;
    telemetry::init(&cfg.common.log);
    let shutdown = Shutdown::with_signals();
    let app = streamer_ingestion::App::build(cfg, shutdown.token()).await?;
    app.run().await
}
