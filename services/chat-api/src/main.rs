//! The `chat-api` binary: configuration, telemetry, signals; everything else is the library.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tci_common::{config, telemetry, Shutdown};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serves the /v1.0 chat query API.
#[derive(Debug, Parser)]
#[command(name = "chat-api", version, about)]
struct Cli {
    /// TOML configuration file (see services/chat-api/chat-api.sample.toml); `TCI__…`
    /// environment variables override it.
    #[arg(long, env = "TCI_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg: chat_api::Config = config::load(cli.config.as_deref())?;
    telemetry::init(&cfg.common.log);
    let shutdown = Shutdown::with_signals();
    let app = chat_api::App::build(cfg, shutdown.token())
        .await
        .context("starting chat-api")?;
    app.run().await
}
